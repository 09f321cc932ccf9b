"""Shared fixtures. Tests run offline on CPU: no model hub, no dataset host, no network."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SMALL_SYNTHETIC = {"train": 12, "val": 4, "test": 5}  # ~4 refs per image


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Refuse connections to anything but this machine (loopback is needed by torch.distributed)."""
    real_connect = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if (
            isinstance(host, str)
            and not (host.startswith("127.") or host in ("localhost", "::1"))
            and sock.family in (socket.AF_INET, socket.AF_INET6)
        ):
            raise OSError(f"network access to {host} is not allowed in tests")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic dataset (RRSIS-D layout), generated once per test session."""
    from rrsis_bench.datasets.synthetic import SyntheticDataset

    root = tmp_path_factory.mktemp("synthetic")
    SyntheticDataset(root=root, split="train", num_images=SMALL_SYNTHETIC)
    return root


@pytest.fixture(scope="session")
def data_overrides(synthetic_root) -> list[str]:
    """Hydra overrides that point data=synthetic at the small session dataset."""
    images = ",".join(f"{k}:{v}" for k, v in SMALL_SYNTHETIC.items())
    return [f"data.root={synthetic_root}", f"+data.options.num_images={{{images}}}"]


def exit_code(args) -> int:
    """``rrsis-bench ARGS`` in this process: its exit status, also when Hydra exits on its own error."""
    from rrsis_bench.cli import main

    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


def one_line(capsys) -> str:
    """Everything printed so far (stdout and stderr), whitespace folded: messages wrap in narrow consoles."""
    captured = capsys.readouterr()
    return " ".join((captured.out + captured.err).split())
