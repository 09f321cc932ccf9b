"""`rrsis-bench profile`: parameters, forward FLOPs, latency and peak memory of a method.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` over one forward pass of a dummy batch
(random image, a full-length expression, dummies of the method's declared inputs): it counts 2 FLOPs
per multiply-add of matrix products and convolutions (attention included) and ignores element-wise
operations. Papers that report "GFLOPs" for LAVT-style models usually mean multiply-adds, i.e. half
of this number: both are written.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from rrsis_bench.data.inputs import declared_inputs
from rrsis_bench.data.inputs import dummy_batch as inputs_dummy_batch
from rrsis_bench.engine.trainer import resolve_device
from rrsis_bench.io import atomic_write_json
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


def count_forward_flops(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[int, list[int], str]:
    """(forward FLOPs, output shape, path counted on) of one forward pass of ``model`` (eval mode).

    Fused attention kernels are invisible to the FLOP counter on some devices, so methods with a
    faithful path are counted on it (explicit attention products; same outputs) and switched back.
    """
    switchable = hasattr(model, "set_faithful")
    fast = getattr(model, "faithful", None)
    was_training = model.training
    model.eval()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        # nn.TransformerEncoderLayer's fused inference fast path hides most of its products from the
        # counter, and whether it is taken depends on process state: count the plain path, always.
        torch.backends.mha.set_fastpath_enabled(False)
        with torch.no_grad():
            if switchable:
                model.set_faithful(True)
            counter = FlopCounterMode(display=False)
            with counter:
                logits = logits_of(model(batch))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        if switchable:
            model.set_faithful(fast)
        model.train(was_training)
    counted_on = "faithful path (explicit attention)" if switchable else "the configured forward"
    return int(counter.get_total_flops()), list(logits.shape), counted_on


def forward_latency(model: torch.nn.Module, batch: dict[str, Any], device: torch.device, *, repeats: int = 5,
                    warmup: int = 2) -> dict[str, Any]:
    """Wall time of ``repeats`` forward passes (eval mode, no grad) after ``warmup`` untimed ones:
    ``{median, min}`` in ms plus the counts. CUDA is synchronised around each pass."""
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                model(batch)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return {"median": round(1e3 * statistics.median(times), 3), "min": round(1e3 * min(times), 3),
            "repeats": repeats, "warmup": warmup}


def profile_method(name: str, *, image_size: int = 480, batch_size: int = 1, max_tokens: int = 20,
                   device: str = "auto", repeats: int = 5, warmup: int = 2, **method_kwargs: Any) -> dict[str, Any]:
    """Build ``name`` and measure it; returns the fields `rrsis-bench profile` writes."""
    dev = resolve_device(device)
    model = create_method(name, **method_kwargs).to(dev).eval()
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    batch = dummy_batch(batch_size, image_size, max_tokens, dev, declared_inputs(model))
    flops, output_shape, counted_on = count_forward_flops(model, batch)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    latency = forward_latency(model, batch, dev, repeats=repeats, warmup=warmup)
    return {
        "method": name, "method_kwargs": method_kwargs, "params": params, "trainable_params": trainable,
        "flops": flops, "gflops": round(flops / 1e9, 3), "gmacs": round(flops / 2e9, 3),
        "flop_convention": FLOP_CONVENTION,
        "flops_counted_on": counted_on,
        "input": {"image_size": image_size, "batch_size": batch_size, "max_tokens": max_tokens},
        "output_shape": output_shape,
        "latency_ms": latency,
        "peak_memory_mb": round(_peak_memory_mb(dev), 1),
        "memory_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "process peak RSS",
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "torch": torch.__version__,
    }


#: Forward passes timed for a run's record (after the untimed warm-up ones), batch size 1.
RECORD_LATENCY_REPEATS = 10
RECORD_LATENCY_WARMUP = 3


def flops_cache_dir() -> Path:
    """Where FLOP counts are cached: ``$RRSIS_BENCH_CACHE/flops`` (default ``~/.cache/rrsis_bench/flops``)."""
    return Path(os.environ.get("RRSIS_BENCH_CACHE", "~/.cache/rrsis_bench")).expanduser() / "flops"


#: Bumped whenever :func:`count_forward_flops` changes what it counts, so cached counts are not reused.
FLOP_COUNT_VERSION = 3


def _flops_key(method_config: dict[str, Any], image_size: int, max_tokens: int) -> str:
    identity = {"method": method_config, "image_size": image_size, "max_tokens": max_tokens,
                "torch": torch.__version__, "convention": FLOP_CONVENTION, "version": FLOP_COUNT_VERSION}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def run_efficiency(model: torch.nn.Module, method_config: dict[str, Any], *, image_size: int, max_tokens: int,
                   device: torch.device, channels_last: bool = False,
                   build: Callable[[], torch.nn.Module] | None = None) -> dict[str, Any]:
    """The record's ``efficiency`` block for a trained ``model``: parameters, forward FLOPs at the run's
    input size (counted once per method config and input size, then read from :func:`flops_cache_dir`),
    and the batch-1 inference latency on ``device`` (measured every time: it depends on the machine).

    FLOPs are counted on a fresh model from ``build`` (default: ``model`` itself): a trained model
    may hold run-time caches (a frozen text encoder's features) that would hide part of its work.
    """
    from rrsis_bench.engine.evaluator import to_device

    batch = to_device(dummy_batch(1, image_size, max_tokens, torch.device("cpu"), declared_inputs(model)),
                      device, channels_last)
    key = _flops_key(method_config, image_size, max_tokens)
    cache_file = flops_cache_dir() / f"{key}.json"
    cached = None
    if cache_file.is_file():
        try:
            cached = json.loads(cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cached = None  # a damaged cache entry is counted again and rewritten
    if cached is None or not isinstance(cached.get("flops"), int):
        fresh = build().to(device) if build is not None else model
        flops, _, counted_on = count_forward_flops(fresh, batch)
        del fresh
        cached = {"flops": flops, "counted_on": counted_on}
        atomic_write_json(cache_file, cached)
        from_cache = False
    else:
        from_cache = True
    latency = forward_latency(model, batch, device, repeats=RECORD_LATENCY_REPEATS, warmup=RECORD_LATENCY_WARMUP)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "flops": cached["flops"], "gflops": round(cached["flops"] / 1e9, 4),
        "flop_convention": FLOP_CONVENTION, "flops_counted_on": cached["counted_on"],
        "flops_from_cache": from_cache,
        "input": {"image_size": image_size, "max_tokens": max_tokens, "batch_size": 1},
        "latency_ms": latency,
        "latency_device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
    }
