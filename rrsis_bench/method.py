"""The method contract: what the engine expects from every method, built-in or plugin.

A method is a ``torch.nn.Module`` (subclass :class:`RRSISMethod`) that

- maps a batch to mask logits: ``forward(batch) -> (B, 1, H, W)`` at the batch's image size, where
  ``batch`` holds ``image`` (B, 3, H, W, normalized with ``spec.mean``/``spec.std``),
  ``input_ids`` and ``attention_mask`` (B, L) from the tokenizer named by ``spec.tokenizer``;
- owns its loss: ``loss(logits, batch) -> {"loss": scalar, ...named terms...}``, with the target
  mask in ``batch["mask"]`` (B, H, W) of 0/1;
- may group its parameters for the optimizer: ``param_groups(weight_decay)`` returns AdamW groups,
  each optionally with an ``lr_scale``;
- gives every parameter that requires a gradient a gradient in every training step: DDP runs
  without ``find_unused_parameters``. Parameters that never get one (kept for a checkpoint layout)
  are built with ``requires_grad=False``; a method whose parameters may go unused in some steps sets
  ``find_unused_parameters = True`` and the trainer tells DDP.

The engine knows nothing else about a method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class MethodSpec:
    """What the data pipeline needs to feed a method, and where the method comes from."""

    tokenizer: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    paper: str = ""
    code_url: str = ""
    license: str = ""
    notes: str = ""
    extra: dict = field(default_factory=dict)


def is_no_decay(name: str, param: torch.Tensor) -> bool:
    """Biases, norm weights and other 1-d parameters get no weight decay."""
    return param.ndim <= 1 or name.endswith(".bias") or "norm" in name.lower()


def decay_groups(named_params, weight_decay: float, **group_options) -> list[dict]:
    """Split ``named_params`` into a weight-decay group and a no-decay group (empty groups dropped)."""
    decay, no_decay = [], []
    for name, param in named_params:
        if param.requires_grad:
            (no_decay if is_no_decay(name, param) else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, **group_options},
        {"params": no_decay, "weight_decay": 0.0, **group_options},
    ]
    return [g for g in groups if g["params"]]


class RRSISMethod(nn.Module):
    """Base class of rrsis-bench methods (see the module docstring for the contract)."""

    spec: MethodSpec
    find_unused_parameters: bool = False  # True: some trainable parameters may get no gradient in a step

    def loss(self, logits: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must define loss(logits, batch).")

    def param_groups(self, weight_decay: float) -> list[dict]:
        return decay_groups(self.named_parameters(), weight_decay)
