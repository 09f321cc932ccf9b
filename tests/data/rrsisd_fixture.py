"""A tiny dataset in the RRSIS-D on-disk layout, with every expected fact written out by hand.

It has the form of the RELEASED files: annotations name their class ``categories_id`` (the refs say
``category_id``), category ids run 0..19 in the released order, names are the released identifiers
(glued or hyphenated: ``storagetank``, ``Expressway-Service-area``), one sentence per ref, and the
expressions spell the classes with spaces ("The storage tank on the left"). Category 0 is used, so a
falsy-id bug shows.

Covers: a polygon with two parts, a polygon with two overlapping parts (union and the official
"sum == 1" rule differ on it), compressed RLE (string counts), uncompressed RLE (list counts),
train/val/test refs (one test ref is split "testB"), and an image whose real size (80×80) differs
from its annotation (40×40), so masks must be resized ×2.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

# The released category list: ids 0..19 in this order.
# Warnings every test module reading this fixture silences (``pytestmark = FIXTURE_WARNINGS``):
# pycocotools (2.0.x) trips numpy 2's `__array__(copy=...)` deprecation inside its own decode, and
# the 80×80 test image is annotated at 40×40 on purpose (the warning has its own test).
FIXTURE_WARNINGS = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*annotation says:UserWarning"),
]

RELEASED_NAMES = (
    "Expressway-Service-area", "Expressway-toll-station", "airplane", "airport", "baseballfield",
    "basketballcourt", "bridge", "chimney", "dam", "golffield", "groundtrackfield", "harbor", "overpass",
    "ship", "stadium", "storagetank", "tenniscourt", "trainstation", "vehicle", "windmill",
)
CATEGORIES = dict(enumerate(RELEASED_NAMES))
ID = {name: cat_id for cat_id, name in CATEGORIES.items()}
# The annotation's class key in the released instances.json (COCO says "category_id").
ANNOTATION_CLASS_KEY = "categories_id"

# image id → (file name, annotated (height, width), real (width, height) of the JPEG)
IMAGES = {
    1: ("fixture_001.jpg", (32, 48), (48, 32)),
    2: ("fixture_002.jpg", (40, 40), (80, 80)),
    3: ("fixture_003.jpg", (24, 24), (24, 24)),
}


def _block(height: int, width: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Bool mask with rows[0]..rows[1]-1 × cols[0]..cols[1]-1 set."""
    mask = np.zeros((height, width), dtype=bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def _compressed_rle(mask: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: run lengths over the column-major pixels, starting with a zero run."""
    flat = mask.flatten(order="F").astype(np.int8)
    change_points = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], change_points])).tolist()
    return {"size": list(mask.shape), "counts": counts}


def _annotations() -> list[dict]:
    # Pycocotools rasterises the integer polygon (x0,y0)-(x1,y1) to pixels x0..x1-1, y0..y1-1.
    two_part_polygon = [[2, 2, 10, 2, 10, 8, 2, 8], [20, 4, 26, 4, 26, 12, 20, 12]]
    # x 30..39 × y 2..9 and x 36..45 × y 6..13: 80 + 80 pixels sharing x 36..39 × y 6..9 (16 pixels).
    overlapping_polygon = [[30, 2, 40, 2, 40, 10, 30, 10], [36, 6, 46, 6, 46, 14, 36, 14]]
    key = ANNOTATION_CLASS_KEY
    return [
        {"id": 11, "image_id": 1, key: ID["vehicle"], "segmentation": two_part_polygon},
        {
            "id": 12,
            "image_id": 1,
            key: ID["vehicle"],
            "segmentation": _compressed_rle(_block(32, 48, (20, 28), (30, 40))),
        },
        {
            "id": 13,
            "image_id": 1,
            key: ID["storagetank"],
            "segmentation": _uncompressed_rle(_block(32, 48, (14, 18), (2, 8))),
        },
        {"id": 14, "image_id": 1, key: ID["basketballcourt"], "segmentation": overlapping_polygon},
        {"id": 21, "image_id": 2, key: ID["Expressway-Service-area"], "segmentation": [[4, 4, 14, 4, 14, 10, 4, 10]]},
        {
            "id": 22,
            "image_id": 2,
            key: ID["Expressway-Service-area"],
            "segmentation": _compressed_rle(_block(40, 40, (20, 30), (20, 35))),
        },
        {
            "id": 31,
            "image_id": 3,
            key: ID["storagetank"],
            "segmentation": _compressed_rle(_block(24, 24, (5, 15), (5, 15))),
        },
    ]


def _ref(
    ref_id: int, ann_id: int, image_id: int, category_id: int, split: str, sentences: dict[int, str]
) -> dict:
    return {
        "ref_id": ref_id,
        "ann_id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "split": split,
        "sent_ids": list(sentences),
        "sentences": [
            {"raw": text, "sent": text.lower(), "tokens": text.lower().split(), "sent_id": sent_id}
            for sent_id, text in sentences.items()
        ],
    }


# One sentence per ref, as released. The expressions spell the classes with spaces.
REFS = [
    _ref(1, 11, 1, ID["vehicle"], "train", {101: "The vehicle on the left"}),
    _ref(2, 12, 1, ID["vehicle"], "train", {103: "the vehicle at the bottom right next to the storage tank"}),
    _ref(3, 13, 1, ID["storagetank"], "val", {104: "The storage tank on the left"}),
    _ref(4, 21, 2, ID["Expressway-Service-area"], "test", {105: "the small expressway service area"}),
    _ref(5, 22, 2, ID["Expressway-Service-area"], "test", {106: "the large Expressway Service Area"}),
    _ref(6, 31, 3, ID["storagetank"], "testB", {107: "the round tank"}),
    _ref(7, 14, 1, ID["basketballcourt"], "val", {108: "a basketball court at the top right"}),
]

# Facts at the REAL image size. bbox = (x_min, y_min, x_max, y_max), inclusive pixel indices.
# class_union_area: pixels of all same-class annotations in the image (the class-only oracle's mask).
# object_phrase: the ground-object phrase of the clean rule (None: the expression names no class);
# class_phrases: every class phrase the expression names (the official rule marks them all).
EXPECTED_SAMPLES = {
    "1_101": {
        "split": "train",
        "area": 48 + 48,
        "bbox": (2, 2, 25, 11),
        "class_name": "vehicle",
        "class_union_area": 96 + 80,
        "object_phrase": "vehicle",
        "class_phrases": ("vehicle",),
    },
    "2_103": {
        "split": "train",
        "area": 8 * 10,
        "bbox": (30, 20, 39, 27),
        "class_name": "vehicle",
        "class_union_area": 176,
        "object_phrase": "vehicle",
        "class_phrases": ("vehicle", "storage tank"),
    },
    "3_104": {
        "split": "val",
        "area": 4 * 6,
        "bbox": (2, 14, 7, 17),
        "class_name": "storagetank",
        "class_union_area": 24,
        "object_phrase": "storage tank",
        "class_phrases": ("storage tank",),
    },
    # Overlapping parts: union 80 + 80 - 16; the official rule drops the overlap too (see OFFICIAL_AREAS).
    "7_108": {
        "split": "val",
        "area": 144,
        "bbox": (30, 2, 45, 13),
        "class_name": "basketballcourt",
        "class_union_area": 144,
        "object_phrase": "basketball court",
        "class_phrases": ("basketball court",),
    },
    # image 2 is annotated at 40×40 but is 80×80 on disk: areas ×4, coordinates ×2.
    "4_105": {
        "split": "test",
        "area": 4 * 10 * 6,
        "bbox": (8, 8, 27, 19),
        "class_name": "Expressway-Service-area",
        "class_union_area": 240 + 600,
        "object_phrase": "expressway service area",
        "class_phrases": ("expressway service area",),
    },
    "5_106": {
        "split": "test",
        "area": 4 * 10 * 15,
        "bbox": (40, 40, 69, 59),
        "class_name": "Expressway-Service-area",
        "class_union_area": 840,
        "object_phrase": "Expressway Service Area",
        "class_phrases": ("Expressway Service Area",),
    },
    "6_107": {
        "split": "test",
        "area": 10 * 10,
        "bbox": (5, 5, 14, 14),
        "class_name": "storagetank",
        "class_union_area": 100,
        "object_phrase": None,  # "tank" alone is not a class phrase
        "class_phrases": (),
    },
}


# Mask areas under overlap="official" where they differ from the union (sample_id → area).
OFFICIAL_AREAS = {"7_108": 80 + 80 - 2 * 16}

# Images whose real size differs from their annotation, per split (the size-mismatch counter).
SIZE_MISMATCH = {"train": 0, "val": 0, "test": 1}


def write_rrsisd_fixture(root: Path) -> dict:
    """Write the fixture under ``root`` (RRSIS-D layout) and return the facts tests assert on.

    Returns ``counts`` (samples per split), ``samples`` (sample_id → split, area, bbox, class_name,
    class_union_area, object_phrase, class_phrases, text, image_id), ``class_names`` (category id →
    name), ``image_files``
    (image id → path of the JPEG), ``official_areas`` (sample_id → area under ``overlap="official"``,
    for the samples where it differs) and ``size_mismatch`` (split → images whose size is wrong).
    """
    root = Path(root)
    image_dir = root / "images" / "rrsisd" / "JPEGImages"
    image_dir.mkdir(parents=True, exist_ok=True)
    (root / "rrsisd").mkdir(parents=True, exist_ok=True)
    image_files = {}
    for image_id, (file_name, _, real_size) in IMAGES.items():
        image_files[image_id] = image_dir / file_name
        Image.new("RGB", real_size, (90, 120, 60)).save(image_files[image_id], quality=90)
    instances = {
        "images": [
            {"id": image_id, "file_name": file_name, "height": hw[0], "width": hw[1]}
            for image_id, (file_name, hw, _) in IMAGES.items()
        ],
        "annotations": _annotations(),
        "categories": [{"id": cat_id, "name": name} for cat_id, name in CATEGORIES.items()],
    }
    (root / "rrsisd" / "instances.json").write_text(json.dumps(instances), encoding="utf-8")
    with open(root / "rrsisd" / "refs(unc).p", "wb") as f:
        pickle.dump(REFS, f)
    samples = {}
    for ref in REFS:
        for sentence in ref["sentences"]:
            sample_id = f"{ref['ref_id']}_{sentence['sent_id']}"
            samples[sample_id] = {
                **EXPECTED_SAMPLES[sample_id],
                "text": sentence["raw"],
                "image_id": ref["image_id"],
            }
    counts = {split: sum(s["split"] == split for s in samples.values()) for split in ("train", "val", "test")}
    return {
        "counts": counts,
        "samples": samples,
        "class_names": dict(CATEGORIES),
        "image_files": image_files,
        "official_areas": dict(OFFICIAL_AREAS),
        "size_mismatch": dict(SIZE_MISMATCH),
    }
