"""Determinism and resume: an interrupted run resumed from its last checkpoint ends exactly where
an uninterrupted run ends."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
import yaml
from conftest import exit_code, one_line
from safetensors.torch import load_file

from rrsis_bench.engine.trainer import Trainer


class Interrupted(Exception):
    pass


def run(run_dir, data_overrides, *extra) -> int:
    args = ["run", "method=test_baseline", "trainer=debug", "trainer.epochs=3", "trainer.max_eval_samples=null",
            *data_overrides, f"hydra.run.dir={run_dir}", *extra]
    return exit_code(args)


def outputs(run_dir):
    record = json.loads((run_dir / "record.json").read_text())
    weights = load_file(run_dir / "checkpoints" / "last" / "model.safetensors")
    log = pd.read_csv(run_dir / "train_log.csv")
    return record, weights, log


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, data_overrides):
    """The folder of an uninterrupted run (copy it before resuming in it)."""
    run_dir = tmp_path_factory.mktemp("resume") / "straight"
    assert run(run_dir, data_overrides) == 0
    return run_dir


@pytest.fixture(scope="module")
def uninterrupted(straight_run):
    return outputs(straight_run)


def test_same_seed_same_result(uninterrupted, tmp_path, data_overrides):
    assert run(tmp_path / "again", data_overrides) == 0
    record, weights, log = outputs(tmp_path / "again")
    ref_record, ref_weights, ref_log = uninterrupted
    assert record["metrics"] == ref_record["metrics"]
    assert list(log["loss"]) == list(ref_log["loss"])
    assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights)


def test_resume_reproduces_the_uninterrupted_run(uninterrupted, tmp_path, data_overrides, monkeypatch):
    run_dir = tmp_path / "interrupted"
    real_epoch = Trainer._train_epoch

    def crash_in_second_epoch(self, index, stage_epoch, epoch, *args):
        if epoch == 1:
            raise Interrupted("simulated crash")
        return real_epoch(self, index, stage_epoch, epoch, *args)

    monkeypatch.setattr(Trainer, "_train_epoch", crash_in_second_epoch)
    assert run(run_dir, data_overrides) != 0
    crashed = json.loads((run_dir / "record.json").read_text())
    assert crashed["status"] == "failed" and crashed["error"]["message"] == "simulated crash"
    # checkpoints/last: after epoch 1 of 2-step epochs, of the strategy's one stage
    assert crashed["last_checkpoint"] == {"epoch": 1, "step": 2, "stage": "train"}
    assert (run_dir / "checkpoints" / "last" / "state.pt").is_file()
    monkeypatch.setattr(Trainer, "_train_epoch", real_epoch)

    # keys that cannot change the result may differ on resume
    assert run(run_dir, data_overrides, "resume=true", "trainer.progress=false", "trainer.device=cpu") == 0
    record, weights, log = outputs(run_dir)
    assert record["status"] == "complete"
    ref_record, ref_weights, ref_log = uninterrupted
    assert record["metrics"] == ref_record["metrics"]
    assert record["selection"] == ref_record["selection"]
    assert record["config_hash"] == ref_record["config_hash"]  # `resume` is not part of the identity
    assert list(log["step"]) == list(ref_log["step"]) and list(log["loss"]) == list(ref_log["loss"])
    assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, data_overrides, capsys):
    assert run(tmp_path / "fresh", data_overrides, "resume=true") != 0
    assert f"resume=true but there is no run config at {tmp_path / 'fresh' / 'checkpoints' / 'config.yaml'}" \
        in one_line(capsys)
    assert not (tmp_path / "fresh").exists()


def test_resume_refuses_a_changed_config(straight_run, tmp_path, data_overrides, capsys):
    run_dir = tmp_path / "copy"
    shutil.copytree(straight_run, run_dir)
    saved = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and ".hydra" not in p.parts}
    config = yaml.safe_load((run_dir / "checkpoints" / "config.yaml").read_text())
    capsys.readouterr()

    assert run(run_dir, data_overrides, "resume=true", "trainer.lr=0.5", "trainer.epochs=4", "data.image_size=96",
               "trainer.progress=false") != 0
    message = one_line(capsys)
    assert (f"resume=true refuses a changed config: data.image_size {config['data']['image_size']} → 96, "
            f"trainer.epochs 3 → 4, trainer.lr {config['trainer']['lr']} → 0.5 (the run started with "
            f"{run_dir / 'checkpoints' / 'config.yaml'}); resume with the original values, or start a new run "
            "without resume=true in a new hydra.run.dir.") in message
    assert "progress" not in message
    # nothing the run wrote was touched (Hydra rewrites its own .hydra/ files)
    assert {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*")
            if p.is_file() and ".hydra" not in p.parts} == saved
