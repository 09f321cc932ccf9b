"""Determinism and resume: an interrupted run resumed from its last checkpoint ends exactly where
an uninterrupted run ends."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from rrsis_bench.cli import main
from rrsis_bench.engine.trainer import Trainer


class Interrupted(Exception):
    pass


def run(run_dir, data_overrides, *extra) -> int:
    args = ["run", "method=test_baseline", "trainer=debug", "trainer.epochs=3", "trainer.max_eval_samples=null",
            *data_overrides, f"hydra.run.dir={run_dir}", *extra]
    return main(args)


def outputs(run_dir):
    record = json.loads((run_dir / "record.json").read_text())
    weights = load_file(run_dir / "checkpoints" / "last" / "model.safetensors")
    log = pd.read_csv(run_dir / "train_log.csv")
    return record, weights, log


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_overrides):
    run_dir = tmp_path_factory.mktemp("resume") / "straight"
    assert run(run_dir, data_overrides) == 0
    return outputs(run_dir)


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

    def crash_in_second_epoch(self, epoch, step, log):
        if epoch == 1:
            raise Interrupted("simulated crash")
        return real_epoch(self, epoch, step, log)

    monkeypatch.setattr(Trainer, "_train_epoch", crash_in_second_epoch)
    with pytest.raises(SystemExit):  # Hydra reports the crash and exits non-zero
        run(run_dir, data_overrides)
    assert not (run_dir / "record.json").exists()
    assert (run_dir / "checkpoints" / "last" / "state.pt").is_file()
    monkeypatch.setattr(Trainer, "_train_epoch", real_epoch)

    assert run(run_dir, data_overrides, "resume=true") == 0
    record, weights, log = outputs(run_dir)
    ref_record, ref_weights, ref_log = uninterrupted
    assert record["metrics"] == ref_record["metrics"]
    assert record["selection"] == ref_record["selection"]
    assert record["config_hash"] == ref_record["config_hash"]  # `resume` is not part of the identity
    assert list(log["step"]) == list(ref_log["step"]) and list(log["loss"]) == list(ref_log["loss"])
    assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, data_overrides, capsys):
    with pytest.raises(SystemExit):
        run(tmp_path / "fresh", data_overrides, "resume=true")
    assert "resume=true but there is no checkpoint" in capsys.readouterr().err
