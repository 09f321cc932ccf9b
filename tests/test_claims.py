"""The claims table (rrsis_bench.results.claims, `rrsis-bench claims`): cells matched by config, seed-paired
differences with t intervals, the permutation tests, verdicts, the papers' Δ from the reported table, the
regenerated regions of docs/claims.md, and that the committed document is what the committed records give."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from conftest import exit_code

from rrsis_bench.results import claims as C
from rrsis_bench.results.leaderboard import load_reported
from rrsis_bench.results.stats import Interval

REPO = Path(__file__).resolve().parents[1]
N = 40  # test samples of the fake runs


def fake_run(tmp_path: Path, overrides, seed: int, ious: np.ndarray, *, name: str, history=None) -> dict:
    """A complete record of `rrsis-bench run OVERRIDES seed=SEED` whose per-sample IoUs are ``ious`` (union 100)."""
    folder = tmp_path / name
    folder.mkdir()
    inter = np.round(ious * 100).astype(int)
    frame = pd.DataFrame({"sample_id": [f"s{i:03d}" for i in range(N)], "intersection": inter, "union": 100})
    frame["iou"] = frame["intersection"] / frame["union"]
    frame.to_csv(folder / "per_sample.csv", index=False)
    miou = 100 * float(frame["iou"].mean())
    oiou = 100 * float(frame["intersection"].sum() / frame["union"].sum())
    return {"status": "complete", "task": "run", "run_id": f"{name}-id", "seed": seed,
            "group_hash": C.group_key(overrides), "metrics": {"mIoU": miou, "oIoU": oiou},
            "artifacts": {"per_sample": "per_sample.csv"}, "record_path": str(folder / "record.json"),
            "history": history or [], "selection": {"best_epoch": 1, "metrics": {"mIoU": miou}}}


def cell(tmp_path, overrides, base: np.ndarray, shifts, label: str) -> list[dict]:
    return [fake_run(tmp_path, overrides, seed, np.clip(base + shift, 0, 1), name=f"{label}-{seed}")
            for seed, shift in enumerate(shifts)]


FIAM = next(c for c in C.CLAIMS if c.key == "fiam")


def test_a_claim_pairs_seeds_and_gives_the_t_interval_of_the_differences_and_the_permutation_test(tmp_path):
    base = np.linspace(0.2, 0.8, N)
    with_runs = cell(tmp_path, FIAM.with_overrides, base, [0.10, 0.12, 0.08], "with")
    without_runs = cell(tmp_path, FIAM.without_overrides, base, [0.0, 0.01, -0.01], "without")
    other = fake_run(tmp_path, ("method=fianet_lite", "method.tmem=false"), 0, base, name="other-config")
    e = C.evaluate(FIAM, C.Cells([*with_runs, *without_runs, other]), load_reported())
    assert e.seeds == [0, 1, 2] and len(e.with_runs) == len(e.without_runs) == 3  # the other config is not mixed in
    deltas = [w["metrics"]["mIoU"] - wo["metrics"]["mIoU"] for w, wo in zip(with_runs, without_runs, strict=True)]
    mean, sd = np.mean(deltas), np.std(deltas, ddof=1)
    low, high = scipy.stats.t.interval(0.95, 2, loc=mean, scale=sd / math.sqrt(3))
    got = e.delta["mIoU"]
    assert (got.mean, got.low, got.high) == pytest.approx((mean, low, high))
    assert mean == pytest.approx(10.0, abs=0.3)  # +0.10 IoU on every sample
    assert e.p["mIoU"] < 0.001 and e.p["oIoU"] < 0.001  # every sample better: the permutation test agrees
    assert e.verdict == {"mIoU": "holds", "oIoU": "holds"}


def test_a_claim_without_seed_pairs_is_not_run_yet_and_unpaired_seeds_are_left_out(tmp_path):
    base = np.full(N, 0.5)
    with_runs = cell(tmp_path, FIAM.with_overrides, base, [0.1, 0.1], "with")  # seeds 0, 1
    without_runs = [fake_run(tmp_path, FIAM.without_overrides, 1, base, name="without-1")]
    e = C.evaluate(FIAM, C.Cells([*with_runs, *without_runs]))
    assert e.seeds == [1] and e.verdict["mIoU"] == "needs 2+ seeds"
    assert C.evaluate(FIAM, C.Cells(with_runs)).verdict == {}


@pytest.mark.parametrize(("low", "high", "p", "expected"), [
    (0.5, 3.0, 0.01, "holds"),
    (0.5, 3.0, 0.20, "not distinguishable at this budget"),  # seeds agree, the test samples do not
    (-1.0, 3.0, 0.001, "not distinguishable at this budget"),  # the test samples agree, the seeds do not
    (-4.0, -0.2, 0.001, "does not hold (it hurts)"),
    (-4.0, -0.2, 0.30, "not distinguishable at this budget"),
])
def test_verdicts_need_both_the_seed_interval_and_the_test_over_samples(low, high, p, expected):
    assert C.verdict(Interval((low + high) / 2, 1.0, low, high, 3), p) == expected


def test_the_papers_delta_comes_from_the_reported_table():
    reported = load_reported()
    fianet = C.reported_delta(C.ReportedPair("refsegrs", "test", "FIANet", "LAVT"), reported)
    assert fianet["found"] and fianet["mIoU"] == pytest.approx(68.67 - 47.40) and fianet["oIoU"] == pytest.approx(78.32 - 71.86)
    lrb = C.reported_delta(C.ReportedPair("rrsisd", "test", "LRB-WREL", "Naive-WREL", "10% accurate"), reported)
    assert lrb["mIoU"] == pytest.approx(56.32 - 54.63) and lrb["oIoU"] == pytest.approx(71.70 - 71.48)
    assert not C.reported_delta(C.ReportedPair("rrsisd", "test", "FIANet", "no such row"), reported)["found"]
    # every claim that cites reported rows finds them
    assert all(C.reported_delta(pair, reported)["found"] for claim in C.CLAIMS for pair in claim.reported)


def test_every_claim_cell_composes_and_the_weak_cells_are_the_studys():
    """Each cell is a config `rrsis-bench run` composes; lrb_wrel's cells carry the study's bank epochs."""
    for claim in C.CLAIMS:
        assert C.group_key(claim.with_overrides) != C.group_key(claim.without_overrides), claim.key
    weak = [c for c in C.CLAIMS if c.key.startswith("lrb_wrel")]
    assert len(weak) == 8 and all("strategy.bank_epochs=3" in c.with_overrides for c in weak)
    assert not any("strategy.bank_epochs=3" in c.without_overrides for c in weak)


def test_plateau_is_the_gain_of_the_last_two_epochs_over_the_best_before():
    history = [{"val_mIoU": v} for v in (40.0, 60.0, 62.0, 61.5, 62.8)]
    info = C.plateau({"history": history})
    assert info["values"] == [62.0, 61.5, 62.8] and info["gain"] == pytest.approx(0.8) and info["plateaued"]
    climbing = C.plateau({"history": [{"val_mIoU": v} for v in (40.0, 50.0, 55.0, 58.0)]})
    assert climbing["gain"] == pytest.approx(8.0) and not climbing["plateaued"]


def test_regions_are_rewritten_and_the_prose_is_kept():
    template = "intro\n<!-- claims:table -->\nold\n<!-- /claims:table -->\nmiddle\n<!-- claims:lr -->\n<!-- /claims:lr -->\n"
    text = C.render_doc(template, {"table": "NEW\n", "lr": "LR\n"})
    assert text == "intro\n<!-- claims:table -->\nNEW\n<!-- /claims:table -->\nmiddle\n<!-- claims:lr -->\nLR\n<!-- /claims:lr -->\n"
    with pytest.raises(ValueError, match=r"lacks the region\(s\) lr"):
        C.render_doc("<!-- claims:table -->\n<!-- /claims:table -->\n", {"table": "x\n", "lr": "y\n"})
    with pytest.raises(ValueError, match=r"region claims:oops that `rrsis-bench claims` does not make"):
        C.render_doc("<!-- claims:oops -->\n<!-- /claims:oops -->\n", {})


def test_the_committed_claims_document_is_what_the_committed_records_give():
    """docs/claims.md is regenerated, never typed: `rrsis-bench claims check=true` on the committed records."""
    records = ",".join(str(REPO / "leaderboards" / d) for d in ("records", "studies"))
    assert exit_code(["claims", f"records={records}", f"earlier={REPO / 'leaderboards' / 'earlier'}",
                      f"out={REPO / 'docs' / 'claims.md'}", f"figures={REPO / 'docs' / 'figures'}", "check=true"]) == 0


def test_the_claims_command_refuses_bad_arguments(tmp_path, capsys):
    assert exit_code(["claims", "nonsense"]) == 2
    assert exit_code(["claims", f"records={tmp_path / 'none'}"]) == 1
    assert "No record folder found" in capsys.readouterr().out
    assert exit_code(["claims", "--help"]) == 0


# -- the gradient-flow figures (tests/benchmarks/gradient_flow.py) ----------------------------------------
def _gradient_flow():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gradient_flow", REPO / "tests" / "benchmarks" / "gradient_flow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gradient_groups_split_fiams_parts_and_keep_backbones_whole():
    group_of = _gradient_flow().group_of
    assert group_of("fusions.2.object_position.object_attention.query.weight") == "fusions.2.object_position.object_attention"
    assert group_of("fusions.2.context.out.0.weight") == "fusions.2.context"
    assert group_of("decoder.vlba.1.gate.gate.0.weight") == "decoder.vlba.1"
    assert group_of("backbone.stages.3.blocks.0.attn.qkv.weight") == "backbone"
    assert group_of("tmem.blocks.0.attention.query.weight") == "tmem.blocks"


def test_gradient_flow_of_a_trained_run(tmp_path, data_overrides):
    """On a tiny FIANet run: every trained group has a gradient at step 0 and at the end and moved, the
    OPAB position map is reported, and step 0 is the model the run started from (rebuilt by seed)."""
    run_dir = tmp_path / "run"
    assert exit_code(["run", "method=test_fianet", "trainer=debug", "trainer.progress=false", *data_overrides,
                      f"hydra.run.dir={run_dir}"]) == 0
    result = _gradient_flow().measure(run_dir)
    assert result["method"] == "test_fianet" and result["seed"] == 0
    for when in ("step0", "end"):
        norms = result[when]["grad_norm"]
        assert {"backbone", "decoder", "fusions.0.context", "fusions.0.object_position.object_attention"} <= set(norms)
        assert all(v > 0 and math.isfinite(v) for v in norms.values())
        assert result[when]["total_grad_norm"] == pytest.approx(math.sqrt(sum(v * v for v in norms.values())))
        assert {"fusions.0.context_gate", "fusions.0.object_position.spatial"} <= set(result[when]["gates"])
    assert all(v > 0 for v in result["weight_change"].values())  # two steps of AdamW move every trained group
    assert result["step0"]["terms"]["loss"] != result["end"]["terms"]["loss"]


@pytest.mark.slow
def test_the_committed_text_branch_counts_are_what_the_script_gives():
    """docs/figures/text-branches.json (claims region "text") is what tests/benchmarks/text_branches.py
    counts on the default synthetic data (generated on first use: slow)."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("text_branches", REPO / "tests" / "benchmarks" / "text_branches.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = json.loads((REPO / "docs" / "figures" / "text-branches.json").read_text())
    assert module.counts(committed["overrides"]) == committed
