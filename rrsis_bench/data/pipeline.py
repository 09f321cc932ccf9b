"""Turn raw samples (DESIGN.md's contract) into the tensors a method consumes.

Train and eval share one transform: resize the image to ``image_size``² (bilinear, aspect ratio not
kept, as the RRSIS recipes do), normalize with the method's mean/std, resize the target mask with
nearest neighbour, and encode the expression with :class:`~rrsis_bench.data.text.ExpressionEncoder`
(token ids and attention mask to ``max_tokens``). Beyond the fields every batch has, a transform
builds exactly the inputs the method declares in ``spec.inputs`` (:mod:`rrsis_bench.data.inputs`:
FIANet's ground-object and spatial-position token masks, an instance map, ids, or a raw-sample key),
and :func:`collate` batches whatever it is given. :func:`build_encoder` is the one place that builds
the expression encoder from a data config: training, evaluation and ``rrsis-bench data text`` all go
through it, so what a user inspects is what the model is fed. Eval batches also carry the ground
truth at the scoring resolution (``eval_size``² nearest-resized, or the native size when
``eval_size`` is None) so predictions are scored exactly as the protocol says.

Speed without changing a bit: the image is resized by torch's uint8 antialiased bilinear kernel
(several times faster than PIL's) only for the (source, target) sizes where it was checked, once per
process, to give PIL's result on probe images (RRSIS-D's 800→480 is one); otherwise PIL resizes.
Normalisation runs in place on a contiguous (3, H, W) tensor (the same float operations in the same
order), and a target mask resized for the model is reused as the ground truth when the sizes are equal.
Collated tensors are stacked into shared memory in worker processes (as torch's
``default_collate`` does), so a batch crosses to the main process without another copy.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, default_collate

from rrsis_bench.data.inputs import RawItem, build_input, input_names
from rrsis_bench.data.manifest import sample_metadata
from rrsis_bench.data.text import ExpressionEncoder
from rrsis_bench.masks import resize_mask


class SampleTransform:
    """Raw sample → dict of tensors (see the module docstring); ``inputs`` are the method's declared
    extra inputs (``spec.inputs``), built in that order after the fields every batch has."""

    def __init__(
        self,
        encode: ExpressionEncoder,
        *,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        eval_size: int | None = None,
        with_gt: bool = False,
        inputs: Sequence[str] = (),
    ) -> None:
        self.encode = encode
        self.image_size = int(image_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.eval_size = eval_size
        self.with_gt = with_gt
        self.inputs = input_names(inputs)

    def __call__(self, sample: dict[str, Any], *, source: Sequence[dict] | None = None,
                 index: int | None = None) -> dict[str, Any]:
        """Transform ``sample``; ``source``/``index`` say where it came from (``source[index]``), which
        dataset-provided inputs such as ``instance_map`` need."""
        size = (self.image_size, self.image_size)
        pixels = resize_rgb(sample["image"], size).to(torch.float32, memory_format=torch.contiguous_format)
        mask = np.asarray(sample["mask"], dtype=bool)
        if not str(sample["text"]).strip():  # the encoder's own error could not say which sample
            raise ValueError(
                f"Sample {sample['sample_id']!r} (image {sample.get('image_id')!r}) has an empty referring "
                "expression; fix its sentence in the dataset's annotation file or leave the sample out."
            )
        text = self.encode(sample["text"])
        target = resize_mask(mask, size)
        out = {
            "image": pixels.div_(255.0).sub_(self.mean).div_(self.std),
            "mask": torch.from_numpy(target.astype(np.float32)),
            "input_ids": torch.tensor(text.input_ids, dtype=torch.long),
            "attention_mask": torch.tensor(text.attention_mask, dtype=torch.long),
            "sample_id": str(sample["sample_id"]),
            "text": sample["text"],
            "class_name": sample.get("class_name", ""),
            "weak": bool(sample.get("weak", False)),  # the expression was replaced by the class name
        }
        if self.with_gt:
            if self.eval_size is None:
                gt = mask
            else:
                gt = target if self.eval_size == self.image_size else resize_mask(mask, (self.eval_size,) * 2)
            out["gt_mask"] = torch.from_numpy(gt.copy())
        item = RawItem(sample, text, source, index)
        for name in self.inputs:
            out[name] = build_input(name, item, self.image_size)
        return out


class TransformedDataset(Dataset):
    """A raw-sample sequence seen through a transform (a torch ``Dataset``)."""

    def __init__(self, samples: Sequence[dict], transform: SampleTransform) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to samples that draw per-epoch randomness (box augmentation)."""
        if hasattr(self.samples, "set_epoch"):
            self.samples.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.transform(self.samples[index], source=self.samples, index=index)
        item["index"] = index
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch transformed items key by key: tensors are stacked (they must have one shape; in a worker
    process into shared memory), ``index`` becomes a long tensor, ``gt_mask`` (native sizes may differ)
    and everything else stay lists."""
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key == "gt_mask":
            batch[key] = values
        elif key == "index":
            batch[key] = torch.tensor(values, dtype=torch.long)
        elif isinstance(values[0], torch.Tensor):
            shapes = sorted({tuple(value.shape) for value in values})
            if len(shapes) > 1:
                raise ValueError(f"Cannot batch {key!r}: its items have shapes {shapes}; a batched input must "
                                 "have one shape per item (maps are resized to the image size).")
            batch[key] = default_collate(values)  # torch.stack, into shared memory in a worker
        else:
            batch[key] = values
    return batch


def class_phrases(samples: Sequence[dict]) -> list[str]:
    """The phrases the expression encoder looks for as the ground object.

    A dataset declares the words its expressions use for each class as ``class_phrases``, a mapping
    identifier → phrase(s) (RRSIS-D: ``{"storagetank": ("storage tank",), ...}``): those are used,
    since identifiers such as ``storagetank`` never occur in an expression. A dataset without
    ``class_phrases`` falls back to the distinct class names of the given samples.
    """
    declared = getattr(samples, "class_phrases", None)
    if declared:
        phrases = {phrase for value in declared.values() for phrase in ([value] if isinstance(value, str) else value)}
        return sorted(phrases)
    return sorted({str(sample_metadata(samples, i).get("class_name") or "") for i in range(len(samples))} - {""})


def object_mask_rule(data_cfg: Mapping[str, Any]) -> str:
    """``data.object_mask`` (clean | official). A config written before that key existed has
    ``object_fallback: full``, which is the clean rule; its ``zeros`` setting has no exact equivalent."""
    if "object_mask" in data_cfg:
        return str(data_cfg["object_mask"])
    legacy = data_cfg.get("object_fallback", "full")
    if legacy != "full":
        raise ValueError(
            f"data.object_fallback={legacy} is no longer supported; set data.object_mask=official (every class "
            "mentioned is marked, all-zero when none is) or data.object_mask=clean (one phrase, full mask when none)."
        )
    return "clean"


def build_encoder(tokenizer, data_cfg: Mapping[str, Any], samples: Sequence[dict]) -> ExpressionEncoder:
    """The expression encoder for a data config (``max_tokens``, ``object_mask``) and the class phrases
    of ``samples`` (see :func:`class_phrases`). ``tokenizer`` is a Hugging Face tokenizer."""
    return ExpressionEncoder(tokenizer, int(data_cfg["max_tokens"]), class_phrases(samples),
                             object_mask=object_mask_rule(data_cfg))


# --- exact fast resizes ---------------------------------------------------------------------------

def resize_rgb(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """``image`` in RGB, resized bilinearly to ``size`` = (width, height): a uint8 (3, H, W) tensor whose
    values are those of PIL's ``image.convert("RGB").resize(size, Image.BILINEAR)``. Torch's kernel does
    the resize where :func:`torch_bilinear_matches_pil` says it gives PIL's result, PIL elsewhere."""
    size = (int(size[0]), int(size[1]))
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != size and torch_bilinear_matches_pil(image.size, size):
        with warnings.catch_warnings():  # a read-only view of PIL's bytes; the kernel only reads it
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            pixels = torch.from_numpy(np.asarray(image))
        return _torch_bilinear(pixels, size)
    if image.size != size:
        image = image.resize(size, Image.BILINEAR)
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)


def _torch_bilinear(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (H, W, 3) → uint8 (3, height, width), torch's antialiased bilinear resize (channels-last)."""
    batch = pixels.permute(2, 0, 1).unsqueeze(0)
    return F.interpolate(batch, size=(size[1], size[0]), mode="bilinear", antialias=True, align_corners=False)[0]


@cache
def torch_bilinear_matches_pil(source: tuple[int, int], target: tuple[int, int]) -> bool:
    """Whether torch's uint8 antialiased bilinear resize from ``source`` to ``target`` (width, height)
    gives PIL's BILINEAR result on three probe images (noise, 0/255 noise, a smooth ramp). It does for
    some size pairs (800→480) and is off by one here and there for others; checked once per process."""
    rng = np.random.default_rng(0)
    width, height = source
    probes = (
        rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        rng.integers(0, 2, (height, width, 3), dtype=np.uint8) * 255,
        np.clip(np.cumsum(rng.integers(-4, 5, (height, width, 3)), axis=1) + 128, 0, 255).astype(np.uint8),
    )
    for probe in probes:
        expected = np.asarray(Image.fromarray(probe).resize(target, Image.BILINEAR))
        if not np.array_equal(_torch_bilinear(torch.from_numpy(probe), target).permute(1, 2, 0).numpy(), expected):
            return False
    return True
