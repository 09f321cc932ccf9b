"""LRB-WREL (arXiv 2510.22760) as a training strategy over any registered method.

The setting: part of the training samples keep their referring expression, the rest read their class
name (``data.weak``). The strategy, as the released code does it (reference: LRB-WREL §B.5–B.7):

- **Learnable reference bank.** One entry per weak training sample: ``bank_length`` (20) vectors of
  the text encoder's word-embedding width, drawn from N(0, ``bank_init_std``²) (0.02). The class-name
  text is tokenised as usual; its PAD positions are overwritten, in order, with the sample's vectors
  and switched on in the attention mask, and the sequence goes through the text encoder as
  ``inputs_embeds``. Training only: val/test read real expressions and never touch the bank.
- **Stage 1, warm-up** (``warmup_epochs``): the method trained on the accurate samples only.
- **Stage 2, bank initialisation** (``bank_epochs``): network and text encoder frozen (eval mode);
  only the bank trains, on the weak samples, against their ground-truth masks with the method's own
  loss (AdamW, ``bank_lr``, poly). The release keeps the bank of the epoch with the best oIoU on
  those weak training samples (``bank_selection: train_oiou``; ``last`` keeps the last).
- **Stage 3, joint** (``joint_epochs``): student and EMA teacher start from the stage-1 network, the
  bank from stage 2. Per micro-batch: (a) a bank step through the frozen teacher on the batch's weak
  samples against ground truth (``joint_bank_lr``, poly over the stage's micro-batches); (b) the
  student's step on all samples, weak ones with the bank vectors detached (``student_lr``); after
  each student optimizer step (c) the teacher update θ_T ← α·θ_T + (1 − α)·θ_S with the released
  momentum schedule (:func:`teacher_momentum`). The text encoder is ONE module shared by student and
  teacher (trained by the student's optimizer), not copied into the teacher. The confidence-masked
  KL consistency term exists (``kl_weight`` > 0) and is off, as released.

Learning rates left at ``null`` take the release's values scaled by ``trainer.lr / 3e-5`` (the
release's stage-1 lr): student 2e-5, stage-2 bank 1e-5, stage-3 bank 1e-6 at ``trainer.lr=3e-5``.

The bank is large (RRSIS-D at 10 % accurate: 10,954 × 20 × 768 ≈ 168 M numbers), so it is an
embedding with sparse gradients and :class:`RowAdamW` updates only the rows in the batch and keeps
Adam state only for rows that were ever used. Under DDP every rank applies the same update: the
rows and gradients of all ranks are gathered and averaged first.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from rrsis_bench.engine import distributed as D
from rrsis_bench.engine.evaluator import to_device
from rrsis_bench.method import logits_of
from rrsis_bench.strategies import Stage, StepOutcome, Strategy, StrategyError

if TYPE_CHECKING:  # pragma: no cover
    from rrsis_bench.engine.trainer import Trainer, TrainerSettings

RELEASE_BASE_LR = 3e-5  # the release's stage-1 (RMSIN) learning rate; the other rates are relative to it
RELEASE_LR = {"student_lr": 2e-5, "bank_lr": 1e-5, "joint_bank_lr": 1e-6}
WARMUP, BANK, JOINT = 0, 1, 2
BANK_SELECTIONS = ("train_oiou", "last")
EVAL_MODELS = ("student", "teacher")


def teacher_momentum(progress: float) -> float:
    """The released EMA momentum at fractional stage-3 epoch ``progress`` (epoch + step / steps):
    0.95 → 0.99 linearly over the first epoch, 0.99 → 0.999 linearly over epochs 1–3, then 0.9995."""
    if progress < 1.0:
        return 0.95 + 0.04 * progress
    if progress < 3.0:
        return 0.99 + 0.009 * (progress - 1.0) / 2.0
    return 0.9995


class RowAdamW(torch.optim.Optimizer):
    """AdamW (torch's update rule, decoupled weight decay) for one 2-D parameter whose gradient is
    row-sparse (an embedding with ``sparse=True``): only the rows with a gradient move, and Adam's
    moments and step counts exist only for rows that were ever updated (bias correction counts each
    row's own updates, like a lazy Adam). When every row has a gradient at every step the result
    equals :class:`torch.optim.AdamW`.

    State per parameter: ``slot`` (row → index into the moment buffers, -1 if never used), ``used``,
    ``exp_avg`` / ``exp_avg_sq`` / ``row_steps`` (capacity doubles as rows are first used).
    """

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01) -> None:
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def load_state_dict(self, state_dict: dict) -> None:
        # torch casts every saved state tensor to the parameter's dtype; the row bookkeeping is integer
        super().load_state_dict(state_dict)
        for state in self.state.values():
            for key in ("slot", "used", "row_steps"):
                if key in state:
                    state[key] = state[key].long()

    @staticmethod
    def _rows_and_values(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if grad.is_sparse:
            grad = grad.coalesce()
            return grad.indices()[0], grad.values()
        rows = grad.abs().sum(dim=1).nonzero().flatten()
        return rows, grad[rows]

    def _slots(self, state: dict, p: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if not state:
            state["slot"] = torch.full((p.shape[0],), -1, dtype=torch.long, device=p.device)
            state["used"] = torch.zeros((), dtype=torch.long)
            state["exp_avg"] = p.new_zeros((0, p.shape[1]))
            state["exp_avg_sq"] = p.new_zeros((0, p.shape[1]))
            state["row_steps"] = torch.zeros(0, dtype=torch.long, device=p.device)
        new = rows[state["slot"][rows] < 0]
        if new.numel():
            used = int(state["used"])
            need = used + new.numel()
            capacity = state["exp_avg"].shape[0]
            if need > capacity:
                grown = min(p.shape[0], max(need, 2 * capacity))
                for key in ("exp_avg", "exp_avg_sq"):
                    buffer = p.new_zeros((grown, p.shape[1]))
                    buffer[:used] = state[key][:used]
                    state[key] = buffer
                steps = torch.zeros(grown, dtype=torch.long, device=p.device)
                steps[:used] = state["row_steps"][:used]
                state["row_steps"] = steps
            state["slot"][new] = torch.arange(used, need, device=p.device)
            state["used"] = torch.tensor(need)
        return state["slot"][rows]

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch's signature
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                rows, grad = self._rows_and_values(p.grad)
                if not rows.numel():
                    continue
                slots = self._slots(self.state[p], p, rows)
                state = self.state[p]
                steps = state["row_steps"][slots] + 1
                state["row_steps"][slots] = steps
                exp_avg = state["exp_avg"][slots].mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq = state["exp_avg_sq"][slots].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                state["exp_avg"][slots] = exp_avg
                state["exp_avg_sq"][slots] = exp_avg_sq
                steps = steps.to(p.dtype)[:, None]
                step_size = lr / (1 - beta1 ** steps)
                denom = exp_avg_sq.sqrt() / (1 - beta2 ** steps).sqrt() + eps
                weight = p[rows] * (1 - lr * decay) - step_size * exp_avg / denom
                p[rows] = weight
        return None


class ReferenceBank(nn.Module):
    """``num_rows`` entries of ``length`` learnable vectors of width ``width``, N(0, std²), looked up
    by row with a sparse gradient (only the rows in a batch get one)."""

    def __init__(self, num_rows: int, length: int, width: int, *, std: float, generator: torch.Generator) -> None:
        super().__init__()
        self.length, self.width = length, width
        weight = torch.randn(num_rows, length * width, generator=generator) * std
        self.table = nn.Embedding(num_rows, length * width, sparse=True, _weight=weight)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.table(rows).view(-1, self.length, self.width)

    @property
    def num_numbers(self) -> int:
        return self.table.weight.numel()


def fill_pad_positions(embeds: torch.Tensor, mask: torch.Tensor, vectors: torch.Tensor,
                       filled_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Write ``vectors[b, j]`` into the ``j``-th PAD position (``mask == 0``) of each row ``b`` with
    ``filled_rows[b]`` (bool), for ``j`` < the number of vectors, and switch those positions on in
    the mask. ``embeds`` (B, T, E), ``mask`` (B, T), ``vectors`` (B, L, E). Returns new tensors."""
    length = vectors.shape[1]
    pad = (mask == 0) & filled_rows[:, None]
    rank = torch.cumsum(pad.long(), dim=1) - 1
    fill = pad & (rank < length)
    index = rank.clamp(0, length - 1)[..., None].expand(-1, -1, embeds.shape[-1])
    gathered = torch.gather(vectors.to(embeds.dtype), 1, index)
    out_mask = mask.clone()
    out_mask[fill] = 1
    return torch.where(fill[..., None], gathered, embeds), out_mask


def select_rows(batch: dict, rows: torch.Tensor) -> dict:
    """The samples ``rows`` (a 1-D index tensor) of a collated batch: every tensor or list whose first
    dimension is the batch is indexed, anything else is kept."""
    size = batch["image"].shape[0]
    picked: dict = {}
    for key, value in batch.items():
        if torch.is_tensor(value) and value.dim() and value.shape[0] == size:
            picked[key] = value[rows.to(value.device)]
        elif isinstance(value, (list, tuple)) and len(value) == size:
            picked[key] = [value[i] for i in rows.tolist()]
        else:
            picked[key] = value
    return picked


def text_modules(model: nn.Module) -> list[nn.Module]:
    """The model's text encoder modules, shared (not copied) between student and teacher: what the
    method's ``text_encoder_modules()`` returns, else every :class:`~rrsis_bench.nn.text.TextEncoder`."""
    if hasattr(model, "text_encoder_modules"):
        return list(model.text_encoder_modules())
    from rrsis_bench.nn.text import TextEncoder

    found = [m for m in model.modules() if isinstance(m, TextEncoder)]
    return [m for m in found if not any(m is not other and m in set(other.modules()) for other in found)]


def two_class(logits: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) foreground logits as (B, 2, H, W) background/foreground logits (softmax = sigmoid)."""
    return torch.cat([torch.zeros_like(logits), logits], dim=1) if logits.shape[1] == 1 else logits


class LRBWREL(Strategy):
    """LRB-WREL: warm-up on accurate samples, reference-bank fitting, teacher-student joint stage."""

    name = "lrb_wrel"
    weak_samples = "require"
    #: Each component switched off (docs/strategies.md): the bank (stage 2 goes, weak samples read their
    #: class name as it is), the EMA teacher (the stage-3 bank learns through the student), stage 1, stage 2.
    ablations = MappingProxyType({
        "no_bank": MappingProxyType({"bank": False}), "no_teacher": MappingProxyType({"teacher": False}),
        "no_warmup": MappingProxyType({"warmup_epochs": 0}), "no_bank_stage": MappingProxyType({"bank_epochs": 0}),
    })

    def __init__(self, warmup_epochs: int | None = None, bank_epochs: int | None = None,
                 joint_epochs: int | None = None, bank_length: int = 20, bank_init_std: float = 0.02,
                 bank_lr: float | None = None, joint_bank_lr: float | None = None, student_lr: float | None = None,
                 bank_weight_decay: float = 0.01, bank_selection: str = "train_oiou", eval_model: str = "student",
                 kl_weight: float = 0.0, kl_teacher_temperature: float = 0.7,
                 kl_threshold: Sequence[float] = (0.6, 0.8), kl_ramp_epochs: float = 5.0, bank: bool = True,
                 teacher: bool = True) -> None:
        if bank_selection not in BANK_SELECTIONS:
            raise StrategyError(f"strategy.bank_selection must be one of {BANK_SELECTIONS}, not {bank_selection!r}.")
        if eval_model not in EVAL_MODELS:
            raise StrategyError(f"strategy.eval_model must be one of {EVAL_MODELS}, not {eval_model!r}.")
        for key, value in (("warmup_epochs", warmup_epochs), ("bank_epochs", bank_epochs),
                           ("joint_epochs", joint_epochs)):
            if value is not None and int(value) < (1 if key == "joint_epochs" else 0):
                raise StrategyError(f"strategy.{key} must be {'>= 1' if key == 'joint_epochs' else '>= 0'}, not {value}.")
        if bank_length < 1:
            raise StrategyError(f"strategy.bank_length must be >= 1, not {bank_length}.")
        if not bank and bank_epochs:
            raise StrategyError(f"strategy.bank=false has no bank to fit: set strategy.bank_epochs=null or 0, not "
                                f"{bank_epochs}.")
        if not teacher and (eval_model == "teacher" or kl_weight > 0):
            raise StrategyError("strategy.teacher=false has no EMA teacher to evaluate or to take the KL term "
                                "from: keep strategy.eval_model=student and strategy.kl_weight=0.")
        self.options = {
            "warmup_epochs": warmup_epochs, "bank_epochs": bank_epochs, "joint_epochs": joint_epochs,
            "bank_length": int(bank_length), "bank_init_std": float(bank_init_std), "bank_lr": bank_lr,
            "joint_bank_lr": joint_bank_lr, "student_lr": student_lr, "bank_weight_decay": float(bank_weight_decay),
            "bank_selection": bank_selection, "eval_model": eval_model, "kl_weight": float(kl_weight),
            "kl_teacher_temperature": float(kl_teacher_temperature),
            "kl_threshold": [float(t) for t in kl_threshold], "kl_ramp_epochs": float(kl_ramp_epochs),
            "bank": bool(bank), "teacher": bool(teacher),
        }
        self.bank: ReferenceBank | None = None
        self.teacher: nn.Module | None = None
        self.bank_optimizer: RowAdamW | None = None
        self.bank_scheduler = None
        self.best_bank: dict[str, Any] | None = None  # stage 2: {"oIoU": float, "weight": tensor}
        self._frozen_flags: list[bool] | None = None
        self.stage = -1

    def current_lr(self) -> float:
        """The bank's learning rate (stage 2, where the network has no optimizer)."""
        return float(self.bank_optimizer.param_groups[0]["lr"]) if self.bank_optimizer is not None else float("nan")

    # -- stages ------------------------------------------------------------------------------------
    def stages_for_check(self) -> list[Stage]:
        return [Stage("warmup", 1, "accurate", select=False), Stage("bank", 1, "weak", select=False),
                Stage("joint", 1, "all")]

    def stages(self, settings: TrainerSettings) -> list[Stage]:
        o = self.options

        def epochs(key: str) -> int:
            if key == "bank_epochs" and not o["bank"]:
                return 0  # no bank, nothing to fit
            return int(settings.epochs if o[key] is None else o[key])

        return [Stage("warmup", epochs("warmup_epochs"), "accurate", select=False),
                Stage("bank", epochs("bank_epochs"), "weak", select=False),
                Stage("joint", epochs("joint_epochs"), "all", select=True)]

    def _lr(self, key: str, trainer: Trainer) -> float:
        value = self.options[key]
        return float(value) if value is not None else RELEASE_LR[key] * trainer.settings.lr / RELEASE_BASE_LR

    # -- setup -------------------------------------------------------------------------------------
    def setup(self, trainer: Trainer) -> None:
        self.text = text_modules(trainer.model)
        if not self.text:
            raise StrategyError(
                f"strategy=lrb_wrel needs the method's text encoder (a TextEncoder, or text_encoder_modules()); "
                f"{type(trainer.model).__name__} has none.")
        self.text_params = [p for m in self.text for p in m.parameters()]
        if not self.options["bank"]:
            return  # the ablation without a bank: weak samples read their class name as it is
        weak = trainer.sample_indices("weak")
        self.row_of = torch.full((len(trainer.train_set),), -1, dtype=torch.long)
        self.row_of[torch.tensor(weak, dtype=torch.long)] = torch.arange(len(weak))
        with torch.no_grad():
            width = int(trainer.model.embed_tokens(torch.zeros(1, 1, dtype=torch.long, device=trainer.device)).shape[-1])
        # Its own generator: the bank is the same whatever consumed the global RNG before it.
        generator = torch.Generator().manual_seed(trainer.seed)
        self.bank = ReferenceBank(len(weak), self.options["bank_length"], width, std=self.options["bank_init_std"],
                                  generator=generator).to(trainer.device)

    def bank_vectors(self, batch: dict, *, detach: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(vectors (B, L, E), weak (B,) bool) of a batch's samples from their bank rows."""
        rows = self.row_of[batch["index"].cpu()].to(self.bank.table.weight.device)
        weak = rows >= 0
        vectors = self.bank(rows.clamp(min=0))
        return (vectors.detach() if detach else vectors), weak

    def with_bank(self, model: nn.Module, batch: dict, *, detach: bool) -> dict:
        """``batch`` with ``inputs_embeds``: its weak samples' PAD positions hold their bank vectors
        (without a bank, ``strategy.bank=false``, the batch as it is)."""
        if self.bank is None:
            return batch
        vectors, weak = self.bank_vectors(batch, detach=detach)
        embeds = model.embed_tokens(batch["input_ids"])
        embeds, mask = fill_pad_positions(embeds, batch["attention_mask"], vectors, weak.to(embeds.device))
        return {**batch, "inputs_embeds": embeds, "attention_mask": mask.to(batch["attention_mask"].dtype)}

    # -- stage boundaries --------------------------------------------------------------------------
    def begin_stage(self, trainer: Trainer, index: int, *, resuming: bool) -> None:
        self.stage = index
        trainer.optimizer = trainer.scheduler = None
        if index == WARMUP:
            super().begin_stage(trainer, index, resuming=resuming)
        elif index == BANK:
            self._frozen_flags = [p.requires_grad for p in trainer.model.parameters()]
            for p in trainer.model.parameters():
                p.requires_grad_(False)
            self._new_bank_optimizer(trainer, self._lr("bank_lr", trainer),
                                     trainer.stage_steps(index) * trainer.settings.accumulate)
            self.best_bank = None
        else:
            self.teacher = self._make_teacher(trainer.model) if self.options["teacher"] else None
            trainer.optimizer, trainer.scheduler = trainer.build_optimizer(
                trainer.stage_steps(index), lr=self._lr("student_lr", trainer))
            if self.bank is not None:
                self._new_bank_optimizer(trainer, self._lr("joint_bank_lr", trainer),
                                         trainer.stage_steps(index) * trainer.settings.accumulate)

    def _new_bank_optimizer(self, trainer: Trainer, lr: float, total: int) -> None:
        from rrsis_bench.engine.trainer import poly_schedule

        self.bank_optimizer = RowAdamW(self.bank.parameters(), lr=lr, weight_decay=self.options["bank_weight_decay"])
        self.bank_scheduler = poly_schedule(self.bank_optimizer, total, trainer.settings.poly_power)

    def _shared_ids(self) -> set[int]:
        """ids of the text encoder's tensors, which student and teacher share."""
        return {id(t) for m in self.text for t in itertools.chain(m.parameters(), m.buffers())}

    def _make_teacher(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` whose text encoder IS the student's (shared), every other tensor frozen."""
        memo: dict[int, Any] = {id(m): m for m in self.text}
        memo.update({id(t): t for m in self.text for t in itertools.chain(m.parameters(), m.buffers())})
        teacher = copy.deepcopy(model, memo)
        shared = {id(p) for p in self.text_params}
        for p in teacher.parameters():
            if id(p) not in shared:
                p.requires_grad_(False)
        return teacher

    def end_stage(self, trainer: Trainer, index: int) -> None:
        if index == BANK:
            for p, flag in zip(trainer.model.parameters(), self._frozen_flags or [], strict=False):
                p.requires_grad_(flag)
            if self.options["bank_selection"] == "train_oiou" and self.best_bank is not None:
                with torch.no_grad():
                    self.bank.table.weight.copy_(self.best_bank["weight"].to(self.bank.table.weight.device))
            self.best_bank = None

    # -- steps -------------------------------------------------------------------------------------
    def train_step(self, trainer: Trainer, batches: Iterator[dict], *, stage: int, progress: float) -> StepOutcome:
        if stage == WARMUP:
            return trainer.plain_step(batches)
        if stage == BANK:
            outcome = StepOutcome(0.0)
            trainer.model.eval()  # frozen network: no dropout, no batch-norm statistics updates
            for batch in batches:
                loss = self._bank_step(trainer, trainer.model, batch)
                outcome.loss += loss / trainer.settings.accumulate
                outcome.samples += batch["image"].shape[0]
            outcome.terms = {"bank_loss": outcome.loss}
            return outcome
        return self._joint_step(trainer, batches, progress)

    def _bank_step(self, trainer: Trainer, frozen: nn.Module, batch: dict) -> float:
        """One bank update through the frozen network ``frozen`` on the weak samples of ``batch`` (every
        rank takes part, with or without weak samples: the update is averaged over ranks)."""
        self.bank_optimizer.zero_grad(set_to_none=True)
        _, weak = self.bank_vectors(batch, detach=True)
        rows = weak.nonzero().flatten()
        loss_value = 0.0
        if rows.numel():
            sub = select_rows(batch, rows)
            # The network learns from the student's loss only: the shared text encoder of the teacher, or
            # the whole student when it is the bank's network (strategy.teacher=false), is held still.
            held = [p for p in frozen.parameters() if p.requires_grad]
            training = frozen.training
            for p in held:
                p.requires_grad_(False)
            frozen.eval()
            try:
                terms = trainer.forward_loss(frozen, self.with_bank(frozen, sub, detach=False))
                trainer.check_finite(terms["loss"], "bank loss")
                terms["loss"].backward()
            finally:
                for p in held:
                    p.requires_grad_(True)
                frozen.train(training)
            loss_value = float(terms["loss"].detach())
        self._average_bank_grad()
        self.bank_optimizer.step()
        self.bank_scheduler.step()
        return loss_value

    def _average_bank_grad(self) -> None:
        """Under DDP: every rank gets the mean of all ranks' bank gradients (rows and values)."""
        if not D.is_distributed():
            return
        weight = self.bank.table.weight
        if weight.grad is not None:
            grad = weight.grad.coalesce()
            mine = (grad.indices()[0].cpu(), grad.values().cpu())
        else:
            mine = (torch.zeros(0, dtype=torch.long), torch.zeros(0, weight.shape[1]))
        gathered = D.all_gather_objects(mine)
        rows = torch.cat([r for r, _ in gathered]).to(weight.device)
        values = torch.cat([v for _, v in gathered]).to(weight.device) / D.world_size()
        weight.grad = torch.sparse_coo_tensor(rows[None], values, weight.shape).coalesce() if rows.numel() else None

    def _joint_step(self, trainer: Trainer, batches: Iterator[dict], progress: float) -> StepOutcome:
        bank_losses: list[float] = []
        teacher = self.teacher
        if teacher is not None:
            teacher.eval()

        def prepare(batch: dict) -> dict:
            if self.bank is not None:  # the bank learns through the frozen teacher (or, without one, the student)
                bank_losses.append(self._bank_step(trainer, teacher if teacher is not None else trainer.model, batch))
            return self.with_bank(trainer.model, batch, detach=True)

        extra = self._kl_term(progress) if self.options["kl_weight"] > 0 else None
        outcome = trainer.plain_step(batches, prepare=prepare, extra=extra)
        if teacher is not None:
            self.update_teacher(trainer.model, teacher_momentum(progress))
        if self.bank is not None:
            outcome.terms["bank_loss"] = sum(bank_losses) / max(1, len(bank_losses))
        return outcome

    @torch.no_grad()
    def update_teacher(self, student: nn.Module, momentum: float) -> None:
        """θ_T ← α·θ_T + (1 − α)·θ_S over the teacher's own tensors (the shared text encoder is skipped;
        float buffers such as batch-norm statistics follow the same average, integer ones are copied)."""
        shared = self._shared_ids()
        teacher_state = self.teacher.state_dict(keep_vars=True)
        for name, value in student.state_dict(keep_vars=True).items():
            target = teacher_state[name]
            if id(target) in shared:
                continue
            if target.dtype.is_floating_point:
                target.data.lerp_(value.data, 1.0 - momentum)
            else:
                target.data.copy_(value.data)

    def _kl_term(self, progress: float):
        """The confidence-masked KL consistency term on the batch's weak samples (off as released)."""
        o = self.options
        ramp = min(1.0, progress / o["kl_ramp_epochs"]) if o["kl_ramp_epochs"] > 0 else 1.0
        low, high = o["kl_threshold"]
        threshold = low + (high - low) * ramp
        weight = o["kl_weight"] * (0.3 + 0.7 * ramp)

        def extra(output, batch: dict) -> dict[str, torch.Tensor]:
            weak = batch["weak"].bool() if torch.is_tensor(batch.get("weak")) else None
            student = two_class(logits_of(output).float())
            if weak is None or not weak.any():
                return {"kl": student.sum() * 0.0}
            with torch.no_grad():
                teacher_batch = {**batch}
                teacher = two_class(logits_of(self.teacher(teacher_batch)).float())
                target = F.softmax(teacher / o["kl_teacher_temperature"], dim=1)
                keep = (target.max(dim=1).values >= threshold) & weak[:, None, None]
            log_student = F.log_softmax(student, dim=1)
            per_pixel = (target * (target.clamp_min(1e-8).log() - log_student)).sum(dim=1)
            kl = (per_pixel * keep).sum() / keep.sum().clamp_min(1)
            return {"kl": weight * kl}

        return extra

    # -- stage-2 bank selection ---------------------------------------------------------------------
    def after_epoch(self, trainer: Trainer, index: int) -> dict[str, float]:
        """Stage 2 with ``bank_selection: train_oiou``: the oIoU of the frozen network with the bank on
        the weak training samples; the best epoch's bank is kept. Returns figures for the history."""
        if index != BANK or self.options["bank_selection"] != "train_oiou":
            return {}
        sampler, loader = trainer._loaders["weak"]
        model = trainer.model
        model.eval()
        inter = torch.zeros((), dtype=torch.float64)
        union = torch.zeros((), dtype=torch.float64)
        steps = trainer.stage_steps_per_epoch(index) * trainer.settings.accumulate
        with torch.no_grad():
            for batch in itertools.islice(iter(loader), steps):
                batch = to_device(batch, trainer.device, trainer.settings.channels_last)
                logits = logits_of(model(self.with_bank(model, batch, detach=True))).float()
                if logits.shape[-2:] != batch["mask"].shape[-2:]:
                    logits = F.interpolate(logits, size=batch["mask"].shape[-2:], mode="bilinear", align_corners=False)
                pred = logits[:, 0] > 0
                target = batch["mask"].reshape(pred.shape).bool()
                inter += float((pred & target).sum())
                union += float((pred | target).sum())
        inter_all, union_all = (sum(v) for v in zip(*D.all_gather_objects((float(inter), float(union))), strict=True))
        oiou = 100.0 * inter_all / union_all if union_all else 0.0
        if self.best_bank is None or oiou > self.best_bank["oIoU"]:
            self.best_bank = {"oIoU": oiou, "weight": self.bank.table.weight.detach().cpu().clone()}
        return {"bank_train_oIoU": oiou}

    # -- evaluation and state -----------------------------------------------------------------------
    def eval_model(self, trainer: Trainer) -> nn.Module:
        if self.options["eval_model"] == "teacher" and self.teacher is not None:
            return self.teacher
        return trainer.model

    def state_dict(self) -> dict[str, Any]:
        shared = self._shared_ids()
        state: dict[str, Any] = {"stage": self.stage}
        if self.bank is not None:
            state["bank"] = self.bank.table.weight.detach().clone()
        if self.bank_optimizer is not None:
            state["bank_optimizer"] = self.bank_optimizer.state_dict()
            state["bank_scheduler"] = self.bank_scheduler.state_dict()
        if self.teacher is not None:
            state["teacher"] = {name: t.detach().clone() for name, t in self.teacher.state_dict(keep_vars=True).items()
                                if id(t) not in shared}
        if self.best_bank is not None:
            state["best_bank"] = {"oIoU": self.best_bank["oIoU"], "weight": self.best_bank["weight"]}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.bank is not None:
            with torch.no_grad():
                self.bank.table.weight.copy_(state["bank"].to(self.bank.table.weight.device))
        if state.get("stage") != self.stage:  # saved at the end of an earlier stage: only the bank carries over
            self.best_bank = None
            return
        if "bank_optimizer" in state and self.bank_optimizer is not None:
            self.bank_optimizer.load_state_dict(state["bank_optimizer"])
            self.bank_scheduler.load_state_dict(state["bank_scheduler"])
        if "teacher" in state and self.teacher is not None:
            own = self.teacher.state_dict(keep_vars=True)
            with torch.no_grad():
                for name, value in state["teacher"].items():
                    own[name].data.copy_(value.to(own[name].device))
        self.best_bank = dict(state["best_bank"]) if "best_bank" in state else None

    def memory_figures(self) -> dict[str, float]:
        """Bank size and Adam state in use (MiB), for the docs and the record."""
        if self.bank is None:
            return {"bank_numbers": 0, "bank_mib": 0.0, "adam_state_mib": 0.0, "rows_with_state": 0}
        numbers = self.bank.num_numbers
        used = 0
        if self.bank_optimizer is not None:
            for st in self.bank_optimizer.state.values():
                used = int(st.get("used", 0)) if st else 0
        per_row = self.bank.length * self.bank.width
        return {"bank_numbers": numbers, "bank_mib": numbers * 4 / 2**20,
                "adam_state_mib": used * per_row * 2 * 4 / 2**20, "rows_with_state": used}

