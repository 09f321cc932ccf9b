"""RRSIS-D reader: RefCOCO-style refs pickle + COCO instances json + JPEG images."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from rrsis_bench.masks import resize_mask

SPLITS = ("train", "val", "test")
# How overlapping parts of one segmentation combine: "union" ORs them; "official" reproduces the
# RMSIN/FIANet/LAVT loaders, which sum the parts and keep pixels equal to 1 (overlaps become background).
OVERLAP_MODES = ("union", "official")
_REF_FIELDS = ("ref_id", "ann_id", "image_id", "category_id", "split", "sentences")
_INSTANCE_FIELDS = {
    "images": ("id", "file_name", "height", "width"),
    "annotations": ("id", "image_id", "category_id", "segmentation"),
    "categories": ("id", "name"),
}
_ROOT_FIX = "point `data.root` at the folder that contains `rrsisd/` and `images/`"


class RRSISDDataset(Sequence):
    """RRSIS-D (RMSIN, CVPR 2024): DIOR aerial images, one sample per (ref, sentence), SAM-refined masks.

    Layout under ``root``: ``rrsisd/refs(unc).p``, ``rrsisd/instances.json`` and
    ``images/rrsisd/JPEGImages/<file_name>``. The index is read once here; images and masks are
    decoded lazily in ``__getitem__``. Samples are dicts with ``image`` (PIL RGB, native size),
    ``mask`` (bool H×W at the image's size), ``text``, ``class_name``, ``sample_id``, ``image_id``,
    ``ref_id``, ``ann_id``, ``category_id`` and ``sent_id``.

    ``overlap`` says how the parts of a multi-part segmentation combine: ``"union"`` (default, OR) or
    ``"official"`` (bit-faithful to the official loaders: parts are summed and only pixels equal to 1
    are foreground, so where parts overlap it is background). Some DIOR images are not the size their
    annotation says (RMSIN issue #12); their masks are resized (nearest) to the real image size,
    ``num_size_mismatch`` counts the distinct images met so far, and the first one is reported once
    per dataset object with a warning.
    """

    name = "rrsisd"
    splits = SPLITS

    def __init__(
        self, root: str | os.PathLike, split: str = "train", *, skip_missing: bool = False, overlap: str = "union"
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r} for {self.name}; valid splits are {', '.join(SPLITS)}.")
        _check_overlap(overlap)
        self.overlap = overlap
        # Filled lazily, as masks are decoded: ids of images whose real size differs from the annotation.
        self._size_mismatch_images: set[Any] = set()
        self.root = Path(root).expanduser()
        self.split = split
        self.image_dir = self.root / "images" / "rrsisd" / "JPEGImages"
        refs = _load_refs(self.root / "rrsisd" / "refs(unc).p")
        instances = _load_instances(self.root / "rrsisd" / "instances.json")
        self.images = {img["id"]: img for img in instances["images"]}
        self.annotations = {ann["id"]: ann for ann in instances["annotations"]}
        self.categories = {cat["id"]: cat["name"] for cat in instances["categories"]}
        # The class-only oracle needs every annotation of one class in one image.
        self.anns_by_image_class: dict[tuple[Any, Any], list[int]] = defaultdict(list)
        for ann in instances["annotations"]:
            self.anns_by_image_class[(ann["image_id"], ann["category_id"])].append(ann["id"])
        self.refs = {ref["ref_id"]: ref for ref in refs if _in_split(ref["split"], split)}
        self._samples, self.num_skipped = self._index_samples(skip_missing)

    def _index_samples(self, skip_missing: bool) -> tuple[list[tuple[Any, int]], int]:
        """One entry (ref_id, sentence position) per sentence; drops or reports samples whose image is missing."""
        samples: list[tuple[Any, int]] = []
        missing: list[Path] = []
        num_skipped = 0
        present: dict[Any, bool] = {}
        for ref in self.refs.values():
            self._check_ref_links(ref)
            image_id = ref["image_id"]
            if image_id not in present:
                present[image_id] = self._image_path(image_id).is_file()
                if not present[image_id]:
                    missing.append(self._image_path(image_id))
            if not present[image_id]:
                num_skipped += len(ref["sentences"])
                continue
            samples.extend((ref["ref_id"], position) for position in range(len(ref["sentences"])))
        if missing and not skip_missing:
            raise FileNotFoundError(
                f"Image file {missing[0]} is missing ({len(missing)} missing image(s) in split "
                f"{self.split!r}); restore it, or pass skip_missing=True to skip the samples that use it."
            )
        return samples, num_skipped

    def _check_ref_links(self, ref: dict) -> None:
        if ref["ann_id"] not in self.annotations:
            raise ValueError(
                f"Ref {ref['ref_id']} points to annotation {ref['ann_id']}, which is not in "
                f"{self.root / 'rrsisd' / 'instances.json'}; the refs and instances files do not belong together."
            )
        if ref["category_id"] not in self.categories:
            raise ValueError(
                f"Ref {ref['ref_id']} has category {ref['category_id']}, which is not in the `categories` list of "
                f"{self.root / 'rrsisd' / 'instances.json'}; the refs and instances files do not belong together."
            )
        if ref["image_id"] not in self.images:
            raise ValueError(
                f"Ref {ref['ref_id']} points to image {ref['image_id']}, which is not in the `images` list of "
                f"{self.root / 'rrsisd' / 'instances.json'}; the refs and instances files do not belong together."
            )

    def _image_path(self, image_id: Any) -> Path:
        return self.image_dir / self.images[image_id]["file_name"]

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.metadata(index)
        with Image.open(self._image_path(sample["image_id"])) as opened:
            image = opened.convert("RGB")
        mask = self._annotation_mask(self.annotations[sample["ann_id"]], image.size)
        return {"image": image, "mask": mask, **sample}

    @property
    def class_words(self) -> tuple[str, ...]:
        """Words naming the categories (what the expression encoder marks as the ground object)."""
        return tuple(sorted(self.categories.values()))

    def metadata(self, index: int) -> dict[str, Any]:
        """Sample ``index`` without its pixels (text, class, ids): cheap, for manifests and statistics."""
        ref_id, position = self._samples[self._check_index(index)]
        ref = self.refs[ref_id]
        sentence = ref["sentences"][position]
        return {
            "text": _sentence_text(sentence, ref_id),
            "class_name": self.categories[ref["category_id"]],
            "sample_id": self.sample_id(index),
            "image_id": ref["image_id"],
            "ref_id": ref_id,
            "ann_id": ref["ann_id"],
            "category_id": ref["category_id"],
            "sent_id": sentence.get("sent_id"),
        }

    def _check_index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"Index {index} is out of range for {self.name} split {self.split!r} of length {len(self)}.")
        return index % len(self)

    def sample_id(self, index: int) -> str:
        """Unique id of sample ``index``: ``{ref_id}_{sent_id}`` (sentence position if it has no sent_id)."""
        ref_id, position = self._samples[self._check_index(index)]
        return f"{ref_id}_{self.refs[ref_id]['sentences'][position].get('sent_id', position)}"

    def ref_of(self, index: int) -> dict:
        """The raw ref dict behind sample ``index`` (extra fields such as an expression type live here)."""
        return self.refs[self._samples[self._check_index(index)][0]]

    def image_size(self, index: int) -> tuple[int, int]:
        """(width, height) of sample ``index``'s image file, read from the header only."""
        with Image.open(self._image_path(self.ref_of(index)["image_id"])) as opened:
            return opened.size

    def target_mask(self, index: int) -> np.ndarray:
        """Ground-truth mask of sample ``index`` at its image's size, without decoding the image pixels."""
        ref = self.ref_of(index)
        return self._annotation_mask(self.annotations[ref["ann_id"]], self.image_size(index))

    def class_union_mask(self, index: int) -> np.ndarray:
        """Union of all annotations of sample ``index``'s category in its image (the class-only oracle)."""
        ref = self.ref_of(index)
        size = self.image_size(index)
        union = np.zeros((size[1], size[0]), dtype=bool)
        for ann_id in self.anns_by_image_class[(ref["image_id"], ref["category_id"])]:
            union |= self._annotation_mask(self.annotations[ann_id], size)
        return union

    def _annotation_mask(self, ann: dict, image_size: tuple[int, int]) -> np.ndarray:
        """Decode ``ann`` at the annotation's size, then bring it to ``image_size`` (width, height)."""
        info = self.images[ann["image_id"]]
        mask = decode_segmentation(ann["segmentation"], info["height"], info["width"], overlap=self.overlap)
        if (info["width"], info["height"]) != tuple(image_size):
            self._note_size_mismatch(ann["image_id"], image_size)
        return resize_mask(mask, image_size)

    @property
    def num_size_mismatch(self) -> int:
        """Distinct images met so far (masks decoded by this object) whose real size differs from the annotation."""
        return len(self._size_mismatch_images)

    def _note_size_mismatch(self, image_id: Any, image_size: tuple[int, int]) -> None:
        if image_id in self._size_mismatch_images:
            return
        self._size_mismatch_images.add(image_id)
        if len(self._size_mismatch_images) == 1:
            info = self.images[image_id]
            warnings.warn(
                f"{self._image_path(image_id)} is {image_size[0]}x{image_size[1]} but its annotation says "
                f"{info['width']}x{info['height']}; masks are resized (nearest) to the image size. Further "
                f"mismatched images are not reported again; `num_size_mismatch` counts them.",
                UserWarning,
                stacklevel=4,
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"


def decode_segmentation(segmentation: list | dict, height: int, width: int, *, overlap: str = "union") -> np.ndarray:
    """COCO segmentation (polygon parts, compressed or uncompressed RLE) → bool mask.

    With ``overlap="union"`` the parts are OR-ed. With ``overlap="official"`` they are summed and only
    pixels covered exactly once are foreground, as in the official RRSIS-D loaders.
    """
    _check_overlap(overlap)
    if isinstance(segmentation, list) and segmentation and isinstance(segmentation[0], dict):
        parts = np.stack([_decode_rle(part) for part in segmentation], axis=2)
        return _combine_parts(parts, overlap)
    if isinstance(segmentation, list):
        # frPyObjects reads a 4-number part as a bounding box; a part under 3 points has no area anyway.
        polygons = [part for part in segmentation if len(part) >= 6]
        if not polygons:
            return np.zeros((height, width), dtype=bool)
        rles = coco_mask.frPyObjects(polygons, height, width)
        return _combine_parts(coco_mask.decode(rles), overlap)
    return _decode_rle(segmentation).astype(bool)


def _decode_rle(rle: dict) -> np.ndarray:
    """One compressed or uncompressed RLE → uint8 H×W {0, 1}."""
    if isinstance(rle.get("counts"), list):
        rle = coco_mask.frPyObjects(rle, *rle["size"])
    return coco_mask.decode(rle)


def _combine_parts(parts: np.ndarray, overlap: str) -> np.ndarray:
    """H×W×N uint8 part masks → bool H×W, by ``overlap`` (see decode_segmentation)."""
    if overlap == "official":
        return parts.sum(axis=2, dtype=np.int64) == 1
    return parts.any(axis=2)


def _check_overlap(overlap: str) -> None:
    if overlap not in OVERLAP_MODES:
        raise ValueError(f"Unknown overlap mode {overlap!r}; valid modes are {', '.join(map(repr, OVERLAP_MODES))}.")


def _in_split(ref_split: str, split: str) -> bool:
    # RefCOCO-style files may name test splits testA/testB; they all count as test.
    return "test" in ref_split if split == "test" else ref_split == split


def _sentence_text(sentence: dict, ref_id: Any) -> str:
    if "raw" in sentence:
        return sentence["raw"]
    if "sent" in sentence:
        return sentence["sent"]
    raise ValueError(f"A sentence of ref {ref_id} has neither a `raw` nor a `sent` field; the refs file is not RRSIS-D format.")


def _load_refs(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"RRSIS-D refs file {path} not found; {_ROOT_FIX}.")
    with open(path, "rb") as f:
        refs = pickle.load(f)
    if not isinstance(refs, list):
        raise ValueError(f"{path} holds a {type(refs).__name__}, not a list of ref dicts; it is not an RRSIS-D refs file.")
    for ref in refs:
        missing = [field for field in _REF_FIELDS if field not in ref]
        if missing:
            raise ValueError(f"A ref in {path} lacks the field(s) {', '.join(missing)}; it is not an RRSIS-D refs file.")
    return refs


def _load_instances(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"RRSIS-D instances file {path} not found; {_ROOT_FIX}.")
    with open(path, encoding="utf-8") as f:
        instances = json.load(f)
    missing = [key for key in ("images", "annotations", "categories") if key not in instances]
    if missing:
        raise ValueError(f"{path} lacks the COCO key(s) {', '.join(missing)}; it is not an RRSIS-D instances file.")
    for key, fields in _INSTANCE_FIELDS.items():
        for entry in instances[key]:
            absent = [field for field in fields if field not in entry]
            if absent:
                raise ValueError(
                    f"An entry of `{key}` in {path} lacks the field(s) {', '.join(absent)}; "
                    "it is not an RRSIS-D instances file."
                )
    return instances


def class_only_oracle(dataset: RRSISDDataset) -> dict[str, float]:
    """Score the class-only oracle (union of all instances of the referred class) at native resolution.

    Returns the RRSIS metrics of ``rrsis_bench.metrics`` (percentages ``oIoU``, ``mIoU``,
    ``Pr@0.5`` … ``Pr@0.9``, plus ``num_samples``). It shows how far the class alone gets: a method
    that does not beat it is not reading the expression.
    """
    # Imported here so that reading data does not pull in pandas/rich.
    from rrsis_bench.metrics import RRSISMetric

    metric = RRSISMetric()
    for index in range(len(dataset)):
        metric.update([dataset.sample_id(index)], [dataset.class_union_mask(index)], [dataset.target_mask(index)])
    return metric.compute()
