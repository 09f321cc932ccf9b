"""Run identity: unique run folders and run ids, an exclusive claim on the folder, partial smoke runs."""

from __future__ import annotations

import json
import re
import shutil
import threading
from datetime import datetime

import pandas as pd
import pytest
from conftest import exit_code, one_line
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from rrsis_bench.cli import main
from rrsis_bench.results import record as record_module
from rrsis_bench.results.record import (
    RECORD_FILE,
    RUN_CLAIM_FILE,
    RunFolderInUse,
    claim_run_dir,
    load_records,
    read_run_claim,
    scoring_status,
)

STAMP = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-[0-9a-f]{6}")


# --------------------------------------------------------------------------- unique folders


class FrozenClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2025, 1, 1, 12, 0, 0, tzinfo=tz)


def test_runs_started_in_the_same_second_get_different_folders(monkeypatch):
    monkeypatch.setattr(record_module, "datetime", FrozenClock)
    first = OmegaConf.create({"dir": "outputs/run/${run_stamp:}"})
    second = OmegaConf.create({"dir": "outputs/run/${run_stamp:}"})
    assert first.dir.startswith("outputs/run/2025-01-01_12-00-00-")
    assert first.dir != second.dir
    assert first.dir == first.dir  # resolved once per config, like Hydra's ${now:}
    assert record_module.new_run_id() != record_module.new_run_id()


def test_the_jobs_of_one_sweep_share_its_folder():
    """Hydra's launcher resolves the sweep folder, then copies the resolver cache into each job's config."""
    master = OmegaConf.create({"sweep": "multirun/${run_stamp:}"})
    sweep_dir = master.sweep
    job = OmegaConf.create({"sweep": "multirun/${run_stamp:}"})
    OmegaConf.copy_cache(from_config=master, to_config=job)
    assert job.sweep == sweep_dir and STAMP.fullmatch(sweep_dir.split("/")[1])


@pytest.mark.parametrize(("config_name", "keys"), [("run", ["run.dir", "sweep.dir"]), ("eval", ["run.dir"])])
def test_default_folders_are_unique(config_name, keys):
    dirs = []
    for _ in range(2):
        with initialize_config_module("rrsis_bench.conf", version_base="1.3"):
            cfg = compose(config_name, return_hydra_config=True, overrides=["checkpoint=x"] * (config_name == "eval"))
        dirs.append([OmegaConf.select(cfg.hydra, key) for key in keys])
    for key, first, second in zip(keys, *dirs, strict=True):
        assert STAMP.fullmatch(first.rsplit("/", 1)[1]), (key, first)
        assert first != second, key


# --------------------------------------------------------------------------- the claim


def test_a_folder_is_claimed_once(tmp_path):
    run_id = claim_run_dir(tmp_path / "run")
    assert read_run_claim(tmp_path / "run")["run_id"] == run_id
    with pytest.raises(RunFolderInUse) as err:
        claim_run_dir(tmp_path / "run")
    assert str(err.value) == (
        f"The run folder {tmp_path / 'run'} already holds run {run_id}; pass resume=true to continue that run, "
        "or give this run its own folder (leave hydra.run.dir at its default, or pick a new one)."
    )
    assert claim_run_dir(tmp_path / "run", resume=True) == run_id  # a resumed run keeps its id
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [RUN_CLAIM_FILE]  # no temp files left


@pytest.mark.parametrize("left", [RECORD_FILE, "checkpoints"])
def test_a_folder_with_an_unclaimed_run_is_refused_unless_resumed(tmp_path, left):
    """Folders written before claims existed hold a record or checkpoints but no run.json."""
    (tmp_path / "checkpoints").mkdir() if left == "checkpoints" else (tmp_path / left).write_text("{}")
    with pytest.raises(RunFolderInUse, match=r"already holds an earlier run \(record.json or checkpoints/\)"):
        claim_run_dir(tmp_path)
    run_id = claim_run_dir(tmp_path, resume=True)
    assert read_run_claim(tmp_path)["run_id"] == run_id


def test_two_processes_racing_for_one_folder_never_share_it(tmp_path):
    results: list[str] = []
    refusals: list[Exception] = []
    start = threading.Barrier(8)

    def claim() -> None:
        start.wait()
        try:
            results.append(claim_run_dir(tmp_path / "run"))
        except RunFolderInUse as exc:
            refusals.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 1 and len(refusals) == 7
    assert read_run_claim(tmp_path / "run")["run_id"] == results[0]


def test_an_unreadable_claim_is_named(tmp_path):
    (tmp_path / RUN_CLAIM_FILE).write_text("{")
    with pytest.raises(ValueError, match=re.escape(f"The run claim {tmp_path / RUN_CLAIM_FILE} is not readable")):
        claim_run_dir(tmp_path)


def test_scoring_status():
    assert scoring_status(777, 777) == "complete"
    assert scoring_status(64, 777) == "partial"
    with pytest.raises(ValueError, match="778 samples scored on a split of 777"):
        scoring_status(778, 777)


# --------------------------------------------------------------------------- through the CLI


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_overrides):
    run_dir = tmp_path_factory.mktemp("identity") / "smoke"
    assert main(["run", "method=test_baseline", "trainer=debug", *data_overrides, f"hydra.run.dir={run_dir}"]) == 0
    return run_dir


def test_a_capped_test_pass_is_recorded_as_partial(smoke_run, synthetic_root):
    record = json.loads((smoke_run / RECORD_FILE).read_text())
    assert record["status"] == "partial"
    split_size = record["data"]["split_num_samples"]
    assert record["data"]["num_samples"] == record["metrics"]["num_samples"] == 8 < split_size
    assert len(pd.read_csv(smoke_run / "per_sample.csv")) == 8
    loaded = load_records([smoke_run])
    assert loaded.records == [] and [s.reason for s in loaded.skipped] == ["status is 'partial'"]


def test_the_run_id_is_unique_and_not_the_folder_name(smoke_run):
    record = json.loads((smoke_run / RECORD_FILE).read_text())
    assert record["run_id"] == read_run_claim(smoke_run)["run_id"] != smoke_run.name
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{8}", record["run_id"])


def test_a_second_run_refuses_the_folder_of_the_first(smoke_run, data_overrides, capsys):
    saved = {p.relative_to(smoke_run): p.read_bytes() for p in smoke_run.rglob("*")
             if p.is_file() and ".hydra" not in p.parts}
    run_id = read_run_claim(smoke_run)["run_id"]
    capsys.readouterr()
    assert exit_code(["run", "method=test_baseline", "trainer=debug", *data_overrides,
                      f"hydra.run.dir={smoke_run}"]) != 0
    assert f"The run folder {smoke_run} already holds run {run_id}; pass resume=true" in one_line(capsys)
    # nothing the first run wrote was touched (Hydra rewrites its own .hydra/ files before the task runs)
    assert {p.relative_to(smoke_run): p.read_bytes() for p in smoke_run.rglob("*")
            if p.is_file() and ".hydra" not in p.parts} == saved


def test_a_resumed_run_keeps_its_run_id(smoke_run, tmp_path, data_overrides):
    copy = tmp_path / "copy"
    shutil.copytree(smoke_run, copy)
    assert main(["run", "method=test_baseline", "trainer=debug", *data_overrides, f"hydra.run.dir={copy}",
                 "resume=true"]) == 0
    original = json.loads((smoke_run / RECORD_FILE).read_text())
    resumed = json.loads((copy / RECORD_FILE).read_text())
    assert resumed["run_id"] == original["run_id"] and resumed["metrics"] == original["metrics"]


def test_two_sweeps_feed_one_leaderboard(tmp_path, data_overrides, monkeypatch):
    """`run -m seed=0,1` twice, then `leaderboard`: four runs, two per seed (no 'Run 0 recorded twice')."""
    monkeypatch.chdir(tmp_path)
    sweep = ["run", "-m", "seed=0,1", "method=test_baseline", "trainer=debug", "trainer.epochs=1",
             "trainer.max_eval_samples=null", *data_overrides]
    assert main(sweep) == 0 and main(sweep) == 0
    records = sorted((tmp_path / "multirun").rglob(RECORD_FILE))
    assert len(records) == 4 and len({p.parent.parent for p in records}) == 2  # two sweep folders
    assert len({json.loads(p.read_text())["run_id"] for p in records}) == 4
    assert main(["leaderboard", "records=multirun", f"out={tmp_path / 'boards'}"]) == 0
    table = pd.read_csv(tmp_path / "boards" / "synthetic.csv")
    assert table["n_runs"].tolist() == [4] and table["seeds"].tolist() == ["0;0;1;1"]
