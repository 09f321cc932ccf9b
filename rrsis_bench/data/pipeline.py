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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

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
        image = sample["image"].convert("RGB").resize(size, Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
        mask = np.asarray(sample["mask"], dtype=bool)
        if not str(sample["text"]).strip():  # the encoder's own error could not say which sample
            raise ValueError(
                f"Sample {sample['sample_id']!r} (image {sample.get('image_id')!r}) has an empty referring "
                "expression; fix its sentence in the dataset's annotation file or leave the sample out."
            )
        text = self.encode(sample["text"])
        out = {
            "image": (pixels - self.mean) / self.std,
            "mask": torch.from_numpy(resize_mask(mask, size).astype(np.float32)),
            "input_ids": torch.tensor(text.input_ids, dtype=torch.long),
            "attention_mask": torch.tensor(text.attention_mask, dtype=torch.long),
            "sample_id": str(sample["sample_id"]),
            "text": sample["text"],
            "class_name": sample.get("class_name", ""),
            "weak": bool(sample.get("weak", False)),  # the expression was replaced by the class name
        }
        if self.with_gt:
            gt = mask if self.eval_size is None else resize_mask(mask, (self.eval_size, self.eval_size))
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
    """Batch transformed items key by key: tensors are stacked (they must have one shape), ``index``
    becomes a long tensor, ``gt_mask`` (native sizes may differ) and everything else stay lists."""
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
            batch[key] = torch.stack(values)
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
