"""What a leaderboard row says beyond its means: intervals, ties with the best row, cost, breakdowns,
the model index and the web page, against values computed by hand or by scipy directly."""

from __future__ import annotations

import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml
from test_leaderboard import lrb_wrel, make_record, nested

from rrsis_bench.metrics import compute_metrics
from rrsis_bench.results.analysis import SIZE_BINS, size_bin
from rrsis_bench.results.leaderboard import build_leaderboard, write_leaderboards
from rrsis_bench.results.record import load_records, write_record
from rrsis_bench.results.stats import bootstrap_interval, permutation_p_value

IDS = [f"s{i}" for i in range(8)]
#: target pixels of 1000-pixel images: shares 0.1 %, 0.4 %, 1 %, 1.5 %, 5 %, 9 %, 20 %, 50 %
TARGETS = [1, 4, 10, 15, 50, 90, 200, 500]
CLASSES = ["car", "car", "ship", "ship", "car", "ship", "car", "ship"]
TYPES = ["class", "colour", "class", "size", "class", "colour", "size", "class"]


def write_run(root: Path, name: str, *, seed: int, inters: list[int], unions: list[int], **record_kw) -> Path:
    """A run folder: per_sample.csv as runs write it, and a record whose metrics are those rows'."""
    folder = root / name
    folder.mkdir(parents=True)
    frame = pd.DataFrame({"sample_id": IDS, "intersection": inters, "union": unions,
                          "iou": [i / u if u else 0.0 for i, u in zip(inters, unions, strict=True)],
                          "target_pixels": TARGETS, "pixels": [1000] * len(IDS), "class_name": CLASSES,
                          "expression_type": TYPES})
    frame.to_csv(folder / "per_sample.csv", index=False)
    metrics = compute_metrics(inters, unions)
    record = make_record(seed, metrics["mIoU"], run_id=name, num_samples=len(IDS), manifest="b" * 64,
                         dataset="synthetic", **record_kw)
    record["metrics"] = {**metrics}
    record["artifacts"] = {"per_sample": "per_sample.csv", "checkpoint": "checkpoints/best",
                           "config": "checkpoints/config.yaml"}
    record["efficiency"] = {"params": 1_500_000, "gflops": 2.5, "input": {"image_size": 128}, "flops": 2_500_000_000,
                            "latency_ms": {"median": 10.0 + seed}}
    record["timing"] = {"wall_s": 100.0 + seed, "train_s": 60.0 + 2 * seed, "train_samples_per_s": 20.0 + seed,
                        "peak_memory_mb": 1024.0}
    write_record(folder, record)
    return folder


GOOD = ([9, 3, 8, 10, 40, 80, 190, 480], [10, 4, 10, 12, 50, 90, 200, 500])
SAME_AS_GOOD = GOOD
BAD = ([0, 1, 2, 3, 10, 20, 50, 100], [10, 4, 10, 12, 50, 90, 200, 500])


@pytest.fixture
def runs(tmp_path):
    write_run(tmp_path, "good-0", seed=0, inters=GOOD[0], unions=GOOD[1])
    write_run(tmp_path, "good-1", seed=1, inters=[9, 3, 7, 10, 41, 80, 190, 470], unions=GOOD[1])
    write_run(tmp_path, "bad-0", seed=0, inters=BAD[0], unions=BAD[1], lr=3e-4)
    write_run(tmp_path, "lrb-0", seed=0, inters=SAME_AS_GOOD[0], unions=[11, 4, 10, 12, 50, 90, 200, 500], lr=5e-4,
              strategy=lrb_wrel(), weak=nested(0.3))
    return load_records([tmp_path]).records


def _ious(inters, unions):
    return np.array([i / u for i, u in zip(inters, unions, strict=True)])


def test_intervals_are_t_over_seeds_or_a_bootstrap_of_one_run(runs):
    frame = build_leaderboard(runs)["synthetic"].set_index("method", drop=False)
    two = frame[frame["n_seeds"] == 2].iloc[0]
    values = [r["metrics"]["mIoU"] for r in runs if r["run_id"].startswith("good")]
    mean, sem = np.mean(values), np.std(values, ddof=1) / math.sqrt(2)
    t = scipy.stats.t.ppf(0.975, df=1)
    assert two["mIoU ci low"] == pytest.approx(mean - t * sem) and two["mIoU ci high"] == pytest.approx(mean + t * sem)
    assert two["ci method"] == "t over 2 seeds"
    one = frame[frame["run_ids"].map(lambda ids: ids == ["bad-0"])].iloc[0]
    direct = bootstrap_interval(BAD[0], BAD[1], "oIoU", 0.95, 2000, 0)
    assert (one["oIoU ci low"], one["oIoU ci high"]) == (direct.low, direct.high)
    assert one["ci method"] == "bootstrap over 8 test samples"


def test_rows_tied_with_the_best_by_a_paired_permutation_test(runs):
    frame = build_leaderboard(runs)["synthetic"]
    assert frame["row_id"].tolist() == ["R1", "R2", "R3"] and frame["best"].tolist() == [True, False, False]
    best_iou = (_ious(*GOOD) + _ious([9, 3, 7, 10, 41, 80, 190, 470], GOOD[1])) / 2  # averaged over seeds
    by_run = {tuple(row["run_ids"]): row for _, row in frame.iterrows()}
    lrb, bad = by_run[("lrb-0",)], by_run[("bad-0",)]
    assert lrb["p_vs_best"] == permutation_p_value(_ious(GOOD[0], [11, 4, 10, 12, 50, 90, 200, 500]), best_iou, 9999, 0)
    assert bad["p_vs_best"] == permutation_p_value(_ious(*BAD), best_iou, 9999, 0)
    # 8 samples: the exact test; BAD loses every sample, so p is 2/256, the smallest two-sided value
    assert bad["p_vs_best"] == pytest.approx(2 / 256) and not bad["tied"]
    assert lrb["p_vs_best"] >= 0.05 and lrb["tied"]
    assert math.isnan(frame.loc[0, "p_vs_best"]) and not frame.loc[0, "tied"]


def test_size_bins_follow_the_issue_boundaries():
    assert [label for label, _, _ in SIZE_BINS] == ["< 0.5 %", "0.5–2 %", "2–10 %", "≥ 10 %"]
    assert [size_bin(x) for x in (0.0, 0.004999, 0.005, 0.0199, 0.02, 0.0999, 0.1, 1.0)] == [
        "< 0.5 %", "< 0.5 %", "0.5–2 %", "0.5–2 %", "2–10 %", "2–10 %", "≥ 10 %", "≥ 10 %"]
    assert size_bin(math.nan) is None


def test_breakdowns_by_size_category_and_type_are_computed_by_hand(runs, tmp_path):
    out = tmp_path / "out"
    write_leaderboards(runs, out)
    page = (out / "synthetic.md").read_text()
    iou = _ious(*BAD)  # the single-run row: no std, values by hand
    size = [100 * iou[[0, 1]].mean(), 100 * iou[[2, 3]].mean(), 100 * iou[[4, 5]].mean(), 100 * iou[[6, 7]].mean()]
    bad_row = next(line for line in page.splitlines()
                   if line.startswith("| R3 | fianet | standard |") and "(n=" not in line and "%" not in line
                   and line.count("|") == 8)
    assert bad_row == "| R3 | fianet | standard | " + " | ".join(f"{v:.2f}" for v in size) + " |"
    assert "| # | Method | Strategy | < 0.5 % (n=2) | 0.5–2 % (n=2) | 2–10 % (n=2) | ≥ 10 % (n=2) |" in page
    car = [0, 1, 4, 6]
    assert "| # | Method | Strategy | car (n=4) | ship (n=4) |" in page
    assert f"| R3 | fianet | standard | {100 * iou[car].mean():.2f} | {100 * np.delete(iou, car).mean():.2f} |" in page
    assert "| # | Method | Strategy | class (n=4) | colour (n=2) | size (n=2) |" in page
    two_seeds = [100 * _ious(*GOOD)[[0, 1]].mean(), 100 * _ious([9, 3, 7, 10, 41, 80, 190, 470], GOOD[1])[[0, 1]].mean()]
    assert f"| R1 ★ | fianet | standard | {np.mean(two_seeds):.2f} ± {np.std(two_seeds, ddof=1):.2f} |" in page


def test_cost_columns_model_index_and_page_rows(runs, tmp_path):
    out = tmp_path / "out"
    write_leaderboards(runs, out)
    table = pd.read_csv(out / "synthetic.csv")
    best = table.iloc[0]
    assert (best["params"], best["gflops"], best["gflops_input"]) == (1_500_000, 2.5, 128)
    assert (best["train_s mean"], best["train_img_per_s mean"], best["latency_ms mean"]) == (61.0, 20.5, 10.5)
    assert "| R1 ★ | fianet | 1.50 | 2.500 | 128 | 1m 01s | 20.5 | 10.5 | 1.00 |" in (out / "synthetic.md").read_text()
    index = yaml.safe_load((out / "model-index.yml").read_text())
    assert len(index["Models"]) == len(table)
    first = index["Models"][0]
    assert first["Results"][0]["Metrics"]["mIoU"] == round(best["mIoU mean"], 2)
    assert first["Weights"] == [f"../good-{s}/checkpoints/best" for s in (0, 1)]
    assert first["Metadata"]["Seeds"] == [0, 1] and first["Metadata"]["FLOPs (G)"] == 2.5

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.table, self.rows, self.in_body, self.cell = None, [], False, None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "table":
                self.table = attrs.get("id")
            elif tag == "tbody" and self.table == "synthetic-test-bbbbbbbb":
                self.in_body = True
            elif tag == "tr" and self.in_body:
                self.rows.append([])
            elif tag == "td" and self.in_body:
                self.cell = ""

        def handle_endtag(self, tag):
            if tag == "tbody":
                self.in_body = False
            elif tag == "td" and self.cell is not None:
                self.rows[-1].append(self.cell.strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Rows()
    parser.feed((out / "index.html").read_text())
    assert [row[0].split()[0] for row in parser.rows] == table["row_id"].tolist()
    assert [row[1:3] for row in parser.rows] == table[["method", "strategy"]].values.tolist()


def test_setting_names_the_recipe_and_every_override_in_full():
    recipe = {"experiment": None, "recipe": "fianet_lite_synthetic",
              "overrides": ["trainer.epochs=2", "seed=1", "method=fianet_lite", "data.root=/x", "hydra.run.dir=/y",
                            "method.some_long_option_name=a_value_longer_than_twenty_four_characters"]}
    plain = {"experiment": None, "recipe": None, "overrides": []}
    frame = build_leaderboard([make_record(0, 50.0, run_id="a", setting=recipe),
                               make_record(0, 40.0, run_id="b", lr=3e-4, setting=plain)])["rrsisd"]
    assert frame["setting"].tolist() == [
        "recipe fianet_lite_synthetic: trainer.epochs=2 "
        "method.some_long_option_name=a_value_longer_than_twenty_four_characters",
        "method defaults",
    ]


def test_ratio_curves_join_only_rows_trained_alike_apart_from_the_strategy():
    from rrsis_bench.results.tables import ratio_rows

    part = pd.DataFrame({
        "method": ["m", "m", "m", "m", "other"],
        "setting": ["epochs=3", "epochs=3 strategy.bank_epochs=1", "epochs=3", "epochs=8", "epochs=3"],
        "strategy": ["standard", "lrb_wrel", "naive_wrel", "lrb_wrel", "lrb_wrel"],
        "accurate_ratio": [1.0, 0.3, 0.1, 0.3, 0.3],
    })
    assert ratio_rows(part).index.tolist() == [0, 1, 2]  # epochs=8 and the other method have one share each
