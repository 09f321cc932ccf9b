"""Checkpoints: model weights as safetensors, trainer state (optimizer, scheduler, RNG) beside them.

A checkpoint is a folder holding ``model.safetensors`` and ``state.pt`` (and ``meta.json``). It
is written into a temporary sibling folder and renamed into place, so a crash never leaves a
half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
META_FILE = "meta.json"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: str | os.PathLike, model: torch.nn.Module, *, state: dict | None = None,
                    meta: dict | None = None) -> Path:
    """Write ``folder`` atomically (temp folder + rename, replacing an older one)."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    old = folder.with_name(f".{folder.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / MODEL_FILE))
    if state is not None:
        torch.save(state, tmp / STATE_FILE)
    if meta is not None:
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def load_weights(folder: str | os.PathLike, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No model weights at {path}; pass the checkpoint folder of a finished run.")
    missing, unexpected = load_model(model, str(path), strict=False, device=str(device))
    if missing or unexpected:
        raise RuntimeError(
            f"The checkpoint {path} does not fit this model: {len(missing)} missing keys "
            f"(first: {missing[:3]}), {len(unexpected)} unexpected (first: {unexpected[:3]}). "
            "Build the model with the configuration the checkpoint was trained with."
        )


def load_state(folder: str | os.PathLike) -> dict:
    return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)


def read_meta(folder: str | os.PathLike) -> dict:
    path = Path(folder) / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
