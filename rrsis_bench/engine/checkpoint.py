"""Checkpoints: model weights as safetensors, trainer state (optimizer, scheduler, RNG) beside them.

A checkpoint is a folder holding ``model.safetensors`` and ``state.pt`` (and ``meta.json``). It
is written into a temporary sibling folder and renamed into place, so a crash or a full disk never
leaves a half-written checkpoint behind.

Nothing here unpickles arbitrary objects: ``state.pt`` holds only tensors and plain Python values
(numpy RNG state is stored as a tensor) and is read with ``torch.load(weights_only=True)``, which
refuses any other object instead of running code planted in the file. :mod:`rrsis_bench.serialization` reads
foreign ``.pth`` files the same way and unpickles fully only when the caller says it trusts the file.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from rrsis_bench.errors import UserError
from rrsis_bench.io import reporting_disk_full
from rrsis_bench.serialization import (  # noqa: F401  (re-exported: the engine's loading API)
    SAFE_CLASSES,
    CheckpointError,
    UnsafeFileError,
    _first_line,
    _offending_object,
    _weights_only_load,
    load_torch_file,
)

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
META_FILE = "meta.json"

class ResumeError(UserError, ValueError):
    """``resume=true`` cannot continue this run as it was configured (changed config, other world size)."""


# -- RNG state ---------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states as tensors and plain values, so that ``state.pt``
    loads with ``weights_only=True`` (a numpy array would not)."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays replaced by Python numbers and tensors (recursively),
    so ``torch.load(weights_only=True)`` accepts it."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


# -- writing -----------------------------------------------------------------------------------
def save_checkpoint(folder: str | os.PathLike, model: torch.nn.Module, *, state: dict | None = None,
                    meta: dict | None = None) -> Path:
    """Write ``folder`` atomically (temp folder + rename, replacing an older one).

    On any failure the temporary folder is removed and an older ``folder`` is left as it was; a full
    disk raises :class:`rrsis_bench.io.DiskFullError` naming the file that could not be written.
    """
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    old = folder.with_name(f".{folder.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    writes: list[tuple[str, Callable[[Path], object]]] = [(MODEL_FILE, lambda path: save_model(model, str(path)))]
    if state is not None:
        writes.append((STATE_FILE, lambda path: _save_state(_plain(state), path)))
    if meta is not None:
        writes.append((META_FILE, lambda path: path.write_text(json.dumps(meta, indent=2, default=str) + "\n")))
    try:
        with reporting_disk_full(folder):
            tmp.mkdir(parents=True)
        for name, write in writes:
            with reporting_disk_full(folder / name):
                write(tmp / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _save_state(state: dict, path: Path) -> None:
    # Through a Python file object, so a full disk surfaces as OSError(ENOSPC); torch.save to a path
    # reports it as an unexplained "unexpected pos" RuntimeError.
    with open(path, "wb") as f:
        torch.save(state, f)


# -- resume ------------------------------------------------------------------------------------
def check_resume_config(saved: str | os.PathLike, config: Mapping[str, Any], *,
                        may_differ: Iterable[str] = ()) -> None:
    """Refuse to resume when ``config`` differs from the run config ``saved`` at the start of the run.

    A resumed run must compute what its record will claim, so every key must match except those in
    ``may_differ`` (dotted keys; an entry covers the keys below it), which change where or how a run
    executes, not its result. Raises :class:`ResumeError` listing each changed key, old → new.
    """
    saved = Path(saved)
    if not saved.is_file():
        raise FileNotFoundError(
            f"resume=true but there is no run config at {saved}; point hydra.run.dir at the folder of the "
            "interrupted run, or drop resume=true."
        )
    with saved.open(encoding="utf-8") as f:
        before = yaml.safe_load(f) or {}
    # Compare through the same YAML round trip the saved file went through (tuples become lists).
    after = yaml.safe_load(yaml.safe_dump(_plain_container(config)))
    ignored = tuple(may_differ)
    changes = [
        (key, old, new) for key, old, new in _differences(before, after)
        if not any(key == prefix or key.startswith(prefix + ".") for prefix in ignored)
    ]
    if changes:
        listed = ", ".join(f"{key} {_shown(old)} → {_shown(new)}" for key, old, new in changes)
        raise ResumeError(
            f"resume=true refuses a changed config: {listed} (the run started with {saved}); resume with the "
            "original values, or start a new run without resume=true in a new hydra.run.dir."
        )


_ABSENT = object()


def _differences(before: Any, after: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old, new) for every leaf that differs; lists are compared as whole values."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        found = []
        for key in [*before, *(k for k in after if k not in before)]:
            found += _differences(before.get(key, _ABSENT), after.get(key, _ABSENT), f"{prefix}{key}.")
        return found
    same = _same_number(before, after) or (type(before) is type(after) and before == after)  # True != 1
    return [] if same else [(prefix.rstrip("."), before, after)]


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) \
        and not isinstance(b, bool) and a == b


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def _plain_container(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain_container(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_container(v) for v in value]
    return value


# -- reading -----------------------------------------------------------------------------------
def load_weights(folder: str | os.PathLike, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No model weights at {path}; pass the checkpoint folder of a finished run.")
    try:
        missing, unexpected = load_model(model, str(path), strict=False, device=str(device))
    except SafetensorError as exc:
        raise CheckpointError(
            f"Cannot read the model weights {path} ({exc}): the file is truncated or not a safetensors file; "
            "copy it again or retrain the run."
        ) from exc
    except RuntimeError as exc:  # load_state_dict: a tensor of the wrong shape
        raise CheckpointError(
            f"The checkpoint {path} does not fit this model ({_first_line(exc)}); build the model with the "
            "configuration the checkpoint was trained with."
        ) from exc
    if missing or unexpected:
        missing, unexpected = sorted(missing), sorted(unexpected)
        raise CheckpointError(
            f"The checkpoint {path} does not fit this model: {len(missing)} missing keys "
            f"(first: {missing[:3]}), {len(unexpected)} unexpected (first: {unexpected[:3]}); "
            "build the model with the configuration the checkpoint was trained with."
        )


def load_state(folder: str | os.PathLike) -> dict:
    """The trainer state of a checkpoint, read with ``weights_only=True`` (nothing is unpickled)."""
    path = Path(folder) / STATE_FILE
    try:
        return _weights_only_load(path, allowed=())
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(
            f"The trainer state {path} holds {_offending_object(exc)}, which only full unpickling could load "
            "and which could run code stored in the file, so it was not loaded: it was not written by this "
            "version of rrsis-bench, or it was altered; start a fresh run (drop resume=true)."
        ) from exc


def read_meta(folder: str | os.PathLike) -> dict:
    path = Path(folder) / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
