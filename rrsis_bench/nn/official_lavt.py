"""Weights of the official LAVT / FIANet code <-> our LAVT-family models.

The official code saves ``{'model': state_dict, 'args': argparse.Namespace, ...}`` (keys may carry
DDP's ``module.`` prefix; the two-model LAVT saves BERT apart under ``'bert_model'``). Its layout
differs from ours in names only, plus three mechanical differences handled here:

- the official 1x1 ``Conv1d`` layers are our :class:`~rrsis_bench.nn.lavt.Pointwise` (``nn.Linear``):
  weights (out, in, 1) <-> (out, in). Found with ``isinstance`` on our modules, never from names.
- the official head predicts 2 logits (background, foreground); ours predicts the foreground logit
  alone. softmax(a, b)[1] == sigmoid(b - a), so import folds ``w = w[1] - w[0]`` (bias likewise)
  and export writes a zero background row, which round-trips exactly.
- timm's Swin puts PatchMerging at the start of stage i + 1; the official Swin at the end of stage i.

A layout is a table of :class:`Rule` lines (our key template <-> official key template). Templates hold
``{i}``-style integer fields (``{i+1}`` adds an offset) and ``{rest}`` for any tail. The shared
LAVT-family table is :func:`lavt_family_rules`. A method hands its table to the importer through its
``official_layout()`` method (LAVT: :mod:`rrsis_bench.methods.lavt.official`; FIANet adds its own
modules in :mod:`rrsis_bench.methods.fianet.official`); this module imports no method.

Public functions: :func:`to_official` (export), :func:`from_official` (import into a model),
:func:`load_official_checkpoint` (import from a ``.pth`` file), :func:`official_rules`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from rrsis_bench.nn.lavt import Pointwise

Tensor = torch.Tensor

# Official tensors that are recomputed, never learned: skipped on import.
IGNORED_SUFFIXES = ("relative_position_index", "attn_mask", "embeddings.position_ids", "embeddings.token_type_ids")
# BERT's pooler is removed by the official models (and absent from ours); skipped if a file has it.
IGNORED_PREFIXES = ("text_encoder.pooler.",)
DDP_PREFIX = "module."
LIST_LIMIT = 10

_FIELD = re.compile(r"\{([a-z_]+)([+-]\d+)?\}")


class KeyTemplate:
    """A state-dict key pattern: ``{name}`` is a non-negative integer (``{name+1}``: the value
    plus 1), ``{rest}`` any non-empty tail. A field repeated in one template must agree."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.fields: list[tuple[str, int]] = []
        pattern, pos = [], 0
        for m in _FIELD.finditer(text):
            name, offset = m.group(1), int(m.group(2) or 0)
            if name == "rest" and offset:
                raise ValueError(f"{{rest}} takes no offset in template {text!r}")
            pattern += [re.escape(text[pos:m.start()]), "(.+)" if name == "rest" else "([0-9]+)"]
            self.fields.append((name, offset))
            pos = m.end()
        pattern.append(re.escape(text[pos:]))
        self.regex = re.compile("".join(pattern))

    def match(self, key: str) -> dict | None:
        m = self.regex.fullmatch(key)
        if m is None:
            return None
        values: dict = {}
        for (name, offset), group in zip(self.fields, m.groups(), strict=True):
            value = group if name == "rest" else int(group) - offset
            if (name != "rest" and value < 0) or values.setdefault(name, value) != value:
                return None
        return values

    def format(self, values: Mapping) -> str:
        def field(m: re.Match) -> str:
            name = m.group(1)
            return str(values[name]) if name == "rest" else str(values[name] + int(m.group(2) or 0))

        return _FIELD.sub(field, self.text)

    def __repr__(self) -> str:
        return f"KeyTemplate({self.text!r})"


class Rule:
    """One line of a layout table: our key template <-> the official key template.

    ``official=None`` marks a tensor of ours that the official model lacks (left out on export, not
    required on import). ``export`` / ``load`` convert the tensor when the two differ in more than
    the Conv1d/Linear shape (which is handled for every rule). ``alias=True`` is an extra official
    spelling accepted on import and never written.
    """

    def __init__(self, ours: str, official: str | None, *, export: Callable[[Tensor], Tensor] | None = None,
                 load: Callable[[Tensor], Tensor] | None = None, alias: bool = False) -> None:
        self.ours = KeyTemplate(ours)
        self.official = KeyTemplate(official) if official is not None else None
        self.export, self.load, self.alias = export, load, alias

    def __repr__(self) -> str:
        return f"Rule({self.ours.text!r} <-> {self.official.text if self.official else None!r})"


Layout = Sequence[Rule]


class OfficialLoadResult(NamedTuple):
    """What :func:`from_official` could not match (both empty after a strict load)."""

    missing: list[str]  # our keys the file did not provide (they keep their current values)
    unexpected: list[str]  # official keys of the file that this model has no place for


# ---------------------------------------------------------------------------------------------
# the shared LAVT-family table
def two_logit_head(ours: Tensor) -> Tensor:
    """Our 1-logit classifier tensor -> the official 2-logit one (background row = zeros)."""
    return torch.cat([torch.zeros_like(ours), ours], dim=0)


def fold_two_logit_head(official: Tensor) -> Tensor:
    """The official 2-logit classifier tensor -> ours: foreground minus background row."""
    return official[1:] - official[:1]


def attention_rules(ours: str, official: str) -> list[Rule]:
    """Our LanguageAttention ``query/key/value/out`` <-> the official ``f_query.0/f_key.0/f_value.0/W.0``."""
    names = (("query", "f_query"), ("key", "f_key"), ("value", "f_value"), ("out", "W"))
    return [Rule(f"{ours}.{a}.{{rest}}", f"{official}.{b}.0.{{rest}}") for a, b in names]


def pwam_rules(ours: str, official: str, *, alias: bool = False) -> list[Rule]:
    """Our PixelWordAttention at ``ours`` <-> the official PWAM at ``official``."""
    rules = [
        Rule(f"{ours}.visual_proj.0.{{rest}}", f"{official}.vis_project.0.{{rest}}"),
        *attention_rules(f"{ours}.attention", f"{official}.image_lang_att"),
        Rule(f"{ours}.out.0.{{rest}}", f"{official}.project_mm.0.{{rest}}"),
    ]
    for rule in rules:
        rule.alias = alias
    return rules


def swin_rules() -> list[Rule]:
    """timm's staged Swin (our StagedBackbone) <-> the official MultiModalSwinTransformer."""
    return [
        Rule("backbone.stages.0.patch_embed.{rest}", "backbone.patch_embed.{rest}"),
        Rule("backbone.stages.{i}.layers_{i}.blocks.{rest}", "backbone.layers.{i}.blocks.{rest}"),
        # timm: PatchMerging opens stage i + 1; official: it closes stage i.
        Rule("backbone.stages.{i+1}.layers_{i+1}.downsample.{rest}", "backbone.layers.{i}.downsample.{rest}"),
        Rule("stage_norms.{i}.{rest}", "backbone.norm{i}.{rest}"),
    ]


def decoder_rules(levels: int = 3) -> list[Rule]:
    """LAVTDecoder <-> the official SimpleDecoding ``classifier`` (level 0 is the official ``_4``)."""
    rules = []
    for k in range(levels):
        s = levels + 1 - k
        rules += [
            Rule(f"decoder.levels.{k}.0.0.weight", f"classifier.conv1_{s}.weight"),
            Rule(f"decoder.levels.{k}.0.1.{{rest}}", f"classifier.bn1_{s}.{{rest}}"),
            Rule(f"decoder.levels.{k}.1.0.weight", f"classifier.conv2_{s}.weight"),
            Rule(f"decoder.levels.{k}.1.1.{{rest}}", f"classifier.bn2_{s}.{{rest}}"),
        ]
    rules.append(Rule("decoder.classifier.{rest}", "classifier.conv1_1.{rest}", export=two_logit_head,
                      load=fold_two_logit_head))
    return rules


def lavt_family_rules(*, fusion: str = "fusions.{i}", fusion_official: str = "backbone.layers.{i}.fusion",
                      gate: str = "gates.{i}.gate", gate_official: str = "backbone.layers.{i}.res_gate") -> list[Rule]:
    """The table every LAVT-family model shares: Swin, per-stage PWAM and tanh gate, stage norms,
    decoder, BERT. ``fusion``/``gate`` say where the PWAM and the gate's Sequential sit in our
    model, ``*_official`` where they sit in the official one."""
    return [
        *swin_rules(),
        *pwam_rules(fusion, fusion_official),
        Rule(f"{gate}.{{rest}}", f"{gate_official}.{{rest}}"),
        *decoder_rules(),
        Rule("text.model.{rest}", "text_encoder.{rest}"),
    ]


def official_rules(model: nn.Module) -> list[Rule]:
    """The layout table of ``model``: what its ``official_layout()`` returns.

    Each method hands its own table to the importer (LAVT: :mod:`rrsis_bench.methods.lavt.official`,
    FIANet: :mod:`rrsis_bench.methods.fianet.official`); this module knows no method. Pass ``rules=``
    to the import/export functions for a model without one.
    """
    layout = getattr(model, "official_layout", None)
    if not callable(layout):
        raise TypeError(f"No official checkpoint layout is known for {type(model).__name__}: the official "
                        "LAVT/FIANet layout covers the methods lavt and fianet and their sizes (a method provides "
                        "one with an official_layout() method; or pass rules=).")
    return list(layout())


# ---------------------------------------------------------------------------------------------
# helpers
def _linear_weights(model: nn.Module) -> tuple[set[str], set[str]]:
    """(weights of every nn.Linear, weights of the Pointwise ones = official Conv1d) by state-dict key."""
    linear, pointwise = set(), set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            key = f"{name}.weight" if name else "weight"
            linear.add(key)
            if isinstance(module, Pointwise):
                pointwise.add(key)
    return linear, pointwise


def _find(rules: Iterable[Rule], key: str, side: str) -> tuple[Rule, dict] | None:
    for rule in rules:
        template = rule.ours if side == "ours" else rule.official
        if template is None or (side == "ours" and rule.alias):
            continue
        values = template.match(key)
        if values is not None:
            return rule, values
    return None


def _official_name(rules: Layout, key: str) -> str | None:
    found = _find([r for r in rules if isinstance(r, Rule)], key, "ours")
    if found is None or found[0].official is None:
        return None
    return found[0].official.format(found[1])


def _ignored(name: str) -> bool:
    return name.endswith(IGNORED_SUFFIXES) or name.startswith(IGNORED_PREFIXES)


def _strip(key: str) -> str:
    return key[len(DDP_PREFIX):] if key.startswith(DDP_PREFIX) else key


def _shape(t) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


# ---------------------------------------------------------------------------------------------
# export
def to_official(model: nn.Module, *, rules: Layout | None = None, position_ids: bool = False) -> dict[str, Tensor]:
    """``model``'s weights in the official layout (a state dict for the official code's
    ``model.load_state_dict(checkpoint['model'])``).

    The Swin ``relative_position_index`` buffers, which the official model saves, are included.
    ``position_ids=True`` also writes ``text_encoder.embeddings.position_ids``, which transformers
    before 4.31 (and the vendored BERT of the official repositories) keep in the state dict.
    """
    rules = official_rules(model) if rules is None else rules
    line_rules = [r for r in rules if isinstance(r, Rule)]
    state = dict(model.state_dict())
    persistent = set(state)
    wanted = ("relative_position_index", "embeddings.position_ids") if position_ids else ("relative_position_index",)
    for name, buffer in model.named_buffers():
        if name not in persistent and name.endswith(wanted):
            state[name] = buffer
    _, pointwise = _linear_weights(model)
    out: dict[str, Tensor] = {}
    unnamed = []
    for key, tensor in state.items():
        found = _find(line_rules, key, "ours")
        if found is None:
            unnamed.append(key)
            continue
        rule, values = found
        if rule.official is None:
            continue
        name = rule.official.format(values)
        if name in out:
            raise ValueError(f"Two tensors of {type(model).__name__} map to the official name {name}: the layout "
                             "table is ambiguous.")
        if rule.export is not None:
            tensor = rule.export(tensor)
        elif key in pointwise:
            tensor = tensor.unsqueeze(-1)  # Linear (out, in) -> Conv1d (out, in, 1)
        out[name] = tensor.detach().clone()
    if unnamed:
        raise ValueError(
            f"{len(unnamed)} tensors of {type(model).__name__} have no name in the official layout (first: "
            f"{', '.join(unnamed[:3])}). The official LAVT/FIANet layout exists for the Swin backbone and the "
            "BERT-style text encoder only."
        )
    return out


# ---------------------------------------------------------------------------------------------
# import
def unwrap_official_state(checkpoint: Mapping) -> dict[str, Tensor]:
    """The official state dict inside ``checkpoint``: ``checkpoint['model']`` or
    ``checkpoint['state_dict']`` or ``checkpoint`` itself; ``module.`` stripped; BERT saved apart
    under ``'bert_model'`` (two-model LAVT) joined in as ``text_encoder.*``."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"An official checkpoint is a dict (with a 'model' state dict), not {type(checkpoint).__name__}.")
    state = checkpoint
    for key in ("model", "state_dict"):
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            break
    out = {_strip(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    bert = checkpoint.get("bert_model")
    if isinstance(bert, Mapping):
        for k, v in bert.items():
            if isinstance(v, torch.Tensor):
                out.setdefault("text_encoder." + _strip(k), v)
    if not out:
        raise ValueError("No tensors found in the checkpoint: expected {'model': state_dict, ...}, "
                         "{'state_dict': ...} or a bare state dict. Top-level keys: "
                         f"{', '.join(map(str, list(checkpoint)[:LIST_LIMIT]))}.")
    return out


def _listing(items: list[str]) -> str:
    lines = [f"    {item}" for item in items[:LIST_LIMIT]]
    if len(items) > LIST_LIMIT:
        lines.append(f"    ... and {len(items) - LIST_LIMIT} more")
    return "\n".join(lines)


def _tmem_blocks(keys: Iterable[str]) -> set[int]:
    return {int(m.group(1)) for k in keys if (m := re.match(r"tmem\.blocks\.(\d+)\.", k))}


def _group(key: str) -> str:
    """The module family of one of our keys: ``fusions.3.channel_gate.mlp.0.weight`` -> ``fusions.*.channel_gate``."""
    return ".".join(re.sub(r"^\d+$", "*", part) for part in key.rsplit(".", 1)[0].split(".")[:3])


def _mismatch_message(model: nn.Module, source: str, rules: Layout, official: Mapping[str, Tensor],
                      mapped: dict[str, str | None], loaded: Iterable[str], missing: list[str],
                      unexpected: list[str], bad_shapes: list[str]) -> str:
    model_name = type(model).__name__
    counts = [f"{len(missing)} tensors of the model are missing from the file",
              f"{len(unexpected)} tensors of the file have no place in the model"]
    if bad_shapes:
        counts.append(f"{len(bad_shapes)} have the wrong shape")
    parts = [f"{source} does not fit {model_name} in the official LAVT/FIANet layout: {', '.join(counts)}."]
    if bad_shapes:
        parts.append("  wrong shape (official name, shape -> ours: expected):\n" + _listing(bad_shapes))
    if missing:
        rows = [f"{_official_name(rules, k) or '(no official name)'}  (ours: {k})" for k in missing]
        parts.append("  missing (official name, ours):\n" + _listing(rows))
    if unexpected:
        rows = [f"{k}  (ours would be {mapped[k]}, which this model does not have)" if mapped.get(k) else
                f"{k}  (not a name of the {model_name} layout)" for k in unexpected]
        parts.append("  unexpected:\n" + _listing(rows))
    hints = []
    unknown = [k for k in unexpected if not mapped.get(k)]
    absent = sorted(set(map(_group, missing)) - set(map(_group, loaded)))
    if unknown:
        hints.append(f"{len(unknown)} names of the file are not in the {model_name} layout (e.g. {unknown[0]}): a "
                     "checkpoint of another method (method=lavt vs method=fianet) or of another backbone")
    elif absent:
        hints.append(f"the file has no tensor at all of the model's {', '.join(absent[:6])}: it was saved by a "
                     "model without these modules (a LAVT checkpoint for method=fianet, or one trained with "
                     "object_branch, position_branch or tmem off)")
    file_blocks = _tmem_blocks(v for v in mapped.values() if v)
    model_blocks = _tmem_blocks(model.state_dict())
    if file_blocks and file_blocks != model_blocks:
        hints.append(f"the file has {len(file_blocks)} TMEM blocks and the model {len(model_blocks)}: "
                     f"build it with num_tmem={len(file_blocks)}")
    if any(k.startswith("text.") for k in missing) and not any(k.startswith("text_encoder.") for k in official):
        hints.append("the file holds no text_encoder.* tensors: the two-model LAVT saves BERT under "
                     "'bert_model', so pass the whole checkpoint, not checkpoint['model']")
    hints.append("build the model with the options the checkpoint was trained with (method, num_tmem, "
                 "object_branch/position_branch, unused_layers, backbone width and depths, text encoder size, "
                 "decoder_hidden)")
    if missing or unexpected:
        hints.append("or pass strict=False (CLI: strict=false) to load the matching tensors and keep the rest")
    parts.append("Fix: " + "; ".join(hints) + ".")
    return "\n".join(parts)


def from_official(model: nn.Module, state: Mapping, *, strict: bool = True, rules: Layout | None = None,
                  source: str | os.PathLike | None = None) -> OfficialLoadResult:
    """Load an official LAVT/FIANet checkpoint (or its state dict) into ``model``.

    Accepts ``{'model': ...}`` / ``{'state_dict': ...}`` / a bare state dict (see
    :func:`unwrap_official_state`). Every tensor's shape is checked (a wrong shape always raises).
    With ``strict`` (default), tensors missing from the file or unexpected in it raise one
    ValueError listing them (and any wrong shapes) with the fix; with ``strict=False`` the
    matching tensors are loaded, the others keep their values and are returned in the result.
    Nothing is loaded when it raises. ``source`` names the file in messages.
    """
    rules = official_rules(model) if rules is None else rules
    line_rules = list(rules)
    source = f"The checkpoint {source}" if source is not None else "The given state dict"
    official = unwrap_official_state(state)
    ours = model.state_dict()
    linear, _ = _linear_weights(model)
    loaded: dict[str, Tensor] = {}
    mapped: dict[str, str | None] = {}
    unexpected, bad_shapes, bad_keys = [], [], set()
    for name, tensor in official.items():
        if _ignored(name):
            continue
        found = _find(line_rules, name, "official")
        if found is None:
            mapped[name] = None
            unexpected.append(name)
            continue
        rule, values = found
        key = mapped[name] = rule.ours.format(values)
        if key not in ours or key in loaded:
            unexpected.append(name)
            continue
        target = ours[key]
        expected = _shape(rule.export(target)) if rule.export is not None else _shape(target)
        accepted = {expected}
        if rule.export is None and key in linear:  # Conv1d (out, in, 1) or 1x1 Conv2d for a Linear
            accepted |= {expected + (1,), expected + (1, 1)}
        if _shape(tensor) not in accepted:
            bad_shapes.append(f"{name} {_shape(tensor)} -> ours {key}: "
                              f"{' or '.join(str(s) for s in sorted(accepted, key=len))}")
            bad_keys.add(key)
            continue
        if rule.load is not None:
            tensor = rule.load(tensor)
        loaded[key] = tensor.reshape(target.shape)
    optional = {key for key in ours if (found := _find(line_rules, key, "ours")) and found[0].official is None}
    missing = [k for k in ours if k not in loaded and k not in optional and k not in bad_keys and not _ignored(k)]
    if bad_shapes or (strict and (missing or unexpected)):
        raise ValueError(_mismatch_message(model, source, rules, official, mapped, loaded, missing, unexpected,
                                           bad_shapes))
    with torch.no_grad():
        model.load_state_dict(loaded, strict=False)
    return OfficialLoadResult(missing, unexpected)


def read_official_checkpoint(path: str | os.PathLike, *, trust: bool = False) -> Mapping:
    """Read an official ``.pth`` on the CPU without running code stored in it: ``weights_only=True``
    (tensors, plain values and the official argparse arguments); a file that needs full unpickling
    is refused unless ``trust`` (see :func:`rrsis_bench.serialization.load_torch_file`)."""
    from rrsis_bench.serialization import load_torch_file

    return load_torch_file(path, trust=trust)


def load_official_checkpoint(model: nn.Module, path: str | os.PathLike, *, strict: bool = True,
                             rules: Layout | None = None, trust: bool = False) -> OfficialLoadResult:
    """Read an official LAVT/FIANet ``.pth`` and load it into ``model`` (see :func:`from_official`;
    ``trust``: see :func:`read_official_checkpoint`)."""
    return from_official(model, read_official_checkpoint(path, trust=trust), strict=strict, rules=rules, source=path)
