"""Weak-label ratio study outputs: per-cell frame, seed statistics, study.md/.csv/.png, published curves."""

from __future__ import annotations

import math
import struct

import pandas as pd
import pytest

from rrsis_bench.metrics import METRIC_KEYS
from rrsis_bench.results.leaderboard import load_reported
from rrsis_bench.results.study import (
    FIGURE_DPI,
    FIGURE_INCHES,
    STUDY_COLUMNS,
    StudyError,
    mean_std_interval,
    reported_weak_curves,
    study_frame,
    summary_frame,
    write_study,
)

STAGES = {
    "only_accurate": [("train", 4)],
    "naive_wrel": [("train", 4)],
    "lrb_wrel": [("warmup", 2), ("bank", 1), ("joint", 2)],
}


def cell(
    strategy: str | None,
    ratio: float,
    seed: int,
    miou: float,
    *,
    oiou: float | None = None,
    wall_s: float = 120.0,
    status: str = "complete",
    run_id: str = "",
    dataset: str = "synthetic",
    num_samples: int = 777,
    method: str = "baseline",
) -> dict:
    """The fields of a cell's record that a study reads (the study never re-validates records)."""
    oiou = miou + 10 if oiou is None else oiou
    record = {
        "status": status,
        "run_id": run_id or f"{strategy}-{ratio}-{seed}",
        "method": {"name": method},
        "seed": seed,
        "data": {
            "name": dataset, "split": "test", "num_samples": num_samples,
            "weak": None if ratio == 1.0 else {"scheme": "nested", "ratio": ratio, "seed": 0},
        },
        "metrics": dict.fromkeys(METRIC_KEYS, 50.0) | {"mIoU": miou, "oIoU": oiou},
        "timing": {"wall_s": wall_s, "epochs": 4},
    }
    if strategy is not None:  # None: a record from before strategies existed
        stages = [{"name": name, "epochs": epochs, "steps": 10} for name, epochs in STAGES.get(strategy, [])]
        record["strategy"] = {"name": strategy, "options": {}, "stages": stages}
    return record


def small_study() -> list[dict]:
    records = [cell(None, 1.0, seed, 60.0 + seed, wall_s=100.0) for seed in range(3)]
    for strategy, base in (("only_accurate", 30.0), ("lrb_wrel", 40.0)):
        for ratio in (0.1, 0.3):
            records += [cell(strategy, ratio, seed, base + 100 * ratio + 10 * (seed - 1), wall_s=200.0)
                        for seed in range(3)]
    return records


def test_mean_std_and_t_interval_by_hand():
    # mean 50; std = sqrt((100 + 0 + 100) / 2) = 10; t(0.975, 2) = 4.302653;
    # half width = 4.302653 * 10 / sqrt(3) = 24.841
    mean, std, low, high = mean_std_interval([40.0, 50.0, 60.0])
    assert (mean, std) == (50.0, 10.0)
    assert (round(low, 2), round(high, 2)) == (25.16, 74.84)
    single = mean_std_interval([42.0])
    assert single[0] == 42.0 and all(math.isnan(v) for v in single[1:])


def test_summary_per_strategy_and_ratio():
    frame = study_frame([cell("lrb_wrel", 0.3, seed, miou, oiou=o)
                         for seed, miou, o in ((0, 40.0, 70.0), (1, 50.0, 72.0), (2, 60.0, 74.0))]
                        + [cell("lrb_wrel", 0.1, 0, 33.0)])
    summary = summary_frame(frame)
    assert summary[["strategy", "accurate_ratio", "n_seeds", "seeds"]].values.tolist() == [
        ["lrb_wrel", 0.1, 1, [0]], ["lrb_wrel", 0.3, 3, [0, 1, 2]]
    ]
    three = summary.iloc[1]
    assert (three["mIoU mean"], three["mIoU std"]) == (50.0, 10.0)
    assert (round(three["mIoU lo"], 2), round(three["mIoU hi"], 2)) == (25.16, 74.84)
    # oIoU 70, 72, 74: std 2, half = 4.302653 * 2 / sqrt(3) = 4.968
    assert (three["oIoU mean"], three["oIoU std"]) == (72.0, 2.0)
    assert (round(three["oIoU lo"], 2), round(three["oIoU hi"], 2)) == (67.03, 76.97)
    one = summary.iloc[0]
    assert one["mIoU mean"] == 33.0 and math.isnan(one["mIoU std"]) and math.isnan(one["mIoU lo"])


def test_records_without_strategy_read_as_standard_at_full_supervision():
    frame = study_frame([cell(None, 1.0, 0, 61.0)])
    row = frame.iloc[0]
    assert (row["strategy"], row["accurate_ratio"], row["scheme"], row["seed"]) == ("standard", 1.0, "", 0)
    assert (row["epochs"], row["stages"]) == (4, "train=4")  # one stage of timing.epochs


def test_study_frame_has_one_row_per_scored_cell():
    records = [
        cell("lrb_wrel", 0.3, 0, 50.0) | {"record_path": "runs/a/record.json"},
        cell("lrb_wrel", 0.3, 0, 50.0),  # the same run found twice (a copy of its folder)
        cell("lrb_wrel", 0.3, 1, 0.0, status="failed"),
        cell("only_accurate", 0.1, 0, 20.0, status="partial"),
        cell(None, 1.0, 0, 60.0),
    ]
    frame = study_frame(records)
    assert list(frame.columns) == list(STUDY_COLUMNS)
    assert frame[["strategy", "accurate_ratio", "scheme", "seed", "status", "mIoU"]].values.tolist() == [
        ["standard", 1.0, "", 0, "complete", 60.0],
        ["only_accurate", 0.1, "nested", 0, "partial", 20.0],
        ["lrb_wrel", 0.3, "nested", 0, "complete", 50.0],
    ]
    assert frame.loc[2, "record_path"] == "runs/a/record.json"
    assert (frame.loc[2, "epochs"], frame.loc[2, "stages"]) == (5, "warmup=2;bank=1;joint=2")


def test_study_md_table_and_header(tmp_path):
    paths = write_study(tmp_path, small_study(), title="Study: baseline on synthetic")
    text = paths["md"].read_text()
    assert text.startswith("# Study: baseline on synthetic\n")
    assert "- Method: baseline; test set: synthetic test, 777 samples; seeds: 0, 1, 2; 15 cells." in text
    assert ("- Budget (epochs per training stage): standard: train 4 epochs; only_accurate: train 4 epochs; "
            "lrb_wrel: warmup 2 + bank 1 + joint 2 = 5 epochs.") in text
    assert "compared at equal epochs per stage, not at equal wall time" in text
    assert "Mean wall time per cell: standard 1m 40s, only_accurate 3m 20s, lrb_wrel 3m 20s." in text
    assert "shared full-supervision point" in text
    # only_accurate at 10 %: 30 + 10 + (-10, 0, 10) -> 40 ± 10 [15.16, 64.84]; oIoU is mIoU + 10
    mious = text[text.index("## mIoU"):text.index("## oIoU")]
    assert mious.splitlines()[2:7] == [
        "| Strategy | 10 % | 30 % | 100 % |",
        "| --- | ---: | ---: | ---: |",
        "| standard | – | – | 61.00 ± 1.00 [58.52, 63.48] |",
        "| only_accurate | 40.00 ± 10.00 [15.16, 64.84] | 60.00 ± 10.00 [35.16, 84.84] | – |",
        "| lrb_wrel | 50.00 ± 10.00 [25.16, 74.84] | 70.00 ± 10.00 [45.16, 94.84] | – |",
    ]
    assert "| standard | – | – | 71.00 ± 1.00 [68.52, 73.48] |" in text[text.index("## oIoU"):]
    assert "Reported" not in text  # synthetic data: no published curve
    table = pd.read_csv(paths["csv"], keep_default_na=False)
    assert len(table) == 15 and list(table.columns) == list(STUDY_COLUMNS)


def test_a_single_seed_says_it_has_no_interval(tmp_path):
    text = write_study(tmp_path, [cell("naive_wrel", 0.5, 0, 55.0)], title="t")["md"].read_text()
    assert "| naive_wrel | 55.00 (n=1, no interval) |" in text


def test_study_png_is_a_png_of_the_expected_size(tmp_path):
    png = write_study(tmp_path, small_study(), title="t")["png"]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (round(FIGURE_INCHES[0] * FIGURE_DPI), round(FIGURE_INCHES[1] * FIGURE_DPI))
    assert (width, height) == (1100, 480)
    # No temporary files are left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.csv", "study.md", "study.png"]


# LRB-WREL README, test split: (mIoU, oIoU) per strategy and accurate ratio (reference §B.9).
README_RRSISD_TEST = {
    ("standard", 1.0): (64.20, 77.79),
    ("only_accurate", 0.1): (41.15, 63.03), ("only_accurate", 0.3): (54.07, 72.34),
    ("only_accurate", 0.5): (56.18, 73.51),
    ("naive_wrel", 0.1): (54.63, 71.48), ("naive_wrel", 0.3): (58.19, 74.28),
    ("naive_wrel", 0.5): (61.42, 76.50),
    ("lrb_wrel", 0.1): (56.32, 71.70), ("lrb_wrel", 0.3): (58.79, 74.32), ("lrb_wrel", 0.5): (62.08, 76.57),
}


def test_reported_curves_for_rrsisd_have_the_readme_numbers():
    curves = reported_weak_curves("rrsisd", "test")
    got = {(row.strategy, row.accurate_ratio): (row.mIoU, row.oIoU) for row in curves.itertuples()}
    assert got == README_RRSISD_TEST
    assert set(curves["method"]) == {"RMSIN", "Only accurate", "Naive-WREL", "LRB-WREL"}
    val = reported_weak_curves("rrsisd", "val")
    val_cells = val.set_index(["strategy", "accurate_ratio"])
    assert val_cells.loc[("lrb_wrel", 0.1), ["mIoU", "oIoU"]].tolist() == [56.87, 72.27]
    ris_lad = reported_weak_curves("ris-lad", "test")
    assert ris_lad.set_index(["strategy", "accurate_ratio"]).loc[("naive_wrel", 0.5), "mIoU"] == 28.68
    assert reported_weak_curves("synthetic", "test") is None
    assert reported_weak_curves("refsegrs", "test") is None  # published rows, but no weak-label study


def test_published_curves_are_drawn_only_beside_the_published_split(tmp_path):
    records = [cell(s, r, seed, 50.0 + seed, dataset="rrsisd", num_samples=3481, method="fianet")
               for s in ("only_accurate", "lrb_wrel") for r in (0.1, 0.3) for seed in range(2)]
    text = write_study(tmp_path / "published", records, title="t", reported=load_reported())["md"].read_text()
    assert "## Reported (LRB-WREL paper, RMSIN base): not reproduced here" in text
    assert "The paper's base model is RMSIN, this study's is fianet: compare the gaps between" in text
    assert "| only_accurate (Only accurate) | 41.15 / 63.03 | 54.07 / 72.34 | 56.18 / 73.51 | – |" in text
    assert "| standard (RMSIN) | – | – | – | 64.20 / 77.79 |" in text

    layout_only = [r | {"data": {**r["data"], "num_samples": 777}} for r in records]
    text = write_study(tmp_path / "other", layout_only, title="t", reported=load_reported())["md"].read_text()
    assert "## Reported" not in text
    assert ("The published LRB-WREL numbers for rrsisd test are not drawn: they were scored on the published "
            "split (3,481 samples), this study on 777 samples") in text


def test_records_that_are_not_one_study_are_refused(tmp_path):
    with pytest.raises(StudyError, match="None of the records given has test metrics"):
        write_study(tmp_path, [cell("lrb_wrel", 0.3, 0, 1.0, status="failed")], title="t")
    two_methods = [cell("lrb_wrel", 0.3, 0, 50.0), cell("lrb_wrel", 0.3, 1, 50.0, method="fianet")]
    with pytest.raises(StudyError, match=r"one method on one test set, but the records give 2 \(baseline"):
        write_study(tmp_path, two_methods, title="t")
    twice = [cell("lrb_wrel", 0.3, 0, 50.0, run_id="a"), cell("lrb_wrel", 0.3, 0, 51.0, run_id="b")]
    with pytest.raises(StudyError, match="Seed 0 has 2 cells for strategy lrb_wrel at accurate ratio 0.3 "
                                         r"\(runs a, b\); pass one record per seed"):
        write_study(tmp_path, twice, title="t")
    assert not any(tmp_path.iterdir())  # nothing written
