"""A tiny dataset in the RefSegRS on-disk layout, with every expected fact written out by hand.

Covers: 8-bit masks with values 0/255; a 16-bit mask with values 60 and 300 (foreground) and 40 and 50
(background), so both the "> 50" rule and reading all 16 bits matter (300 cut to 8 bits is 44); a mask
smaller than its image (24×24 mask, 48×48 image: resized ×2); several lines per image; a blank line;
a file without a final newline; and expressions that exercise the class-name rule ("street" is not
tree, "business" is not bus, "cars" is car, "road marking" beats "road", the earliest category wins).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Grey levels of the 16-bit mask: above 50 is foreground.
_MASK_VALUES_16BIT = {"fg_60": 60, "fg_300": 300, "bg_40": 40, "bg_50": 50}


def _mask_a() -> np.ndarray:
    """40×32 image, 8-bit mask: rows 4..11 × columns 6..15 at 255 (80 pixels)."""
    mask = np.zeros((32, 40), dtype=np.uint8)
    mask[4:12, 6:16] = 255
    return mask


def _mask_b() -> np.ndarray:
    """24×24 image, 16-bit mask: 60 at rows 2..7 × cols 2..9 (48 px), 300 at rows 20..21 × cols 0..4
    (10 px); 40 at rows 12..19 × cols 12..19 and 50 on row 10: both background."""
    mask = np.zeros((24, 24), dtype=np.uint16)
    mask[2:8, 2:10] = _MASK_VALUES_16BIT["fg_60"]
    mask[20:22, 0:5] = _MASK_VALUES_16BIT["fg_300"]
    mask[12:20, 12:20] = _MASK_VALUES_16BIT["bg_40"]
    mask[10, :] = _MASK_VALUES_16BIT["bg_50"]
    return mask


def _mask_c() -> np.ndarray:
    """24×24 mask for a 48×48 image: rows 6..11 × cols 3..8 (36 px) → rows 12..23 × cols 6..17 (144 px)."""
    mask = np.zeros((24, 24), dtype=np.uint8)
    mask[6:12, 3:9] = 255
    return mask


def _mask_d() -> np.ndarray:
    """16×20 image (w×h), 8-bit mask: rows 0..19 × column 15 and rows 5..9 × columns 0..14 (20 + 75 px)."""
    mask = np.zeros((20, 16), dtype=np.uint8)
    mask[:, 15] = 255
    mask[5:10, 0:15] = 255
    return mask


# name → (image (width, height), mask maker; the array's dtype picks an 8- or 16-bit TIFF)
IMAGES = {
    "scene_a": ((40, 32), _mask_a),
    "scene_b": ((24, 24), _mask_b),
    "scene_c": ((48, 48), _mask_c),
    "scene_d": ((16, 20), _mask_d),
}

# Facts at the image size. bbox = (x_min, y_min, x_max, y_max), inclusive pixel indices.
MASK_FACTS = {
    "scene_a": {"area": 80, "bbox": (6, 4, 15, 11), "resized": False},
    "scene_b": {"area": 48 + 10, "bbox": (0, 2, 9, 21), "resized": False},
    "scene_c": {"area": 144, "bbox": (6, 12, 17, 23), "resized": True},
    "scene_d": {"area": 20 + 75, "bbox": (0, 0, 15, 19), "resized": False},
}

# split → the file's lines, exactly as written ("" is a blank line), and whether it ends in a newline.
PHRASE_LINES = {
    "train": (
        [
            "scene_a road marking on the road",
            "scene_a the cars parked along the street",
            "",
            "scene_b low vegetation next to the building",
            "scene_b Trees along the street  ",
            "scene_c vehicle beside the road marking",
            "scene_c the business district",
        ],
        True,
    ),
    "val": (["scene_b buses near the sidewalk", "scene_a impervious surfaces"], False),
    "test": (["scene_c the white van", "scene_a road", "scene_d truck with a trailer"], True),
}

# (split, 1-based line number) → (expression, class name)
EXPECTED_TEXT = {
    ("train", 1): ("road marking on the road", "road marking"),
    ("train", 2): ("the cars parked along the street", "car"),
    ("train", 4): ("low vegetation next to the building", "low vegetation"),
    ("train", 5): ("Trees along the street", "tree"),
    ("train", 6): ("vehicle beside the road marking", "vehicle"),
    ("train", 7): ("the business district", ""),
    ("val", 1): ("buses near the sidewalk", "bus"),
    ("val", 2): ("impervious surfaces", "impervious surface"),
    ("test", 1): ("the white van", "van"),
    ("test", 2): ("road", "road"),
    ("test", 3): ("truck with a trailer", "truck"),
}


def write_refsegrs_fixture(root: Path) -> dict:
    """Write the fixture under ``root`` (RefSegRS layout) and return the facts tests assert on.

    Returns ``counts`` (samples per split), ``unclassified`` (samples per split without a category
    word), ``resized`` (names per split whose mask is resized), ``samples`` (sample_id → split,
    line_number, image_id, text, class_name, area, bbox), ``image_files`` and ``mask_files``
    (name → path) and ``phrase_files`` (split → path).
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    image_files, mask_files = {}, {}
    for name, (size, make_mask) in IMAGES.items():
        image_files[name] = root / "images" / f"{name}.tif"
        mask_files[name] = root / "masks" / f"{name}.tif"
        Image.new("RGB", size, (70, 110, 90)).save(image_files[name])
        Image.fromarray(make_mask()).save(mask_files[name])
    phrase_files = {}
    for split, (lines, final_newline) in PHRASE_LINES.items():
        phrase_files[split] = root / f"output_phrase_{split}.txt"
        phrase_files[split].write_text("\n".join(lines) + ("\n" if final_newline else ""), encoding="utf-8")
    samples = {}
    for (split, line_number), (text, class_name) in EXPECTED_TEXT.items():
        name = PHRASE_LINES[split][0][line_number - 1].split()[0]
        samples[f"{split}_{line_number}"] = {
            "split": split,
            "line_number": line_number,
            "image_id": name,
            "text": text,
            "class_name": class_name,
            "area": MASK_FACTS[name]["area"],
            "bbox": MASK_FACTS[name]["bbox"],
        }
    splits = tuple(PHRASE_LINES)
    names = {split: {s["image_id"] for s in samples.values() if s["split"] == split} for split in splits}
    return {
        "counts": {split: sum(s["split"] == split for s in samples.values()) for split in splits},
        "unclassified": {
            split: sum(s["split"] == split and not s["class_name"] for s in samples.values())
            for split in splits
        },
        "resized": {split: sum(MASK_FACTS[name]["resized"] for name in names[split]) for split in splits},
        "samples": samples,
        "image_files": image_files,
        "mask_files": mask_files,
        "phrase_files": phrase_files,
    }
