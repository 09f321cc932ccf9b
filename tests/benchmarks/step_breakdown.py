"""Where a training step and an evaluation pass of a `rrsis-bench run` configuration spend their time.

    python tests/benchmarks/step_breakdown.py [key=value ...] [--steps 40] [--json OUT]

Composes the run configuration exactly as `rrsis-bench run key=value ...` would (default: the embedded
default), builds the method and the training/validation data the same way, then times ``--steps``
optimizer steps after 5 warm-up steps, split into data (next batch of a DataLoader with
trainer.num_workers, moved to the device), forward (forward + loss), backward and optimizer (clipping,
AdamW step), and the evaluation of 256 validation samples (per image, and its data share). The
figures are milliseconds per step / per image on this machine; `--json` appends one JSON object per
call to OUT (docs/figures/step-breakdown.json). Deterministic in what it computes, not in how long
it takes: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from rrsis_bench import tasks
from rrsis_bench.config import compose_run_config
from rrsis_bench.data.pipeline import TransformedDataset, build_encoder, collate
from rrsis_bench.engine.evaluator import autocast, to_device
from rrsis_bench.engine.trainer import TrainerSettings, build_optimizer, seed_everything
from rrsis_bench.nn.text import build_tokenizer

WARMUP = 5
EVAL_SAMPLES = 256


def code_version() -> str:
    """The commit of the checkout this file is in (``+dirty`` when it has uncommitted changes)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def measure(overrides: list[str], steps: int) -> dict:
    cfg = compose_run_config(overrides)
    settings = TrainerSettings.from_config(cfg["trainer"])
    seed_everything(int(cfg["seed"]), settings.deterministic)
    device = torch.device("cpu")
    model = tasks.build_method(cfg["method"])
    train, val = tasks.load_split(cfg["data"], "train"), tasks.load_split(cfg["data"], "val")
    encode = build_encoder(build_tokenizer(model.spec.tokenizer), cfg["data"], train)
    train_set = TransformedDataset(train, tasks.make_transform(model, cfg["data"], encode, with_gt=False))
    val_set = TransformedDataset(val, tasks.make_transform(model, cfg["data"], encode, with_gt=True))
    loader = DataLoader(train_set, batch_size=settings.batch_size, shuffle=True, collate_fn=collate, drop_last=True,
                        num_workers=settings.num_workers, generator=torch.Generator().manual_seed(0))
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, settings)
    phases = dict.fromkeys(("data", "forward", "backward", "optimizer"), 0.0)
    batches = iter(loader)
    model.train()
    for i in range(WARMUP + steps):
        t0 = time.perf_counter()
        batch = to_device(next(batches), device, settings.channels_last)
        t1 = time.perf_counter()
        with autocast(device, settings.amp):
            loss = model.loss(model(batch), batch)["loss"]
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], settings.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if i >= WARMUP:
            for name, (a, b) in zip(phases, ((t0, t1), (t1, t2), (t2, t3), (t3, t4)), strict=True):
                phases[name] += b - a
    step_ms = {name: round(seconds / steps * 1000, 1) for name, seconds in phases.items()}
    total = sum(phases.values()) / steps
    model.eval()
    subset = Subset(val_set, range(min(EVAL_SAMPLES, len(val_set))))
    eval_loader = DataLoader(subset, batch_size=settings.eval_batch_size, collate_fn=collate)
    data_s = 0.0
    start = time.perf_counter()
    with torch.no_grad():
        batches = iter(eval_loader)
        for _ in range(len(eval_loader)):
            t0 = time.perf_counter()
            batch = to_device(next(batches), device, settings.channels_last)
            data_s += time.perf_counter() - t0
            with autocast(device, settings.amp):
                model(batch)
    eval_s = time.perf_counter() - start
    return {
        "overrides": overrides, "method": cfg["method"]["name"], "code": code_version(),
        "batch_size": settings.batch_size, "image_size": cfg["data"]["image_size"], "amp": settings.amp,
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(), "steps": steps,
        "step_ms": {**step_ms, "total": round(total * 1000, 1)},
        "train_images_per_s": round(settings.batch_size / total, 1),
        "epoch_train_s_estimate": round(len(train) // settings.batch_size * total, 1),
        "eval_ms_per_image": round(eval_s / len(subset) * 1000, 2),
        "eval_data_ms_per_image": round(data_s / len(subset) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="key=value overrides, as for rrsis-bench run")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--json", type=Path, help="append the result as one JSON line to this file")
    args = parser.parse_args()
    result = measure(args.overrides, args.steps)
    print(json.dumps(result))
    if args.json is not None:
        with args.json.open("a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
