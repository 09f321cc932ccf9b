"""Sweeps and studies through Hydra's submitit launcher (hydra-submitit-launcher), as on a cluster:
`submitit_local` runs every cell in a process of its own, like a SLURM job; a failed cell fails the
sweep; the SLURM GPU preset composes; the tasks of one submitit job join one process group."""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml
from conftest import exit_code, one_line

from rrsis_bench.engine import distributed as D
from rrsis_bench.engine.trainer import resolve_device

# A smoke run (1 epoch of 2 steps at 64 px) whose test pass is whole, so its record is complete.
SMOKE = ["method=test_baseline", "trainer=debug", "trainer.epochs=1", "trainer.progress=false",
         "trainer.max_eval_samples=null", "data.image_size=64"]
SUBMITIT_RUN = ["run", "-m", "hydra/launcher=submitit_local", *SMOKE]
# What adopt_submitit_environment exports for a job of several tasks (torch's env:// variables).
EXPORTED = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def records(folder) -> dict[str, dict]:
    """The record of every job folder of a sweep, by folder name."""
    return {path.parent.name: json.loads(path.read_text()) for path in folder.glob("*/record.json")}


def submitit_jobs(folder) -> int:
    """How many jobs submitit ran for the sweep in ``folder`` (each leaves its pickled result)."""
    return len(list((folder / ".submitit").glob("*/*_0_result.pkl")))


# -- sweeps and studies through submitit_local ----------------------------------------------------
def test_a_sweep_through_submitit_local_writes_one_complete_record_per_cell(tmp_path, data_overrides):
    sweep = tmp_path / "sweep"
    assert exit_code([*SUBMITIT_RUN, "seed=0,1", *data_overrides, f"hydra.sweep.dir={sweep}"]) == 0
    found = records(sweep)
    assert sorted(found) == ["0", "1"]
    assert {found[name]["seed"] for name in found} == {0, 1}
    assert all(r["status"] == "complete" and r["hardware"]["world_size"] == 1 for r in found.values())
    assert submitit_jobs(sweep) == 2  # submitit ran them (in other processes), not Hydra's in-process launcher


def test_a_cell_that_fails_in_its_own_process_fails_the_sweep(tmp_path, data_overrides, capsys):
    """The job's error travels back in Hydra's job return: exit status 1 and the job's one-line error
    (before this, the error stayed in the job's process and the sweep exited 0)."""
    sweep = tmp_path / "sweep"
    assert exit_code([*SUBMITIT_RUN, "eval_split=bogus", *data_overrides, f"hydra.sweep.dir={sweep}"]) == 1
    printed = one_line(capsys)
    assert "error: job #0 failed: Unknown split 'bogus' for synthetic" in printed
    assert f"the launcher's logs under {sweep}" in printed
    assert submitit_jobs(sweep) == 1


def test_a_study_passes_the_launcher_to_its_cells(tmp_path, data_overrides):
    """One cell (ratio 1.0, seed 0) is enough to show the way: the study's cells are `run -m` sweeps
    (above) with the study's other words, hydra/launcher=... among them."""
    out = tmp_path / "study"
    args = ["study", "weak_ratio", "ratios=[1.0]", "seeds=[0]", *SMOKE, "hydra/launcher=submitit_local",
            *data_overrides, f"out={out}"]
    assert exit_code(args) == 0
    study = json.loads((out / "study.json").read_text())
    assert study["complete"] == 1 and not study["missing"]
    found = records(out / "cells")
    assert list(found) == ["standard-acc1.0-seed0"] and found["standard-acc1.0-seed0"]["status"] == "complete"
    assert submitit_jobs(out / "cells") == 1


@pytest.mark.dist
def test_the_tasks_of_one_submitit_job_train_as_one_process_group(tmp_path, data_overrides, monkeypatch):
    """tasks_per_node=2: submitit starts 2 processes for the job, which join one gloo group from
    submitit's job environment (rank, world size, port); MASTER_ADDR set beforehand wins (loopback)."""
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    sweep = tmp_path / "sweep"
    assert exit_code([*SUBMITIT_RUN, "hydra.launcher.tasks_per_node=2", "trainer.batch_size=2",
                      *data_overrides, f"hydra.sweep.dir={sweep}"]) == 0
    (record,) = records(sweep).values()
    assert record["status"] == "complete" and record["hardware"]["world_size"] == 2
    assert record["timing"]["steps"] >= 2  # DDP steps on both ranks


# -- the SLURM preset -----------------------------------------------------------------------------
def test_the_slurm_gpu_preset_composes_and_takes_overrides(capsys):
    assert exit_code(["run", "--cfg", "hydra", "hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu",
                      "hydra.launcher.timeout_min=600"]) == 0
    launcher = yaml.safe_load(capsys.readouterr().out)["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher["gpus_per_node"] == launcher["tasks_per_node"] == 4  # one process per GPU
    assert (launcher["partition"], launcher["timeout_min"], launcher["cpus_per_task"], launcher["nodes"]) == \
        ("gpu", 600, 8, 1)
    assert launcher["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"


# -- how a submitit task finds its process group --------------------------------------------------
@pytest.fixture
def job_env(monkeypatch):
    """A private copy of the environment without launcher variables (what the code under test exports
    goes away with it), and a machine with 4 visible GPUs."""
    clean = {k: v for k, v in os.environ.items() if k not in (*EXPORTED, "SUBMITIT_EXECUTOR") and not k.startswith("SLURM_")}
    monkeypatch.setattr(os, "environ", clean)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    return clean


def slurm_task(procid: int, localid: int, nodeid: int, ntasks: int = 8) -> dict[str, str]:
    """What srun sets for one task of array element 3 of job 4242 (2 nodes, 4 tasks each), plus
    submitit's marker."""
    return {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4245", "SLURM_ARRAY_JOB_ID": "4242",
            "SLURM_ARRAY_TASK_ID": "3", "SLURM_NTASKS": str(ntasks), "SLURM_JOB_NUM_NODES": "2",
            "SLURM_NODEID": str(nodeid), "SLURM_PROCID": str(procid), "SLURM_LOCALID": str(localid),
            "SLURM_JOB_NODELIST": "gpu-a[07-08]"}


def test_a_submitit_slurm_task_takes_its_rank_and_the_jobs_first_node_as_master(job_env):
    visible = job_env.get("CUDA_VISIBLE_DEVICES")
    job_env.update(slurm_task(procid=5, localid=1, nodeid=1))
    assert D.world_info() == (5, 1, 8)
    assert resolve_device("auto") == torch.device("cuda", 1)
    exported = {k: job_env[k] for k in EXPORTED}
    assert exported["MASTER_ADDR"] == "gpu-a07"
    assert 20000 <= int(exported["MASTER_PORT"]) <= 60000
    assert (exported["RANK"], exported["WORLD_SIZE"], exported["LOCAL_RANK"], exported["LOCAL_WORLD_SIZE"]) == \
        ("5", "8", "1", "4")
    # rank 0, on the other node, computes the same address and port
    for name in EXPORTED:
        del job_env[name]
    job_env.update(slurm_task(procid=0, localid=0, nodeid=0))
    assert D.world_info() == (0, 0, 8)
    assert (job_env["MASTER_ADDR"], job_env["MASTER_PORT"]) == (exported["MASTER_ADDR"], exported["MASTER_PORT"])
    assert job_env.get("CUDA_VISIBLE_DEVICES") == visible  # cuda_device_index picks the GPU, not submitit


def test_variables_already_set_win_over_submitits(job_env):
    job_env.update(slurm_task(procid=2, localid=2, nodeid=0), MASTER_PORT="29510", MASTER_ADDR="10.0.0.7")
    assert D.world_info() == (2, 2, 8)
    assert (job_env["MASTER_ADDR"], job_env["MASTER_PORT"]) == ("10.0.0.7", "29510")
    # torchrun started inside a submitit job: its variables are the process group, nothing is exported
    job_env.clear()
    job_env.update(slurm_task(procid=0, localid=0, nodeid=0), RANK="3", WORLD_SIZE="4", LOCAL_RANK="3")
    assert D.world_info() == (3, 3, 4)
    assert "MASTER_ADDR" not in job_env


def test_one_task_jobs_and_plain_multi_task_allocations_stay_one_process(job_env):
    job_env.update(slurm_task(procid=0, localid=0, nodeid=0, ntasks=1))
    assert D.world_info() == (0, 0, 1) and "MASTER_ADDR" not in job_env
    # srun without submitit and without MASTER_ADDR: not a process group (unchanged)
    job_env.update(slurm_task(procid=1, localid=1, nodeid=0, ntasks=4))
    del job_env["SUBMITIT_EXECUTOR"]
    assert D.world_info() == (0, 0, 1) and "MASTER_ADDR" not in job_env
