"""`rrsis-bench profile`: parameters, FLOPs, latency and peak memory of a method, as `run` builds it."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

# Factory keys that load pretrained weights. Counts, FLOPs and latency do not depend on the weights,
# so profile builds with random init unless asked (no weights needed, nothing downloaded).
WEIGHT_KEYS = ("pretrained", "text_pretrained")


def profile_options(method: str, overrides: dict[str, Any], pretrained: bool) -> dict[str, Any]:
    """The factory keyword arguments of ``method``: its config as ``rrsis-bench run method=NAME`` composes
    it, with the weight-loading keys turned off unless ``pretrained``, then the user's overrides."""
    from rrsis_bench.config import method_config

    options = {k: v for k, v in method_config(method).items() if k != "name"}
    if not pretrained:
        options.update({key: False for key in WEIGHT_KEYS if key in options})
    options.update(overrides)
    return options


def profile(method: str, overrides: dict[str, Any], *, pretrained: bool, image_size: int, batch_size: int,
            max_tokens: int, device: str, repeats: int, out: str, console: Console) -> dict[str, Any]:
    from rrsis_bench.io import atomic_write_json
    from rrsis_bench.profile import profile_method

    options = profile_options(method, overrides, pretrained)
    result = profile_method(method, image_size=image_size, batch_size=batch_size, max_tokens=max_tokens,
                            device=device, repeats=repeats, **options)
    result["weights"] = "pretrained" if pretrained else "random init"
    table = Table(title=f"rrsis-bench profile: {result['method']} ({result['weights']})")
    for column in ("params", "trainable", "GFLOPs", "GMACs", "latency (ms)", "peak memory (MB)", "device"):
        table.add_column(column)
    table.add_row(f"{result['params']:,}", f"{result['trainable_params']:,}", f"{result['gflops']:.2f}",
                  f"{result['gmacs']:.2f}", f"{result['latency_ms']['median']:.1f}", f"{result['peak_memory_mb']:.0f}",
                  result["device"])
    console.print(table)
    if out:
        atomic_write_json(out, result)
        console.print(f"Wrote {out}")
    return result
