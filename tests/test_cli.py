"""The CLI end to end in a temporary folder: run (debug trainer), eval, score, leaderboard, help."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from rrsis_bench.cli import main

METRIC_KEYS = {"oIoU", "mIoU", "Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9"}


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory, data_overrides):
    run_dir = tmp_path_factory.mktemp("runs") / "debug"
    code = main(["run", "method=test_baseline", "trainer=debug", *data_overrides, f"hydra.run.dir={run_dir}"])
    assert code == 0
    return run_dir


def test_run_writes_record_table_and_checkpoints(debug_run):
    record = json.loads((debug_run / "record.json").read_text())
    assert record["status"] == "partial" and record["task"] == "run"  # trainer=debug caps the test pass
    assert METRIC_KEYS <= set(record["metrics"])
    assert record["method"]["name"] == "test_baseline" and record["method"]["source_dist"] == "rrsis-bench"
    assert record["data"]["name"] == "synthetic" and record["data"]["split"] == "test"
    assert len(record["data"]["manifest_sha256"]) == 64
    assert record["selection"]["split"] == "val" and record["selection"]["best_epoch"] in (1, 2)
    assert len(record["config_hash"]) == 64 and record["config_hash"] != record["group_hash"]
    assert record["config"]["trainer"]["max_steps_per_epoch"] == 2
    assert record["seed"] == 0 and record["timing"]["steps"] == 4
    for key in ("environment", "hardware", "code"):
        assert record[key]
    per_sample = pd.read_csv(debug_run / "per_sample.csv")
    assert list(per_sample.columns[:4]) == ["sample_id", "intersection", "union", "iou"]
    assert len(per_sample) == record["metrics"]["num_samples"] == 8  # trainer=debug scores 8 samples
    log = pd.read_csv(debug_run / "train_log.csv")
    assert list(log["step"]) == [1, 2, 3, 4] and log["loss"].notna().all()
    for name in ("best/model.safetensors", "last/model.safetensors", "last/state.pt", "config.yaml"):
        assert (debug_run / "checkpoints" / name).is_file()
    assert (debug_run / ".hydra" / "config.yaml").is_file()


def test_run_record_breaks_its_wall_time_down(debug_run):
    """timing.breakdown_s says where the wall time went: the four training phases plus the training
    loop's rest add up to train_s, and with validation, test, cost measurement and setup to wall_s."""
    timing = json.loads((debug_run / "record.json").read_text())["timing"]
    parts = timing["breakdown_s"]
    assert list(parts) == ["data", "forward", "backward", "optimizer", "other", "validation", "test", "efficiency",
                           "setup"]
    assert all(value >= 0 for value in parts.values())
    assert parts["forward"] > 0 and parts["backward"] > 0 and parts["optimizer"] > 0 and parts["data"] > 0
    training = sum(parts[k] for k in ("data", "forward", "backward", "optimizer", "other"))
    assert training == pytest.approx(timing["train_s"], abs=0.06)  # each part rounded to 0.01 s
    assert sum(parts.values()) == pytest.approx(timing["wall_s"], abs=0.15)
    assert parts["validation"] + parts["test"] == pytest.approx(timing["eval_s"], abs=0.03)


def test_run_records_per_sample_metadata_efficiency_and_setting(debug_run, data_overrides):
    """per_sample.csv carries what breakdowns need (target size at the scoring resolution, class,
    expression type), and the record carries the cost and how the config was composed."""
    from rrsis_bench.data.inputs import declared_inputs
    from rrsis_bench.profile import count_forward_flops, dummy_batch
    from rrsis_bench.registry import create_dataset, create_method

    record = json.loads((debug_run / "record.json").read_text())
    per_sample = pd.read_csv(debug_run / "per_sample.csv")
    assert list(per_sample.columns) == ["sample_id", "intersection", "union", "iou", "target_pixels", "pixels",
                                        "class_name", "expression_type"]
    config = record["config"]["data"]
    test = create_dataset("synthetic", root=config["root"], split="test", **config["options"])
    by_id = {test[i]["sample_id"]: test[i] for i in range(len(per_sample))}
    for row in per_sample.itertuples():
        sample = by_id[row.sample_id]  # trainer=debug scores the first samples; eval_size null = native
        assert row.target_pixels == int(sample["mask"].sum()) and row.pixels == sample["mask"].size
        assert row.class_name == sample["class_name"] and row.expression_type == sample["expression_type"]
    efficiency = record["efficiency"]
    assert efficiency["params"] == record["method"]["num_params"]
    assert efficiency["input"] == {"image_size": config["image_size"], "max_tokens": config["max_tokens"],
                                   "batch_size": 1}
    model = create_method("test_baseline")
    batch = dummy_batch(1, config["image_size"], config["max_tokens"], torch.device("cpu"), declared_inputs(model))
    assert efficiency["flops"] == count_forward_flops(model, batch)[0] > 0
    assert efficiency["latency_ms"]["repeats"] == 10 and efficiency["latency_ms"]["median"] > 0
    assert record["setting"] == {"experiment": None, "recipe": None,
                                 "overrides": ["method=test_baseline", "trainer=debug", *data_overrides]}


def test_flop_counts_are_cached_per_method_config_and_input_size(tmp_path, monkeypatch):
    from rrsis_bench.profile import flops_cache_dir, run_efficiency
    from rrsis_bench.registry import create_method

    monkeypatch.setenv("RRSIS_BENCH_CACHE", str(tmp_path))
    model = create_method("test_baseline")
    config = {"name": "test_baseline"}
    first = run_efficiency(model, config, image_size=32, max_tokens=8, device=torch.device("cpu"))
    second = run_efficiency(model, config, image_size=32, max_tokens=8, device=torch.device("cpu"))
    other = run_efficiency(model, config, image_size=64, max_tokens=8, device=torch.device("cpu"))
    assert (first["flops_from_cache"], second["flops_from_cache"], other["flops_from_cache"]) == (False, True, False)
    assert first["flops"] == second["flops"] and 3.5 < other["flops"] / first["flops"] < 4.5  # ~ pixels
    assert len(list(flops_cache_dir().glob("*.json"))) == 2


def test_eval_scores_a_checkpoint(debug_run, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", f"checkpoint={debug_run}", "split=val", f"hydra.run.dir={out}"]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["task"] == "eval" and record["data"]["split"] == "val"
    assert record["metrics"]["num_samples"] == len(pd.read_csv(out / "per_sample.csv"))
    assert METRIC_KEYS <= set(record["metrics"])


def test_eval_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", f"checkpoint={tmp_path / 'nothing'}", f"hydra.run.dir={tmp_path / 'out'}"]) == 1
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.strip()]
    assert lines[-1].startswith("error: No checkpoint under") and "Traceback" not in out.out + out.err


def test_an_unexpected_error_is_one_line_unless_debug(tmp_path, capsys, monkeypatch):
    from rrsis_bench import tasks

    def broken(cfg, run_dir):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(tasks, "run_task", broken)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    args = ["run", "method=test_baseline", f"hydra.run.dir={tmp_path / 'run'}"]
    assert main(args) == 1
    out = capsys.readouterr()
    error_lines = [line for line in out.out.splitlines() if line.startswith("error:")]
    assert error_lines == ["error: RuntimeError: planted failure (unexpected; rerun with --debug for the "
                           "traceback and report it)"]
    assert "Traceback" not in out.out + out.err
    with pytest.raises(RuntimeError, match="planted failure"):  # --debug: the real exception
        main([*args, "--debug"])


def test_overrides_after_hydra_flags(capsys):
    """Hydra's argparse parser refuses overrides on both sides of a flag; the CLI reorders them."""
    assert main(["run", "method=test_lavt", "--cfg", "job", "seed=3", "trainer=debug"]) == 0
    out = capsys.readouterr().out
    assert "name: test_lavt" in out and "seed: 3" in out and "max_eval_samples: 8" in out


def _write_masks(folder, masks):
    folder.mkdir()
    for name, mask in masks.items():
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{name}.png")


def test_score_end_to_end(tmp_path, capsys):
    gt = {"a": np.zeros((4, 4), bool), "b": np.zeros((4, 4), bool)}
    gt["a"][:2, :2] = True  # 4 pixels
    gt["b"][:, :] = True  # 16 pixels
    pred = {"a": np.zeros((4, 4), bool), "b": np.zeros((4, 4), bool)}
    pred["a"][:2, :1] = True  # I=2, U=4 → IoU 0.5
    pred["b"][:2, :] = True  # I=8, U=16 → IoU 0.5
    _write_masks(tmp_path / "gt", gt)
    _write_masks(tmp_path / "pred", pred)
    out = tmp_path / "score.json"
    assert main(["score", f"pred={tmp_path / 'pred'}", f"gt={tmp_path / 'gt'}", f"out={out}"]) == 0
    metrics = json.loads(out.read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["oIoU"] == pytest.approx(100 * 10 / 20)
    assert metrics["mIoU"] == pytest.approx(50.0)
    assert metrics["Pr@0.5"] == 100.0 and metrics["Pr@0.6"] == 0.0


def test_score_reports_missing_files(tmp_path, capsys):
    _write_masks(tmp_path / "gt", {"a": np.ones((2, 2), bool), "b": np.ones((2, 2), bool)})
    _write_masks(tmp_path / "pred", {"a": np.ones((2, 2), bool), "c": np.ones((2, 2), bool)})
    code = main(["score", f"pred={tmp_path / 'pred'}", f"gt={tmp_path / 'gt'}", f"out={tmp_path / 's.json'}"])
    err = capsys.readouterr().out
    assert code == 1 and "b.png" in err and "c.png" in err
    assert not (tmp_path / "s.json").exists()


def test_leaderboard_skips_a_smoke_run(debug_run, tmp_path, capsys):
    out = tmp_path / "boards"
    assert main(["leaderboard", f"records={debug_run}", f"out={out}"]) == 0
    assert "status is 'partial'" in " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert not (out / "synthetic.md").exists()  # a capped smoke run never becomes a row
    assert (out / "reported.md").is_file()


@pytest.mark.parametrize("command", ["run", "eval", "score", "list", "leaderboard", "data", "profile"])
def test_every_command_has_help(command, capsys):
    try:
        code = main([command, "--help"])
    except SystemExit as exc:  # Hydra's --help exits 0
        code = exc.code or 0
    assert code == 0
    assert f"rrsis-bench {command}" in capsys.readouterr().out


def test_usage_and_unknown_command(capsys):
    assert main([]) == 0
    assert "commands:" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert "Unknown command 'frobnicate'" in capsys.readouterr().out


def test_key_value_errors(capsys):
    assert main(["score", "pred=x"]) == 2
    assert "needs gt=" in capsys.readouterr().out
    assert main(["score", "pred=x", "gt=y", "bogus=1"]) == 2
    assert "has no argument 'bogus'" in capsys.readouterr().out


def test_multirun_over_seeds_feeds_a_mean_std_leaderboard(tmp_path, data_overrides):
    sweep = tmp_path / "sweep"
    code = main(["run", "-m", "seed=0,1", "method=test_baseline", "trainer=debug", "trainer.epochs=1",
                 "trainer.max_eval_samples=null",
                 *data_overrides, f"hydra.sweep.dir={sweep}"])
    assert code == 0
    records = sorted(sweep.rglob("record.json"))
    assert len(records) == 2
    seeds = sorted(json.loads(p.read_text())["seed"] for p in records)
    assert seeds == [0, 1]
    assert main(["leaderboard", f"records={sweep}", f"out={tmp_path / 'boards'}"]) == 0
    table = pd.read_csv(tmp_path / "boards" / "synthetic.csv")
    assert len(table) == 1 and table.loc[0, "n_runs"] == 2  # two seeds, one row


@pytest.mark.parametrize("overrides", [["trainer.amp=true"], ["trainer.accumulate=2", "trainer.grad_clip=null"]])
def test_engine_options_run(tmp_path, data_overrides, overrides):
    """bf16 autocast (on CPU here) and gradient accumulation run through a whole debug run."""
    run_dir = tmp_path / "run"
    assert main(["run", "method=test_baseline", "trainer=debug", *overrides, *data_overrides,
                 f"hydra.run.dir={run_dir}"]) == 0
    record = json.loads((run_dir / "record.json").read_text())
    assert record["timing"]["steps"] == 4  # 2 optimizer steps per epoch, whatever the accumulation
    log = pd.read_csv(run_dir / "train_log.csv")
    assert len(log) == 4 and log["loss"].notna().all()


def test_weak_expressions_and_box_augmentation_in_a_run(tmp_path, data_overrides):
    run_dir = tmp_path / "weak"
    assert main(["run", "method=test_baseline", "trainer=debug", "strategy=naive_wrel", "data.weak.accurate_ratio=0.5",
                 "data.augment.boxes=true", *data_overrides, f"hydra.run.dir={run_dir}"]) == 0
    record = json.loads((run_dir / "record.json").read_text())
    weak = record["data"]["weak"]
    manifest = json.loads((run_dir / "weak_manifest.json").read_text())
    assert weak["scheme"] == "nested" and weak["ratio"] == 0.5
    assert weak["sha256"] == manifest["sha256"] and "accurate_ids" not in weak
    total = weak["counts"]["total"]
    assert weak["counts"]["accurate"] == len(manifest["accurate_ids"]) == int(total * 0.5 + 0.5)
    assert record["config"]["data"]["augment"]["boxes"] is True
    assert record["data"]["split"] == "test"  # val/test keep their expressions



def test_data_text_writes_what_the_encoder_feeds(tmp_path, data_overrides, capsys):
    """`data text` takes run's data overrides (+data.options... included) and writes one row per sample."""
    out = tmp_path / "val.csv"
    assert main(["data", "text", "data=synthetic", "split=val", *data_overrides, f"out={out}"]) == 0
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["sample_id", "text", "tokens", "object_phrase", "position_phrases",
                                   "object_tokens", "position_tokens"]
    from conftest import SMALL_SYNTHETIC
    from rrsis_bench.datasets.synthetic import SyntheticDataset

    val = SyntheticDataset(root=data_overrides[0].split("=", 1)[1], split="val", num_images=SMALL_SYNTHETIC)
    assert list(frame["sample_id"]) == [val.sample_id(i) for i in range(len(val))]
    for _, row in frame.iterrows():
        assert len(row["object_tokens"]) == len(row["position_tokens"]) == len(row["tokens"].split())
    assert f"{len(frame)} expressions of synthetic/val" in capsys.readouterr().out


def test_data_text_without_a_root_is_one_clear_error(tmp_path, capsys):
    assert main(["data", "text", "data=refsegrs", f"out={tmp_path / 'x.csv'}"]) == 1
    out = capsys.readouterr().out
    assert "error: data=refsegrs needs its folder: pass data.root=DIR" in out and "???" not in out
    assert not (tmp_path / "x.csv").exists()
