"""The training loop: one code path from a laptop CPU to ``torchrun`` over many GPUs.

AdamW with the method's parameter groups, poly learning-rate decay per optimizer step, gradient
accumulation and clipping, optional bf16 autocast, a checkpoint after every epoch (weights,
optimizer, scheduler, RNG state) from which ``resume`` continues to the same final result, and
selection of the best epoch on the validation split. The engine knows nothing about a method
beyond :mod:`rrsis_bench.method`'s contract.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import math
import os
import random
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from rrsis_bench.engine import checkpoint as ckpt
from rrsis_bench.engine import distributed as D
from rrsis_bench.engine.evaluator import autocast, build_eval_loader, evaluate, to_device
from rrsis_bench.errors import UserError
from rrsis_bench.io import reporting_disk_full
from rrsis_bench.method import decay_groups

LAST = "last"
BEST = "best"


@dataclass
class TrainerSettings:
    """The ``trainer`` config group (see conf/trainer/default.yaml for what each key means)."""

    epochs: int = 5
    batch_size: int = 16
    eval_batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    poly_power: float = 0.9
    accumulate: int = 1
    grad_clip: float | None = 1.0
    amp: bool = False
    device: str = "auto"
    num_workers: int = 0
    channels_last: bool = False
    deterministic: bool = True
    max_steps_per_epoch: int | None = None
    max_eval_samples: int | None = None
    select_metric: str = "mIoU"
    progress: bool = True
    log_every: int = 1
    find_unused_parameters: bool = False

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrainerSettings:
        """Settings from the ``trainer`` config node (see :meth:`check`)."""
        return cls(**cls.check(config))

    @classmethod
    def check(cls, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` (all or some trainer keys) with its values checked against the field types (an
        int is accepted as a float, and converted); a wrong key, type or range raises
        :class:`TrainerSettingError` naming ``trainer.<key>``."""
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(config) - set(hints))
        if unknown:
            raise TrainerSettingError(
                f"Unknown trainer setting(s) {', '.join(f'trainer.{k}' for k in unknown)}; known: {sorted(hints)}."
            )
        values = {key: _checked(key, value, hints[key]) for key, value in config.items()}
        for key in ("epochs", "batch_size", "eval_batch_size", "accumulate", "log_every"):
            if key in values and values[key] < 1:
                raise TrainerSettingError(f"trainer.{key} must be at least 1, not {values[key]}.")
        return values


class TrainerSettingError(UserError, ValueError):
    """A ``trainer.*`` value of the wrong type or out of range."""


_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _checked(key: str, value: Any, hint: Any) -> Any:
    """``value`` if it has the type ``hint`` names (an int is accepted as a float), else raise
    :class:`TrainerSettingError` naming ``trainer.<key>``: a dataclass does not check types, and a
    string such as ``epochs=abc`` would otherwise fail later, deep in the loop."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)  # bool is an int subclass
    for kind in allowed:
        if (kind is type(None) and value is None) or (kind is bool and isinstance(value, bool)) \
                or (kind is str and isinstance(value, str)) or (kind is int and is_number and isinstance(value, int)):
            return value
        if kind is float and is_number:
            return float(value)
    default = TrainerSettings.__dataclass_fields__[key].default
    example = "null" if default is None else str(default).lower() if isinstance(default, bool) else default
    expected = " or ".join(_TYPE_WORDS.get(kind, getattr(kind, "__name__", str(kind))) for kind in allowed)
    raise TrainerSettingError(f"trainer.{key} must be {expected}, not {value!r}; pass e.g. trainer.{key}={example}.")


@dataclass
class FitResult:
    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    train_s: float = 0.0
    eval_s: float = 0.0
    samples: int = 0


def resolve_device(name: str) -> torch.device:
    """``auto``: this process's GPU (:func:`rrsis_bench.engine.distributed.cuda_device_index`), else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", D.cuda_device_index())
        return torch.device("cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def build_optimizer(model: torch.nn.Module, settings: TrainerSettings) -> torch.optim.Optimizer:
    """AdamW over the method's parameter groups; a group's ``lr_scale`` multiplies the base lr."""
    groups = model.param_groups(settings.weight_decay) if hasattr(model, "param_groups") else decay_groups(
        model.named_parameters(), settings.weight_decay
    )
    for group in groups:
        group["lr"] = settings.lr * group.pop("lr_scale", 1.0)
    return torch.optim.AdamW(groups, lr=settings.lr, foreach=True)


def poly_schedule(optimizer: torch.optim.Optimizer, total_steps: int, power: float):
    """lr = base × (1 − step / total)^power, stepped after every optimizer step, no warm-up."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / max(1, total_steps)) ** power
    )


class StepLog:
    """``train_log.csv``: one row per optimizer step (rank 0 only)."""

    COLUMNS = ["epoch", "step", "lr", "loss", "terms", "samples_per_s", "elapsed_s"]

    def __init__(self, path: Path, keep_until_step: int | None) -> None:
        self.path = path
        rows: list[list[str]] = []
        if keep_until_step is not None and path.is_file():  # resume: drop steps after the checkpoint
            with path.open(newline="") as f:
                rows = [r for r in list(csv.reader(f))[1:] if int(r[1]) <= keep_until_step]
        with reporting_disk_full(path):
            self.file = path.open("w", newline="")
            self.writer = csv.writer(self.file)
            self.writer.writerow(self.COLUMNS)
            self.writer.writerows(rows)
            self.file.flush()

    def write(self, epoch: int, step: int, lr: float, loss: float, terms: dict[str, float], sps: float,
              elapsed: float) -> None:
        detail = ";".join(f"{k}={v:.5f}" for k, v in terms.items())
        with reporting_disk_full(self.path):
            self.writer.writerow([epoch, step, f"{lr:.6e}", f"{loss:.6f}", detail, f"{sps:.2f}", f"{elapsed:.2f}"])
            self.file.flush()

    def close(self) -> None:
        with reporting_disk_full(self.path):
            self.file.close()


class Trainer:
    """Train ``model`` on ``train_set``, pick the best epoch on ``val_set``, checkpoint into ``run_dir``."""

    def __init__(self, model: torch.nn.Module, train_set: Dataset, val_set: Dataset, settings: TrainerSettings,
                 *, run_dir: str | os.PathLike, seed: int, collate_fn, console: Console | None = None) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.model = model.to(self.device)
        if settings.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_set, self.val_set = train_set, val_set
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.seed = seed
        self.collate_fn = collate_fn
        self.console = console or Console()
        self.main = D.is_main()
        self.amp = settings.amp

        self.sampler = DistributedSampler(
            train_set, num_replicas=D.world_size(), rank=D.rank(), shuffle=True, seed=seed, drop_last=False
        )
        self.train_loader = DataLoader(
            train_set, batch_size=settings.batch_size, sampler=self.sampler, drop_last=True,
            num_workers=settings.num_workers, collate_fn=collate_fn,
        )
        if len(self.train_loader) == 0:
            raise ValueError(
                f"The training split has {len(train_set)} samples per process, fewer than one batch of "
                f"{settings.batch_size}; lower trainer.batch_size."
            )
        self.val_loader = build_eval_loader(val_set, settings.eval_batch_size, settings.num_workers, collate_fn)
        batches = len(self.train_loader)
        if settings.max_steps_per_epoch is not None:
            batches = min(batches, settings.max_steps_per_epoch * settings.accumulate)
        self.batches_per_epoch = batches
        self.steps_per_epoch = max(1, batches // settings.accumulate)
        self.total_steps = self.steps_per_epoch * settings.epochs

        self.wrapped = self.model
        if D.is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(
                self.model, device_ids=ids,
                find_unused_parameters=D.find_unused_parameters(self.model, settings.find_unused_parameters),
            )
        self.optimizer = build_optimizer(self.model, settings)
        self.scheduler = poly_schedule(self.optimizer, self.total_steps, settings.poly_power)
        # Set once fit() has restored any checkpoint and starts its loop: a failure after that point
        # leaves a run folder worth keeping (and resuming); one before it does not.
        self.training_started = False

    # -- checkpoints ---------------------------------------------------------------------------
    def _save(self, name: str, *, state: dict | None, meta: dict) -> None:
        if self.main:
            ckpt.save_checkpoint(self.ckpt_dir / name, self.model, state=state, meta=meta)
        D.barrier()

    def _trainer_state(self, epoch: int, step: int, best: dict, history: list) -> dict:
        """Everything ``resume`` needs; called on every rank (it gathers the RNG states)."""
        return {
            "epoch": epoch, "step": step, "best": best, "history": history,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            # every rank's RNG state, so each process continues its own random stream on resume
            "rng": D.all_gather_objects(ckpt.rng_state()), "world_size": D.world_size(),
        }

    def _restore(self) -> tuple[int, int, dict, list]:
        folder = self.ckpt_dir / LAST
        if not (folder / ckpt.STATE_FILE).is_file():
            raise FileNotFoundError(
                f"resume=true but there is no checkpoint at {folder}: the run stopped before its first epoch "
                "ended, or hydra.run.dir is not the interrupted run's folder; point it there, or drop resume=true."
            )
        ckpt.load_weights(folder, self.model, self.device)
        state = ckpt.load_state(folder)
        if state["world_size"] != D.world_size():
            raise ckpt.ResumeError(
                f"The checkpoint {folder} was written by {state['world_size']} processes and this run has "
                f"{D.world_size()}; resume with the same number of processes."
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"][D.rank()])
        return state["epoch"], state["step"], state["best"], state["history"]

    # -- loop ----------------------------------------------------------------------------------
    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=self.console, disable=not (self.settings.progress and self.main), transient=False,
        )

    def fit(self, resume: bool = False) -> FitResult:
        s = self.settings
        start_epoch, step, best, history = 0, 0, {"epoch": -1, "metrics": {}}, []
        if resume:
            start_epoch, step, best, history = self._restore()
            if self.main:
                self.console.print(f"Resuming after epoch {start_epoch} (step {step}) from {self.ckpt_dir / LAST}")
        self.training_started = True
        log = StepLog(self.run_dir / "train_log.csv", step if resume else None) if self.main else None
        train_s = eval_s = 0.0
        samples = 0
        try:
            for epoch in range(start_epoch, s.epochs):
                t0 = time.perf_counter()
                step, seen, mean_loss = self._train_epoch(epoch, step, log)
                train_s += time.perf_counter() - t0
                samples += seen
                t1 = time.perf_counter()
                with self._progress() as progress:
                    task = progress.add_task(f"val {epoch + 1}/{s.epochs}", total=self._eval_total(), info="")
                    metrics, _ = evaluate(
                        self.model, self.val_loader, self.device, amp=self.amp, channels_last=s.channels_last,
                        limit=s.max_eval_samples, progress=functools.partial(progress.advance, task),
                    )
                eval_s += time.perf_counter() - t1
                record = {"epoch": epoch + 1, "step": step, "train_loss": mean_loss,
                          **{f"val_{k}": v for k, v in metrics.items()}}
                history.append(record)
                if s.select_metric not in metrics:
                    raise ValueError(f"trainer.select_metric={s.select_metric!r} is not a metric: {sorted(metrics)}.")
                improved = metrics[s.select_metric] > best["metrics"].get(s.select_metric, -math.inf)
                if improved:
                    best = {"epoch": epoch + 1, "metrics": metrics}
                    self._save(BEST, state=None, meta={"epoch": epoch + 1, "step": step, "val_metrics": metrics})
                self._save(LAST, state=self._trainer_state(epoch + 1, step, best, history),
                           meta={"epoch": epoch + 1, "step": step})
                if self.main:
                    self.console.print(
                        f"epoch {epoch + 1}/{s.epochs}  loss {mean_loss:.4f}  val mIoU {metrics['mIoU']:.2f}  "
                        f"oIoU {metrics['oIoU']:.2f}{'  (best)' if improved else ''}"
                    )
        finally:
            if log is not None:
                log.close()
        return FitResult(best["epoch"], best["metrics"], history, step, train_s, eval_s, samples)

    def _eval_total(self) -> int:
        per_rank = self.val_loader.sampler.num_samples
        return per_rank if self.settings.max_eval_samples is None else min(per_rank, self.settings.max_eval_samples)

    def _train_epoch(self, epoch: int, step: int, log: StepLog | None) -> tuple[int, int, float]:
        s = self.settings
        self.model.train()
        self.sampler.set_epoch(epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        losses: list[float] = []
        seen = 0
        t0 = time.perf_counter()
        with self._progress() as progress:
            task = progress.add_task(f"train {epoch + 1}/{s.epochs}", total=self.steps_per_epoch, info="")
            iterator = iter(self.train_loader)
            for _ in range(self.steps_per_epoch):
                terms_sum: dict[str, float] = {}
                loss_sum = 0.0
                for micro in range(s.accumulate):
                    batch = to_device(next(iterator), self.device, s.channels_last)
                    last_micro = micro == s.accumulate - 1
                    sync = D.is_distributed() and not last_micro
                    with (self.wrapped.no_sync() if sync else contextlib.nullcontext()), autocast(self.device, self.amp):
                        output = self.wrapped(batch)  # bare logits or a MethodOutput: the method's loss reads it
                        terms = self.model.loss(output, batch)
                        loss = terms["loss"] / s.accumulate
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"The loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}; lower trainer.lr "
                            "or turn on trainer.grad_clip."
                        )
                    loss.backward()
                    loss_sum += float(loss.detach())
                    for k, v in terms.items():
                        if k != "loss":
                            terms_sum[k] = terms_sum.get(k, 0.0) + float(v) / s.accumulate
                    seen += batch["image"].shape[0]
                if s.grad_clip:
                    torch.nn.utils.clip_grad_norm_(
                        [p for p in self.model.parameters() if p.grad is not None], s.grad_clip
                    )
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                lr = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step()
                step += 1
                losses.append(loss_sum)
                elapsed = time.perf_counter() - t0
                sps = seen * D.world_size() / max(elapsed, 1e-9)
                progress.update(task, advance=1, info=f"loss {loss_sum:.4f}  {sps:.1f} img/s")
                if log is not None and (step % s.log_every == 0 or step == self.total_steps):
                    log.write(epoch + 1, step, lr, loss_sum, terms_sum, sps, elapsed)
        return step, seen * D.world_size(), float(np.mean(losses)) if losses else float("nan")
