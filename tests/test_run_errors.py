"""Bad input on the run side: one clear sentence naming the file or key and the fix, a non-zero exit,
and no run folder (before training) or record claiming success (after training started) left behind."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch
from conftest import exit_code, one_line
from safetensors import SafetensorError

from rrsis_bench.engine import checkpoint as ckpt
from rrsis_bench.engine.trainer import Trainer, TrainerSettingError, TrainerSettings
from rrsis_bench.io import DiskFullError, atomic_write, atomic_write_text
from rrsis_bench.results.record import load_records


def debug_run(run_dir, data_overrides, *extra) -> list[str]:
    return ["run", "method=test_baseline", "trainer=debug", *data_overrides, f"hydra.run.dir={run_dir}", *extra]


# -- config errors: before training, the run folder Hydra made is removed ------------------------
def test_trainer_setting_of_the_wrong_type(tmp_path, data_overrides, capsys):
    run_dir = tmp_path / "run"
    assert exit_code(debug_run(run_dir, data_overrides, "trainer.epochs=abc")) != 0
    assert "trainer.epochs must be an integer, not 'abc'; pass e.g. trainer.epochs=" in one_line(capsys)
    assert not run_dir.exists()


def test_trainer_settings_are_checked_key_by_key():
    assert TrainerSettings.from_config({"lr": 1, "grad_clip": None}).lr == 1.0  # an int is a number
    with pytest.raises(TrainerSettingError, match=r"trainer\.grad_clip must be a number or null, not 'x'"):
        TrainerSettings.from_config({"grad_clip": "x"})
    with pytest.raises(TrainerSettingError, match=r"trainer\.amp must be true or false, not 1"):
        TrainerSettings.from_config({"amp": 1})
    with pytest.raises(TrainerSettingError, match=r"trainer\.log_every must be at least 1, not 0"):
        TrainerSettings.from_config({"log_every": 0})
    # eval checks the subset of trainer keys it takes the same way
    assert TrainerSettings.check({"eval_batch_size": 8, "amp": False}) == {"eval_batch_size": 8, "amp": False}
    with pytest.raises(TrainerSettingError, match=r"trainer\.eval_batch_size must be an integer, not 'abc'"):
        TrainerSettings.check({"eval_batch_size": "abc"})


def test_dataset_root_is_required(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert exit_code(["run", "method=test_baseline", "data=refsegrs", "trainer=debug", f"hydra.run.dir={run_dir}"]) != 0
    message = one_line(capsys)
    assert ("data.root is required for data=refsegrs: pass data.root=DIR (the folder holding images/, masks/ "
            "and output_phrase_*.txt).") in message
    assert "???" not in message
    assert not run_dir.exists()


def test_failure_while_setting_up_the_trainer_removes_the_run_folder(tmp_path, data_overrides, capsys):
    run_dir = tmp_path / "run"
    assert exit_code(debug_run(run_dir, data_overrides, "trainer.batch_size=1000")) != 0
    assert "lower trainer.batch_size" in one_line(capsys)
    assert not run_dir.exists()


def test_failed_evaluation_removes_its_run_folder(tmp_path, capsys):
    run_dir = tmp_path / "eval"
    assert exit_code(["eval", f"checkpoint={tmp_path / 'nowhere'}", f"hydra.run.dir={run_dir}"]) != 0
    assert f"No checkpoint under {tmp_path / 'nowhere'}" in one_line(capsys)
    assert not run_dir.exists()


# -- after training started: a failed record, skipped by the leaderboard -------------------------
def test_failure_after_training_started_records_failed(tmp_path, data_overrides, monkeypatch, capsys):
    run_dir = tmp_path / "run"

    def out_of_memory(self, *args):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(Trainer, "_train_epoch", out_of_memory)
    assert exit_code(debug_run(run_dir, data_overrides)) != 0
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "failed"
    assert record["error"] == {"type": "RuntimeError", "message": "CUDA out of memory (simulated)"}
    assert record["config"]["trainer"]["batch_size"] == 4 and record["method"]["name"] == "test_baseline"
    assert (run_dir / "checkpoints" / "config.yaml").is_file()  # kept: the folder can be resumed
    loaded = load_records([run_dir])
    assert loaded.records == [] and [s.reason for s in loaded.skipped] == ["status is 'failed'"]


# -- checkpoint files ------------------------------------------------------------------------------
def test_truncated_weights_name_the_file(tmp_path):
    folder = ckpt.save_checkpoint(tmp_path / "best", torch.nn.Linear(4, 3))
    weights = folder / ckpt.MODEL_FILE
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load_weights(folder, torch.nn.Linear(4, 3))
    assert f"Cannot read the model weights {weights}" in str(err.value)
    assert "truncated" in str(err.value)


def test_weights_of_another_model_list_the_keys(tmp_path):
    folder = ckpt.save_checkpoint(tmp_path / "best", torch.nn.Sequential(torch.nn.Linear(4, 3)))
    other = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(4, 3))  # keys 1.* instead of 0.*
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load_weights(folder, other)
    assert str(err.value) == (
        f"The checkpoint {folder / ckpt.MODEL_FILE} does not fit this model: 2 missing keys (first: "
        "['1.bias', '1.weight']), 2 unexpected (first: ['0.bias', '0.weight']); build the model with the "
        "configuration the checkpoint was trained with."
    )


def test_weights_of_another_shape_name_the_file(tmp_path):
    folder = ckpt.save_checkpoint(tmp_path / "best", torch.nn.Linear(4, 3))
    with pytest.raises(ckpt.CheckpointError, match=f"The checkpoint {folder / ckpt.MODEL_FILE} does not fit"):
        ckpt.load_weights(folder, torch.nn.Linear(4, 5))


# -- disk full -----------------------------------------------------------------------------------
def no_space(*_):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_during_an_atomic_write(tmp_path):
    target = atomic_write_text(tmp_path / "record.json", "old\n")

    def half_then_full(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        no_space()

    with pytest.raises(DiskFullError) as err:
        atomic_write(target, half_then_full)
    assert str(err.value) == (f"The disk is full: cannot write {target} (no space left on device); free space "
                              "on that disk or write to another one.")
    assert err.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]  # the temporary file is gone
    assert target.read_text() == "old\n"


@pytest.mark.parametrize("full_at", ["weights", "state"])
def test_disk_full_while_saving_a_checkpoint(tmp_path, monkeypatch, full_at):
    model = torch.nn.Linear(2, 2)
    folder = ckpt.save_checkpoint(tmp_path / "last", model, state={"epoch": 1}, meta={"epoch": 1})
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    if full_at == "weights":
        # What safetensors raises on a full disk (measured on a 1 MiB tmpfs): the errno only as text.
        def fail(*_):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

        monkeypatch.setattr(ckpt, "save_model", fail)
        target = folder / ckpt.MODEL_FILE
    else:
        monkeypatch.setattr(torch, "save", no_space)
        target = folder / ckpt.STATE_FILE
    with pytest.raises(DiskFullError, match=f"cannot write {target} "):
        ckpt.save_checkpoint(folder, model, state={"epoch": 2}, meta={"epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temporary folder left
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # the older checkpoint is intact


def test_other_write_errors_pass_through(tmp_path):
    def denied(tmp):
        raise PermissionError(errno.EACCES, "Permission denied", tmp)

    with pytest.raises(PermissionError):
        atomic_write(tmp_path / "out.json", denied)
    assert list(tmp_path.iterdir()) == []
