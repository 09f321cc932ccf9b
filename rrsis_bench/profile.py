"""`rrsis-bench profile`: parameters, forward FLOPs, latency and peak memory of a method.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` over one forward pass of a dummy batch
(random image, a full-length expression, dummies of the method's declared inputs): it counts 2 FLOPs
per multiply-add of matrix products and convolutions (attention included) and ignores element-wise
operations. Papers that report "GFLOPs" for LAVT-style models usually mean multiply-adds, i.e. half
of this number: both are written.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from rrsis_bench.data.inputs import declared_inputs
from rrsis_bench.data.inputs import dummy_batch as inputs_dummy_batch
from rrsis_bench.engine.trainer import resolve_device
from rrsis_bench.method import logits_of
from rrsis_bench.registry import create_method

FLOP_CONVENTION = (
    "torch.utils.flop_counter forward FLOPs: 2 per multiply-add of matmuls/convolutions/attention, "
    "element-wise ops not counted; macs = flops / 2"
)


def dummy_batch(batch_size: int, image_size: int, max_tokens: int, device: torch.device,
                inputs: Sequence[str] = ()) -> dict[str, Any]:
    """A batch of the method contract's shape: random pixels, an expression using every token, the
    fields every batch has, and the dummies of the declared ``inputs`` (a method's ``spec.inputs``)."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    ids = torch.randint(1000, 2000, (batch_size, max_tokens), generator=generator)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP] (BERT ids; any vocabulary of 2000+ tokens works)
    batch = {
        "image": image, "input_ids": ids, "attention_mask": torch.ones(batch_size, max_tokens, dtype=torch.long),
        "mask": torch.zeros(batch_size, image_size, image_size),
        "sample_id": [f"dummy_{i}" for i in range(batch_size)], "text": ["dummy"] * batch_size,
        "class_name": [""] * batch_size, "weak": [False] * batch_size,
        "index": torch.arange(batch_size),
        **inputs_dummy_batch(inputs, batch_size, image_size, max_tokens),
    }
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def profile_method(name: str, *, image_size: int = 480, batch_size: int = 1, max_tokens: int = 20,
                   device: str = "auto", repeats: int = 5, warmup: int = 2, **method_kwargs: Any) -> dict[str, Any]:
    """Build ``name`` and measure it; returns the fields `rrsis-bench profile` writes."""
    dev = resolve_device(device)
    model = create_method(name, **method_kwargs).to(dev).eval()
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    batch = dummy_batch(batch_size, image_size, max_tokens, dev, declared_inputs(model))
    switchable = hasattr(model, "set_faithful")
    fast = getattr(model, "faithful", None)
    with torch.no_grad():
        # Fused attention kernels are invisible to the FLOP counter on some devices, so methods with
        # a faithful path are counted on it (explicit attention products; same outputs).
        if switchable:
            model.set_faithful(True)
        counter = FlopCounterMode(display=False)
        with counter:
            logits = logits_of(model(batch))
        flops = int(counter.get_total_flops())
        if switchable:
            model.set_faithful(fast)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        times = []
        for i in range(warmup + repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            model(batch)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return {
        "method": name, "method_kwargs": method_kwargs, "params": params, "trainable_params": trainable,
        "flops": flops, "gflops": round(flops / 1e9, 3), "gmacs": round(flops / 2e9, 3),
        "flop_convention": FLOP_CONVENTION,
        "flops_counted_on": "faithful path (explicit attention)" if switchable else "the configured forward",
        "input": {"image_size": image_size, "batch_size": batch_size, "max_tokens": max_tokens},
        "output_shape": list(logits.shape),
        "latency_ms": {"median": round(1e3 * statistics.median(times), 3), "min": round(1e3 * min(times), 3),
                       "repeats": repeats, "warmup": warmup},
        "peak_memory_mb": round(_peak_memory_mb(dev), 1),
        "memory_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "process peak RSS",
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "torch": torch.__version__,
    }
