"""A base for views over a raw-sample sequence (weak expressions, box augmentation, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class SampleView(Sequence):
    """Wraps ``self.samples``: same length, and dataset extras (``name``, ``split``,
    ``sample_id(i)``, ``target_mask(i)``, ...) pass through to the wrapped dataset."""

    samples: Sequence[dict]

    def __len__(self) -> int:
        return len(self.samples)

    def __getattr__(self, name: str) -> Any:
        if name == "samples":  # not set yet (e.g. while unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.samples, name)
