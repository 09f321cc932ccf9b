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
