"""Small mask utilities shared by dataset readers and the data pipeline (numpy + PIL only)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to ``size`` = (width, height)."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(tuple(size), Image.NEAREST)
    return np.asarray(resized) > 127


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Inclusive (x0, y0, x1, y1) box of a non-empty bool mask."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise ValueError("An empty mask has no bounding box.")
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
