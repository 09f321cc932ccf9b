"""How far bf16 autocast moves a method's logits from fp32 (``trainer.amp=true`` vs false), on CPU.

For each case a seeded model (random init for ``fianet``/``lavt``; ``fianet_lite`` with its bundled
pretrained backbone and text encoder, the new layers seeded) in eval mode runs one dummy batch
(``rrsis_bench.profile.dummy_batch``: random image, a full-length expression) in fp32 and under
``torch.autocast("cpu", torch.bfloat16)``. Printed per case, as one JSON line: the largest and the
mean absolute logit difference, the mean absolute fp32 logit (the scale), and the share of pixels
whose predicted class (sign of the logit) differs. Run::

    python tests/benchmarks/bf16_deviation.py                       # fianet, lavt at 480 b1; fianet_lite at 128 b8
    python tests/benchmarks/bf16_deviation.py --case fianet_lite:128:8

The metric deviation on a trained checkpoint is measured with the CLI (see docs/performance.md):
``rrsis-bench eval checkpoint=RUN split=test trainer.amp=true`` against ``trainer.amp=false``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

CASES = ("fianet:480:1", "lavt:480:1", "fianet_lite:128:8")


def deviation(method: str, image_size: int, batch_size: int, seed: int = 0) -> dict[str, Any]:
    import torch

    from rrsis_bench.profile import dummy_batch
    from rrsis_bench.registry import create_method

    full_size = not method.startswith("test_") and not method.endswith("_lite")
    overrides = {"pretrained": False, "text_pretrained": False} if full_size else {}
    torch.manual_seed(seed)
    model = create_method(method, **overrides).eval()
    batch = dummy_batch(batch_size, image_size, 20, torch.device("cpu"), model.spec.inputs)
    with torch.no_grad():
        start = time.perf_counter()
        fp32 = model(batch).float()
        fp32_s = time.perf_counter() - start
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(batch).float()
        bf16_s = time.perf_counter() - start
    diff = (bf16 - fp32).abs()
    return {
        "method": method, "image_size": image_size, "batch_size": batch_size, "seed": seed,
        "init": "bundled pretrained backbone + text encoder, seeded new layers" if method.endswith("_lite")
        else "random (seeded)",
        "max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "mean_abs_fp32_logit": float(fp32.abs().mean()),
        "sign_flip_share": float(((bf16 > 0) != (fp32 > 0)).float().mean()),
        "forward_s": {"fp32": round(fp32_s, 3), "bf16": round(bf16_s, 3)}, "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", help="method:image_size:batch_size (repeatable)")
    args = parser.parse_args(argv)
    for case in args.case or CASES:
        method, size, batch = case.split(":")
        print(json.dumps(deviation(method, int(size), int(batch))), flush=True)


if __name__ == "__main__":
    main()
