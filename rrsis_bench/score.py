"""Score saved PNG masks from any codebase against ground-truth PNG masks.

Foreground is "nonzero", read from the raw pixel values, never from a grey-level conversion:

- ``1``, ``L``, ``I``, ``I;16``, ``F``: the pixel value is nonzero;
- ``P`` (palette): the palette *index* is nonzero. Index 1 is foreground even when the palette
  maps it to dark grey or black, which ``convert("L") > 0`` would get wrong;
- ``RGB``: any channel is nonzero;
- ``RGBA``, ``LA``, ``PA``: the alpha channel is ignored (an opaque black background would
  otherwise be all foreground) and the colour/index channels are read as above.

Other modes (CMYK, YCbCr, ...) have no unambiguous "zero" and are reported as problems.

Masks are expected to hold 0 and one foreground value (1, 255 or 65535). A mask holding other values
(a probability map saved as grey levels, a JPEG-compressed mask) is still read as "nonzero" but a
:class:`AmbiguousMaskWarning` names the files; ``threshold=T`` reads "value > T" as foreground instead.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from rrsis_bench.io import atomic_write, atomic_write_json
from rrsis_bench.metrics import METRIC_KEYS, RRSISMetric, intersection_union

_SCORING_THREADS = min(8, os.cpu_count() or 1)
_SUPPORTED_BANDS = {"1", "L", "P", "I", "F", "R", "G", "B", "A"}
_BINARY_VALUES = np.array([0, 1, 255, 65535])


class AmbiguousMaskWarning(UserWarning):
    """Masks hold values other than 0/1/255 and were read as nonzero = foreground."""


class ScoreError(ValueError):
    """Every problem found while scoring two mask folders, reported at once."""

    def __init__(self, pred_dir: Path, gt_dir: Path, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"Cannot score predictions in {pred_dir} against ground truth in {gt_dir} "
            f"({len(self.problems)} problem(s)):\n{lines}\n"
            "Fix: save one PNG mask per ground-truth PNG, with the same file name and size, then run again."
        )


def _png_files(folder: Path, role: str, problems: list[str]) -> dict[str, Path]:
    """Map file stem -> path for the PNGs directly inside ``folder``; problems are appended, not raised."""
    if not folder.exists():
        problems.append(f"{role} folder {folder} does not exist.")
        return {}
    if not folder.is_dir():
        problems.append(f"{role} path {folder} is not a folder.")
        return {}
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not (path.is_file() and path.suffix.lower() == ".png"):
            continue
        if path.stem in files:
            problems.append(f"{files[path.stem]} and {path} share the sample id {path.stem!r}.")
            continue
        files[path.stem] = path
    if not files:
        problems.append(f"{role} folder {folder} contains no PNG files.")
    return files


def _mismatched_names(preds: dict[str, Path], gts: dict[str, Path], pred_dir: Path) -> list[str]:
    """One problem per ground truth without prediction and per prediction without ground truth."""
    missing = [
        f"missing prediction {pred_dir / gts[stem].name} for ground truth {gts[stem]}."
        for stem in gts
        if stem not in preds
    ]
    extra = [
        f"prediction {preds[stem]} has no ground truth with the same name."
        for stem in preds
        if stem not in gts
    ]
    return missing + extra


def _foreground(image: Image.Image, threshold: float | None = None) -> tuple[np.ndarray, bool]:
    """(boolean foreground, whether the mask holds values other than 0/1/255/65535) of a mask image,
    by the rules in the module docstring; with ``threshold``, foreground is value > threshold."""
    bands = image.getbands()
    if not set(bands) <= _SUPPORTED_BANDS:
        raise ValueError(
            f"image mode {image.mode!r} has no unambiguous background value; save masks as 1, L, P or RGB"
        )
    array = np.asarray(image)
    if array.ndim == 3:
        array = array[..., [i for i, band in enumerate(bands) if band != "A"]]
    ambiguous = array.dtype != bool and bool(np.isin(array, _BINARY_VALUES, invert=True).any())
    foreground = array != 0 if threshold is None else array > threshold
    if foreground.ndim == 3:
        foreground = np.any(foreground, axis=-1)
    return foreground, ambiguous


def _load_mask(path: Path, threshold: float | None) -> tuple[tuple[int, int], np.ndarray, bool] | str:
    """((width, height), foreground, ambiguous) of one PNG, or a one-line problem naming the file."""
    try:
        with Image.open(path) as image:
            return (image.size, *_foreground(image, threshold))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        return f"cannot read {path}: {err}."


def _score_pair(pred_path: Path, gt_path: Path, threshold: float | None = None) -> tuple[int, int, list[Path]] | list[str]:
    """(intersection, union, files holding non-binary values) of one prediction/ground-truth pair, or the
    problems that prevent scoring it."""
    pred, gt = _load_mask(pred_path, threshold), _load_mask(gt_path, threshold)
    problems = [loaded for loaded in (pred, gt) if isinstance(loaded, str)]
    if problems:
        return problems
    (pred_size, pred_mask, pred_odd), (gt_size, gt_mask, gt_odd) = pred, gt
    if pred_size != gt_size:
        return [
            f"size mismatch: prediction {pred_path} is {_size(pred_size)} but ground truth {gt_path} "
            f"is {_size(gt_size)}."
        ]
    odd = [path for path, flag in ((pred_path, pred_odd), (gt_path, gt_odd)) if flag]
    return (*intersection_union(pred_mask, gt_mask), odd)


def _size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]} (width x height)"


def score_mask_dirs(
    pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, *, threshold: float | None = None
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Score every ``gt_dir/<id>.png`` against ``pred_dir/<id>.png``; return (metrics, per-sample frame).

    Folders are not searched recursively. Raises :class:`ScoreError` listing every problem
    (missing or extra predictions, size mismatches, unreadable files, empty or absent folders).
    Foreground is a nonzero value, or a value above ``threshold`` when given; without a threshold,
    masks holding values other than 0/1/255/65535 raise one :class:`AmbiguousMaskWarning`.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    problems: list[str] = []
    preds = _png_files(pred_dir, "prediction", problems)
    gts = _png_files(gt_dir, "ground-truth", problems)
    if preds and gts:  # an absent or empty folder is one problem, not one per file
        problems += _mismatched_names(preds, gts, pred_dir)
    metric = RRSISMetric()
    stems = sorted(gts.keys() & preds.keys())
    # PNG decoding and counting release the GIL, so threads overlap them; workers return only
    # two integers per pair, and map() keeps the sample order.
    ambiguous: list[Path] = []
    with ThreadPoolExecutor(max_workers=_SCORING_THREADS) as pool:
        results = pool.map(_score_pair, [preds[s] for s in stems], [gts[s] for s in stems],
                           [threshold] * len(stems))
        for stem, result in zip(stems, results, strict=True):
            if isinstance(result, list):
                problems += result
            else:
                intersection, union, odd = result
                metric.add(stem, intersection, union)
                ambiguous += odd
    if problems:
        raise ScoreError(pred_dir, gt_dir, problems)
    if ambiguous and threshold is None:
        warnings.warn(
            f"{len(ambiguous)} mask file(s) hold values other than 0, 1 and 255 (first: {ambiguous[0]}); they "
            "were read as nonzero = foreground. If they are grey-level or probability maps, pass threshold=T "
            "(foreground = value > T, e.g. threshold=127).",
            AmbiguousMaskWarning, stacklevel=2,
        )
    return metric.compute(), metric.to_frame()


def per_sample_path(out_file: str | os.PathLike) -> Path:
    """Where :func:`write_score` puts the per-sample table: ``<stem>.per_sample.csv`` beside ``out_file``."""
    out_file = Path(out_file)
    return out_file.with_name(f"{out_file.stem}.per_sample.csv")


def _metric_items(metrics: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    missing = [key for key in keys if key not in metrics]
    if missing:
        raise ValueError(
            f"Metrics are missing {missing}; pass the dict returned by score_mask_dirs or RRSISMetric.compute."
        )
    return {key: metrics[key] for key in keys}


def write_score(
    out_file: str | os.PathLike, metrics: dict[str, Any], frame: pd.DataFrame
) -> tuple[Path, Path]:
    """Write the metric keys (and ``num_samples``) as JSON and the per-sample table as CSV, atomically.

    Returns (json_path, csv_path).
    """
    keys = [*METRIC_KEYS, "num_samples"]
    json_path = atomic_write_json(out_file, _metric_items(metrics, keys))
    csv_path = atomic_write(per_sample_path(out_file), lambda tmp: frame.to_csv(tmp, index=False))
    return json_path, csv_path
