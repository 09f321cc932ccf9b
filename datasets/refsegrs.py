"""RefSegRS reader: SkyScapes tiles as TIFF images and masks, one sample per line of output_phrase_<split>.txt."""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rrsis_bench.masks import resize_mask

SPLITS = ("train", "val", "test")
# The 14 category words of the official loader (Yuan et al., TGRS 2024).
CATEGORIES = (
    "road",
    "vehicle",
    "car",
    "van",
    "building",
    "truck",
    "trailer",
    "bus",
    "road marking",
    "bikeway",
    "sidewalk",
    "tree",
    "low vegetation",
    "impervious surface",
)
# The official loader reads masks in any-depth grayscale and keeps values above 50.
MASK_THRESHOLD = 50
# PIL modes whose pixel values are the grey levels themselves (8-, 16-, 32-bit and float).
_GREY_MODES = {"L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_ROOT_FIX = "point `data.root` at the folder that holds images/, masks/ and output_phrase_*.txt"
_SKIP_FIX = "add +data.options.skip_missing=true on the command line (Python: skip_missing=True)"


def class_name_of(text: str, categories: Iterable[str]) -> str:
    """The category that ``text`` refers to: the earliest category phrase in it, the longest one at that spot.

    Matching is case-insensitive and on whole words: a phrase's words may be separated by any run of
    spaces or hyphens, and its last word may carry its regular English plural: ``es`` after s, x, z, ch
    or sh, ``s`` otherwise ("cars" → car, "buses" → bus; "cares" is not car), but a category inside a longer word does not count ("street" is not tree, "business" is not
    bus). The earliest match wins because the referred object leads the expression ("vehicle on the
    road" is a vehicle); at one position the longest phrase wins ("road marking" over "road").
    Returns the category as spelled in ``categories``, or ``""`` when none occurs.
    """
    pattern, canonical = _category_pattern(tuple(categories))
    if pattern is None:
        return ""
    match = pattern.search(text)
    return canonical[match.lastgroup] if match else ""


@functools.lru_cache(maxsize=32)
def _category_pattern(categories: tuple[str, ...]) -> tuple[re.Pattern | None, dict[str, str]]:
    """One regex, alternatives longest first, so that the leftmost match is also the longest there."""
    phrases = [c for c in dict.fromkeys(categories) if c.split()]
    if not phrases:
        return None, {}
    ordered = sorted(range(len(phrases)), key=lambda i: -len(" ".join(phrases[i].split())))
    alternatives = []
    canonical = {}
    for position, index in enumerate(ordered):
        group = f"c{position}"
        canonical[group] = phrases[index]
        words = phrases[index].split()
        plural = "(?:es)?" if words[-1].lower().endswith(("s", "x", "z", "ch", "sh")) else "s?"
        body = r"[\s\-]+".join(re.escape(word) for word in words)
        alternatives.append(f"(?P<{group}>{body}{plural})")
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE), canonical


def read_mask(path: str | os.PathLike, threshold: int = MASK_THRESHOLD) -> np.ndarray:
    """A RefSegRS mask file (8- or 16-bit grayscale; colour is turned to grey) → bool H×W of values > threshold."""
    with Image.open(path) as opened:
        grey = opened if opened.mode in _GREY_MODES else opened.convert("L")
        values = np.asarray(grey)
    return values > threshold


class RefSegRSDataset(Sequence):
    """RefSegRS (Yuan et al., TGRS 2024): SkyScapes aerial tiles, 14 classes, rule-generated expressions.

    Layout under ``root``: ``images/<name>.tif`` (RGB), ``masks/<name>.tif`` (grayscale, 8- or
    16-bit; foreground is value > 50) and ``output_phrase_{train,val,test}.txt``, whose lines read
    ``<name> <expression words…>``. Each non-blank line is one sample; lines that share a name share
    the image and its mask. Samples are dicts with ``image`` (PIL RGB, native size), ``mask`` (bool
    H×W at the image's size), ``text``, ``class_name`` (from the expression, see
    :func:`class_name_of`; ``""`` when no category word occurs, counted in ``num_unclassified``),
    ``sample_id`` (``{split}_{line_number}``), ``image_id`` (the name) and ``line_number`` (1-based).

    A mask whose size differs from its image is resized (nearest) to the image size; ``num_resized``
    counts the distinct names met so far, ``size_mismatches`` lists them, and the first one is
    reported once with a warning. With ``skip_missing=True`` lines whose image or mask is missing are
    dropped (counted in ``num_skipped``, the files listed in ``missing_files``).
    """

    name = "refsegrs"
    splits = SPLITS
    categories = CATEGORIES
    # The category words are the words expressions use (the class name is the category word itself).
    class_phrases = {category: (category,) for category in CATEGORIES}

    def __init__(self, root: str | os.PathLike, split: str = "train", *, skip_missing: bool = False) -> None:
        if split not in SPLITS:
            raise ValueError(
                f"Unknown split {split!r} for {self.name}; valid splits are {', '.join(SPLITS)}."
            )
        self.root = Path(root).expanduser()
        self.split = split
        self.image_dir = self.root / "images"
        self.mask_dir = self.root / "masks"
        self.phrase_file = self.root / f"output_phrase_{split}.txt"
        for folder in (self.image_dir, self.mask_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"RefSegRS folder {folder} not found; {_ROOT_FIX}.")
        lines = _read_phrase_file(self.phrase_file)
        self.missing_files: list[Path] = []
        self._samples, self.num_skipped = self._keep_present(lines, skip_missing)
        self.num_unclassified = sum(not sample["class_name"] for sample in self._samples)
        # Filled lazily, as masks are decoded: name → (mask size, image size) where they differ.
        self._resized_names: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}

    def _keep_present(self, lines: list[tuple[int, str, str]], skip_missing: bool) -> tuple[list[dict], int]:
        """Index the lines whose image and mask exist; report the missing files or skip their lines."""
        samples: list[dict] = []
        missing: list[tuple[Path, int]] = []
        present: dict[str, bool] = {}
        num_skipped = 0
        for line_number, image_id, text in lines:
            if image_id not in present:
                absent = [p for p in (self.image_path(image_id), self.mask_path(image_id)) if not p.is_file()]
                missing.extend((path, line_number) for path in absent)
                present[image_id] = not absent
            if not present[image_id]:
                num_skipped += 1
                continue
            samples.append(
                {
                    "text": text,
                    "class_name": class_name_of(text, CATEGORIES),
                    "sample_id": f"{self.split}_{line_number}",
                    "image_id": image_id,
                    "line_number": line_number,
                }
            )
        if missing and not skip_missing:
            path, line_number = missing[0]
            raise FileNotFoundError(
                f"{path} is missing (used by line {line_number} of {self.phrase_file}; {len(missing)} missing "
                f"file(s) in split {self.split!r}); restore it, or {_SKIP_FIX} to skip the lines that use it."
            )
        self.missing_files = sorted({path for path, _ in missing})
        return samples, num_skipped

    def image_path(self, image_id: str) -> Path:
        return self.image_dir / f"{image_id}.tif"

    def mask_path(self, image_id: str) -> Path:
        return self.mask_dir / f"{image_id}.tif"

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.metadata(index)
        path = self.image_path(sample["image_id"])
        try:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
        except (OSError, SyntaxError, ValueError) as exc:  # what PIL raises for truncated or corrupt files
            raise OSError(self._unreadable(path, sample["sample_id"], exc)) from exc
        return {"image": image, "mask": self._mask(sample["image_id"], image.size, sample["sample_id"]), **sample}

    def _unreadable(self, path: Path, sample_id: str, exc: BaseException) -> str:
        return (f"Cannot read {path} for sample {sample_id} ({exc}); re-download it, or delete it and "
                f"{_SKIP_FIX} to skip the lines that use it.")

    def sample_files(self, index: int) -> list[Path]:
        """The files whose bytes sample ``index`` is read from: its image and its mask."""
        image_id = self._samples[self._check_index(index)]["image_id"]
        return [self.image_path(image_id), self.mask_path(image_id)]

    def metadata(self, index: int) -> dict[str, Any]:
        """Sample ``index`` without its pixels (text, class, ids): cheap, for manifests and statistics."""
        return dict(self._samples[self._check_index(index)])

    def _check_index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(
                f"Index {index} is out of range for {self.name} split {self.split!r} of length {len(self)}."
            )
        return index % len(self)

    def sample_id(self, index: int) -> str:
        """Unique, stable id of sample ``index``: ``{split}_{line_number}`` (1-based line of the phrase file)."""
        return self._samples[self._check_index(index)]["sample_id"]

    def ref_of(self, index: int) -> dict:
        """RefSegRS has no ref records; the parsed phrase-file line behind sample ``index`` stands in for one."""
        return self.metadata(index)

    def image_size(self, index: int) -> tuple[int, int]:
        """(width, height) of sample ``index``'s image file, read from the header only."""
        with Image.open(self.image_path(self._samples[self._check_index(index)]["image_id"])) as opened:
            return opened.size

    def target_mask(self, index: int) -> np.ndarray:
        """Ground-truth mask of sample ``index`` at its image's size, without decoding the image pixels."""
        sample = self._samples[self._check_index(index)]
        return self._mask(sample["image_id"], self.image_size(index), sample["sample_id"])

    def class_union_mask(self, index: int) -> np.ndarray:
        """Not available: RefSegRS ships one mask per expression and no instance annotations."""
        raise NotImplementedError(
            "RefSegRS has no instance annotations (only one mask per expression), so the union of all "
            "objects of a class cannot be built; the class-only oracle is available for RRSIS-D only."
        )

    @property
    def num_resized(self) -> int:
        """Distinct names met so far (masks decoded by this object) whose mask was resized to the image size."""
        return len(self._resized_names)

    @property
    def size_mismatches(self) -> list[str]:
        """One line per mask met so far whose size differs from its image's (for `data verify`)."""
        return [
            f"{self.mask_path(name)} is {mask[0]}x{mask[1]} but its image is {image[0]}x{image[1]}; the mask is "
            "resized (nearest) to the image"
            for name, (mask, image) in sorted(self._resized_names.items())
        ]

    def _mask(self, image_id: str, image_size: tuple[int, int], sample_id: str) -> np.ndarray:
        path = self.mask_path(image_id)
        try:
            mask = read_mask(path)
        except (OSError, SyntaxError, ValueError) as exc:  # what PIL raises for truncated or corrupt files
            raise OSError(self._unreadable(path, sample_id, exc)) from exc
        if (mask.shape[1], mask.shape[0]) != tuple(image_size):
            self._note_resized(image_id, (mask.shape[1], mask.shape[0]), image_size)
        return resize_mask(mask, image_size)

    def _note_resized(self, image_id: str, mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
        if image_id in self._resized_names:
            return
        self._resized_names[image_id] = (tuple(mask_size), tuple(image_size))
        if len(self._resized_names) == 1:
            warnings.warn(
                f"{self.mask_path(image_id)} is {mask_size[0]}x{mask_size[1]} but its image is "
                f"{image_size[0]}x{image_size[1]}; masks are resized (nearest) to the image size. Further "
                f"mismatched masks are not reported again; `num_resized` counts them.",
                UserWarning,
                stacklevel=4,
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"


def _read_phrase_file(path: Path) -> list[tuple[int, str, str]]:
    """(1-based line number, name, expression) for each non-blank line of an output_phrase_*.txt file."""
    if not path.is_file():
        raise FileNotFoundError(f"RefSegRS phrase file {path} not found; {_ROOT_FIX}.")
    lines = []
    # utf-8-sig: a byte-order mark, if an editor added one, must not become part of the first name.
    with open(path, encoding="utf-8-sig") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.strip().split(maxsplit=1)
            if not fields:
                continue
            if len(fields) == 1:
                raise ValueError(
                    f"Line {line_number} of {path} has the image name {fields[0]!r} but no expression; "
                    "each line must read `<name> <expression>`."
                )
            lines.append((line_number, fields[0], fields[1].strip()))
    return lines
