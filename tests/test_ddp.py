"""DDP through torchrun with 2 CPU processes on gloo, for every test_* method: training runs (no
parameter without a gradient), one record from rank 0, and the distributed test metrics equal a
single-process evaluation of the same checkpoint. Plus: which device each process takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from conftest import SMALL_SYNTHETIC
from rrsis_bench.datasets.synthetic import SyntheticDataset

import rrsis_bench
from rrsis_bench.cli import main
from rrsis_bench.engine import distributed as D
from rrsis_bench.engine.trainer import resolve_device

LAUNCH_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")


def torchrun(args, cwd) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "rrsis_bench", *args]
    # a launcher's variables in the parent environment (a test run inside a SLURM job) must not leak in
    env = {**{k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def odd_split(root) -> str:
    """A split with an odd number of samples: over 2 ranks the sampler pads one duplicate, which the
    metrics must drop."""
    return next(s for s in ("val", "test", "train")
                if len(SyntheticDataset(root=root, split=s, num_images=SMALL_SYNTHETIC)) % 2 == 1)


@pytest.fixture(scope="module", params=rrsis_bench.list_methods("test_*"))
def ddp_run(request, tmp_path_factory, data_overrides, synthetic_root):
    """(method, split, work folder) of a 2-process training run; its test pass scores the odd split
    with the whole split on both ranks (no cap)."""
    method, split = request.param, odd_split(synthetic_root)
    work = tmp_path_factory.mktemp(f"ddp-{method}")
    result = torchrun(["run", f"method={method}", "trainer=debug", "trainer.batch_size=2", "trainer.epochs=1",
                       "trainer.max_eval_samples=null", "trainer.channels_last=false", "data.image_size=64",
                       f"eval_split={split}", *data_overrides, f"hydra.run.dir={work / 'run'}"], work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return method, split, work


@pytest.mark.dist
def test_distributed_run_trains_and_writes_one_record(ddp_run):
    method, _, work = ddp_run
    record = json.loads((work / "run" / "record.json").read_text())
    assert record["status"] == "complete" and record["method"]["name"] == method
    assert record["hardware"]["world_size"] == 2
    assert record["timing"]["steps"] >= 2  # DDP fails on the second step when a parameter gets no gradient
    assert not (work / "outputs").exists()  # rank 1 kept no run folder of its own


@pytest.mark.dist
def test_distributed_metrics_equal_single_process(ddp_run, tmp_path):
    _, split, work = ddp_run
    single = tmp_path / "single"
    assert main(["eval", f"checkpoint={work / 'run'}", f"split={split}", f"hydra.run.dir={single}"]) == 0
    one = json.loads((single / "record.json").read_text())
    two = json.loads((work / "run" / "record.json").read_text())
    assert two["metrics"]["num_samples"] == one["metrics"]["num_samples"]
    assert two["metrics"] == one["metrics"]
    rows_one = pd.read_csv(single / "per_sample.csv").sort_values("sample_id").reset_index(drop=True)
    rows_two = pd.read_csv(work / "run" / "per_sample.csv").sort_values("sample_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(rows_one, rows_two)


@pytest.mark.dist
@pytest.mark.parametrize("ddp_run", ["test_baseline"], indirect=True)
def test_distributed_eval_command_equals_single_process(ddp_run, tmp_path):
    """`torchrun ... eval` of a checkpoint equals `eval` in one process (3 per batch: a ragged end)."""
    _, split, work = ddp_run
    single = tmp_path / "single"
    assert main(["eval", f"checkpoint={work / 'run'}", f"split={split}", f"hydra.run.dir={single}"]) == 0
    result = torchrun(["eval", f"checkpoint={work / 'run'}", f"split={split}", "trainer.eval_batch_size=3",
                       f"hydra.run.dir={tmp_path / 'ddp'}"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    one = json.loads((single / "record.json").read_text())
    two = json.loads((tmp_path / "ddp" / "record.json").read_text())
    assert two["hardware"]["world_size"] == 2
    assert two["metrics"] == one["metrics"]
    rows_one = pd.read_csv(single / "per_sample.csv").sort_values("sample_id").reset_index(drop=True)
    rows_two = pd.read_csv(tmp_path / "ddp" / "per_sample.csv").sort_values("sample_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(rows_one, rows_two)


# -- which GPU a process takes ------------------------------------------------------------------
@pytest.fixture
def launcher_env(monkeypatch):
    """No launcher variables, and a machine with 4 visible GPUs."""
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    return monkeypatch


def test_torchrun_process_takes_its_local_rank_gpu(launcher_env):
    for name, value in {"RANK": "6", "LOCAL_RANK": "2", "WORLD_SIZE": "8", "SLURM_LOCALID": "0"}.items():
        launcher_env.setenv(name, value)  # torchrun inside a SLURM allocation: torchrun's variable wins
    assert D.local_rank() == 2
    assert D.world_info() == (6, 2, 8)
    assert resolve_device("auto") == torch.device("cuda", 2)


def test_srun_process_takes_its_slurm_localid_gpu(launcher_env):
    for name, value in {"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
                        "MASTER_ADDR": "node01"}.items():
        launcher_env.setenv(name, value)
    assert D.local_rank() == 1
    assert D.world_info() == (5, 1, 8)
    assert resolve_device("auto") == torch.device("cuda", 1)  # every srun task used to land on cuda:0
    # srun --gpus-per-task=1: each task sees only its own GPU, which is device 0 for it
    launcher_env.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda", 0)


def test_single_process_takes_the_first_gpu_and_explicit_devices_win(launcher_env):
    assert D.local_rank() == 0 and D.world_info() == (0, 0, 1)
    assert resolve_device("auto") == torch.device("cuda", 0)
    launcher_env.setenv("LOCAL_RANK", "3")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


# -- lrb_wrel under DDP -------------------------------------------------------------------------
@pytest.mark.dist
@pytest.mark.parametrize("method", rrsis_bench.list_methods("test_*"))
def test_lrb_wrel_trains_every_test_method_on_two_processes(method, tmp_path, data_overrides):
    """The bank steps (every rank takes part, with or without weak samples), the frozen stage outside DDP,
    the teacher beside the DDP-wrapped student: three stages on 2 processes."""
    result = torchrun(["run", f"method={method}", "trainer=debug", "trainer.batch_size=2", "trainer.epochs=1",
                       "trainer.channels_last=false", "data.image_size=64", "strategy=lrb_wrel",
                       "data.weak.accurate_ratio=0.5", *data_overrides, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["hardware"]["world_size"] == 2
    assert [h["stage"] for h in record["history"]] == ["warmup", "bank", "joint"]
