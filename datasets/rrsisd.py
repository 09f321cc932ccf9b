"""RRSIS-D reader: RefCOCO-style refs pickle + COCO instances json + JPEG images."""

from __future__ import annotations

import json
import os
import pickle
import re
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
    "annotations": ("id", "image_id", "segmentation"),
    "categories": ("id", "name"),
}
# The released instances.json names an annotation's class `categories_id`; COCO (and our synthetic
# data) say `category_id`. Either is read.
ANNOTATION_CLASS_KEYS = ("category_id", "categories_id")
_ROOT_FIX = "point `data.root` at the folder that contains `rrsisd/` and `images/`"
_SKIP_FIX = "add +data.options.skip_missing=true on the command line (Python: skip_missing=True)"

#: The words RRSIS-D expressions use for its 20 DIOR categories (the spaced list of the official FIANet
#: loader), by category identifier as the released instances.json spells it. The identifiers are glued or
#: hyphenated ("storagetank", "Expressway-Service-area") and never occur in an expression.
DIOR_CLASS_PHRASES: dict[str, tuple[str, ...]] = {
    "Expressway-Service-area": ("expressway service area",),
    "Expressway-toll-station": ("expressway toll station",),
    "airplane": ("airplane",),
    "airport": ("airport",),
    "baseballfield": ("baseball field",),
    "basketballcourt": ("basketball court",),
    "bridge": ("bridge",),
    "chimney": ("chimney",),
    "dam": ("dam",),
    "golffield": ("golf field",),
    "groundtrackfield": ("ground track field",),
    "harbor": ("harbor",),
    "overpass": ("overpass",),
    "ship": ("ship",),
    "stadium": ("stadium",),
    "storagetank": ("storage tank",),
    "tenniscourt": ("tennis court",),
    "trainstation": ("train station",),
    "vehicle": ("vehicle",),
    "windmill": ("windmill",),
}


def _identifier_key(name: str) -> str:
    """"Expressway-Service-area", "expressway service area" and "ExpresswayServiceArea" are one class."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


_PHRASES_BY_KEY = {_identifier_key(name): phrases for name, phrases in DIOR_CLASS_PHRASES.items()}


def class_phrases_of(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Category identifier → the phrases expressions use for it: the DIOR list for the 20 RRSIS-D
    categories (however they are spelled), the identifier itself for any other category."""
    return {name: _PHRASES_BY_KEY.get(_identifier_key(name), (name,)) for name in names}


def annotation_category(ann: dict) -> Any:
    """The class id of a COCO annotation, under `category_id` or the released RRSIS-D's `categories_id`.

    Ids are compared, never tested for truth: RRSIS-D's first category has id 0.
    """
    for key in ANNOTATION_CLASS_KEYS:
        if key in ann:
            return ann[key]
    raise KeyError(f"annotation {ann.get('id')!r} has none of {ANNOTATION_CLASS_KEYS}")


class RRSISDDataset(Sequence):
    """RRSIS-D (RMSIN, CVPR 2024): DIOR aerial images, one sample per (ref, sentence), SAM-refined masks.

    Layout under ``root``: ``rrsisd/refs(unc).p``, ``rrsisd/instances.json`` and
    ``images/rrsisd/JPEGImages/<file_name>``. The index is read once here; images and masks are
    decoded lazily in ``__getitem__``. Samples are dicts with ``image`` (PIL RGB, native size),
    ``mask`` (bool H×W at the image's size), ``text``, ``class_name`` (the category identifier as
    ``instances.json`` spells it, e.g. ``storagetank``), ``sample_id``, ``image_id``, ``ref_id``,
    ``ann_id``, ``category_id`` (from the ref) and ``sent_id``. ``class_phrases`` maps each
    identifier to the words expressions use for it ("storage tank"). ``instance_map(i)`` labels the
    instances of a sample's class in its image (the ``instance_map`` input a method may declare).

    Both forms of ``instances.json`` are read: the released one (annotation class under
    ``categories_id``, category ids from 0, glued names) and the COCO one (``category_id``).

    ``overlap`` says how the parts of a multi-part segmentation combine: ``"union"`` (default, OR) or
    ``"official"`` (bit-faithful to the official loaders: parts are summed and only pixels equal to 1
    are foreground, so where parts overlap it is background). Some DIOR images are not the size their
    annotation says (RMSIN issue #12); their masks are resized (nearest) to the real image size,
    ``num_size_mismatch`` counts the distinct images met so far, and the first one is reported once
    per dataset object with a warning; ``size_mismatches`` lists them. With ``skip_missing=True``
    samples whose image file is missing are dropped (counted in ``num_skipped``, the files listed in
    ``missing_files``); otherwise the first missing file is an error.
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
        # Filled lazily, as masks are decoded: image id → real (width, height), for images whose real
        # size differs from the annotation.
        self._size_mismatch_images: dict[Any, tuple[int, int]] = {}
        self.root = Path(root).expanduser()
        self.split = split
        self.image_dir = self.root / "images" / "rrsisd" / "JPEGImages"
        self.refs_file = self.root / "rrsisd" / "refs(unc).p"
        refs = _load_refs(self.refs_file)
        instances = _load_instances(self.root / "rrsisd" / "instances.json")
        self.images = {img["id"]: img for img in instances["images"]}
        self.annotations = {ann["id"]: ann for ann in instances["annotations"]}
        self.categories = {cat["id"]: cat["name"] for cat in instances["categories"]}
        # The class-union mask needs every annotation of one class in one image.
        self.anns_by_image_class: dict[tuple[Any, Any], list[int]] = defaultdict(list)
        for ann in instances["annotations"]:
            self.anns_by_image_class[(ann["image_id"], annotation_category(ann))].append(ann["id"])
        self.refs = {ref["ref_id"]: ref for ref in refs if _in_split(ref["split"], split)}
        self.missing_files: list[Path] = []
        self._samples, self.num_skipped = self._index_samples(skip_missing)

    def _index_samples(self, skip_missing: bool) -> tuple[list[tuple[Any, int]], int]:
        """One entry (ref_id, sentence position) per sentence; drops or reports samples whose image is missing."""
        samples: list[tuple[Any, int]] = []
        missing: list[Path] = []
        num_skipped = 0
        present: dict[Any, bool] = {}
        for ref in self.refs.values():
            self._check_ref_links(ref)
            self._check_sentences(ref)
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
                f"{self.split!r}); restore it, or {_SKIP_FIX} to skip the samples that use it."
            )
        self.missing_files = sorted(missing)
        return samples, num_skipped

    def _check_sentences(self, ref: dict) -> None:
        """Every sentence must have text: an empty one would only fail later, deep in tokenization."""
        for position, sentence in enumerate(ref["sentences"]):
            if not _sentence_text(sentence, ref["ref_id"]).strip():
                sample_id = f"{ref['ref_id']}_{sentence.get('sent_id', position)}"
                raise ValueError(
                    f"Sample {sample_id} (ref {ref['ref_id']}, sentence {sentence.get('sent_id', position)}) has an "
                    f"empty expression in {self.refs_file}; fix or remove that sentence."
                )

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
        image = read_rgb_image(self._image_path(sample["image_id"]), sample["sample_id"])
        mask = self._annotation_mask(self.annotations[sample["ann_id"]], image.size)
        return {"image": image, "mask": mask, **sample}

    @property
    def class_phrases(self) -> dict[str, tuple[str, ...]]:
        """Category identifier → the words expressions use for it (what the expression encoder marks
        as the ground object): ``{"storagetank": ("storage tank",), ...}``."""
        return class_phrases_of(sorted(self.categories.values()))

    def sample_files(self, index: int) -> list[Path]:
        """The files whose bytes sample ``index`` is read from (its image; the mask is in instances.json)."""
        return [self._image_path(self.ref_of(index)["image_id"])]

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
        """Union of all annotations of sample ``index``'s category in its image (what the class-only
        oracle of :mod:`rrsis_bench.results.oracle` predicts). The class is the referred annotation's."""
        ref = self.ref_of(index)
        size = self.image_size(index)
        union = np.zeros((size[1], size[0]), dtype=bool)
        category = annotation_category(self.annotations[ref["ann_id"]])
        for ann_id in self.anns_by_image_class[(ref["image_id"], category)]:
            union |= self._annotation_mask(self.annotations[ann_id], size)
        return union

    def instance_map(self, index: int) -> np.ndarray:
        """The instances of sample ``index``'s class in its image, int64 (H, W) at the image's size (as
        :meth:`target_mask`), without decoding the image pixels: 0 where there is no instance of the
        class, 1 on the referred object, 2..K+1 on the K other instances of the class in annotation id
        order. Overlaps: the referred object wins (it is painted last), otherwise the later id. The
        class is the referred annotation's, as in :meth:`class_union_mask`; ``(map > 0)`` is that mask."""
        ref = self.ref_of(index)
        size = self.image_size(index)
        referred = self.annotations[ref["ann_id"]]
        same_class = self.anns_by_image_class[(ref["image_id"], annotation_category(referred))]
        labels = np.zeros((size[1], size[0]), dtype=np.int64)
        for label, ann_id in enumerate(sorted(a for a in same_class if a != ref["ann_id"]), start=2):
            labels[self._annotation_mask(self.annotations[ann_id], size)] = label
        labels[self._annotation_mask(referred, size)] = 1
        return labels

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

    @property
    def size_mismatches(self) -> list[str]:
        """One line per image met so far whose real size differs from its annotation (for `data verify`)."""
        lines = []
        for image_id, (width, height) in sorted(self._size_mismatch_images.items(), key=lambda kv: str(kv[0])):
            info = self.images[image_id]
            lines.append(f"{self._image_path(image_id)} is {width}x{height} but its annotation says "
                         f"{info['width']}x{info['height']}; masks are resized (nearest) to the image")
        return lines

    def _note_size_mismatch(self, image_id: Any, image_size: tuple[int, int]) -> None:
        if image_id in self._size_mismatch_images:
            return
        self._size_mismatch_images[image_id] = tuple(image_size)
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


def read_rgb_image(path: Path, sample_id: str) -> Image.Image:
    """The image file as PIL RGB; a file PIL cannot decode (truncated, corrupt) is an error naming it."""
    try:
        with Image.open(path) as opened:
            return opened.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:  # what PIL raises for truncated or corrupt files
        raise OSError(
            f"Cannot read image {path} for sample {sample_id} ({exc}); re-download it, or delete it and "
            f"{_SKIP_FIX} to skip the samples that use it."
        ) from exc


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
            if key == "annotations" and not any(k in entry for k in ANNOTATION_CLASS_KEYS):
                absent.append(" or ".join(ANNOTATION_CLASS_KEYS))
            if absent:
                raise ValueError(
                    f"An entry of `{key}` in {path} lacks the field(s) {', '.join(absent)}; "
                    "it is not an RRSIS-D instances file."
                )
    return instances

