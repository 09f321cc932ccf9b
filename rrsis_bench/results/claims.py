"""The claims table (`rrsis-bench claims`): what each seed method's paper says a component buys, and
what it buys here, at the shared setting S, from committed run records.

A **comparison** holds two cells, each the runs of one configuration (matched by the group hash of
the config `rrsis-bench run OVERRIDES` composes, so every seed of that configuration and nothing else),
paired by seed: Δ = with − without per seed. It reports, per metric (mIoU, oIoU):

- the mean Δ over the paired seeds with the two-sided 95 % t interval over those seed differences
  (:func:`~rrsis_bench.results.stats.seed_interval`): how much retraining with another seed moves it;
- the two-sided paired permutation test over the test samples (9,999 resamples, seed 0): mIoU on the
  per-sample IoUs averaged over the paired seeds (:func:`~rrsis_bench.results.stats.permutation_p_value`),
  oIoU on the per-sample counts summed over them
  (:func:`~rrsis_bench.results.stats.oiou_permutation_p_value`): whether the test samples could give the
  difference by chance;
- the verdict: **holds** when the interval lies above 0 and p < 0.05, **does not hold (it hurts)** when
  the interval lies below 0 and p < 0.05, else **not distinguishable at this budget**.

A **claim** is a comparison a paper makes: "with the component" against "without it", with the
paper's words and, where the publications print both numbers, the paper's Δ computed from the
shipped table of reported results (``reported.csv``), never typed.

``docs/claims.md`` is written by :func:`write_claims_doc`: the regions between ``<!-- claims:NAME -->``
and ``<!-- /claims:NAME -->`` are regenerated from the records, the prose around them is kept.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rrsis_bench.io import atomic_write_text
from rrsis_bench.results.analysis import BREAKDOWNS, read_run_samples, with_size_bins
from rrsis_bench.results.record import config_hash
from rrsis_bench.results.stats import (
    Interval,
    oiou_permutation_p_value,
    permutation_p_value,
    seed_interval,
)

ALPHA = 0.05
RESAMPLES = 9999
STATS_SEED = 0
METRICS = ("mIoU", "oIoU")
#: A method's val mIoU has plateaued when its last two epochs gain at most this over the best before them.
PLATEAU_POINTS = 1.0
#: The shared setting S (conf/experiment/synthetic_s.yaml): every cell of the claims is a run at S.
S = ("experiment=synthetic_s",)
#: The weak-ratio study's cells at S: lrb_wrel's bank stage is 3 epochs (its other stages take S's).
STUDY_OVERRIDES = ("strategy.bank_epochs=3",)
DEFAULT_DOC = "docs/claims.md"
#: The committed records and studies (the cells), and the records of earlier settings (other budgets or
#: machines: only the table of budgets tried before S reads them).
DEFAULT_RECORDS = ("leaderboards/records", "leaderboards/studies")
DEFAULT_EARLIER = "leaderboards/earlier"

FIANET = "FIANet (Lei et al., IEEE TGRS 2025)"
ALIGNFORMER = "AlignFormer (Wei et al., arXiv 2301.06429 v1)"
LRBWREL = "LRB-WREL (arXiv 2510.22760)"


@dataclass(frozen=True)
class ReportedPair:
    """Two rows of the reported table (same dataset, split and setting) whose difference a paper shows."""

    dataset: str
    split: str
    with_method: str
    without_method: str
    setting: str = ""  # the reported table's setting column: "" (full supervision) or "10% accurate"


@dataclass(frozen=True)
class Comparison:
    """Two cells (config overrides of `rrsis-bench run`) compared seed by seed: Δ = with − without."""

    key: str
    statement: str
    with_label: str
    with_overrides: tuple[str, ...]
    without_label: str
    without_overrides: tuple[str, ...]
    paper: str = ""  # the paper that claims it (empty: an explanation, not a claim)
    source: str = ""  # what the paper says, with its source
    reported: tuple[ReportedPair, ...] = ()


def _weak(method: str, strategy: str, ratio: float) -> tuple[str, ...]:
    """A cell of the weak-ratio study at S (the study hands strategy.* words to the strategies that have them)."""
    extra = STUDY_OVERRIDES if strategy == "lrb_wrel" else ()
    return (*S, f"method={method}", f"strategy={strategy}", f"data.weak.accurate_ratio={ratio}", *extra)


def _weak_claims() -> list[Comparison]:
    claims = []
    names = {"only_accurate": "Only accurate", "naive_wrel": "Naive-WREL"}
    for method in ("baseline", "fianet_lite"):
        for ratio in (0.1, 0.3):
            share = f"{round(ratio * 100)}% accurate"
            for other in ("only_accurate", "naive_wrel"):
                claims.append(Comparison(
                    key=f"lrb_wrel_vs_{other}-{method}-{ratio}",
                    statement=f"LRB-WREL beats {names[other]} at {share} ({method})",
                    with_label=f"{method} lrb_wrel", with_overrides=_weak(method, "lrb_wrel", ratio),
                    without_label=f"{method} {other}", without_overrides=_weak(method, other, ratio),
                    paper=LRBWREL,
                    source="abstract and README: LRB-WREL outperforms training on the accurate subset and the naive "
                           "use of weak expressions at every ratio (README table 'Comparison on RRSIS-D', base "
                           "model RMSIN)",
                    reported=(ReportedPair("rrsisd", "test", "LRB-WREL", names[other], share),)))
    return claims


#: Every claim the seed methods' papers make about their components, in the order of docs/claims.md.
CLAIMS: tuple[Comparison, ...] = (
    Comparison(
        "fiam", "FIAM helps FIANet", "fianet_lite", (*S, "method=fianet_lite"),
        "without FIAM (LAVT's fusion)", (*S, "method=fianet_lite", "method.fiam=false"), FIANET,
        "abstract: FIAM 'would simultaneously leverage the features of the input image and the corresponding "
        "texts, obtaining better discriminative multi-modal representation'; its ablation table could not be read "
        "(paper body not reachable)"),
    Comparison(
        "tmem", "TMEM helps FIANet", "fianet_lite", (*S, "method=fianet_lite"),
        "without TMEM", (*S, "method=fianet_lite", "method.tmem=false"), FIANET,
        "abstract: TMEM handles 'the various scales of ground objects'; ablation table not readable"),
    Comparison(
        "fiam_tmem", "FIAM + TMEM help: FIANet beats its LAVT base", "fianet_lite", (*S, "method=fianet_lite"),
        "LAVT base (no FIAM, no TMEM)", (*S, "method=fianet_lite", "method.fiam=false", "method.tmem=false"), FIANET,
        "FIANet over LAVT in the published tables (FIANet's RefSegRS table re-trains LAVT; RRSIS-D rows from "
        "RMSIN's table)",
        (ReportedPair("refsegrs", "test", "FIANet", "LAVT"), ReportedPair("rrsisd", "test", "FIANet", "LAVT"))),
    Comparison(
        "contrastive", "The cross-modal instance contrastive loss helps", "alignformer_lite",
        (*S, "method=alignformer_lite"), "without the contrastive loss",
        (*S, "method=alignformer_lite", "method.contrastive_weight=0.0"), ALIGNFORMER,
        "v1 abstract: the loss is introduced 'to alleviate the influence of pixel samples in ambiguous regions'; no "
        "number is public, and the authors' later code (LGFormer) trains with BCE alone"),
    Comparison(
        "bidirectional", "Vision-language attention in both directions beats text → pixels alone",
        "alignformer_lite", (*S, "method=alignformer_lite"), "text → pixels only",
        (*S, "method=alignformer_lite", "method.pixel_to_text=false"), ALIGNFORMER,
        "abstract: VLBA carries the text to every pixel and 'fine-grained image features into the linguistic "
        "features'; no number is public"),
    *_weak_claims(),
)

#: The learning rates of the sweep (one seed each, picked on val), per method at S.
LR_SWEEP = (0.0003, 0.001, 0.003)
LR_METHODS = ("baseline", "fianet_lite", "alignformer_lite")
#: Methods whose S cells the strata and plateau tables show (the lite methods against the baseline).
S_METHODS = ("baseline", "fianet_lite", "alignformer_lite")


# --------------------------------------------------------------------------- cells and records


def group_key(overrides: Sequence[str]) -> str:
    """The group hash (config hash without the seed) of `rrsis-bench run OVERRIDES`."""
    from rrsis_bench.config import compose_run_config

    return config_hash(compose_run_config(list(overrides)), include_seed=False)


class Cells:
    """Complete records grouped by their group hash; a cell = the runs of one configuration."""

    def __init__(self, records: Iterable[Mapping[str, Any]]) -> None:
        self.by_group: dict[str, list[dict]] = defaultdict(list)
        for record in records:
            if record.get("status") == "complete" and record.get("task", "run") == "run":
                self.by_group[record["group_hash"]].append(dict(record))
        for runs in self.by_group.values():
            runs.sort(key=lambda r: (r["seed"], r["run_id"]))
        self._keys: dict[tuple[str, ...], str] = {}

    def runs(self, overrides: Sequence[str]) -> list[dict]:
        key = self._keys.setdefault(tuple(overrides), group_key(overrides))
        seen, out = set(), []
        for run in self.by_group.get(key, []):
            if run["seed"] not in seen:  # one run per seed (the first by run id)
                seen.add(run["seed"])
                out.append(run)
        return out


# --------------------------------------------------------------------------- statistics


@dataclass
class Evaluated:
    comparison: Comparison
    seeds: list[int]
    with_runs: list[dict]
    without_runs: list[dict]
    means: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric -> (with, without)
    delta: dict[str, Interval] = field(default_factory=dict)
    p: dict[str, float] = field(default_factory=dict)
    verdict: dict[str, str] = field(default_factory=dict)
    reported: list[dict[str, Any]] = field(default_factory=list)


def verdict(interval: Interval, p: float) -> str:
    """holds / does not hold (it hurts) / not distinguishable at this budget (see the module docstring)."""
    if interval.n < 2 or math.isnan(interval.low):
        return "needs 2+ seeds"
    if interval.low > 0 and p < ALPHA:
        return "holds"
    if interval.high < 0 and p < ALPHA:
        return "does not hold (it hurts)"
    return "not distinguishable at this budget"


def _samples(runs: Sequence[dict]) -> list[pd.DataFrame] | None:
    frames = [read_run_samples(run) for run in runs]
    return None if any(f is None for f in frames) else frames


def evaluate(comparison: Comparison, cells: Cells, reported: pd.DataFrame | None = None) -> Evaluated:
    with_all, without_all = cells.runs(comparison.with_overrides), cells.runs(comparison.without_overrides)
    seeds = sorted({r["seed"] for r in with_all} & {r["seed"] for r in without_all})
    with_runs = [r for r in with_all if r["seed"] in seeds]
    without_runs = [r for r in without_all if r["seed"] in seeds]
    out = Evaluated(comparison, seeds, with_runs, without_runs)
    if reported is not None:
        out.reported = [reported_delta(pair, reported) for pair in comparison.reported]
    if not seeds:
        return out
    frames_w, frames_wo = _samples(with_runs), _samples(without_runs)
    for metric in METRICS:
        a = [r["metrics"][metric] for r in with_runs]
        b = [r["metrics"][metric] for r in without_runs]
        out.means[metric] = (float(np.mean(a)), float(np.mean(b)))
        out.delta[metric] = seed_interval([x - y for x, y in zip(a, b, strict=True)])
        out.p[metric] = _paired_p(metric, frames_w, frames_wo)
        out.verdict[metric] = verdict(out.delta[metric], out.p[metric])
    return out


def _paired_p(metric: str, frames_a: list[pd.DataFrame] | None, frames_b: list[pd.DataFrame] | None) -> float:
    """The permutation test over test samples of the seed-paired cells (module docstring)."""
    if not frames_a or not frames_b:
        return math.nan
    ids = frames_a[0].index
    if any(not f.index.equals(ids) for f in [*frames_a, *frames_b]):
        return math.nan
    if metric == "mIoU":
        iou_a = sum(f["iou"] for f in frames_a) / len(frames_a)
        iou_b = sum(f["iou"] for f in frames_b) / len(frames_b)
        return permutation_p_value(iou_a.to_numpy(), iou_b.to_numpy(), RESAMPLES, STATS_SEED)
    counts = [sum(f[c] for f in frames) for frames in (frames_a, frames_b) for c in ("intersection", "union")]
    return oiou_permutation_p_value(*(c.to_numpy() for c in counts), n_resamples=RESAMPLES, seed=STATS_SEED)


def reported_delta(pair: ReportedPair, reported: pd.DataFrame) -> dict[str, Any]:
    """The paper's Δ (with − without) from the reported table, with both rows' sources."""
    def row(method: str) -> pd.Series | None:
        hits = reported[(reported["dataset"] == pair.dataset) & (reported["split"] == pair.split)
                        & (reported["method"] == method) & (reported["setting"].fillna("") == pair.setting)]
        return hits.iloc[0] if len(hits) else None

    a, b = row(pair.with_method), row(pair.without_method)
    out: dict[str, Any] = {"pair": pair, "found": a is not None and b is not None}
    if out["found"]:
        out.update({m: float(a[m]) - float(b[m]) for m in METRICS})
        out["sources"] = sorted({str(a["source"]), str(b["source"])})
    return out


# --------------------------------------------------------------------------- the S setting


def plateau(run: Mapping[str, Any]) -> dict[str, Any]:
    """Val mIoU of a run's last three selectable epochs and the gain of its last two over the best before."""
    history = [h for h in run.get("history") or [] if "val_mIoU" in h]
    values = [float(h["val_mIoU"]) for h in history]
    if len(values) < 3:
        return {"values": values, "gain": math.nan, "plateaued": False}
    gain = max(values[-2:]) - max(values[:-2])
    return {"values": values[-3:], "gain": gain, "plateaued": gain <= PLATEAU_POINTS}


def setting_summary(run: Mapping[str, Any]) -> str:
    config = run["config"]
    t, d = config["trainer"], config["data"]
    return (f"{t['epochs']} epochs, {d['image_size']} px input (scored at "
            f"{'native size' if d.get('eval_size') is None else str(d['eval_size']) + ' px'}), batch {t['batch_size']}, "
            f"AdamW lr {t['lr']:g}, weight decay {t['weight_decay']:g}, poly {t['poly_power']:g}, grad clip "
            f"{t['grad_clip']}, checkpoint picked on val {t['select_metric']}")


# --------------------------------------------------------------------------- rendering


def _num(value: float, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.1e}" if value < 0.001 else f"{value:.3f}"


def _interval(interval: Interval | None) -> str:
    if interval is None or interval.n == 0:
        return "–"
    if interval.n < 2:
        return f"{_num(interval.mean, signed=True)} (1 seed)"
    return f"{_num(interval.mean, signed=True)} [{_num(interval.low, signed=True)}, {_num(interval.high, signed=True)}]"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> list[str]:
    align = align or "-" * len(header)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _reported_text(items: list[dict[str, Any]]) -> str:
    parts = []
    for item in items:
        pair = item["pair"]
        where = f"{pair.dataset} {pair.split}" + (f", {pair.setting}" if pair.setting else "")
        if item["found"]:
            parts.append(f"{where}: mIoU {_num(item['mIoU'], signed=True)}, oIoU {_num(item['oIoU'], signed=True)}")
        else:
            parts.append(f"{where}: row missing from reported.csv")
    return "; ".join(parts) if parts else "none public"


def _mean_pair(e: Evaluated, metric: str) -> tuple[str, str]:
    if metric not in e.means:
        return "–", "–"
    a, b = e.means[metric]
    return _num(a), _num(b)


def claims_table(evaluated: Sequence[Evaluated]) -> list[str]:
    rows = []
    for i, e in enumerate(evaluated, 1):
        c = e.comparison
        w, wo = _mean_pair(e, "mIoU")
        seeds = ", ".join(map(str, e.seeds)) if e.seeds else (
            f"not run yet ({len(e.with_runs) or 0}+{len(e.without_runs) or 0})")
        rows.append([f"C{i}", f"{c.statement} — {c.paper}", _reported_text(e.reported),
                     f"{c.with_label}: {w}", f"{c.without_label}: {wo}",
                     _interval(e.delta.get("mIoU")), _p(e.p.get("mIoU", math.nan)),
                     _interval(e.delta.get("oIoU")), _p(e.p.get("oIoU", math.nan)), seeds,
                     e.verdict.get("mIoU", "not run yet"), e.verdict.get("oIoU", "not run yet")])
    header = ["#", "claim — paper", "paper's Δ (with − without)", "with: mIoU", "without: mIoU",
              "ΔmIoU [95 % CI]", "p (mIoU)", "ΔoIoU [95 % CI]", "p (oIoU)", "seeds", "verdict (mIoU)",
              "verdict (oIoU)"]
    return _table(header, rows, "lllrrrrrrlll")


def sources_list(evaluated: Sequence[Evaluated]) -> list[str]:
    """Per claim: what the paper says and where (a text already given is referred to by its claim), and
    the two `rrsis-bench run` cells."""
    lines, first_of = [], {}
    for i, e in enumerate(evaluated, 1):
        c = e.comparison
        cells = f"`rrsis-bench run {' '.join(c.with_overrides)}` against `{' '.join(c.without_overrides)}`"
        sources = sorted({s for item in e.reported if item["found"] for s in item["sources"]})
        said = c.source + (f". Reported rows: {'; '.join(sources)}" if sources else "")
        text = f"as C{first_of[said]}" if said in first_of else said
        first_of.setdefault(said, i)
        lines.append(f"- **C{i}** ({c.key}): {text}. Cells: {cells}.")
    return lines


def plateau_table(cells: Cells) -> list[str]:
    rows = []
    for method in S_METHODS:
        for run in cells.runs((*S, f"method={method}")):
            info = plateau(run)
            rows.append([method, run["seed"], " → ".join(_num(v) for v in info["values"]), _num(info["gain"], signed=True),
                         "yes" if info["plateaued"] else "**no**"])
    if not rows:
        return ["No run at S yet."]
    return _table(["method", "seed", "val mIoU, last 3 epochs", "gain of the last 2 over the best before",
                   "plateaued (≤ 1 point)"], rows, "lrlrl")


def budget_table(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The plateau test of every other budget tried: complete standard runs of an S method on the synthetic
    data at 128 px whose method settings are the method's defaults (ablations left out), by epochs."""
    from rrsis_bench.config import compose_run_config
    from rrsis_bench.results.record import record_strategy

    defaults = {m: compose_run_config([*S, f"method={m}"]) for m in S_METHODS}
    rows = []
    for run in records:
        config = run.get("config") or {}
        method = (config.get("method") or {}).get("name")
        if run.get("status") != "complete" or method not in defaults or run.get("task", "run") != "run":
            continue
        base = defaults[method]
        same_method = all(base["method"].get(k) == v for k, v in config["method"].items() if k in base["method"])
        data = config.get("data") or {}
        weak = float((data.get("weak") or {}).get("accurate_ratio", 1.0))
        if not same_method or record_strategy(run)["name"] != "standard" or data.get("name") != "synthetic" \
                or data.get("image_size") != 128 or weak != 1.0 or config["trainer"]["lr"] != base["trainer"]["lr"] \
                or config["trainer"]["epochs"] == base["trainer"]["epochs"]:
            continue
        info = plateau(run)
        rows.append((config["trainer"]["epochs"], method, run["seed"], info, (run.get("code") or {}).get("git_sha", "")))
    if not rows:
        return []
    rows.sort(key=lambda r: (r[0], S_METHODS.index(r[1]), r[2]))
    return _table(["epochs", "method", "seed", "val mIoU, last 3 epochs", "gain of the last 2 over the best before",
                   "plateaued (≤ 1 point)", "code"],
                  [[e, m, seed, " → ".join(_num(v) for v in info["values"]), _num(info["gain"], signed=True),
                    "yes" if info["plateaued"] else "**no**", sha[:7]] for e, m, seed, info, sha in rows], "rlrlrll")


def lr_table(cells: Cells) -> list[str]:
    rows = []
    for method in LR_METHODS:
        for lr in LR_SWEEP:
            runs = [r for r in cells.runs((*S, f"method={method}", f"trainer.lr={lr}")) if r["seed"] == 0]
            if not runs:
                rows.append([method, f"{lr:g}", "–", "–", "not run yet"])
                continue
            run = runs[0]
            rows.append([method, f"{lr:g}", _num(run["selection"]["metrics"]["mIoU"]), _num(run["metrics"]["mIoU"]),
                         f"best val epoch {run['selection']['best_epoch']}"])
    return _table(["method", "lr", "val mIoU (selected epoch)", "test mIoU", "note"], rows, "lrrrl")


def tuned_lr(cells: Cells, method: str) -> float | None:
    """The sweep's lr with the best val mIoU (seed 0), None until every lr has run."""
    best = None
    for lr in LR_SWEEP:
        runs = [r for r in cells.runs((*S, f"method={method}", f"trainer.lr={lr}")) if r["seed"] == 0]
        if not runs:
            return None
        value = runs[0]["selection"]["metrics"]["mIoU"]
        if best is None or value > best[1]:
            best = (lr, value)
    return best[0] if best else None


def time_table(cells: Cells) -> list[str]:
    """Per S method: training time per epoch and wall time (means over its seeds), and the epochs that
    fit in the baseline's training time at S."""
    per_epoch = {}
    rows = []
    for method in S_METHODS:
        runs = cells.runs((*S, f"method={method}"))
        if not runs:
            continue
        epoch_s = float(np.mean([r["timing"]["train_s"] / r["timing"]["epochs"] for r in runs]))
        per_epoch[method] = epoch_s
        rows.append([method, len(runs), _num(epoch_s, 1), _num(float(np.mean([r["timing"]["wall_s"] for r in runs])) / 60, 1),
                     _num(float(np.mean([r["timing"]["train_samples_per_s"] for r in runs])), 1)])
    if "baseline" not in per_epoch:
        return ["No baseline run at S yet."]
    budget = per_epoch["baseline"] * cells.runs((*S, "method=baseline"))[0]["timing"]["epochs"]
    for row in rows:
        row.append(_num(budget / per_epoch[row[0]], 1))
    return _table(["method", "seeds", "training s / epoch", "wall min", "train img/s",
                   "epochs in the baseline's training time"], rows, "lrrrrr")


#: The lite methods trained for the epochs that fit in the baseline's training time at S (seed 0; from
#: the time table: 16 x the baseline's seconds per epoch / the method's).
EQUAL_TIME_EPOCHS = {"fianet_lite": 10, "alignformer_lite": 9}


def equal_time_comparisons() -> list[Comparison]:
    return [Comparison(f"equal_time-{m}", f"{m} at {e} epochs (the baseline's training time) against the baseline at S",
                       f"{m}, {e} epochs", (*S, f"method={m}", f"trainer.epochs={e}"), "baseline at S",
                       (*S, "method=baseline"))
            for m, e in EQUAL_TIME_EPOCHS.items()] + [
            Comparison(f"equal_epochs-{m}", f"{m} against the baseline, both at S (equal epochs)", m,
                       (*S, f"method={m}"), "baseline at S", (*S, "method=baseline")) for m in EQUAL_TIME_EPOCHS]


def explanation_comparisons(cells: Cells) -> list[Comparison]:
    """Tuned against untuned lr (3 seeds each) for every method whose sweep picked another lr."""
    out = []
    for method in LR_METHODS:
        lr = tuned_lr(cells, method)
        if lr is not None and lr != 0.001:
            out.append(Comparison(f"tuned_lr-{method}", f"{method}: tuned lr {lr:g} against the default 1e-3",
                                  f"lr {lr:g}", (*S, f"method={method}", f"trainer.lr={lr}"), "lr 1e-3",
                                  (*S, f"method={method}")))
    return out


def comparison_table(evaluated: Sequence[Evaluated]) -> list[str]:
    if not evaluated:
        return ["None yet (the sweep has not finished, or it kept the default lr for every method)."]
    rows = []
    for e in evaluated:
        w, wo = _mean_pair(e, "mIoU")
        rows.append([e.comparison.statement, w, wo, _interval(e.delta.get("mIoU")), _p(e.p.get("mIoU", math.nan)),
                     _interval(e.delta.get("oIoU")), ", ".join(map(str, e.seeds)) or "not run yet",
                     e.verdict.get("mIoU", "not run yet")])
    return _table(["comparison", "with: mIoU", "without: mIoU", "ΔmIoU [95 % CI]", "p", "ΔoIoU [95 % CI]",
                   "seeds", "verdict (mIoU)"], rows, "lrrrrrll")


def strata_tables(cells: Cells) -> list[str]:
    """mIoU per stratum (object size, category, expression type) of each method at S, and each lite
    method's Δ against the baseline with the permutation p over the stratum's samples."""
    frames: dict[str, list[pd.DataFrame]] = {}
    for method in S_METHODS:
        runs = cells.runs((*S, f"method={method}"))
        samples = _samples(runs) if runs else None
        if samples:
            frames[method] = [with_size_bins(f) for f in samples]
    if "baseline" not in frames:
        return ["No baseline run at S yet."]
    lines: list[str] = []
    others = [m for m in S_METHODS if m != "baseline" and m in frames]
    for title, column, order in BREAKDOWNS:
        base = frames["baseline"]
        if column not in base[0]:
            continue
        groups = list(order) if order else sorted(base[0][column].dropna().unique())
        rows = []
        for group in groups:
            mask = base[0][column] == group
            if not mask.any():
                continue
            base_iou = sum(f.loc[mask, "iou"] for f in base) / len(base)
            row = [group, int(mask.sum()), _num(100 * base_iou.mean())]
            for method in others:
                iou = sum(f.loc[mask, "iou"] for f in frames[method]) / len(frames[method])
                p = permutation_p_value(iou.to_numpy(), base_iou.to_numpy(), RESAMPLES, STATS_SEED)
                row += [_num(100 * iou.mean()), f"{_num(100 * (iou.mean() - base_iou.mean()), signed=True)} (p {_p(p)})"]
            rows.append(row)
        header = [title, "samples", "baseline"]
        for method in others:
            header += [method, f"Δ {method} − baseline"]
        lines += [f"**By {title}** (mIoU, mean over the seeds' per-sample IoUs):", "",
                  *_table(header, rows, "lrr" + "rr" * len(others)), ""]
    return lines[:-1] if lines else ["No per-sample breakdown columns in the records."]


def gradient_tables(path: Path) -> list[str]:
    """From ``docs/figures/gradient-flow.jsonl`` (tests/benchmarks/gradient_flow.py): per run, the total
    gradient norm at step 0 and at the end, and the modules whose gradient or weight change is largest."""
    if not path.is_file():
        return [f"No {path.name} yet (python tests/benchmarks/gradient_flow.py RUN ... --json docs/figures/{path.name})."]
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for e in entries:
        label = " ".join([e["method"], *[o for o in e.get("overrides") or [] if o.startswith("method.")]])
        for when in ("step0", "end"):
            state = e[when]
            terms = ", ".join(f"{k} {v:.3f}" for k, v in sorted(state["terms"].items()))
            mask = state.get("mask_total_grad_norm")
            rows.append([label, e["seed"], "step 0" if when == "step0" else "end", _num(state["total_grad_norm"], 3),
                         _num(mask, 3) if mask is not None else "–", terms])
    lines = _table(["run", "seed", "when", "‖∇ loss‖", "‖∇ mask loss alone‖", "loss terms"], rows, "lrlrrl")
    for e in entries:
        label = " ".join([e["method"], *[o for o in e.get("overrides") or [] if o.startswith("method.")]])
        groups = sorted(e["weight_change"])
        module_rows = []
        for g in groups:
            start, end = e["step0"]["grad_norm"].get(g), e["end"]["grad_norm"].get(g)
            mask0 = (e["step0"].get("mask_grad_norm") or {}).get(g)
            module_rows.append([g, _num(start, 4) if start is not None else "–",
                                _num(mask0, 4) if mask0 is not None else "–",
                                _num(end, 4) if end is not None else "–", _num(e["weight_change"][g], 4)])
        lines += ["", f"<details><summary>{label}, seed {e['seed']}: per module</summary>", "",
                  *_table(["module", "‖∇‖ step 0", "‖∇ mask‖ step 0", "‖∇‖ end", "‖Δθ‖ / ‖θ₀‖"], module_rows,
                          "lrrrr"), "", "</details>"]
    return lines


def text_branch_table(path: Path) -> list[str]:
    """From ``docs/figures/text-branches.json`` (tests/benchmarks/text_branches.py): per split, how many
    expressions give FIANet's object branch one word piece (which silences it) and how many have no
    spatial phrase (the position branch then reads the whole expression)."""
    if not path.is_file():
        return [f"No {path.name} yet (python tests/benchmarks/text_branches.py --json docs/figures/{path.name})."]
    figures = json.loads(path.read_text())
    rows = []
    for split, c in figures["splits"].items():
        n = c["samples"]
        rows.append([split, n, f"{c['single_piece_object']} ({100 * c['single_piece_object'] / n:.1f} %)",
                     f"{c['position_is_whole_expression']} ({100 * c['position_is_whole_expression'] / n:.1f} %)"])
    return [f"`{' '.join(figures['overrides'])}` (data.object_mask={figures['object_mask']}, tokenizer "
            f"{figures['tokenizer']}):", "",
            *_table(["split", "expressions", "object mask of one word piece (object branch silent)",
                     "no spatial phrase (position mask = whole expression)"], rows, "lrrr")]


# --------------------------------------------------------------------------- the document


REGION = re.compile(r"(<!-- claims:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /claims:(?P=name) -->)", re.S)


def build_regions(records: Iterable[Mapping[str, Any]], reported: pd.DataFrame, figures: Path,
                  earlier: Iterable[Mapping[str, Any]] = ()) -> dict[str, str]:
    records = list(records)
    cells = Cells(records)
    evaluated = [evaluate(c, cells, reported) for c in CLAIMS]
    explained = [evaluate(c, cells) for c in explanation_comparisons(cells)]
    s_runs = cells.runs((*S, "method=baseline"))
    setting = setting_summary(s_runs[0]) if s_runs else "no baseline run at S yet"
    regions = {
        "setting": [f"S: {setting}.", "", "At S:", "", *plateau_table(cells), "", "The budgets tried before S:", "",
                    *(budget_table([*records, *earlier]) or ["none recorded."])],
        "table": claims_table(evaluated),
        "sources": sources_list(evaluated),
        "lr": [*lr_table(cells), "", *comparison_table(explained)],
        "time": [*time_table(cells), "", *comparison_table([evaluate(c, cells) for c in equal_time_comparisons()])],
        "strata": strata_tables(cells),
        "gradients": gradient_tables(figures / "gradient-flow.jsonl"),
        "text": text_branch_table(figures / "text-branches.json"),
    }
    return {name: "\n".join(lines) + "\n" for name, lines in regions.items()}


def render_doc(template: str, regions: Mapping[str, str]) -> str:
    """``template`` with every claims region's body replaced; a region the template lacks is an error."""
    found = set()

    def body(match: re.Match) -> str:
        name = match["name"]
        if name not in regions:
            raise ValueError(f"docs/claims.md has a region claims:{name} that `rrsis-bench claims` does not make "
                             f"(it makes {', '.join(regions)}); remove it.")
        found.add(name)
        return f"{match.group(1)}{regions[name]}{match.group(4)}"

    text = REGION.sub(body, template)
    missing = [name for name in regions if name not in found]
    if missing:
        raise ValueError(f"The claims document lacks the region(s) {', '.join(missing)}: add "
                         f"'<!-- claims:NAME -->' and '<!-- /claims:NAME -->' lines for each.")
    return text


def write_claims_doc(records: Iterable[Mapping[str, Any]], doc: str | Path, *, reported: pd.DataFrame,
                     figures: str | Path, earlier: Iterable[Mapping[str, Any]] = (),
                     check: bool = False) -> tuple[Path, bool]:
    """Regenerate the claims regions of ``doc``; returns (path, whether it changed). With ``check`` nothing
    is written."""
    doc = Path(doc)
    if not doc.is_file():
        raise FileNotFoundError(f"{doc} does not exist; the claims command fills the regions of an existing document "
                                f"(see docs/claims.md in the repository).")
    template = doc.read_text(encoding="utf-8")
    text = render_doc(template, build_regions(records, reported, Path(figures), earlier))
    changed = text != template
    if changed and not check:
        atomic_write_text(doc, text)
    return doc, changed
