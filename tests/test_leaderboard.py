"""Run records (hashing, validation, loading), provenance, published numbers and leaderboards."""

from __future__ import annotations

import json
import math
import re
import subprocess

import pandas as pd
import pytest

from rrsis_bench.metrics import METRIC_KEYS
from rrsis_bench.results import provenance
from rrsis_bench.results.leaderboard import (
    REPORTED_COLUMNS,
    build_leaderboard,
    load_reported,
    mean_column,
    render_markdown,
    std_column,
    write_leaderboards,
)
from rrsis_bench.results.record import (
    RECORD_FILE,
    SCHEMA_VERSION,
    VOLATILE_KEYS,
    build_record,
    config_hash,
    load_records,
    new_run_id,
    write_record,
)

HARDWARE = {
    "cpu": "Test CPU",
    "cpu_count": 2,
    "memory_gb": 8.0,
    "gpu_count": 1,
    "gpus": [{"name": "Test GPU"}],
}


def make_config(seed: int = 0, lr: float = 1e-4, dataset: str = "rrsisd") -> dict:
    return {
        "seed": seed,
        "method": {"name": "fianet", "num_tmem": 3},
        "data": {"name": dataset, "root": "/data/rrsisd", "max_tokens": 22},
        "optimizer": {"name": "adamw", "lr": lr, "betas": [0.9, 0.999]},
        "trainer": {"epochs": 40, "device": "cuda", "num_workers": 8, "progress": True},
        "hydra": {"run": {"dir": "outputs/x"}},
        "paths": {"output_dir": "outputs"},
        "resume": False,
        "checkpoint": None,
    }


def make_record(
    seed: int,
    miou: float,
    *,
    lr: float = 1e-4,
    dataset: str = "rrsisd",
    status: str = "complete",
    run_id: str = "",
) -> dict:
    config = make_config(seed, lr, dataset)
    metrics = dict.fromkeys(METRIC_KEYS, 50.0) | {"mIoU": miou, "oIoU": miou + 10}
    return build_record(
        status=status,
        task="run",
        run_id=run_id or f"run-{dataset}-{lr}-{seed}",
        config=config,
        method={"name": "fianet", "source_dist": "rrsis-bench"},
        data={"name": dataset, "split": "test", "num_samples": 3481},
        seed=seed,
        code={"version": "0.1.0"},
        environment={"python": "3.11"},
        hardware=HARDWARE,
        timing={"wall_s": 3600.0 + seed * 60},
        metrics=metrics if status == "complete" else {},
    )


# --------------------------------------------------------------------------- config hash


def test_config_hash_ignores_key_order():
    config = make_config()
    reordered = json.loads(json.dumps(config, sort_keys=True))
    reordered["optimizer"] = dict(reversed(list(reordered["optimizer"].items())))
    assert list(reordered) != list(config)
    assert config_hash(reordered) == config_hash(config)
    assert re.fullmatch(r"[0-9a-f]{64}", config_hash(config))


def test_config_hash_changes_with_a_non_volatile_value():
    assert config_hash(make_config(lr=1e-4)) != config_hash(make_config(lr=2e-4))
    changed = make_config()
    changed["method"]["num_tmem"] = 1
    assert config_hash(changed) != config_hash(make_config())


@pytest.mark.parametrize("dotted", sorted(VOLATILE_KEYS))
def test_config_hash_ignores_volatile_keys(dotted):
    config = make_config()
    changed = json.loads(json.dumps(config))
    *parents, leaf = dotted.split(".")
    node = changed
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = "somewhere/else"
    assert changed != config
    assert config_hash(changed) == config_hash(config)


def test_group_hash_ignores_seed_and_config_hash_does_not():
    a, b = make_config(seed=0), make_config(seed=1)
    assert config_hash(a) != config_hash(b)
    assert config_hash(a, include_seed=False) == config_hash(b, include_seed=False)


def test_config_hash_treats_tuples_as_lists_and_rejects_objects():
    config = make_config()
    config["optimizer"]["betas"] = (0.9, 0.999)
    assert config_hash(config) == config_hash(make_config())
    config["optimizer"]["betas"] = object()
    with pytest.raises(ValueError, match="OmegaConf.to_container"):
        config_hash(config)


# --------------------------------------------------------------------------- records


def test_build_record_fills_and_orders_fields():
    record = make_record(3, 61.0)
    assert record["schema_version"] == SCHEMA_VERSION
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record["created"])
    assert record["config_hash"] == config_hash(record["config"])
    assert record["group_hash"] == config_hash(record["config"], include_seed=False)
    assert list(record)[:5] == ["schema_version", "status", "task", "run_id", "created"]


def test_build_record_collects_provenance_when_not_given():
    record = build_record(
        status="running",
        task="run",
        run_id="r",
        config={"seed": 1},
        method={"name": "m"},
        data={"name": "d", "split": "test"},
        seed=1,
    )
    assert record["code"]["dist"] == "rrsis-bench"
    assert {"python", "torch", "numpy"} <= set(record["environment"])
    assert {"cpu", "cpu_count", "gpu_count"} <= set(record["hardware"])


@pytest.mark.parametrize(
    ("drop", "expected"),
    [("method", "'method'"), ("seed", "'seed'"), ("run_id", "'run_id'"), ("metrics", "metrics oIoU")],
)
def test_build_record_names_the_missing_field(drop, expected):
    fields = dict(
        status="complete",
        task="run",
        run_id="r",
        config={"seed": 1},
        method={"name": "m"},
        data={"name": "d", "split": "test"},
        seed=1,
        metrics=dict.fromkeys(METRIC_KEYS, 1.0),
        code={},
        environment={},
        hardware={},
    )
    del fields[drop]
    with pytest.raises(ValueError, match=expected):
        build_record(**fields)


def test_build_record_rejects_bad_values():
    base = dict(
        task="run",
        run_id="r",
        config={"seed": 1},
        method={"name": "m"},
        data={"name": "d", "split": "test"},
        code={},
        environment={},
        hardware={},
    )
    with pytest.raises(ValueError, match="status"):
        build_record(status="done", seed=1, **base)
    with pytest.raises(ValueError, match="seed=2"):
        build_record(status="running", seed=2, **base)
    with pytest.raises(ValueError, match="data.split"):
        build_record(status="running", seed=1, **{**base, "data": {"name": "d"}})


def test_new_run_id_is_sortable_and_unique():
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run_id) for run_id in ids)


def test_write_and_load_records(tmp_path):
    complete = write_record(tmp_path / "runs" / "a", make_record(0, 60.0))
    write_record(tmp_path / "runs" / "b", make_record(1, 0.0, status="failed"))
    write_record(tmp_path / "runs" / "nested" / "c", make_record(2, 0.0, status="running"))
    (tmp_path / "empty").mkdir()
    assert sorted(p.name for p in complete.parent.iterdir()) == [RECORD_FILE]  # no temp files left

    # The same file reached through its folder and directly is read once.
    loaded = load_records([tmp_path / "runs", complete, tmp_path / "empty"])
    records, skipped = loaded
    assert [r["run_id"] for r in records] == ["run-rrsisd-0.0001-0"]
    assert records[0]["record_path"] == str(complete)
    assert [(s.path, s.reason) for s in skipped] == [
        (tmp_path / "empty", "no record.json below this folder"),
        (tmp_path / "runs" / "b" / RECORD_FILE, "status is 'failed'"),
        (tmp_path / "runs" / "nested" / "c" / RECORD_FILE, "status is 'running'"),
    ]
    # Written records do not carry the loader's bookkeeping key.
    rewritten = write_record(tmp_path / "copy", records[0])
    assert "record_path" not in json.loads(rewritten.read_text())


def test_load_records_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad" / RECORD_FILE
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        load_records([tmp_path])
    bad.write_text(json.dumps({"schema_version": 1, "status": "complete"}))
    with pytest.raises(ValueError, match=re.escape(str(bad)) + ".*'task' is missing"):
        load_records([bad])
    bad.write_text(json.dumps({**make_record(0, 60.0), "schema_version": 99}))
    with pytest.raises(ValueError, match="upgrade rrsis-bench"):
        load_records([bad])
    with pytest.raises(ValueError, match="does not exist"):
        load_records([tmp_path / "nowhere"])


def test_one_run_in_two_files_is_an_error(tmp_path):
    first = write_record(tmp_path / "a", make_record(0, 60.0))
    second = write_record(tmp_path / "backup" / "a", make_record(0, 60.0))
    with pytest.raises(ValueError, match=re.escape(str(second))):
        load_records([first, second])


# --------------------------------------------------------------------------- provenance


def test_environment_and_hardware_keys():
    env = provenance.environment()
    assert {
        "python",
        "platform",
        "torch",
        "cuda",
        "cudnn",
        "timm",
        "transformers",
        "hydra-core",
        "numpy",
    } <= set(env)
    hw = provenance.hardware()
    assert hw["cpu_count"] >= 1 and hw["gpu_count"] == len(hw["gpus"])


def test_code_version_of_installed_and_missing_distributions():
    info = provenance.code_version()
    assert info["version"] is not None
    missing = provenance.code_version("no-such-distribution-xyz")
    assert missing["version"] is None and missing["git_sha"] is None


def test_git_state_of_a_checkout(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    state = provenance._git_state(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", state["git_sha"]) and state["git_dirty"] is False
    (tmp_path / "a.txt").write_text("2")
    assert provenance._git_state(tmp_path)["git_dirty"] is True
    assert provenance._git_state(tmp_path / "missing") == {"git_sha": None, "git_dirty": None}


def test_hardware_summary():
    assert provenance.hardware_summary({"gpus": [{"name": "H100"}, {"name": "H100"}]}) == "2x H100"
    assert provenance.hardware_summary({"cpu": "EPYC", "cpu_count": 16, "gpus": []}) == "CPU: EPYC (16 cores)"
    assert provenance.hardware_summary(None) == "unknown"


# --------------------------------------------------------------------------- published numbers


def test_reported_table_is_well_formed():
    reported = load_reported()
    assert list(reported.columns) == list(REPORTED_COLUMNS)
    assert not reported.duplicated(["dataset", "split", "method", "setting"]).any()
    values = reported[list(METRIC_KEYS)]
    assert ((values >= 0) & (values <= 100) | values.isna()).all().all()
    assert (reported["source"].str.len() > 0).all()
    assert set(reported["dataset"]) == {"refsegrs", "rrsisd", "ris-lad", "risbench"}

    def row(dataset, split, method, setting=""):
        match = reported[
            (reported.dataset == dataset)
            & (reported.split == split)
            & (reported.method == method)
            & (reported.setting == setting)
        ]
        assert len(match) == 1, (dataset, split, method, setting)
        return match.iloc[0]

    assert row("refsegrs", "test", "FIANet")[["oIoU", "mIoU", "Pr@0.5"]].tolist() == [78.32, 68.67, 84.09]
    assert row("rrsisd", "val", "RMSIN")[["oIoU", "mIoU", "Pr@0.9"]].tolist() == [78.27, 65.10, 24.43]
    assert row("rrsisd", "test", "LRB-WREL", "10% accurate")[["oIoU", "mIoU"]].tolist() == [71.70, 56.32]
    assert math.isnan(row("rrsisd", "test", "LRB-WREL", "10% accurate")["Pr@0.5"])


# --------------------------------------------------------------------------- leaderboard


def test_three_seeds_aggregate_to_mean_and_sample_std():
    records = [make_record(0, 60.0), make_record(1, 62.0), make_record(2, 67.0)]
    records.append(make_record(3, 99.0, status="failed"))
    frame = build_leaderboard(records)["rrsisd"]
    assert len(frame) == 1
    row = frame.iloc[0]
    # mean = (60 + 62 + 67)/3 = 63; sample std = sqrt(((-3)^2 + (-1)^2 + 4^2)/(3-1)) = sqrt(13) = 3.6056
    assert row[mean_column("mIoU")] == pytest.approx(63.0)
    assert row[std_column("mIoU")] == pytest.approx(math.sqrt(13))
    assert row[mean_column("oIoU")] == pytest.approx(73.0)
    assert row[std_column("Pr@0.5")] == 0.0
    assert (row["n_runs"], row["n_seeds"], row["seeds"]) == (3, 3, [0, 1, 2])  # the failed seed 3 is excluded
    assert row["wall_s mean"] == pytest.approx(3660.0)
    assert row["hardware"] == "1x Test GPU"
    assert row["setting"] == records[0]["group_hash"][:8]


def test_single_run_has_no_std_and_groups_are_ranked_by_miou():
    records = [make_record(0, 60.0, lr=1e-4), make_record(0, 64.0, lr=3e-4), make_record(1, 66.0, lr=3e-4)]
    frame = build_leaderboard(records)["rrsisd"]
    assert frame[mean_column("mIoU")].tolist() == [65.0, 60.0]
    assert math.isnan(frame.iloc[1][std_column("mIoU")])
    assert frame.iloc[0]["setting"].endswith("optimizer.lr=0.0003")
    assert frame.iloc[1]["setting"].endswith("optimizer.lr=0.0001")


def sections(markdown: str) -> tuple[str, str]:
    head, _, reported = markdown.partition("## Reported in publications (not reproduced here)")
    return head, reported


def test_markdown_keeps_reported_rows_out_of_the_reproduced_table():
    records = [make_record(seed, 60.0 + seed) for seed in range(3)]
    frame = build_leaderboard(records)["rrsisd"]
    markdown = render_markdown("rrsisd", frame, load_reported())
    reproduced, reported = sections(markdown)
    assert "do not edit by hand" in reproduced and "`rrsis-bench leaderboard`" in reproduced
    assert (
        "ΣI/ΣU" in reproduced and "IoU = 0 when the union is empty" in reproduced and "IoU ≥ X" in reproduced
    )
    assert "## Reproduced with rrsis-bench" in reproduced
    assert "| fianet |" in reproduced and "| 61.00 ± 1.00 |" in reproduced and "| 3 | 0, 1, 2 |" in reproduced
    assert "RMSIN" not in reproduced and "LRB-WREL" not in reproduced and "DiCoR" not in reproduced
    assert (
        "| FIANet | TGRS'25 |" in reported and "10% accurate" in reported and "DiCoR manuscript" in reported
    )
    assert "| fianet |" not in reported


def test_markdown_omits_the_reported_section_without_rows():
    frame = build_leaderboard([make_record(0, 60.0, dataset="synthetic")])["synthetic"]
    markdown = render_markdown("synthetic", frame, load_reported())
    assert "Reported in publications" not in markdown
    assert "| 60.00 |" in markdown and "| 1 | 0 |" in markdown  # one run: no spread


def test_write_leaderboards_is_byte_identical_and_atomic(tmp_path):
    records = [make_record(seed, 60.0 + seed, lr=lr) for seed in range(3) for lr in (1e-4, 3e-4)]
    records.append(make_record(0, 50.0, dataset="synthetic"))
    first = write_leaderboards(records, tmp_path / "one")
    second = write_leaderboards(list(reversed(records)), tmp_path / "two")
    assert [p.name for p in first] == [
        "rrsisd.md",
        "rrsisd.csv",
        "synthetic.md",
        "synthetic.csv",
        "reported.md",
        "reported.csv",
    ]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == sorted(
        p.name for p in first
    )  # no temp files

    reproduced = pd.read_csv(tmp_path / "one" / "rrsisd.csv")
    assert set(reproduced["kind"]) == {"reproduced"} and len(reproduced) == 2
    assert reproduced["seeds"].tolist() == ["0;1;2", "0;1;2"]
    reported = pd.read_csv(tmp_path / "one" / "reported.csv", keep_default_na=False)
    assert set(reported["kind"]) == {"reported"} and len(reported) == len(load_reported())
    assert "| fianet |" not in (tmp_path / "one" / "reported.md").read_text()


def test_write_leaderboards_rejects_unsafe_dataset_names(tmp_path):
    with pytest.raises(ValueError, match="file name"):
        write_leaderboards([make_record(0, 60.0, dataset="reported")], tmp_path)
