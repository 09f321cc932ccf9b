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
import dataclasses
import functools
import math
import os
import random
import time
import types
import typing
from collections.abc import Iterator, Sequence
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
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from rrsis_bench.engine import checkpoint as ckpt
from rrsis_bench.engine import distributed as D
from rrsis_bench.engine.evaluator import autocast, build_eval_loader, evaluate, to_device
from rrsis_bench.errors import UserError
from rrsis_bench.io import reporting_disk_full
from rrsis_bench.method import decay_groups
from rrsis_bench.strategies import DEFAULT_STRATEGY, StepOutcome, Strategy

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
    checkpointing: bool = False

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
    stages: list[dict[str, Any]] = field(default_factory=list)  # per stage: name, data, epochs, steps, samples
    phases: dict[str, float] = field(default_factory=dict)  # seconds of training per phase (PhaseTimer)


class PhaseTimer:
    """Seconds spent per phase of the training steps: ``data`` (next batch, moved to the device),
    ``forward`` (forward + loss), ``backward``, ``optimizer`` (clipping, AdamW step, schedule step).
    On CUDA each phase ends with a synchronisation, so a phase's seconds are its device time, not the
    time it took to queue the kernels. Time of a training loop outside these phases (a strategy's own
    work, logging) is what ``FitResult.train_s`` has beyond their sum."""

    PHASES = ("data", "forward", "backward", "optimizer")

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = dict.fromkeys(self.PHASES, 0.0)

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def rounded(self, train_s: float) -> dict[str, float]:
        """Each phase's seconds, plus ``other``: ``train_s`` not spent in any phase."""
        out = {k: round(v, 2) for k, v in self.seconds.items()}
        out["other"] = round(max(0.0, train_s - sum(self.seconds.values())), 2)
        return out


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
    """``train_log.csv``: one row per optimizer step (rank 0 only); ``stage`` names the strategy's stage."""

    COLUMNS = ["epoch", "step", "lr", "loss", "terms", "samples_per_s", "elapsed_s", "stage"]

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
              elapsed: float, stage: str = "train") -> None:
        detail = ";".join(f"{k}={v:.5f}" for k, v in terms.items())
        with reporting_disk_full(self.path):
            self.writer.writerow([epoch, step, f"{lr:.6e}", f"{loss:.6f}", detail, f"{sps:.2f}", f"{elapsed:.2f}",
                                  stage])
            self.file.flush()

    def close(self) -> None:
        with reporting_disk_full(self.path):
            self.file.close()


class Trainer:
    """Train ``model`` on ``train_set``, pick the best epoch on ``val_set``, checkpoint into ``run_dir``.

    How the model is trained is the ``strategy``'s (:mod:`rrsis_bench.strategies`; default the plain
    loop): its stages, what a step does, which network is validated. ``weak[i]`` says whether training
    sample ``i`` reads its class name instead of its expression (``data.weak``); stages that iterate
    over the ``accurate`` or ``weak`` samples only see those.
    """

    def __init__(self, model: torch.nn.Module, train_set: Dataset, val_set: Dataset, settings: TrainerSettings,
                 *, run_dir: str | os.PathLike, seed: int, collate_fn, console: Console | None = None,
                 strategy: Strategy | None = None, weak: Sequence[bool] | None = None) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.model = model.to(self.device)
        if settings.checkpointing:  # before DDP wraps the model
            if not hasattr(self.model, "set_checkpointing"):
                raise TrainerSettingError(
                    f"trainer.checkpointing=true needs a method with set_checkpointing(enabled) (the LAVT family: "
                    f"lavt, fianet, fianet_lite, alignformer); {type(self.model).__name__} has none: set "
                    "trainer.checkpointing=false.")
            self.model.set_checkpointing(True)
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
        self.strategy = strategy or Strategy()
        self.weak = [bool(w) for w in weak] if weak is not None else [False] * len(train_set)
        if len(self.weak) != len(train_set):
            raise ValueError(f"weak has {len(self.weak)} flags for {len(train_set)} training samples.")
        self.strategy.check_data(self.weak)
        self.stages = self.strategy.stages(settings)
        if not self.stages or not any(stage.select and stage.epochs for stage in self.stages):
            raise ValueError(f"strategy={self.strategy.name} has no stage that selects a checkpoint.")
        self._loaders = {kind: self._build_loader(kind) for kind in {stage.data for stage in self.stages if stage.epochs}}
        self.val_loader = build_eval_loader(val_set, settings.eval_batch_size, settings.num_workers, collate_fn)
        # Kept for the single-stage case: the figures of the first stage.
        self.steps_per_epoch = self.stage_steps_per_epoch(0)
        self.total_steps = sum(self.stage_steps(i) for i in range(len(self.stages)))

        self.wrapped = self.model
        if D.is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(
                self.model, device_ids=ids,
                find_unused_parameters=D.find_unused_parameters(self.model, settings.find_unused_parameters),
            )
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.timer = PhaseTimer(self.device)
        self.strategy.setup(self)
        # Set once fit() has restored any checkpoint and starts its loop: a failure after that point
        # leaves a run folder worth keeping (and resuming); one before it does not.
        self.training_started = False

    # -- data per stage --------------------------------------------------------------------------
    def sample_indices(self, kind: str) -> list[int]:
        """Indices of the training samples a stage with ``data=kind`` iterates over."""
        if kind == "all":
            return list(range(len(self.train_set)))
        return [i for i, weak in enumerate(self.weak) if weak == (kind == "weak")]

    def _build_loader(self, kind: str) -> tuple[DistributedSampler, DataLoader]:
        indices = self.sample_indices(kind)
        subset = self.train_set if kind == "all" else Subset(self.train_set, indices)
        sampler = DistributedSampler(subset, num_replicas=D.world_size(), rank=D.rank(), shuffle=True, seed=self.seed,
                                     drop_last=False)
        loader = DataLoader(subset, batch_size=self.settings.batch_size, sampler=sampler, drop_last=True,
                            num_workers=self.settings.num_workers, collate_fn=self.collate_fn)
        if len(loader) == 0:
            which = "training split" if kind == "all" else f"{kind} part of the training split"
            raise ValueError(
                f"The {which} has {len(subset)} samples per process, fewer than one batch of "
                f"{self.settings.batch_size}; lower trainer.batch_size."
            )
        return sampler, loader

    def stage_steps_per_epoch(self, index: int) -> int:
        """Optimizer steps in one epoch of stage ``index``."""
        stage = self.stages[index]
        if not stage.epochs:
            return 0
        batches = len(self._loaders[stage.data][1])
        if self.settings.max_steps_per_epoch is not None:
            batches = min(batches, self.settings.max_steps_per_epoch * self.settings.accumulate)
        return max(1, batches // self.settings.accumulate)

    def stage_steps(self, index: int) -> int:
        return self.stage_steps_per_epoch(index) * self.stages[index].epochs

    def build_optimizer(self, total_steps: int, *, lr: float | None = None):
        """AdamW over the model's parameter groups with the poly schedule over ``total_steps``."""
        settings = self.settings if lr is None else dataclasses.replace(self.settings, lr=lr)
        optimizer = build_optimizer(self.model, settings)
        return optimizer, poly_schedule(optimizer, total_steps, settings.poly_power)

    # -- checkpoints ---------------------------------------------------------------------------
    def _save(self, name: str, *, state: dict | None, meta: dict, model: torch.nn.Module | None = None) -> None:
        if self.main:
            ckpt.save_checkpoint(self.ckpt_dir / name, model or self.model, state=state, meta=meta)
        D.barrier()

    def _trainer_state(self, position: dict, best: dict, history: list) -> dict:
        """Everything ``resume`` needs; called on every rank (it gathers the RNG states)."""
        return {
            **position, "best": best, "history": history,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "strategy": {"name": self.strategy.name, "state": self.strategy.state_dict()},
            # every rank's RNG state, so each process continues its own random stream on resume
            "rng": D.all_gather_objects(ckpt.rng_state()), "world_size": D.world_size(),
        }

    def _read_checkpoint(self) -> dict:
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
        saved = (state.get("strategy") or {}).get("name", DEFAULT_STRATEGY)
        if saved != self.strategy.name:
            raise ckpt.ResumeError(
                f"The checkpoint {folder} was written by strategy={saved} and this run is strategy="
                f"{self.strategy.name}; resume with the strategy the run started with."
            )
        state.setdefault("stage", 0)
        state.setdefault("stage_epoch", state["epoch"])  # checkpoints of one-stage runs before strategies
        return state

    def _restore_into_stage(self, state: dict) -> None:
        """Load the optimizer, the strategy's state and the RNG of a checkpoint into the current stage."""
        if state.get("optimizer") is not None and self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        self.strategy.load_state_dict((state.get("strategy") or {}).get("state") or {})
        ckpt.set_rng_state(state["rng"][D.rank()])

    # -- loop ----------------------------------------------------------------------------------
    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=self.console, disable=not (self.settings.progress and self.main), transient=False,
            # Rich redraws from a thread; at its default 10 Hz that thread took about a tenth of a 2-core
            # CPU's training time. Twice a second on a terminal; elsewhere (a log file) nothing is drawn
            # until the bar stops, so no redraw thread at all.
            refresh_per_second=2, auto_refresh=self.console.is_terminal,
        )

    def fit(self, resume: bool = False) -> FitResult:
        """Run every stage of the strategy; the best checkpoint comes from the stages that select."""
        s = self.settings
        start_stage, start_stage_epoch, epoch, step = 0, 0, 0, 0
        best, history = {"epoch": -1, "metrics": {}}, []
        state = None
        if resume:
            state = self._read_checkpoint()
            start_stage, start_stage_epoch = state["stage"], state["stage_epoch"]
            epoch, step, best, history = state["epoch"], state["step"], state["best"], state["history"]
            if start_stage_epoch >= self.stages[start_stage].epochs:  # saved after a stage's last epoch
                start_stage, start_stage_epoch = start_stage + 1, 0
                # the next stage begins as it would have: its begin_stage sees the end of the last one
            if self.main:
                self.console.print(f"Resuming after epoch {epoch} (step {step}) from {self.ckpt_dir / LAST}")
        self.training_started = True
        log = StepLog(self.run_dir / "train_log.csv", step if resume else None) if self.main else None
        total_epochs = sum(stage.epochs for stage in self.stages)
        train_s = eval_s = 0.0
        samples = 0
        stage_figures = [{"name": st.name, "data": st.data, "epochs": st.epochs, "steps": self.stage_steps(i),
                          "samples": len(self.sample_indices(st.data)), "select": st.select}
                         for i, st in enumerate(self.stages)]
        try:
            for index in range(start_stage, len(self.stages)):
                stage = self.stages[index]
                resuming = state is not None and index == state["stage"]
                if not stage.epochs:
                    continue
                self.strategy.begin_stage(self, index, resuming=resuming)
                if state is not None:
                    # after the stage was rebuilt: the optimizer (if the checkpoint is of this stage),
                    # the strategy's state and the RNG continue where the checkpoint left them
                    if not resuming:
                        state["optimizer"] = None
                    self._restore_into_stage(state)
                    state = None
                first = start_stage_epoch if index == start_stage else 0
                for stage_epoch in range(first, stage.epochs):
                    t0 = time.perf_counter()
                    step, seen, mean_loss = self._train_epoch(index, stage_epoch, epoch, step, log, total_epochs)
                    train_s += time.perf_counter() - t0
                    samples += seen
                    epoch += 1
                    record = {"epoch": epoch, "stage": stage.name, "step": step, "train_loss": mean_loss,
                              **self.strategy.after_epoch(self, index)}
                    improved = False
                    if stage.select:
                        t1 = time.perf_counter()
                        metrics = self._validate(epoch, total_epochs)
                        eval_s += time.perf_counter() - t1
                        record.update({f"val_{k}": v for k, v in metrics.items()})
                        if s.select_metric not in metrics:
                            raise ValueError(
                                f"trainer.select_metric={s.select_metric!r} is not a metric: {sorted(metrics)}.")
                        improved = metrics[s.select_metric] > best["metrics"].get(s.select_metric, -math.inf)
                        if improved:
                            best = {"epoch": epoch, "metrics": metrics}
                            self._save(BEST, state=None, model=self.strategy.eval_model(self),
                                       meta={"epoch": epoch, "step": step, "stage": stage.name,
                                             "val_metrics": metrics})
                    history.append(record)
                    if stage_epoch == stage.epochs - 1:
                        self.strategy.end_stage(self, index)
                    position = {"epoch": epoch, "step": step, "stage": index, "stage_epoch": stage_epoch + 1}
                    self._save(LAST, state=self._trainer_state(position, best, history),
                               meta={"epoch": epoch, "step": step, "stage": stage.name})
                    if self.main:
                        shown = (f"  val mIoU {record['val_mIoU']:.2f}  oIoU {record['val_oIoU']:.2f}"
                                 f"{'  (best)' if improved else ''}") if stage.select else ""
                        where = f"[{stage.name}] " if len(self.stages) > 1 else ""
                        self.console.print(f"{where}epoch {epoch}/{total_epochs}  loss {mean_loss:.4f}{shown}")
        finally:
            if log is not None:
                log.close()
        return FitResult(best["epoch"], best["metrics"], history, step, train_s, eval_s, samples, stage_figures,
                         self.timer.rounded(train_s))

    def _validate(self, epoch: int, total_epochs: int) -> dict[str, float]:
        s = self.settings
        with self._progress() as progress:
            task = progress.add_task(f"val {epoch}/{total_epochs}", total=self._eval_total(), info="")
            metrics, _ = evaluate(
                self.strategy.eval_model(self), self.val_loader, self.device, amp=self.amp,
                channels_last=s.channels_last, limit=s.max_eval_samples, progress=functools.partial(progress.advance, task),
            )
        return metrics

    def _eval_total(self) -> int:
        per_rank = self.val_loader.sampler.num_samples
        return per_rank if self.settings.max_eval_samples is None else min(per_rank, self.settings.max_eval_samples)

    def batches(self, iterator: Iterator[dict]) -> Iterator[dict]:
        """The next micro-batches of ``iterator``, moved to the device."""
        for _ in range(self.settings.accumulate):
            with self.timer("data"):
                batch = to_device(next(iterator), self.device, self.settings.channels_last)
            yield batch

    def forward_loss(self, model: torch.nn.Module, batch: dict, extra=None) -> dict[str, torch.Tensor]:
        """``model``'s loss terms on ``batch`` under the run's autocast (the method's own loss);
        ``extra(output, batch)`` may add named terms, which join ``loss``."""
        with autocast(self.device, self.amp):
            output = model(batch)  # bare logits or a MethodOutput: the method's loss reads it
            loss_of = self.model.loss if model is self.wrapped else model.loss
            terms = dict(loss_of(output, batch))
            if extra is not None:
                for name, value in extra(output, batch).items():
                    terms[name] = value
                    terms["loss"] = terms["loss"] + value
            return terms

    def check_finite(self, loss: torch.Tensor, what: str = "loss") -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"The {what} is {loss.item()} at step {self._step + 1}; lower trainer.lr or turn on trainer.grad_clip."
            )

    def plain_step(self, batches: Iterator[dict], prepare=None, extra=None) -> StepOutcome:
        """The plain optimizer step: forward and the method's loss on each micro-batch (``prepare(batch)``
        may rewrite one first, ``extra`` add loss terms: :meth:`forward_loss`), backward, clip, AdamW
        step, poly schedule step."""
        s = self.settings
        terms_sum: dict[str, float] = {}
        loss_sum = 0.0
        seen = 0
        for micro, batch in enumerate(batches):
            if prepare is not None:
                batch = prepare(batch)
            sync = D.is_distributed() and micro != s.accumulate - 1
            with self.wrapped.no_sync() if sync else contextlib.nullcontext():
                with self.timer("forward"):
                    terms = self.forward_loss(self.wrapped, batch, extra)
                    loss = terms["loss"] / s.accumulate
                    self.check_finite(loss)
                with self.timer("backward"):
                    loss.backward()
            loss_sum += float(loss.detach())
            for k, v in terms.items():
                if k != "loss":
                    terms_sum[k] = terms_sum.get(k, 0.0) + float(v) / s.accumulate
            seen += batch["image"].shape[0]
        with self.timer("optimizer"):
            if s.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None],
                                               s.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
        return StepOutcome(loss_sum, terms_sum, seen)

    def _train_epoch(self, index: int, stage_epoch: int, epoch: int, step: int, log: StepLog | None,
                     total_epochs: int) -> tuple[int, int, float]:
        """One epoch of stage ``index`` (its ``stage_epoch``-th; ``epoch`` epochs done before it)."""
        stage = self.stages[index]
        sampler, loader = self._loaders[stage.data]
        self.model.train()
        sampler.set_epoch(epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        losses: list[float] = []
        seen = 0
        steps = self.stage_steps_per_epoch(index)
        t0 = time.perf_counter()
        with self._progress() as progress:
            label = f"{stage.name} " if len(self.stages) > 1 else "train "
            task = progress.add_task(f"{label}{epoch + 1}/{total_epochs}", total=steps, info="")
            iterator = iter(loader)
            for i in range(steps):
                self._step = step
                lr = self.current_lr()
                outcome = self.strategy.train_step(self, self.batches(iterator), stage=index,
                                                   progress=stage_epoch + i / steps)
                step += 1
                seen += outcome.samples
                losses.append(outcome.loss)
                elapsed = time.perf_counter() - t0
                sps = seen * D.world_size() / max(elapsed, 1e-9)
                progress.update(task, advance=1, info=f"loss {outcome.loss:.4f}  {sps:.1f} img/s")
                if log is not None and (step % self.settings.log_every == 0 or step == self.total_steps):
                    log.write(epoch + 1, step, lr, outcome.loss, outcome.terms, sps, elapsed, stage.name)
        return step, seen * D.world_size(), float(np.mean(losses)) if losses else float("nan")

    def current_lr(self) -> float:
        """The learning rate of the next step: the trainer's optimizer's first group, else the strategy's."""
        if self.optimizer is not None:
            return self.optimizer.param_groups[0]["lr"]
        return float(getattr(self.strategy, "current_lr", lambda: float("nan"))())
