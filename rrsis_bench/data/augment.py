"""The RRSIS-D random-box augmentation (RMSIN/FIANet recipe), made reproducible.

The recipe: a fixed share (20 %) of the training refs, drawn once, gets 20–60 black 32×32 squares
pasted at random positions on the original-resolution image every time it is loaded; the mask is not
changed. Two deliberate differences from the official loader, both documented where they live:

- the official code draws from the global RNG, so boxes differ between DataLoader worker layouts and
  after a resume; here each (seed, epoch, index) has its own generator, so they do not;
- the official code bounds both box coordinates by the image WIDTH; here x is bounded by the width
  and y by the height (identical on the square 800×800 DIOR images, correct on the few that are not).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from rrsis_bench.data.manifest import sample_metadata
from rrsis_bench.data.wrappers import SampleView


def _sort_key(ref_id: Any) -> tuple[str, str]:
    # Ids may be ints or strings; sort on text so the order never depends on the input order.
    return (str(ref_id), type(ref_id).__name__)


class RandomBoxes:
    """Paste ``min_boxes``–``max_boxes`` (inclusive) black ``box_size``² squares on a sample's image.

    ``select(ref_ids)`` draws the fixed subset of refs (``fraction`` of them, rounded half up) that
    gets boxes; ``__call__(sample, epoch=…, index=…)`` pastes the boxes. Box count and top-left
    corners come from ``numpy.random.default_rng([seed, epoch, index])``: the same sample at the same
    epoch always gets the same boxes, whichever worker loads it and whether or not the run resumed.
    Corners are drawn over the whole image (x in [0, width), y in [0, height)); a box that reaches
    past the right or bottom edge is clipped, so it may be smaller than ``box_size``².
    """

    def __init__(
        self,
        fraction: float = 0.2,
        min_boxes: int = 20,
        max_boxes: int = 60,
        box_size: int = 32,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError(f"fraction must lie in [0, 1] (got {fraction}); it is the share of refs that get boxes.")
        if int(box_size) != box_size or box_size < 1:
            raise ValueError(f"box_size must be a positive integer number of pixels (got {box_size}).")
        if int(min_boxes) != min_boxes or int(max_boxes) != max_boxes or not 0 <= min_boxes <= max_boxes:
            raise ValueError(
                f"Box counts must be integers with 0 <= min_boxes <= max_boxes (got min_boxes={min_boxes}, "
                f"max_boxes={max_boxes})."
            )
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer (got {seed}).")
        self.fraction = float(fraction)
        self.min_boxes = int(min_boxes)
        self.max_boxes = int(max_boxes)
        self.box_size = int(box_size)
        self.seed = int(seed)

    def select(self, ref_ids: Iterable[Any]) -> set:
        """The fixed subset of ``ref_ids`` that gets boxes: ``round_half_up(fraction * n)`` distinct refs.

        Duplicates are counted once and ids are sorted first, so the subset depends only on the set
        of ids and the seed.
        """
        unique = sorted(set(ref_ids), key=_sort_key)
        count = int(np.floor(self.fraction * len(unique) + 0.5 + 1e-9))
        rng = np.random.default_rng([self.seed, 0x5E1EC7])  # a stream apart from the per-sample draws
        return {unique[i] for i in rng.choice(len(unique), size=count, replace=False)}

    def boxes(self, width: int, height: int, *, epoch: int, index: int) -> np.ndarray:
        """``(k, 4)`` int array of clipped boxes ``x0, y0, x1, y1`` (exclusive ends) for one load."""
        if epoch < 0 or index < 0:
            raise ValueError(f"epoch and index must be non-negative (got epoch={epoch}, index={index}).")
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        count = int(rng.integers(self.min_boxes, self.max_boxes + 1))
        x0 = rng.integers(0, width, size=count)
        y0 = rng.integers(0, height, size=count)
        x1 = np.minimum(x0 + self.box_size, width)
        y1 = np.minimum(y0 + self.box_size, height)
        return np.stack([x0, y0, x1, y1], axis=1)

    def __call__(self, sample: dict[str, Any], *, epoch: int, index: int) -> dict[str, Any]:
        """A new sample dict with a new image carrying the boxes; ``sample`` itself is left as it was."""
        image = sample["image"]
        if image.mode not in ("RGB", "RGBA", "L"):
            image = image.convert("RGB")
        pixels = np.array(image)  # a copy: the input image is never written to
        for x0, y0, x1, y1 in self.boxes(image.width, image.height, epoch=epoch, index=index):
            pixels[y0:y1, x0:x1] = 0
        return {**sample, "image": Image.fromarray(pixels)}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(fraction={self.fraction}, min_boxes={self.min_boxes}, "
            f"max_boxes={self.max_boxes}, box_size={self.box_size}, seed={self.seed})"
        )


class AugmentedDataset(SampleView):
    """Training samples where the refs chosen by ``boxes.select`` get random boxes on every load.

    The subset is drawn once, here, from each sample's ``ref_id`` (``sample_id`` when a sample has
    none), read through ``metadata(i)`` when the dataset offers it. Call ``set_epoch(epoch)`` before
    each epoch, as with ``DistributedSampler``; DataLoader workers receive the epoch when their
    iterator is created, so use non-persistent workers or recreate the iterator per epoch.
    """

    def __init__(self, samples: Sequence[dict], boxes: RandomBoxes) -> None:
        self.samples = samples
        self.boxes = boxes
        self.epoch = 0
        self._ref_ids = []
        for i in range(len(samples)):
            meta = sample_metadata(samples, i)
            self._ref_ids.append(meta.get("ref_id", meta["sample_id"]))
        self.selected_refs = boxes.select(self._ref_ids)

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative (got {epoch}).")
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"Index {index} is out of range for a dataset of length {len(self)}.")
        index %= len(self)
        sample = self.samples[index]
        if self._ref_ids[index] not in self.selected_refs:
            return sample
        return self.boxes(sample, epoch=self.epoch, index=index)

    def metadata(self, index: int) -> dict[str, Any]:
        """Sample ``index`` without pixels; boxes change pixels only, so this is the wrapped metadata."""
        return sample_metadata(self.samples, index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.samples!r}, {self.boxes!r}, boxed_refs={len(self.selected_refs)})"
