"""Activation checkpointing that leaves results unchanged: same outputs, gradients and BN statistics.

``torch.utils.checkpoint`` runs a module's forward a second time during the backward pass instead of
keeping its activations. Two things would make that second run change results: random ops (dropout,
stochastic depth) drawing new numbers, which ``preserve_rng_state`` (on) prevents, and BatchNorm in
training mode updating its running statistics a second time, which :func:`checkpointed` prevents by
restoring the BN buffers of the module after the recomputation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def batch_norms(module: nn.Module) -> Iterator[nn.modules.batchnorm._NormBase]:
    """The batch norms inside ``module`` (itself included)."""
    return (m for m in module.modules() if isinstance(m, nn.modules.batchnorm._NormBase))


def _norm_buffers(module: nn.Module) -> list[torch.Tensor]:
    """The running statistics (and batch counters) of the batch norms inside ``module``."""
    buffers = []
    for m in batch_norms(module):
        if m.track_running_stats:
            buffers += [b for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
    return buffers


@contextlib.contextmanager
def _restoring(buffers: list[torch.Tensor]) -> Iterator[None]:
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(buffers, saved, strict=True):
                buffer.copy_(value)


def checkpointed(function, *args, state: nn.Module | None = None, **kwargs):
    """``function(*args, **kwargs)``, its activations recomputed in the backward pass instead of stored.

    Non-reentrant checkpointing (any inputs and outputs, nested structures included), random state
    preserved; the BatchNorm buffers of ``state`` (default: ``function`` when it is a module) that the
    recomputation would update a second time are put back. Under ``torch.no_grad()`` it is a plain call."""
    if not torch.is_grad_enabled():
        return function(*args, **kwargs)
    if state is None and isinstance(function, nn.Module):
        state = function
    buffers = _norm_buffers(state) if state is not None and state.training else []

    def contexts():
        return contextlib.nullcontext(), _restoring(buffers) if buffers else contextlib.nullcontext()

    return checkpoint(function, *args, use_reentrant=False, context_fn=contexts, **kwargs)
