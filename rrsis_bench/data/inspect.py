"""`rrsis-bench data verify|stats`: check a dataset on disk and describe it.

``verify`` reads every sample of every split (image and mask), lists all problems at once instead
of stopping at the first (each missing file and each image/annotation size mismatch by name),
compares split sizes with the published ones and writes one manifest per split: sorted sample ids,
the metadata ``sha256`` that run records cite and the ``content_sha256`` that also covers the image
bytes and masks (see :mod:`rrsis_bench.data.manifest`).
``stats`` counts samples per split and category, buckets objects by their share of the image area,
summarizes expression lengths, and saves a PNG figure.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rrsis_bench.data.manifest import (
    CONTENT_SHA256_COVERS,
    SHA256_COVERS,
    sample_content_sha256,
    sample_metadata,
    split_manifest,
)
from rrsis_bench.io import atomic_write, atomic_write_json
from rrsis_bench.registry import DATASETS, create_dataset

SPLITS = ("train", "val", "test")
#: Split sizes as published (samples = image-expression-mask triplets).
PUBLISHED_SIZES: dict[str, dict[str, int]] = {
    "rrsisd": {"train": 12181, "val": 1740, "test": 3481},
    "refsegrs": {"train": 2172, "val": 431, "test": 1817},
}
#: Object size buckets by share of the image area (upper bounds, exclusive).
SIZE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("tiny (<0.5%)", 0.005), ("small (0.5-2%)", 0.02), ("medium (2-10%)", 0.10), ("large (>=10%)", 1.01),
)


@dataclass
class SplitReport:
    split: str
    num_samples: int = 0
    num_skipped: int = 0
    published: int | None = None
    problems: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None

    @property
    def size_matches(self) -> bool | None:
        return None if self.published is None else self.num_samples == self.published


def open_split(name: str, root: str | None, split: str, options: dict | None = None):
    """The dataset split, skipping (and counting) missing files when the reader supports it."""
    options = dict(options or {})
    factory = DATASETS.get(name)
    try:
        accepts_skip = "skip_missing" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepts_skip = False
    if accepts_skip:
        options.setdefault("skip_missing", True)
    return create_dataset(name, root=root, split=split, **options)


def verify_split(name: str, root: str | None, split: str, options: dict | None = None) -> SplitReport:
    report = SplitReport(split, published=PUBLISHED_SIZES.get(name, {}).get(split))
    try:
        dataset = open_split(name, root, split, options)
    except Exception as exc:  # report, do not raise: verify lists every problem
        report.problems.append(f"cannot open split: {exc}")
        return report
    report.num_samples = len(dataset)
    report.num_skipped = int(getattr(dataset, "num_skipped", 0))
    if report.num_skipped:
        report.problems.append(f"{report.num_skipped} sample(s) skipped because their files are missing")
    report.problems.extend(f"missing file: {path}" for path in getattr(dataset, "missing_files", ()))
    content: dict[str, str] = {}
    file_digests: dict[str, str] = {}  # an image shared by several samples is hashed once
    for index in range(len(dataset)):
        try:
            sample = dataset[index]
            mask = np.asarray(sample["mask"])
            if mask.shape != (sample["image"].height, sample["image"].width):
                report.problems.append(f"{sample['sample_id']}: mask {mask.shape} differs from image size")
            if not str(sample["text"]).strip():
                report.problems.append(f"{sample['sample_id']}: empty expression")
            content[str(sample["sample_id"])] = sample_content_sha256(dataset, index, sample, file_digests)
        except Exception as exc:
            report.problems.append(f"sample {index}: {type(exc).__name__}: {exc}")
    # Readers that resize masks to mismatched images list them (RRSIS-D: image vs annotation size).
    report.problems.extend(f"size mismatch: {line}" for line in getattr(dataset, "size_mismatches", ()))
    if report.size_matches is False:
        report.problems.append(f"{report.num_samples} samples, but the published split has {report.published}")
    try:
        # The content hash needs every sample; a split with unreadable samples gets the metadata hash only.
        report.manifest = split_manifest(dataset, content if len(content) == len(dataset) else None)
    except ValueError as exc:
        report.problems.append(str(exc))
    return report


def write_manifests(name: str, reports: Sequence[SplitReport], out_dir: str | Path) -> list[Path]:
    written = []
    for report in reports:
        if report.manifest is not None:
            path = Path(out_dir) / f"{name}-{report.split}.manifest.json"
            covers = {"sha256_covers": SHA256_COVERS}
            if "content_sha256" in report.manifest:
                covers["content_sha256_covers"] = CONTENT_SHA256_COVERS
            written.append(atomic_write_json(path, {"dataset": name, "split": report.split, **report.manifest,
                                                    **covers}))
    return written


def object_share(dataset, index: int) -> float:
    """Share of the image area covered by sample ``index``'s mask."""
    mask = dataset.target_mask(index) if hasattr(dataset, "target_mask") else np.asarray(dataset[index]["mask"])
    return float(mask.mean())


def size_bucket(share: float) -> str:
    return next(label for label, upper in SIZE_BUCKETS if share < upper)


def split_stats(dataset) -> dict[str, Any]:
    categories: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    lengths: list[int] = []
    images = set()
    for index in range(len(dataset)):
        meta = sample_metadata(dataset, index)
        categories[meta.get("class_name") or "(none)"] += 1
        images.add(meta.get("image_id"))
        lengths.append(len(str(meta["text"]).split()))
        buckets[size_bucket(object_share(dataset, index))] += 1
    length_array = np.asarray(lengths or [0])
    return {
        "num_samples": len(dataset), "num_images": len(images),
        "categories": dict(sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))),
        "object_size": {label: buckets.get(label, 0) for label, _ in SIZE_BUCKETS},
        "expression_words": {"mean": round(float(length_array.mean()), 2), "min": int(length_array.min()),
                             "max": int(length_array.max()), "histogram": dict(sorted(Counter(lengths).items()))},
    }


def save_stats_figure(name: str, stats: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Three panels: samples per category and split, object-size buckets, expression lengths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    splits = list(stats)
    categories = sorted({c for s in stats.values() for c in s["categories"]})
    width = 0.8 / max(1, len(splits))
    for k, split in enumerate(splits):
        x = np.arange(len(categories)) + k * width
        axes[0].bar(x, [stats[split]["categories"].get(c, 0) for c in categories], width, label=split)
        sizes = [stats[split]["object_size"][label] for label, _ in SIZE_BUCKETS]
        axes[1].bar(np.arange(len(SIZE_BUCKETS)) + k * width, sizes, width, label=split)
        hist = stats[split]["expression_words"]["histogram"]
        axes[2].plot(list(hist), list(hist.values()), marker="o", label=split)
    axes[0].set_xticks(np.arange(len(categories)) + 0.4 - width / 2, categories, rotation=60, ha="right")
    axes[0].set_title("samples per category")
    axes[1].set_xticks(np.arange(len(SIZE_BUCKETS)) + 0.4 - width / 2, [b for b, _ in SIZE_BUCKETS], rotation=20)
    axes[1].set_title("object size (share of image area)")
    axes[2].set_title("expression length (words)")
    for ax in axes:
        ax.legend()
    fig.suptitle(f"{name}")
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path
