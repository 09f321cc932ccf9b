"""What a leaderboard row says beyond its means: intervals, ties with the best row, cost, breakdowns.

Everything here is computed from run records and their ``per_sample.csv`` (found beside each
``record.json`` through ``artifacts.per_sample``), with scipy doing the statistics
(:mod:`rrsis_bench.results.stats`):

- **Interval of a row** (mIoU, oIoU): with two or more seeds, the t interval of the mean over seeds
  (:func:`~rrsis_bench.results.stats.seed_interval`); with one run, a bootstrap over its test samples
  (:func:`~rrsis_bench.results.stats.bootstrap_interval`, BCa, fixed seed so tables are reproducible).
  The two answer different questions (seed-to-seed spread vs test-set sampling) and the tables say
  which one each row has.
- **Tied with the best**: within one test set, each row's per-sample IoUs (averaged over its seeds) are
  compared with the best row's by a two-sided paired permutation test of the mean difference; p ≥ 0.05
  marks the row as statistically tied. Seed-to-seed variation is not part of this test.
- **Breakdowns**: mIoU per category, per object size (share of the image the target covers:
  :data:`SIZE_BINS`) and per expression type, from the per-sample columns that runs write
  (``class_name``, ``target_pixels``/``pixels``, ``expression_type``); older per-sample files lack them
  and their rows are left out of those tables, with a note.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rrsis_bench.results.record import RECORD_PATH_KEY
from rrsis_bench.results.stats import bootstrap_interval, per_sample_iou, permutation_p_value, seed_interval

#: Rows whose paired permutation test against the best row gives p at least this are "tied".
TIE_ALPHA = 0.05
CONFIDENCE = 0.95
#: Resamples of the per-run bootstrap intervals and of the tie tests (fixed seeds: reproducible tables).
BOOTSTRAP_RESAMPLES = 2000
TIE_RESAMPLES = 9999
STATS_SEED = 0
#: Object size bins: the share of the image's pixels that the target covers (lower bound inclusive).
SIZE_BINS: tuple[tuple[str, float, float], ...] = (
    ("< 0.5 %", 0.0, 0.005),
    ("0.5–2 %", 0.005, 0.02),
    ("2–10 %", 0.02, 0.10),
    ("≥ 10 %", 0.10, math.inf),
)
INTERVAL_METRICS = ("mIoU", "oIoU")


def per_sample_path(record: Mapping[str, Any]) -> Path | None:
    """The run's per-sample file (beside the record it was read from), or None when unknown/missing."""
    where = record.get(RECORD_PATH_KEY)
    name = (record.get("artifacts") or {}).get("per_sample")
    if not where or not name:
        return None
    path = Path(where).parent / name
    return path if path.is_file() else None


def read_run_samples(record: Mapping[str, Any]) -> pd.DataFrame | None:
    """The run's per-sample rows indexed by sample id, with ``iou`` recomputed from the counts."""
    path = per_sample_path(record)
    if path is None:
        return None
    frame = pd.read_csv(path, dtype={"sample_id": str, "class_name": str, "expression_type": str},
                        keep_default_na=False, na_values={"target_pixels": [""], "pixels": [""]})
    frame["iou"] = per_sample_iou(frame["intersection"].to_numpy(), frame["union"].to_numpy())
    return frame.set_index("sample_id", drop=False).sort_index()


def size_bin(share: float) -> str | None:
    """The :data:`SIZE_BINS` label of a target covering ``share`` of the image (None when unknown)."""
    if share is None or not math.isfinite(share):
        return None
    for label, low, high in SIZE_BINS:
        if low <= share < high:
            return label
    return None


def row_intervals(runs: Sequence[Mapping[str, Any]], samples: Sequence[pd.DataFrame | None]) -> dict[str, Any]:
    """``<metric> ci low``/``ci high`` for mIoU and oIoU, and ``ci method`` (how they were obtained)."""
    out: dict[str, Any] = {}
    if len({run["seed"] for run in runs}) >= 2:
        for metric in INTERVAL_METRICS:
            interval = seed_interval([run["metrics"][metric] for run in runs], CONFIDENCE)
            out[f"{metric} ci low"], out[f"{metric} ci high"] = interval.low, interval.high
        out["ci method"] = f"t over {len(runs)} seeds"
        return out
    frame = samples[0] if samples else None
    if len(runs) == 1 and frame is not None and len(frame) >= 2:
        for metric in INTERVAL_METRICS:
            interval = bootstrap_interval(frame["intersection"].to_numpy(), frame["union"].to_numpy(), metric,
                                          CONFIDENCE, BOOTSTRAP_RESAMPLES, STATS_SEED)
            out[f"{metric} ci low"], out[f"{metric} ci high"] = interval.low, interval.high
        out["ci method"] = f"bootstrap over {len(frame)} test samples"
        return out
    for metric in INTERVAL_METRICS:
        out[f"{metric} ci low"] = out[f"{metric} ci high"] = math.nan
    out["ci method"] = "none (no per-sample file)"
    return out


def mean_sample_iou(samples: Sequence[pd.DataFrame | None]) -> pd.Series | None:
    """Per-sample IoU averaged over a row's runs (None unless every run has its per-sample file and
    all of them scored the same samples)."""
    if not samples or any(frame is None for frame in samples):
        return None
    ids = samples[0].index
    if any(not frame.index.equals(ids) for frame in samples[1:]):
        return None
    return sum(frame["iou"] for frame in samples) / len(samples)


def tie_p_values(best: pd.Series | None, others: Mapping[Any, pd.Series | None]) -> dict[Any, float]:
    """p-value of the paired permutation test of each row's per-sample IoUs against the best row's."""
    out = {}
    for key, series in others.items():
        if best is None or series is None or not series.index.equals(best.index):
            out[key] = math.nan
        else:
            out[key] = permutation_p_value(series.to_numpy(), best.to_numpy(), TIE_RESAMPLES, STATS_SEED)
    return out


def _group_miou(samples: Sequence[pd.DataFrame | None], column: str) -> dict[str, tuple[float, float, int]]:
    """{group: (mean over runs of the group's mIoU, sample std over runs, samples in the group)}."""
    per_run: list[pd.Series] = []
    counts: pd.Series | None = None
    for frame in samples:
        if frame is None or column not in frame:
            return {}
        groups = frame.groupby(frame[column], sort=True)["iou"]
        per_run.append(100.0 * groups.mean())
        counts = groups.size()
    if not per_run or counts is None:
        return {}
    table = pd.concat(per_run, axis=1)
    std = table.std(axis=1, ddof=1) if table.shape[1] > 1 else pd.Series(math.nan, index=table.index)
    return {str(g): (float(table.loc[g].mean()), float(std.loc[g]), int(counts.loc[g])) for g in table.index}


def with_size_bins(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """``frame`` plus a ``size_bin`` column when it has target/image pixel counts."""
    if frame is None or "target_pixels" not in frame or "pixels" not in frame:
        return frame
    share = frame["target_pixels"].astype(float) / frame["pixels"].astype(float)
    return frame.assign(size_bin=[size_bin(value) for value in share])


#: Breakdown kinds: (title, per-sample column, fixed order of groups or None for sorted).
BREAKDOWNS: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("object size (share of the image covered by the target)", "size_bin", tuple(b[0] for b in SIZE_BINS)),
    ("category", "class_name", None),
    ("expression type", "expression_type", None),
)


def breakdown(samples: Sequence[pd.DataFrame | None], column: str) -> dict[str, tuple[float, float, int]]:
    """mIoU per group of ``column`` for one row (see :func:`_group_miou`); {} when the files lack it."""
    return _group_miou([with_size_bins(frame) for frame in samples], column)


def as_float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def mean_of(values: Sequence[Any]) -> float:
    clean = [as_float(v) for v in values]
    clean = [v for v in clean if not math.isnan(v)]
    return float(np.mean(clean)) if clean else math.nan
