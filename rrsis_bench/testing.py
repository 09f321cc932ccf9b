"""The method conformance check: :func:`check_method` runs any registered method, built-in or plugin,
through the contract of :mod:`rrsis_bench.method` on a small CPU batch.

A plugin author's test is one line::

    from rrsis_bench.testing import check_method

    def test_my_method_follows_the_contract():
        check_method("my_method")               # keyword overrides go to create_method

The checks run in this order, each named (see :data:`CHECKS`); the first failure raises
:class:`MethodCheckError` (an ``AssertionError``, so pytest shows it as a failed assertion) naming the
method, the check, what is wrong and the rule of the contract it breaks:

``builds``
    ``create_method(name, **overrides)`` (seeded) gives a ``torch.nn.Module`` whose ``spec`` names a
    tokenizer that loads offline and declares valid ``spec.inputs``.
``forward``
    A train-mode forward of the batch gives finite float logits ``(B, 1, S, S)`` (bare, or in a
    :class:`~rrsis_bench.method.MethodOutput`).
``loss``
    ``loss(output, batch)`` is a dict whose ``"loss"`` is a finite scalar with a graph (backward
    runs) and whose other terms are finite scalars (the trainer logs them with ``float``).
``gradients``
    After that backward every parameter that requires a gradient has one (DDP runs without
    ``find_unused_parameters``); a method that declares ``find_unused_parameters = True`` is not failed,
    the report notes which parameters got none.
``param_groups``
    ``param_groups(weight_decay)`` (else the default decay groups, as the trainer builds them) holds
    every trainable parameter exactly once and no frozen or foreign one; an ``lr_scale`` is positive.
``text_interface``
    ``encode_text(batch)`` gives the same features from ``inputs_embeds = embed_tokens(input_ids)`` as
    from the ids; with the text encoder frozen, the features of injected embeddings carry a gradient back
    to them, two different embeddings give different features and a later ids call still gives the
    first features (the frozen-feature memo never answers for embeddings); a full eval-mode forward
    with the embeddings equals the one with the ids.
``lrb_wrel``
    What the ``lrb_wrel`` training strategy (:mod:`rrsis_bench.strategies.lrb_wrel`) needs: with every
    parameter frozen (its stage 2), the method's loss on a weak sample whose PAD positions hold
    reference-bank vectors gives the bank row a gradient and no parameter one; a teacher copy shares
    the text encoder module (not a copy), gives the student's eval-mode logits, and moves to the
    average of the two under an EMA update of momentum 0.5.
``state_dict``
    The state dict survives ``torch.save``/``torch.load(weights_only=True)`` (how checkpoints are read)
    and, loaded with ``strict=True`` into a second instance built with another seed, gives the same keys
    and the same eval-mode logits.

The batch is what the data pipeline gives a method: a normalized random image, a 0/1 mask with one
rectangle per sample, two fixed expressions encoded by the method's own tokenizer
(:class:`~rrsis_bench.data.text.ExpressionEncoder`, padded to ``max_tokens``), the metadata fields, and
the inputs the spec declares (an ``instance_map`` consistent with the mask: 1 on the referred object, 2
on another instance of its class).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rrsis_bench.data.inputs import FIELDS, declared_inputs, dummy_batch
from rrsis_bench.data.text import ExpressionEncoder
from rrsis_bench.method import MethodOutput, decay_groups, logits_of

#: The checks, in the order they run.
CHECKS = ("builds", "forward", "loss", "gradients", "param_groups", "text_interface", "state_dict", "lrb_wrel")

#: The rule of the contract (rrsis_bench/method.py) each check holds a method to.
RULES = {
    "builds": "create_method(name, **overrides) returns a torch.nn.Module (an RRSISMethod) whose spec names a "
              "tokenizer rrsis_bench.nn.text.build_tokenizer loads offline and declares valid spec.inputs",
    "forward": "forward(batch) returns finite float logits (B, 1, H, W) at the batch's image size, bare or as "
               "MethodOutput(logits, aux)",
    "loss": "loss(output, batch) returns a dict with a finite scalar 'loss' that has an autograd graph, and other "
            "named terms that are finite scalars",
    "gradients": "every parameter that requires a gradient gets one in every training step (DDP runs without "
                 "find_unused_parameters); build parameters that never get one with requires_grad=False, or set "
                 "find_unused_parameters = True on the method",
    "param_groups": "param_groups(weight_decay) returns AdamW groups holding every trainable parameter of the "
                    "model exactly once and no frozen one, each lr_scale positive",
    "text_interface": "encode_text(batch) reads inputs_embeds (B, L, E) in place of input_ids, embed_tokens(ids) "
                      "gives the embeddings the ids stand for, injected embeddings keep their graph and bypass "
                      "the frozen-feature memo (see rrsis_bench.nn.text.TextEncoder.forward); a method that does "
                      "not support training strategies can pass skip=('text_interface',)",
    "state_dict": "load_state_dict(state_dict(), strict=True) into a fresh instance reproduces the model: all state "
                  "is in parameters and persistent buffers, loadable with torch.load(weights_only=True)",
    "lrb_wrel": "the lrb_wrel strategy fills PAD positions of inputs_embeds with bank vectors and switches them on "
                "in attention_mask, trains them through the frozen network with the method's loss, and keeps an EMA "
                "teacher (a deep copy sharing the text encoder module, rrsis_bench.strategies.lrb_wrel); a method "
                "whose text encoder is not a TextEncoder defines text_encoder_modules()",
}
#: Checks that build on another: skipping the first skips them too (and the report lists them).
DEPENDS_ON = {"lrb_wrel": "text_interface"}

#: Two expressions the check encodes with the method's tokenizer (samples alternate between them), and
#: the class phrases the expression encoder looks for in them.
EXPRESSIONS = ("the large storage tank on the left", "a vehicle next to the building")
CLASS_NAMES = ("storagetank", "vehicle")
CLASS_PHRASES = ("building", "storage tank", "vehicle")

_WEIGHT_DECAY = 0.01
_MAX_LISTED = 8  # parameter names listed in a message before "and N more"


class MethodCheckError(AssertionError):
    """A method breaks the contract: ``method`` failed ``check`` (one of :data:`CHECKS`)."""

    def __init__(self, method: str, check: str, problem: str) -> None:
        self.method, self.check, self.problem = method, check, problem
        super().__init__(f"Method {method!r} fails the {check!r} check: {problem}. The contract: {RULES[check]}.")


@dataclass(frozen=True)
class MethodReport:
    """What :func:`check_method` found: the checks ``passed`` and ``skipped`` (in :data:`CHECKS` order),
    ``notes`` worth knowing that are not failures, the parameter counts, and the seconds each check took."""

    method: str
    passed: tuple[str, ...]
    skipped: tuple[str, ...]
    notes: tuple[str, ...]
    params: int
    trainable_params: int
    seconds: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.method}: {len(self.passed)} checks passed ({', '.join(self.passed)}); "
                 f"{self.params:,} parameters, {self.trainable_params:,} trainable"]
        if self.skipped:
            lines.append(f"  skipped: {', '.join(self.skipped)}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def check_method(name: str, *, image_size: int = 64, batch_size: int = 2, max_tokens: int = 12, seed: int = 0,
                 skip: Iterable[str] = (), extra_inputs: Mapping[str, Any] | None = None,
                 **overrides: Any) -> MethodReport:
    """Check that method ``name`` (built with ``create_method(name, **overrides)``) follows the method
    contract on a ``batch_size`` batch of ``image_size``² images and ``max_tokens`` tokens; raise
    :class:`MethodCheckError` at the first failure (see the module docstring for the checks).

    ``skip`` names checks to leave out (every check but ``builds``; skipping ``text_interface`` skips
    ``lrb_wrel``, which builds on it); the report lists them.
    ``extra_inputs`` gives collated values for declared inputs that are not built-in fields
    (:data:`rrsis_bench.data.inputs.FIELDS`), i.e. keys a plugin dataset's raw samples carry.
    The caller's random state is left as it was.
    """
    skipped = _skipped(skip)
    if image_size < 16 or batch_size < 1 or max_tokens < 3:
        raise ValueError(f"check_method needs image_size >= 16, batch_size >= 1 and max_tokens >= 3 (got "
                         f"{image_size}, {batch_size}, {max_tokens}).")
    with torch.random.fork_rng(devices=[]):
        run = _Run(name, overrides, image_size=image_size, batch_size=batch_size, max_tokens=max_tokens, seed=seed,
                   extra_inputs=dict(extra_inputs or {}))
        passed, seconds = [], {}
        for check in CHECKS:
            if check in skipped:
                continue
            start = time.perf_counter()
            run.perform(check)
            seconds[check] = round(time.perf_counter() - start, 3)
            passed.append(check)
    return MethodReport(name, tuple(passed), tuple(c for c in CHECKS if c in skipped), tuple(run.notes),
                        run.params, run.trainable_params, seconds)


def _skipped(skip: Iterable[str]) -> set[str]:
    if isinstance(skip, str):  # iterating it would skip one "check" per character
        raise ValueError(f"skip must be a tuple of check names, not the string {skip!r}; write skip=({skip!r},).")
    names = set(skip)
    unknown = sorted(names - set(CHECKS))
    if unknown:
        raise ValueError(f"Unknown check(s) {', '.join(map(repr, unknown))} in skip; the checks are "
                         f"{', '.join(CHECKS)}.")
    if "builds" in names:
        raise ValueError("The 'builds' check cannot be skipped: every other check needs the built method.")
    return names | {check for check, needed in DEPENDS_ON.items() if needed in names}


# --- helpers ----------------------------------------------------------------------------------------------

def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _features(value: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of an ``encode_text`` result (a tensor, or dicts/lists/tuples of them), by path."""
    if isinstance(value, torch.Tensor):
        return {prefix or "<tensor>": value}
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return {}
    found: dict[str, torch.Tensor] = {}
    for key, item in items:
        found.update(_features(item, f"{prefix}.{key}" if prefix else str(key)))
    return found


def _mismatch(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor], *, atol: float,
              rtol: float = 0.0) -> str | None:
    """Why two feature dicts differ (keys, shapes, values beyond the tolerance), or None when they agree."""
    if first.keys() != second.keys():
        return f"keys {sorted(first)} vs {sorted(second)}"
    for key, a in first.items():
        b = second[key]
        if a.shape != b.shape:
            return f"{key}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
        if not torch.allclose(a.detach().float(), b.detach().float(), atol=atol, rtol=rtol):
            gap = (a.detach().float() - b.detach().float()).abs().max().item()
            return f"{key}: largest difference {gap:.3g} (tolerance {atol:g})"
    return None


def _float_features(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in features.items() if v.is_floating_point()}


class _Run:
    """One method under check: the model, the batch, and what one check leaves for the next (the
    train-mode output, the losses, the backward)."""

    def __init__(self, name: str, overrides: dict[str, Any], *, image_size: int, batch_size: int,
                 max_tokens: int, seed: int, extra_inputs: dict[str, Any]) -> None:
        self.name, self.overrides, self.seed = name, overrides, seed
        self.image_size, self.batch_size, self.max_tokens = image_size, batch_size, max_tokens
        self.extra_inputs = extra_inputs
        self.notes: list[str] = []
        self.model: nn.Module
        self.batch: dict[str, Any]
        self.params = self.trainable_params = 0
        self._output: Any = None
        self._losses: Mapping[str, Any] | None = None
        self._backward_done = False

    def fail(self, check: str, problem: str) -> MethodCheckError:
        return MethodCheckError(self.name, check, problem)

    def perform(self, check: str) -> None:
        try:
            getattr(self, f"check_{check}")()
        except MethodCheckError:
            raise
        except Exception as exc:  # whatever the method raised, reported as this check's failure
            raise self.fail(check, f"it raised {type(exc).__name__}: {exc}") from exc

    # -- what several checks need ----------------------------------------------------------------------
    def build(self, seed: int) -> nn.Module:
        from rrsis_bench.registry import create_method

        torch.manual_seed(seed)
        return create_method(self.name, **self.overrides)

    def train_output(self) -> Any:
        if self._output is None:
            self.model.train()
            self.model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                self._output = self.model(self.batch)
        return self._output

    def losses(self) -> Mapping[str, Any]:
        if self._losses is None:
            with torch.enable_grad():
                self._losses = self.model.loss(self.train_output(), self.batch)
        return self._losses

    def backward(self) -> None:
        if not self._backward_done:
            self.losses()["loss"].backward()
            self._backward_done = True

    def eval_logits(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return logits_of(model(batch))

    # -- builds ----------------------------------------------------------------------------------------
    def check_builds(self) -> None:
        from rrsis_bench.nn.text import build_tokenizer

        model = self.build(self.seed)
        if not isinstance(model, nn.Module):
            raise self.fail("builds", f"the factory returned a {type(model).__name__}, not a torch.nn.Module")
        self.model = model
        spec = getattr(model, "spec", None)
        if not isinstance(getattr(spec, "tokenizer", None), str) or not spec.tokenizer:
            raise self.fail("builds", "the model has no spec.tokenizer (a MethodSpec naming its tokenizer)")
        self.params = sum(p.numel() for p in model.parameters())
        self.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        try:
            tokenizer = build_tokenizer(spec.tokenizer)
        except OSError as exc:
            raise self.fail("builds", f"its tokenizer {spec.tokenizer!r} does not load: {exc}") from exc
        self.batch = self.make_batch(tokenizer, declared_inputs(model))

    def make_batch(self, tokenizer, inputs: tuple[str, ...]) -> dict[str, Any]:
        """A train batch as the data pipeline collates it (see the module docstring)."""
        b, s = self.batch_size, self.image_size
        generator = torch.Generator().manual_seed(self.seed)
        mean = torch.tensor(self.model.spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.model.spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        image = (torch.rand(b, 3, s, s, generator=generator) - mean) / std
        # One rectangle per sample in the top-left quarter (a different one each), and another instance
        # of the referred class in the bottom-right quarter for the instance map.
        mask = torch.zeros(b, s, s)
        unit = max(s // 32, 1)
        for i in range(b):
            top, left = s // 8 + (i % 4) * unit, s // 8 + (i % 3) * unit
            mask[i, top:top + s // 4, left:left + s // 4 + (i % 2) * 2 * unit] = 1.0
        encode = ExpressionEncoder(tokenizer, self.max_tokens, CLASS_PHRASES)
        texts = [EXPRESSIONS[i % len(EXPRESSIONS)] for i in range(b)]
        encoded = [encode(text) for text in texts]
        batch: dict[str, Any] = {
            "image": image,
            "mask": mask,
            "input_ids": torch.tensor([e.input_ids for e in encoded], dtype=torch.long),
            "attention_mask": torch.tensor([e.attention_mask for e in encoded], dtype=torch.long),
            "sample_id": [f"check_{i}" for i in range(b)],
            "text": texts,
            "class_name": [CLASS_NAMES[i % len(CLASS_NAMES)] for i in range(b)],
            "weak": [False] * b,
            "index": torch.arange(b),
        }
        unknown = [n for n in inputs if n not in FIELDS and n not in self.extra_inputs]
        if unknown:
            raise self.fail("builds", f"spec.inputs declares {', '.join(map(repr, unknown))}, not a built-in input "
                            f"({', '.join(FIELDS)}); pass its collated value to check_method(..., "
                            "extra_inputs={name: value})")
        batch.update(dummy_batch([n for n in inputs if n in FIELDS and n not in self.extra_inputs], b, s,
                                 self.max_tokens))
        for name in ("object_mask", "position_mask"):  # the real token masks of the two expressions
            if name in inputs and name not in self.extra_inputs:
                batch[name] = torch.tensor([getattr(e, name) for e in encoded], dtype=torch.long)
        if "instance_map" in inputs and "instance_map" not in self.extra_inputs:
            instances = mask.long()
            instances[:, 5 * s // 8:7 * s // 8, 5 * s // 8:7 * s // 8] = 2
            batch["instance_map"] = instances
        batch.update({n: v for n, v in self.extra_inputs.items() if n in inputs})
        return batch

    # -- forward, loss, gradients -----------------------------------------------------------------------
    def check_forward(self) -> None:
        self._check_output(self.train_output(), "train-mode")
        self.model.eval()
        with torch.no_grad():  # as the evaluator runs it
            self._check_output(self.model(self.batch), "eval-mode")

    def _check_output(self, output: Any, mode: str) -> None:
        if not isinstance(output, (torch.Tensor, MethodOutput)):
            raise self.fail("forward", f"the {mode} forward returned a {type(output).__name__}")
        logits = logits_of(output)
        if not isinstance(logits, torch.Tensor):
            raise self.fail("forward", f"the {mode} MethodOutput.logits is a {type(logits).__name__}, not a tensor")
        if isinstance(output, MethodOutput) and not isinstance(output.aux, Mapping):
            raise self.fail("forward", f"the {mode} MethodOutput.aux is a {type(output.aux).__name__}, not a dict")
        expected = (self.batch_size, 1, self.image_size, self.image_size)
        if tuple(logits.shape) != expected:
            raise self.fail("forward", f"the {mode} logits have shape {tuple(logits.shape)}, expected {expected} "
                            "(B, 1, H, W at the batch's image size)")
        if not logits.is_floating_point():
            raise self.fail("forward", f"the {mode} logits have dtype {logits.dtype}, not a float type")
        if not torch.isfinite(logits).all():
            raise self.fail("forward", f"the {mode} logits hold NaN or infinite values")

    def check_loss(self) -> None:
        losses = self.losses()
        if not isinstance(losses, Mapping) or "loss" not in losses:
            raise self.fail("loss", f"loss(output, batch) returned {type(losses).__name__} without a 'loss' key")
        loss = losses["loss"]
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise self.fail("loss", f"'loss' is {shape}, not a scalar tensor")
        if not torch.isfinite(loss):
            raise self.fail("loss", f"'loss' is {loss.item()}")
        if not loss.requires_grad or loss.grad_fn is None:
            raise self.fail("loss", "'loss' has no autograd graph (it does not require grad): it was detached or "
                            "computed under no_grad, so training would not move the model")
        for key, term in losses.items():
            try:
                value = float(term.detach() if isinstance(term, torch.Tensor) else term)
            except (TypeError, ValueError, RuntimeError):
                kind = tuple(term.shape) if isinstance(term, torch.Tensor) else type(term).__name__
                raise self.fail("loss", f"the term {key!r} is {kind}, not a scalar") from None
            if not math.isfinite(value):
                raise self.fail("loss", f"the term {key!r} is {value}")
        try:
            self.backward()
        except RuntimeError as exc:
            raise self.fail("loss", f"backward through 'loss' failed: {exc}") from exc

    def check_gradients(self) -> None:
        self.backward()
        missing = [n for n, p in self.model.named_parameters() if p.requires_grad and p.grad is None]
        declared = bool(getattr(self.model, "find_unused_parameters", False))
        if missing and not declared:
            raise self.fail("gradients", f"{len(missing)} trainable parameter(s) got no gradient on the default "
                            f"path: {_listed(missing)}")
        if missing:
            self.notes.append(f"declares find_unused_parameters (DDP searches the graph every step); "
                              f"{len(missing)} trainable parameter(s) got no gradient here: {_listed(missing)}")
        elif declared:
            self.notes.append("declares find_unused_parameters, yet every trainable parameter got a gradient "
                              "here (DDP could take its fast path)")
        broken = [n for n, p in self.model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        if broken:
            raise self.fail("gradients", f"non-finite gradients in {_listed(broken)}")

    # -- param_groups -----------------------------------------------------------------------------------
    def check_param_groups(self) -> None:
        model = self.model
        if hasattr(model, "param_groups"):  # as the trainer's build_optimizer asks
            groups = model.param_groups(_WEIGHT_DECAY)
        else:
            groups = decay_groups(model.named_parameters(), _WEIGHT_DECAY)
            self.notes.append("no param_groups(weight_decay): the trainer uses the default decay groups")
        names = {id(p): n for n, p in model.named_parameters()}
        seen: dict[int, int] = {}
        for index, group in enumerate(groups):
            if not isinstance(group, Mapping) or "params" not in group:
                raise self.fail("param_groups", f"group {index} is a {type(group).__name__} without 'params'")
            params = group["params"]
            params = [params] if isinstance(params, torch.Tensor) else list(params)
            for param in params:
                if id(param) not in names:
                    raise self.fail("param_groups", f"group {index} holds a tensor of shape {tuple(param.shape)} "
                                    "that is not a parameter of the model")
                if not param.requires_grad:
                    raise self.fail("param_groups", f"group {index} holds the frozen parameter {names[id(param)]}")
                seen[id(param)] = seen.get(id(param), 0) + 1
            if "lr_scale" in group:
                scale = group["lr_scale"]
                if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not (0 < scale < math.inf):
                    raise self.fail("param_groups", f"group {index} has lr_scale {scale!r}, not a positive number")
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        missing = [n for n, p in trainable if id(p) not in seen]
        if missing:
            raise self.fail("param_groups", f"{len(missing)} trainable parameter(s) are in no group, so the "
                            f"optimizer never updates them: {_listed(missing)}")
        repeated = [n for n, p in trainable if seen[id(p)] > 1]
        if repeated:
            raise self.fail("param_groups", f"{len(repeated)} parameter(s) are in more than one group: "
                            f"{_listed(repeated)}")

    # -- text_interface ---------------------------------------------------------------------------------
    def check_text_interface(self) -> None:
        model, batch = self.model, self.batch
        if not callable(getattr(model, "encode_text", None)):
            raise self.fail("text_interface", "the method has no encode_text(batch)")
        model.eval()
        with torch.no_grad():
            from_ids = _features(model.encode_text(batch))
            embeds = model.embed_tokens(batch["input_ids"])
        if not isinstance(embeds, torch.Tensor) or embeds.ndim != 3 or embeds.shape[:2] != batch["input_ids"].shape:
            shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
            raise self.fail("text_interface", f"embed_tokens(input_ids {tuple(batch['input_ids'].shape)}) gave "
                            f"{shape}, not (B, L, E)")
        if not _float_features(from_ids):
            raise self.fail("text_interface", "encode_text(batch) returned no float tensor (features)")
        with torch.no_grad():
            from_embeds = _features(model.encode_text({**batch, "inputs_embeds": embeds}))
        gap = _mismatch(from_ids, from_embeds, atol=1e-5)
        if gap:
            raise self.fail("text_interface", f"encode_text with inputs_embeds=embed_tokens(input_ids) differs from "
                            f"encode_text with the ids: {gap}")
        first, second = self._other_embeddings(embeds)
        with torch.no_grad():
            self._check_embeddings_matter(first, second, "")
        self._check_frozen_text(first, second, from_ids)
        with_ids = self.eval_logits(model, batch)
        with_embeds = self.eval_logits(model, {**batch, "inputs_embeds": embeds})
        gap = _mismatch({"logits": with_ids}, {"logits": with_embeds}, atol=1e-5, rtol=1e-5)
        if gap:
            raise self.fail("text_interface", f"the eval-mode forward with inputs_embeds=embed_tokens(input_ids) "
                            f"differs from the forward with the ids: {gap}")

    def _other_embeddings(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two embeddings unlike each other and unlike the ids' own (noise at the embeddings' scale)."""
        generator = torch.Generator().manual_seed(self.seed + 1)
        scale = embeds.float().std().clamp_min(1e-3)
        return tuple(embeds + scale * torch.randn(embeds.shape, generator=generator, dtype=embeds.dtype)
                     for _ in range(2))

    def _check_embeddings_matter(self, first: torch.Tensor, second: torch.Tensor,
                                 when: str) -> dict[str, torch.Tensor]:
        """The features of ``first``, checked to differ from those of ``second``."""
        features = _float_features(_features(self.model.encode_text({**self.batch, "inputs_embeds": first})))
        with torch.no_grad():
            other = _float_features(_features(self.model.encode_text({**self.batch, "inputs_embeds": second})))
        if _mismatch(features, other, atol=1e-6) is None:
            raise self.fail("text_interface", f"{when}two different inputs_embeds gave the same text features: "
                            "encode_text ignores inputs_embeds, or a memo answers for them")
        return features

    def _check_frozen_text(self, first: torch.Tensor, second: torch.Tensor, from_ids: dict[str, torch.Tensor]) -> None:
        """With the text encoder frozen (as a prompt-learning strategy runs it), injected embeddings get a
        gradient and never meet the memo keyed by token ids."""
        model, batch = self.model, self.batch
        text = getattr(model, "text", None)
        if isinstance(text, nn.Module):
            params = list(text.parameters())
        else:
            params = []
            self.notes.append("no text encoder module at .text: the embeddings were checked with the text path "
                              "as it is, not frozen")
        flags = [p.requires_grad for p in params]
        frozen = "with the text encoder frozen, "
        try:
            for p in params:
                p.requires_grad_(False)
            model.eval()
            with torch.no_grad():
                frozen_ids = _features(model.encode_text(batch))  # fills a frozen encoder's memo
            gap = _mismatch(from_ids, frozen_ids, atol=1e-5)
            if gap:
                raise self.fail("text_interface", f"freezing the text encoder changed encode_text of the ids: {gap}")
            injected = first.detach().requires_grad_(True)
            with torch.enable_grad():
                features = self._check_embeddings_matter(injected, second, frozen)
                with_graph = [t for t in features.values() if t.requires_grad]
                if not with_graph:
                    raise self.fail("text_interface", f"{frozen}the features of inputs_embeds have no autograd "
                                    "graph (detached or computed under no_grad), so a strategy's prompt vectors "
                                    "could not learn")
                # A fixed random projection: a plain sum of LayerNorm'd features has no gradient.
                generator = torch.Generator().manual_seed(self.seed + 2)
                target = sum((t.float() * torch.randn(t.shape, generator=generator)).sum() for t in with_graph)
                target.backward()
            if injected.grad is None or not injected.grad.abs().sum() > 0:
                raise self.fail("text_interface", f"{frozen}a loss on the features of inputs_embeds gives the "
                                "embeddings no gradient")
            with torch.no_grad():
                again = _features(model.encode_text(batch))
            gap = _mismatch(frozen_ids, again, atol=1e-5)
            if gap:
                raise self.fail("text_interface", f"{frozen}encode_text of the ids no longer gives its first "
                                f"features after calls with inputs_embeds (a stale memo): {gap}")
        finally:
            for p, flag in zip(params, flags, strict=True):
                p.requires_grad_(flag)
            model.zero_grad(set_to_none=True)
            model.train(model.training)  # let modules that depend on frozenness (TextEncoder.train) update

    # -- state_dict -------------------------------------------------------------------------------------
    def check_state_dict(self) -> None:
        logits = self.eval_logits(self.model, self.batch)
        state = self.model.state_dict()
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        try:
            loaded = torch.load(buffer, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise self.fail("state_dict", f"torch.load(weights_only=True) refuses its saved state dict: "
                            f"{str(exc).splitlines()[0]}") from exc
        second = self.build(self.seed + 1)
        try:
            second.load_state_dict(loaded, strict=True)
        except RuntimeError as exc:
            raise self.fail("state_dict", f"a second instance refuses the state dict with strict=True: "
                            f"{' '.join(str(exc).split())}") from exc
        keys, second_keys = list(state), list(second.state_dict())
        if keys != second_keys:
            missing, extra = sorted(set(keys) - set(second_keys)), sorted(set(second_keys) - set(keys))
            raise self.fail("state_dict", f"after loading, the second instance's state dict keys differ (missing "
                            f"{_listed(missing)}; extra {_listed(extra)}; or another order)")
        gap = _mismatch({"logits": logits}, {"logits": self.eval_logits(second, self.batch)}, atol=1e-6)
        if gap:
            raise self.fail("state_dict", f"a second instance (seed {self.seed + 1}) loaded with the state dict gives "
                            f"other eval-mode logits: {gap}; some state lives outside parameters and persistent "
                            "buffers")

    # -- lrb_wrel ---------------------------------------------------------------------------------------
    def check_lrb_wrel(self) -> None:
        from rrsis_bench.strategies.lrb_wrel import (
            LRBWREL,
            ReferenceBank,
            fill_pad_positions,
            select_rows,
            text_modules,
        )

        model, batch = self.model, self.batch
        strategy = LRBWREL(bank_length=4)
        strategy.text = text_modules(model)
        if not strategy.text:
            raise self.fail("lrb_wrel", "the method has no text encoder module (a TextEncoder, or "
                            "text_encoder_modules()), which the teacher must share with the student")
        strategy.text_params = [p for m in strategy.text for p in m.parameters()]
        if not bool((batch["attention_mask"][0] == 0).any()):
            raise self.fail("lrb_wrel", "the check's first expression fills every token position; raise max_tokens")
        flags = [p.requires_grad for p in model.parameters()]
        try:
            for p in model.parameters():
                p.requires_grad_(False)
            model.eval()
            weak = select_rows(batch, torch.tensor([0]))
            width = int(model.embed_tokens(weak["input_ids"]).shape[-1])
            bank = ReferenceBank(1, 4, width, std=0.02, generator=torch.Generator().manual_seed(self.seed))
            with torch.enable_grad():
                embeds, mask = fill_pad_positions(model.embed_tokens(weak["input_ids"]), weak["attention_mask"],
                                                  bank(torch.tensor([0])), torch.tensor([True]))
                filled = {**weak, "inputs_embeds": embeds, "attention_mask": mask.to(weak["attention_mask"].dtype)}
                loss = model.loss(model(filled), filled)["loss"]
                if not loss.requires_grad:
                    raise self.fail("lrb_wrel", "with every parameter frozen, the loss on a sample whose PAD "
                                    "positions hold bank vectors has no autograd graph: the forward ignores "
                                    "inputs_embeds")
                loss.backward()
            grad = bank.table.weight.grad
            if grad is None or not float(grad.coalesce().values().abs().sum()) > 0:
                raise self.fail("lrb_wrel", "with the network frozen, the loss on a sample whose PAD positions hold "
                                "bank vectors gives the bank no gradient (inputs_embeds or the widened "
                                "attention_mask do not reach the loss)")
            moved = sorted(name for name, p in model.named_parameters() if p.grad is not None)
            if moved:
                raise self.fail("lrb_wrel", f"frozen parameters got gradients in the bank step: {_listed(moved)}")
        finally:
            for p, flag in zip(model.parameters(), flags, strict=True):
                p.requires_grad_(flag)
            model.zero_grad(set_to_none=True)
        self._check_teacher(strategy)

    def _check_teacher(self, strategy) -> None:
        model = self.model
        teacher = strategy._make_teacher(model)
        shared = {id(m) for m in strategy.text}
        if not any(id(m) in shared for m in teacher.modules()):
            raise self.fail("lrb_wrel", "the teacher copy does not hold the student's text encoder module (it must "
                            "be shared, not copied)")
        gap = _mismatch({"logits": self.eval_logits(model, self.batch)},
                        {"logits": self.eval_logits(teacher, self.batch)}, atol=1e-6)
        if gap:
            raise self.fail("lrb_wrel", f"a fresh teacher copy gives other eval-mode logits than the student: {gap}")
        strategy.teacher = teacher
        own = [(name, p) for name, p in model.named_parameters() if id(p) not in {id(t) for t in strategy.text_params}]
        if not own:
            return
        name, param = own[0]
        before = param.detach().clone()
        with torch.no_grad():
            param.add_(1.0)
        strategy.update_teacher(model, 0.5)
        with torch.no_grad():
            param.sub_(1.0)
        teacher_param = dict(teacher.named_parameters())[name]
        if not torch.allclose(teacher_param, before + 0.5, atol=1e-5):
            raise self.fail("lrb_wrel", f"after an EMA update of momentum 0.5 the teacher's {name} is not the mean "
                            "of its value and the student's")
