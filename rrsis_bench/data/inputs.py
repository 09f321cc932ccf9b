"""The extra per-sample inputs a method may declare in ``spec.inputs``, and how each is built.

Every batch has ``image``, ``mask``, ``input_ids``, ``attention_mask``, ``sample_id``, ``text``,
``class_name``, ``weak`` and ``index`` (eval batches also ``gt_mask``). Anything else is in a batch
only when the method's spec names it: a built-in field of :data:`FIELDS`, or a key of the dataset's
raw samples (a plugin dataset's extra annotation). A field has a kind, which says how the pipeline
treats it:

- ``map``: a 2-D array at the image's native size (the size of ``mask``), resized by nearest
  neighbour to ``image_size``² with the mask's geometry, collated to (B, S, S);
- ``tokens``: a 0/1 sequence over the expression's tokens, collated to (B, L);
- ``value``: a number, collated to a (B,) tensor;
- ``meta``: anything else, kept as a python list of B items.

:func:`check_inputs` runs before any training or evaluation so that a method asking for something the
dataset does not have fails at once, with the fix, instead of in the first batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from rrsis_bench.data.manifest import sample_metadata
from rrsis_bench.data.text import EncodedText
from rrsis_bench.errors import UserError
from rrsis_bench.masks import resize_mask

KINDS = ("map", "tokens", "value", "meta")

#: What every batch holds whatever the method declares; a declared input may not reuse these names.
ALWAYS_FIELDS = ("image", "mask", "input_ids", "attention_mask", "sample_id", "text", "class_name", "weak",
                 "gt_mask", "index")


class InputUnavailable(UserError, ValueError):
    """A method declares a per-sample input that the dataset cannot provide."""


class InvalidInputs(UserError, ValueError):
    """A method's ``spec.inputs`` is malformed (not a sequence of distinct names, or a reserved name)."""


@dataclass(frozen=True)
class RawItem:
    """What a field is built from: the raw sample, its encoded expression, and where it came from
    (``source[index]`` is the sample; dataset-provided fields such as ``instance_map`` ask ``source``)."""

    sample: Mapping[str, Any]
    text: EncodedText
    source: Sequence[dict] | None = None
    index: int | None = None


@dataclass(frozen=True)
class InputField:
    """A built-in per-sample input: its ``kind`` (see the module docstring), what ``build`` returns
    for one raw item (before resizing and conversion), and ``make_dummy`` for :meth:`dummy`."""

    name: str
    kind: str
    description: str
    build: Callable[[RawItem], Any]
    make_dummy: Callable[[int, int, int], Any]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Input field {self.name!r} has kind {self.kind!r}; kinds are {', '.join(KINDS)}.")

    def dummy(self, batch_size: int, image_size: int, length: int) -> Any:
        """A collated example of this field for ``batch_size`` samples at ``image_size``² with
        ``length`` tokens (for `rrsis-bench profile` and tests)."""
        return self.make_dummy(batch_size, image_size, length)


def _dataset_instance_map(item: RawItem) -> np.ndarray:
    if item.source is None or item.index is None:
        raise ValueError("instance_map is read from the dataset: call the transform with source= and index=.")
    return item.source.instance_map(item.index)


def _sample_key(key: str) -> Callable[[RawItem], Any]:
    def build(item: RawItem) -> Any:
        return _raw_value(item.sample, key)

    return build


def _dummy_instance_map(batch_size: int, image_size: int, length: int) -> torch.Tensor:
    # The referred object in the top-left quarter, another instance of its class in the bottom-right one.
    labels = torch.zeros(batch_size, image_size, image_size, dtype=torch.long)
    half = max(image_size // 2, 1)
    labels[:, :half, :half] = 1
    labels[:, half:, half:] = 2
    return labels


FIELDS: dict[str, InputField] = {
    field.name: field
    for field in (
        InputField(
            "object_mask", "tokens", "1 on the tokens of the ground-object phrase (data.object_mask rule)",
            lambda item: item.text.object_mask,
            lambda b, s, n: torch.ones(b, n, dtype=torch.long),
        ),
        InputField(
            "position_mask", "tokens", "1 on the tokens of the spatial-position phrases (the whole sentence if none)",
            lambda item: item.text.position_mask,
            lambda b, s, n: torch.ones(b, n, dtype=torch.long),
        ),
        InputField(
            "instance_map", "map",
            "instances of the referred object's class: 0 none, 1 the referred object, 2..K+1 the other "
            "instances of that class in the image (annotation id order; the referred object wins overlaps)",
            _dataset_instance_map, _dummy_instance_map,
        ),
        InputField(
            "category_id", "value", "the dataset's category id of the referred object",
            _sample_key("category_id"), lambda b, s, n: torch.zeros(b, dtype=torch.long),
        ),
        InputField("ref_id", "meta", "the dataset's ref id (one ref may have several expressions)",
                   _sample_key("ref_id"), lambda b, s, n: list(range(b))),
        InputField("image_id", "meta", "the dataset's image id", _sample_key("image_id"),
                   lambda b, s, n: list(range(b))),
    )
}


def input_names(inputs: Iterable[str] | str) -> tuple[str, ...]:
    """``spec.inputs`` as a tuple of names, checked: distinct strings, none of :data:`ALWAYS_FIELDS`."""
    if isinstance(inputs, str):  # iterating it would declare one input per character
        raise InvalidInputs(f"spec.inputs must be a tuple of names, not the string {inputs!r}; write ({inputs!r},).")
    names = tuple(inputs)
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidInputs(f"spec.inputs holds {name!r}; every declared input must be a non-empty string.")
        if name in ALWAYS_FIELDS:
            raise InvalidInputs(f"spec.inputs declares {name!r}, which every batch already has; remove it from "
                                "spec.inputs.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidInputs(f"spec.inputs declares {', '.join(map(repr, repeated))} more than once; list each once.")
    return names


def declared_inputs(model: Any) -> tuple[str, ...]:
    """The inputs ``model.spec`` declares (none when a plugin's spec has no ``inputs``), checked."""
    return input_names(getattr(getattr(model, "spec", None), "inputs", ()) or ())


# --- building one item's value ------------------------------------------------------------------

def _raw_value(sample: Mapping[str, Any], key: str) -> Any:
    if key not in sample:
        raise ValueError(f"Sample {sample.get('sample_id')!r} has no {key!r}, which the method declares in "
                         "spec.inputs; every sample the method is fed must carry it (check_inputs looked at the first).")
    return sample[key]


def kind_of_raw(value: Any) -> str:
    """The kind of a raw-sample value for an input not in :data:`FIELDS`: a 2-D numpy array is a map,
    a number or bool a value, anything else meta."""
    if isinstance(value, np.ndarray) and value.ndim == 2:
        return "map"
    if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        return "value"
    return "meta"


def resize_label_map(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D map to ``size`` = (width, height), with the same geometry as
    :func:`rrsis_bench.masks.resize_mask` (PIL's NEAREST): bool stays bool, integers come back as
    int64 (they must fit in int32, PIL's integer image mode), floats as float32."""
    if labels.ndim != 2:
        raise ValueError(f"A map must be 2-D (height, width); got shape {labels.shape}.")
    if labels.dtype == bool:
        return resize_mask(labels, size)
    if np.issubdtype(labels.dtype, np.integer):
        if labels.size and (labels.min() < np.iinfo(np.int32).min or labels.max() > np.iinfo(np.int32).max):
            raise ValueError("An integer map's values must fit in int32 to be resized.")
        as_image, dtype = labels.astype(np.int32), np.int64
    elif np.issubdtype(labels.dtype, np.floating):
        as_image, dtype = labels.astype(np.float32), np.float32
    else:
        raise ValueError(f"A map must hold bools, integers or floats; got dtype {labels.dtype}.")
    if (labels.shape[1], labels.shape[0]) == tuple(size):
        return as_image.astype(dtype)
    return np.asarray(Image.fromarray(as_image).resize(tuple(size), Image.NEAREST)).astype(dtype)


def _as_map(name: str, value: Any, sample: Mapping[str, Any], image_size: int) -> torch.Tensor:
    labels = np.asarray(value)
    native = np.shape(sample["mask"])
    if labels.shape != native:  # a map that is not at the image's size cannot share the mask's geometry
        raise ValueError(f"Input {name!r} of sample {sample.get('sample_id')!r} has shape {labels.shape}, but its "
                         f"mask has {native}; a map must be at the image's native size, like the mask.")
    return torch.from_numpy(resize_label_map(labels, (image_size, image_size)).copy())


def _as_value(value: Any) -> torch.Tensor:
    if isinstance(value, (bool, np.bool_)):
        return torch.tensor(bool(value))
    if isinstance(value, (int, np.integer)):
        return torch.tensor(int(value), dtype=torch.long)
    return torch.tensor(float(value), dtype=torch.float32)


def build_input(name: str, item: RawItem, image_size: int) -> Any:
    """The transformed value of input ``name`` for one raw item (a built-in field, else the raw
    sample's key, its kind read from the value): maps resized to ``image_size``², tokens and values
    as tensors, meta as is."""
    field = FIELDS.get(name)
    if field is None:
        value = _raw_value(item.sample, name)
        kind = kind_of_raw(value)
    else:
        value, kind = field.build(item), field.kind
    if kind == "map":
        return _as_map(name, value, item.sample, image_size)
    if kind == "tokens":
        return torch.tensor(value, dtype=torch.long)
    if kind == "value":
        return _as_value(value)
    return value


# --- checks and dummies ---------------------------------------------------------------------------

def _unavailable(method: str, name: str, dataset: str, why: str) -> InputUnavailable:
    return InputUnavailable(
        f"Method {method!r} needs the per-sample input {name!r}, which dataset {dataset!r} cannot provide: {why}; "
        "use a dataset that has it, or turn off the method option that needs it (see the method's docs)."
    )


def check_inputs(samples: Sequence[dict], inputs: Iterable[str], *, method: str, dataset: str) -> None:
    """Refuse, before any work starts, a declared input that ``samples`` cannot provide (raises
    :class:`InputUnavailable` naming the method, the input, the dataset, why, and the fix)."""
    names = input_names(inputs)
    if not names or len(samples) == 0:
        return
    metadata = raw = None
    for name in names:
        if name in ("object_mask", "position_mask"):  # built from the expression: always available
            continue
        if name == "instance_map":
            if not callable(getattr(samples, "instance_map", None)):
                raise _unavailable(method, name, dataset, "its samples carry one mask per expression and no instance "
                                   "annotations (its reader has no instance_map(index))")
        elif name in FIELDS:
            metadata = sample_metadata(samples, 0) if metadata is None else metadata
            if name not in metadata:
                raise _unavailable(method, name, dataset, f"its samples have no {name!r} (they have "
                                   f"{', '.join(sorted(map(str, metadata)))})")
        else:
            raw = samples[0] if raw is None else raw
            if name not in raw:
                raise _unavailable(method, name, dataset, f"{name!r} is neither a built-in input "
                                   f"({', '.join(FIELDS)}) nor a key of its samples ({', '.join(sorted(map(str, raw)))})")


def dummy_batch(inputs: Iterable[str], batch_size: int, image_size: int, length: int) -> dict[str, Any]:
    """The collated dummies of ``inputs`` (built-in fields only: a raw-sample key has no known shape)."""
    batch = {}
    for name in input_names(inputs):
        if name not in FIELDS:
            raise InvalidInputs(f"No dummy value for input {name!r}: it is not a built-in input ({', '.join(FIELDS)}), "
                                "so its shape is known only to the dataset that provides it.")
        batch[name] = FIELDS[name].dummy(batch_size, image_size, length)
    return batch
