"""One training step of a method, measured in a fresh process: seconds per step and peak memory.

A step is what ``rrsis-bench run`` does per batch (see ``Trainer.plain_step``): forward, the method's
loss, backward, global grad-norm clipping at 1.0, an AdamW step over the method's parameter groups
(the trainer's ``build_optimizer``, or fused AdamW with ``--fused``), ``zero_grad(set_to_none=True)``;
the model and batch in channels-last memory format as ``trainer.channels_last=true`` (the default)
feeds them. Random init (no weights needed), seed 0, a random target mask.

Peak memory on CPU is the process peak RSS (``ru_maxrss``), which only means something for one
case per process: run each case as its own ``python tests/benchmarks/train_step.py ...``. The last
line printed is a JSON object (see :func:`measure`). Examples::

    python tests/benchmarks/train_step.py --method fianet --faithful          # the official computation
    python tests/benchmarks/train_step.py --method fianet --steps 5 --fused   # fast path, fused AdamW
    python tests/benchmarks/train_step.py --method lavt --profile /tmp/lavt   # + torch.profiler tables

``test_bench_train_step.py`` runs the four full-size cases through :func:`run_case`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GIB = 2**30


def _rss_gib() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in GiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # Linux: KiB
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / GIB
    return current, peak


def build(method: str, *, faithful: bool, image_size: int, batch_size: int, channels_last: bool = True,
          checkpointing: bool = False, seed: int = 0, **overrides: Any):
    """(model in train mode, batch) of ``method`` at random init, the batch as the trainer feeds it."""
    import torch

    from rrsis_bench.engine.evaluator import to_device
    from rrsis_bench.profile import dummy_batch
    from rrsis_bench.registry import create_method

    full_size = not method.startswith("test_") and not method.endswith("_lite")
    if full_size:
        overrides = {"pretrained": False, "text_pretrained": False, **overrides}
    torch.manual_seed(seed)
    model = create_method(method, faithful=faithful, **overrides).train()
    if checkpointing:
        model.set_checkpointing(True)
    batch = dummy_batch(batch_size, image_size, 20, torch.device("cpu"), model.spec.inputs)
    generator = torch.Generator().manual_seed(seed + 1)
    batch["mask"] = (torch.rand(batch_size, image_size, image_size, generator=generator) > 0.8).float()
    batch = to_device(batch, torch.device("cpu"), channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, batch


def make_optimizer(model, *, fused: bool = False, lr: float = 1e-4, weight_decay: float = 0.01):
    """The trainer's optimizer (``build_optimizer``); ``fused`` rebuilds it with the fused AdamW kernel."""
    import torch

    from rrsis_bench.engine.trainer import TrainerSettings, build_optimizer

    optimizer = build_optimizer(model, TrainerSettings(lr=lr, weight_decay=weight_decay))
    if fused:
        groups = [{k: v for k, v in g.items() if k not in ("foreach", "fused")} for g in optimizer.param_groups]
        optimizer = torch.optim.AdamW(groups, lr=lr, fused=True)
    return optimizer


def measure(method: str, *, faithful: bool, image_size: int = 480, batch_size: int = 1, steps: int = 3,
            warmup: int = 1, fused: bool = False, channels_last: bool = True, checkpointing: bool = False,
            amp: bool = False, profile: str | None = None) -> dict[str, Any]:
    """Build, run ``warmup`` untimed steps (the first one also records the peak RSS after each phase) and
    ``steps`` timed ones; times in s, memory in GiB."""
    import torch

    from rrsis_bench.engine.evaluator import autocast

    model, batch = build(method, faithful=faithful, image_size=image_size, batch_size=batch_size,
                         channels_last=channels_last, checkpointing=checkpointing)
    optimizer = make_optimizer(model, fused=fused)
    built_rss, built_peak = _rss_gib()

    def step() -> float:
        with autocast(torch.device("cpu"), amp):
            loss = model.loss(model(batch), batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    # Where the peak falls: peak RSS after the forward (+ loss), the backward and the optimizer step of
    # the first step (ru_maxrss only grows, so each figure is the peak up to that point).
    phases = {}
    with autocast(torch.device("cpu"), amp):
        loss = model.loss(model(batch), batch)["loss"]
    phases["forward"] = round(_rss_gib()[1], 3)
    loss.backward()
    first_loss = float(loss.detach())
    del loss
    phases["backward"] = round(_rss_gib()[1], 3)
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    phases["optimizer"] = round(_rss_gib()[1], 3)
    losses, times, cpu_times = [first_loss], [], []
    for i in range(max(warmup - 1, 0) + steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        losses.append(step())
        if i >= warmup - 1:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    rss, peak = _rss_gib()
    result = {
        "method": method, "faithful": faithful, "image_size": image_size, "batch_size": batch_size,
        "fused_adamw": fused, "channels_last": channels_last, "checkpointing": checkpointing, "amp": amp,
        "steps": steps, "warmup": warmup, "step_s": [round(t, 3) for t in times],
        "best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3),
        # CPU time of the process (all threads): steadier than wall time on a shared machine
        "cpu_s": [round(t, 3) for t in cpu_times],
        "peak_rss_gib": round(peak, 3), "peak_rss_after_gib": phases, "rss_after_build_gib": round(built_rss, 3), "rss_end_gib": round(rss, 3),
        "losses": [round(v, 6) for v in losses], "threads": torch.get_num_threads(), "torch": torch.__version__,
    }
    if profile:
        result["profile"] = profile_step(step, Path(profile))
    return result


def profile_step(step, out: Path) -> str:
    """One more step under torch.profiler (CPU, memory, module stacks); tables written under ``out``."""
    from torch.profiler import ProfilerActivity, profile, record_function

    out.mkdir(parents=True, exist_ok=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=False, with_modules=True) as prof:
        with record_function("train_step"):
            step()
    events = prof.key_averages()
    (out / "by_op.txt").write_text(events.table(sort_by="self_cpu_time_total", row_limit=40), encoding="utf-8")
    (out / "by_op_memory.txt").write_text(events.table(sort_by="self_cpu_memory_usage", row_limit=30),
                                          encoding="utf-8")
    shapes = prof.key_averages(group_by_input_shape=True)
    (out / "by_shape.txt").write_text(shapes.table(sort_by="self_cpu_time_total", row_limit=40), encoding="utf-8")
    prof.export_chrome_trace(str(out / "trace.json"))
    return str(out)


def run_case(method: str, *, faithful: bool, timeout: float = 1800, **options: Any) -> dict[str, Any]:
    """:func:`measure` in a fresh Python process (so its peak RSS is this case's alone)."""
    args = [sys.executable, str(Path(__file__).resolve()), "--method", method]
    if faithful:
        args.append("--faithful")
    if not options.pop("channels_last", True):
        args.append("--contiguous")
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                args.append(flag)
        elif value is not None:
            args += [flag, str(value)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="fianet")
    parser.add_argument("--faithful", action="store_true")
    parser.add_argument("--image-size", type=int, default=480)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--fused", action="store_true", help="fused AdamW instead of foreach")
    parser.add_argument("--contiguous", action="store_true", help="NCHW instead of channels-last")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--profile", default=None, help="folder for torch.profiler tables of one more step")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1: CPU time per step is a steady measure of work on a busy machine)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = measure(args.method, faithful=args.faithful, image_size=args.image_size, batch_size=args.batch_size,
                     steps=args.steps, warmup=args.warmup, fused=args.fused, channels_last=not args.contiguous,
                     checkpointing=args.checkpointing, amp=args.amp, profile=args.profile)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
