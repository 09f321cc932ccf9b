"""Loading only what is safe: a pickle that would run code is refused on resume and on convert, unless
the user explicitly trusts the file; official checkpoints with their argparse arguments load safely."""

from __future__ import annotations

import argparse
import builtins

import pytest
import torch
from conftest import exit_code, one_line

from rrsis_bench.engine.checkpoint import (
    STATE_FILE,
    UnsafeFileError,
    load_state,
    load_torch_file,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


class PlantedCode:
    """Unpickling this object opens (creates) ``marker``: stands in for any code planted in a file."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def planted_file(path, marker, **extra) -> None:
    torch.save({"model": {"weight": torch.ones(2)}, "payload": PlantedCode(marker), **extra}, path)


# -- convert: load_torch_file ------------------------------------------------------------------
def test_planted_code_does_not_run_without_trust(tmp_path):
    path, marker = tmp_path / "official.pth", tmp_path / "marker"
    planted_file(path, marker)
    with pytest.raises(UnsafeFileError) as err:
        load_torch_file(path, trust=False)
    assert not marker.exists()
    message = str(err.value)
    assert str(path) in message and "trust=true" in message and "run any code" in message
    assert "io.open" in message  # the object that was refused, from the weights-only unpickler


def test_trust_is_the_only_way_to_unpickle_it(tmp_path):
    # The same file with trust=true does run the planted code: the refusal above is what protects.
    path, marker = tmp_path / "official.pth", tmp_path / "marker"
    planted_file(path, marker)
    loaded = load_torch_file(path, trust=True)
    assert marker.exists()
    assert torch.equal(loaded["model"]["weight"], torch.ones(2))


def test_official_checkpoint_with_argparse_arguments_loads_without_trust(tmp_path):
    # Official LAVT/FIANet files: {'model': state_dict, 'args': argparse.Namespace}.
    path = tmp_path / "official.pth"
    args = argparse.Namespace(lr=5e-5, swin_type="base", img_size=480, pretrained_swin_weights="")
    torch.save({"model": {"classifier.weight": torch.arange(4.0)}, "args": args, "epoch": 39}, path)
    loaded = load_torch_file(path, trust=False)
    assert loaded["args"] == args and loaded["epoch"] == 39
    assert torch.equal(loaded["model"]["classifier.weight"], torch.arange(4.0))


def test_official_reader_refuses_planted_code_without_trust(tmp_path):
    # `rrsis-bench convert` reads official files through read_official_checkpoint.
    from rrsis_bench.nn.official_lavt import read_official_checkpoint

    path, marker = tmp_path / "official.pth", tmp_path / "marker"
    planted_file(path, marker)
    with pytest.raises(UnsafeFileError, match="trust=true"):
        read_official_checkpoint(path)
    assert not marker.exists()
    assert read_official_checkpoint(path, trust=True)["model"]["weight"].tolist() == [1.0, 1.0]


# -- resume: state.pt ----------------------------------------------------------------------------
def test_trainer_state_round_trips_through_the_weights_only_loader(tmp_path):
    import random

    import numpy as np

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = {"epoch": 2, "best": {"metrics": {"mIoU": np.float64(41.5)}}, "optimizer": optimizer.state_dict(),
             "rng": [rng_state()]}
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    save_checkpoint(tmp_path / "last", model, state=state)

    loaded = load_state(tmp_path / "last")  # weights_only=True inside
    assert loaded["epoch"] == 2 and loaded["best"]["metrics"]["mIoU"] == 41.5
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(loaded["rng"][0])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_resume_does_not_unpickle_a_planted_state_file(tmp_path, data_overrides, capsys):
    run_dir = tmp_path / "run"
    args = ["run", "method=test_baseline", "trainer=debug", "trainer.epochs=1", *data_overrides,
            f"hydra.run.dir={run_dir}"]
    assert exit_code(args) == 0
    record = (run_dir / "record.json").read_text()
    state_file = run_dir / "checkpoints" / "last" / STATE_FILE
    marker = tmp_path / "marker"
    planted_file(state_file, marker)
    capsys.readouterr()

    assert exit_code([*args, "resume=true"]) != 0
    assert not marker.exists()
    message = one_line(capsys)
    assert f"The trainer state {state_file} holds the object io.open" in message
    assert "it was not loaded" in message
    assert (run_dir / "record.json").read_text() == record  # the finished run's record is untouched


def test_resume_refuses_a_state_file_of_an_older_format(tmp_path):
    # numpy arrays (how the RNG state used to be stored) need full unpickling: refused, not loaded.
    import numpy as np

    folder = tmp_path / "last"
    save_checkpoint(folder, torch.nn.Linear(1, 1))
    torch.save({"epoch": 1, "rng": [{"numpy": np.random.get_state()}]}, folder / STATE_FILE)
    with pytest.raises(UnsafeFileError, match="start a fresh run"):
        load_state(folder)
