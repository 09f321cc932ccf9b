"""The method contract: what the engine expects from every method, built-in or plugin.

A method is a ``torch.nn.Module`` (subclass :class:`RRSISMethod`) that

- maps a batch to mask logits: ``forward(batch)`` returns either the logits ``(B, 1, H, W)`` at the
  batch's image size or a :class:`MethodOutput` (those logits plus named auxiliary tensors, e.g.
  pixel embeddings), where ``batch`` holds ``image`` (B, 3, H, W, normalized with
  ``spec.mean``/``spec.std``), ``input_ids`` and ``attention_mask`` (B, L) from the tokenizer named
  by ``spec.tokenizer``, the target ``mask`` (B, H, W) of 0/1 when training, ``sample_id``,
  ``text``, ``class_name``, ``weak`` and ``index``, and the extra per-sample inputs the method
  declares in ``spec.inputs`` (see :data:`rrsis_bench.data.inputs.FIELDS`: token masks, an
  instance map, ids); the engine reads :func:`logits_of` of the output;
- owns its loss: ``loss(output, batch) -> {"loss": scalar, ...named terms...}``, where ``output`` is
  what ``forward`` returned (bare logits or the :class:`MethodOutput`);
- (built-in methods, and plugins that want training strategies to work with them) exposes its text
  path: ``encode_text(batch)`` gives the text features the rest of the network reads, and a batch
  may carry ``inputs_embeds`` (B, L, E), the text encoder's word embeddings, in place of what
  ``input_ids`` would look up (``attention_mask`` still applies), so a strategy can inject learned
  vectors; see :meth:`rrsis_bench.nn.text.TextEncoder.forward`;
- may group its parameters for the optimizer: ``param_groups(weight_decay)`` returns AdamW groups,
  each optionally with an ``lr_scale``;
- gives every parameter that requires a gradient a gradient in every training step: DDP runs
  without ``find_unused_parameters``. Parameters that never get one (kept for a checkpoint layout)
  are built with ``requires_grad=False``; a method whose parameters may go unused in some steps sets
  ``find_unused_parameters = True`` and the trainer tells DDP;
- may trade time for memory: ``set_checkpointing(enabled)`` (turned on by ``trainer.checkpointing``)
  recomputes activations in the backward pass and must leave outputs, gradients and buffers unchanged.
- may name its ablations: ``ablations`` maps a name (``no_fiam``) to the factory overrides that switch
  one component off (``{"fiam": False}``); the conformance kit checks every one, and the claims table
  (:mod:`rrsis_bench.results.claims`) compares runs with and without them.

The engine knows nothing else about a method. :func:`rrsis_bench.testing.check_method` checks all of
this for any registered method, built-in or plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
import torch.utils._pytree
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class MethodOutput:
    """What ``forward`` may return instead of bare logits: the mask ``logits`` (B, 1, H, W) and named
    auxiliary tensors for the method's own loss (pixel embeddings, a centre embedding, ...). The
    engine reads ``logits`` only; ``loss(output, batch)`` receives the whole object."""

    logits: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


# DDP (with find_unused_parameters) and torch.compile walk a module's output as a pytree: a registered
# node lets them reach the tensors inside.
torch.utils._pytree.register_dataclass(MethodOutput)


def logits_of(output: torch.Tensor | MethodOutput) -> torch.Tensor:
    """The mask logits of a ``forward`` result (bare logits or a :class:`MethodOutput`)."""
    return output.logits if isinstance(output, MethodOutput) else output


@dataclass(frozen=True)
class MethodSpec:
    """What the data pipeline needs to feed a method, and where the method comes from.

    ``inputs`` names the extra per-sample inputs the method reads from the batch, beyond the ones
    every batch has (see the module docstring): names of :data:`rrsis_bench.data.inputs.FIELDS`
    (``object_mask``, ``position_mask``, ``instance_map``, ``category_id``, ``ref_id``, ``image_id``)
    or keys the dataset's raw samples carry. The pipeline builds, resizes and collates exactly those.
    """

    tokenizer: str
    inputs: tuple[str, ...] = ()
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
    #: Ablation name -> the factory overrides that switch one component off (see the module docstring).
    ablations: Mapping[str, Mapping[str, Any]] = MappingProxyType({})

    def loss(self, output: torch.Tensor | MethodOutput, batch: dict) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must define loss(output, batch).")

    def param_groups(self, weight_decay: float) -> list[dict]:
        return decay_groups(self.named_parameters(), weight_decay)

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The word embeddings ``(B, L, E)`` a batch's ``inputs_embeds`` stand in for: the text encoder's
        own lookup of ``input_ids`` (a method whose text encoder is not ``self.text``, a
        :class:`~rrsis_bench.nn.text.TextEncoder`, overrides this)."""
        text = getattr(self, "text", None)
        if text is None or not hasattr(text, "embed_tokens"):
            raise NotImplementedError(
                f"{type(self).__name__} has no text encoder at .text; define embed_tokens(input_ids) to take "
                "inputs_embeds.")
        return text.embed_tokens(input_ids)
