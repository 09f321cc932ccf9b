"""Reading ``.pt``/``.pth`` files without running code stored in them.

``torch.load(weights_only=True)`` restores tensors and plain Python values only; anything else in
the pickle is refused instead of being constructed (constructing objects is how a planted file runs
code). Checkpoints written by rrsis-bench need nothing more; a foreign file (an official checkpoint)
that does is loaded with full unpickling only when the caller says it trusts the file.

A leaf module: the engine (checkpoints) and ``rrsis_bench.nn`` (the official-checkpoint importer)
both read files through it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from rrsis_bench.errors import UserError

#: Classes besides tensors and plain values that :func:`load_torch_file` accepts without ``trust``:
#: official LAVT/FIANet checkpoints store their argparse arguments, a plain attribute bag whose
#: unpickling only sets attributes.
SAFE_CLASSES: tuple[type, ...] = (argparse.Namespace,)


class UnsafeFileError(UserError, ValueError):
    """A file would need full unpickling (which can run code stored in it) and was not loaded."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file is unreadable (truncated, not the expected format) or does not fit the model."""


def load_torch_file(path: str | os.PathLike, *, trust: bool, allowed: Iterable[type] = SAFE_CLASSES) -> Any:
    """``torch.load`` a foreign ``.pt``/``.pth`` file on the CPU without running code stored in it.

    The file is read with ``weights_only=True`` (tensors, plain values and the classes in
    ``allowed``). A file that needs anything else is refused with :class:`UnsafeFileError` unless
    ``trust`` is true, in which case it is fully unpickled: only do that for files from a source you
    trust, since unpickling can run any code the file contains.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No file at {path}; check the path.")
    try:
        return _weights_only_load(path, allowed=tuple(allowed))
    except pickle.UnpicklingError as exc:
        if not trust:
            raise UnsafeFileError(
                f"The file {path} holds {_offending_object(exc)}, which only full unpickling could load, and unpickling "
                "can run any code stored in the file, so it was not loaded; if you trust where the file came "
                "from, pass trust=true to load it anyway."
            ) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except _UNREADABLE as exc:
        raise CheckpointError(f"Cannot read {path} ({_first_line(exc)}); the file is truncated or not a "
                              "PyTorch file: copy it again.") from exc


# What torch.load raises on a truncated or foreign file (a zip without its directory, a legacy pickle
# cut short, bytes that are no pickle at all: the weights-only unpickler then fails on an opcode).
_UNREADABLE = (RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError)


def _weights_only_load(path: Path, allowed: tuple[type, ...]) -> Any:
    """``torch.load(path, weights_only=True)`` with ``allowed`` classes; a file that is not a torch file
    (or is cut short) raises :class:`CheckpointError` naming it."""
    try:
        with _allowing(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except _UNREADABLE as exc:
        if isinstance(exc, pickle.UnpicklingError) and "weights only load failed" in str(exc).lower():
            raise  # an object the weights-only unpickler refused: the caller decides
        raise CheckpointError(f"Cannot read {path} ({_first_line(exc)}); the file is truncated or not a "
                              "PyTorch file: copy it again.") from exc


def _allowing(classes: tuple[type, ...]):
    """A context in which ``weights_only`` loading also accepts ``classes``."""
    if not classes:
        return contextlib.nullcontext()
    scoped = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    if scoped is not None:
        return scoped(list(classes))
    add = getattr(torch.serialization, "add_safe_globals", None)  # torch 2.4: process-wide allow-list
    if add is not None:
        add(list(classes))
    return contextlib.nullcontext()


def _offending_object(exc: BaseException) -> str:
    """What the weights-only unpickler refused, from its message (e.g. 'the object builtins.open')."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return f"the object {found.group(1)}" if found else "objects other than tensors and plain values"


def _first_line(exc: BaseException) -> str:
    """The first sentence of ``exc``'s message, after its type (torch's messages run to paragraphs)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = re.split(r"(?<=\.)\s", lines[0])[0] if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
