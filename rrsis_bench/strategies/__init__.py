"""Training strategies: how a method is trained, as a registered kind (entry-point group
``rrsis_bench.strategies``; select one with ``strategy=NAME``, configure it in ``conf/strategy/``).

A strategy sees the :class:`~rrsis_bench.engine.trainer.Trainer` and decides, stage by stage, what
the trainer iterates over and what one training step does. The trainer keeps everything else: data
loading, validation, best-epoch selection, checkpoints and ``resume``, logging.

The contract (every hook has a default that reproduces the plain loop, so a strategy overrides only
what it changes):

- :meth:`Strategy.check_data` sees which training samples are weak (their expression replaced by the
  class name, ``data.weak``) before anything is built, and refuses a setting it cannot train.
- :meth:`Strategy.stages` lists the stages: a name, a number of epochs, which training samples it
  iterates over (``all``, ``accurate``, ``weak``) and whether its epochs are validated and may become
  the best checkpoint. Stage boundaries appear in the record, ``train_log.csv`` and the history.
- :meth:`Strategy.setup` runs once the model is on its device; :meth:`Strategy.begin_stage` builds
  the stage's optimizers (the default: the trainer's AdamW + poly schedule over the stage's steps).
- :meth:`Strategy.train_step` does one optimizer step from an iterator of micro-batches and returns a
  :class:`StepOutcome`; the default is :meth:`Trainer.plain_step`.
- :meth:`Strategy.eval_model` is the network validated and checkpointed as ``best``.
- :meth:`Strategy.state_dict` / :meth:`Strategy.load_state_dict` carry what ``resume`` needs beyond
  the model, the trainer's optimizer and the RNG (a teacher, a bank, extra optimizers); tensors and
  plain values only (the state file is read with ``weights_only=True``).
- :attr:`Strategy.ablations` names the options that switch one of its components off (``no_bank``:
  ``{"bank": False}``); the conformance tests train every one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch

from rrsis_bench.errors import UserError
from rrsis_bench.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from rrsis_bench.engine.trainer import Trainer, TrainerSettings

STRATEGIES_GROUP = "rrsis_bench.strategies"
STRATEGIES = Registry("strategy", STRATEGIES_GROUP, plural="strategies")
STAGE_DATA = ("all", "accurate", "weak")
DEFAULT_STRATEGY = "standard"


class StrategyError(UserError, ValueError):
    """A strategy cannot train the data or options it was given."""


@dataclass(frozen=True)
class Stage:
    """One stage of training: ``epochs`` passes over the ``data`` training samples (``all``,
    ``accurate`` or ``weak``); ``select``: validate after every epoch, and the stage's epochs are the
    candidates for the best checkpoint."""

    name: str
    epochs: int
    data: str = "all"
    select: bool = True

    def __post_init__(self) -> None:
        if self.data not in STAGE_DATA:
            raise ValueError(f"Stage {self.name!r}: data must be one of {STAGE_DATA}, not {self.data!r}.")
        if self.epochs < 0:
            raise ValueError(f"Stage {self.name!r}: epochs must be >= 0, not {self.epochs}.")


@dataclass
class StepOutcome:
    """What one optimizer step reports: the loss, its named terms, and how many samples it saw."""

    loss: float
    terms: dict[str, float] = field(default_factory=dict)
    samples: int = 0


class Strategy:
    """The plain loop (``standard``); subclasses override the hooks they change (module docstring)."""

    name = DEFAULT_STRATEGY
    #: Training samples with weak expressions: "refuse" (standard), "allow", "require" (there must be some).
    weak_samples = "refuse"
    #: Ablation name -> the options that switch one component off (``strategy.KEY=VALUE``); none here.
    ablations: Mapping[str, Mapping[str, Any]] = MappingProxyType({})

    def __init__(self, **options: Any) -> None:
        if options:
            raise StrategyError(
                f"strategy={self.name} takes no options (got {', '.join(f'strategy.{k}' for k in sorted(options))})."
            )
        self.options: dict[str, Any] = {}

    # -- data and stages -------------------------------------------------------------------------
    def check_data(self, weak: Sequence[bool]) -> None:
        """Refuse a training set this strategy cannot train (``weak[i]``: sample ``i`` reads its class name)."""
        num_weak = sum(bool(w) for w in weak)
        if self.weak_samples == "refuse" and num_weak:
            raise StrategyError(
                f"strategy={self.name} trains on accurate expressions, but {num_weak} of {len(weak)} training samples "
                "read their class name (data.weak.accurate_ratio < 1 or data.weak.split_file); choose "
                "strategy=naive_wrel (train on all of them), strategy=only_accurate or strategy=lrb_wrel."
            )
        if self.weak_samples == "require" and not num_weak:
            raise StrategyError(
                f"strategy={self.name} needs training samples with weak expressions and there are none; set "
                "data.weak.accurate_ratio below 1 (or data.weak.split_file), or use strategy=standard."
            )
        if num_weak == len(weak) and any(stage.data == "accurate" for stage in self.stages_for_check()):
            raise StrategyError(
                f"strategy={self.name} trains on the accurate samples and every training sample is weak "
                "(data.weak.accurate_ratio=0); raise the ratio."
            )

    def stages_for_check(self) -> list[Stage]:
        """The stages without trainer settings (their data kinds are what :meth:`check_data` needs)."""
        return [Stage("train", 1, "all")]

    def stages(self, settings: TrainerSettings) -> list[Stage]:
        return [Stage("train", settings.epochs, "all")]

    # -- training ------------------------------------------------------------------------------
    def setup(self, trainer: Trainer) -> None:
        """Called once, after the model is on its device and before any checkpoint is restored."""

    def begin_stage(self, trainer: Trainer, index: int, *, resuming: bool) -> None:
        """Build the stage's optimizers; ``resuming``: the state is restored right after this call."""
        trainer.optimizer, trainer.scheduler = trainer.build_optimizer(trainer.stage_steps(index))

    def end_stage(self, trainer: Trainer, index: int) -> None:
        """Called after the last epoch of stage ``index`` (not when a run resumes after it)."""

    def train_step(self, trainer: Trainer, batches: Iterator[dict], *, stage: int, progress: float) -> StepOutcome:
        """One optimizer step from ``trainer.settings.accumulate`` micro-batches (already on the device).
        ``progress`` is the fractional epoch within the stage at the start of the step."""
        return trainer.plain_step(batches)

    def after_epoch(self, trainer: Trainer, index: int) -> dict[str, float]:
        """Called after every epoch of stage ``index``, before validation; figures it returns join the
        epoch's history entry."""
        return {}

    def eval_model(self, trainer: Trainer) -> torch.nn.Module:
        """The network that is validated, selected and saved as ``best``."""
        return trainer.model

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise StrategyError(f"strategy={self.name} has no state, but the checkpoint carries {sorted(state)}.")

    def describe(self) -> dict[str, Any]:
        """The record's ``strategy`` block, without the stage figures the trainer adds."""
        return {"name": self.name, "options": dict(self.options)}


class OnlyAccurate(Strategy):
    """Train on the accurate subset only: the weak samples are dropped (LRB-WREL's "only accurate")."""

    name = "only_accurate"
    weak_samples = "allow"

    def stages_for_check(self) -> list[Stage]:
        return [Stage("train", 1, "accurate")]

    def stages(self, settings: TrainerSettings) -> list[Stage]:
        return [Stage("train", settings.epochs, "accurate")]


class NaiveWREL(Strategy):
    """Train on every sample; weak ones read their class name as the expression (LRB-WREL's "Naive-WREL")."""

    name = "naive_wrel"
    weak_samples = "allow"


def create_strategy(name: str, **options: Any) -> Strategy:
    """The strategy registered as ``name``, built with ``options`` (``conf/strategy/<name>.yaml``)."""
    factory = STRATEGIES.get(name)
    try:
        strategy = factory(**options)
    except TypeError as exc:
        raise StrategyError(f"strategy={name}: {exc}; see conf/strategy/{name}.yaml for its options.") from exc
    if not isinstance(strategy, Strategy):
        raise StrategyError(f"The strategy {name!r} must build a rrsis_bench.strategies.Strategy, not {type(strategy)}.")
    return strategy


def build_strategy(config: dict[str, Any] | None) -> Strategy:
    """The strategy of a run's ``strategy`` config node (``{"name": ..., **options}``; None: standard)."""
    config = dict(config or {"name": DEFAULT_STRATEGY})
    name = config.pop("name", DEFAULT_STRATEGY)
    return create_strategy(name, **config)


def list_strategies(pattern: str | None = None) -> list[str]:
    return STRATEGIES.names(pattern)
