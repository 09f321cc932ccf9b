"""Statistics for leaderboards and `rrsis-bench compare`: intervals and paired tests, all from scipy.

- :func:`seed_interval`: mean ± std over seeds and a two-sided t interval (``scipy.stats.t``).
- :func:`bootstrap_interval`: one run's mIoU or oIoU with a bootstrap interval over its test samples
  (``scipy.stats.bootstrap``).
- :func:`paired_comparison`: two runs on the same test samples: ΔmIoU and ΔoIoU (A − B) with paired
  bootstrap intervals, the Wilcoxon signed-rank test on per-sample IoU differences, paired permutation
  tests of ΔmIoU and ΔoIoU, and how many samples each run wins.
- :func:`permutation_p_value`: the paired permutation test of the mean IoU difference alone (the
  leaderboard marks rows whose p-value against the best row is not below α as tied with it).
- :func:`compare_runs` reads two run folders, refuses pairs that were not scored on the same test
  samples, and returns a :class:`ComparisonReport`; :func:`render_comparison` and
  :func:`comparison_json` present it.

Metrics are percentages, as in records (:func:`rrsis_bench.metrics.compute_metrics`); per-sample IoU is
I/U with IoU = 0 when U = 0. Every resampling procedure draws from its own
``np.random.default_rng(seed)``, so each result is reproducible alone and equals the direct scipy call
with that generator; the same inputs give bit-identical floats.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from rrsis_bench.errors import UserError
from rrsis_bench.metrics import compute_metrics
from rrsis_bench.results.record import RECORD_FILE, load_records, record_strategy

METRICS = ("mIoU", "oIoU")
#: Per-sample columns a comparison needs; others (target_pixels, class_name, …) are carried along.
PER_SAMPLE_COLUMNS = ("sample_id", "intersection", "union")
#: How far the per-sample rows may be from the record's metrics (percent points) before a run is refused.
METRIC_TOLERANCE = 1e-9
#: Resampled values held at once per data array; bounds memory on large test splits (RRSIS-D: 3,481).
_MAX_BATCH_ELEMENTS = 1 << 22
_ID_EXAMPLES = 3


class ComparisonError(UserError, ValueError):
    """Two runs (or per-sample tables) cannot be compared as they are; the message says why and the fix."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its spread and a two-sided interval.

    ``method`` is ``t`` (over seeds: ``std`` is the sample std), ``bootstrap`` or ``paired bootstrap``
    (over test samples: ``std`` is the bootstrap standard error). ``low``/``high`` are NaN when the
    interval cannot be estimated (fewer than 2 values).
    """

    mean: float
    std: float
    low: float
    high: float
    n: int
    method: str = "t"
    confidence: float = 0.95


def _check_confidence(confidence: float) -> float:
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1 (e.g. 0.95), not {confidence!r}.")
    return float(confidence)


def _check_resamples(n_resamples: int) -> int:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive whole number, not {n_resamples!r}.")
    return int(n_resamples)


def seed_interval(values: Iterable[float | None], confidence: float = 0.95) -> Interval:
    """Mean, sample std (ddof=1) and the two-sided t interval of the mean over seeds.

    ``scipy.stats.t.interval(confidence, df=n-1, loc=mean, scale=std/sqrt(n))``. None and NaN values are
    ignored. With fewer than 2 values std/low/high are NaN (no spread can be estimated); with equal
    values the interval is the point (std 0).
    """
    confidence = _check_confidence(confidence)
    kept = np.array([float(v) for v in values if v is not None and not math.isnan(float(v))], dtype=float)
    n = int(kept.size)
    mean = float(kept.mean()) if n else math.nan
    if n < 2:
        return Interval(mean, math.nan, math.nan, math.nan, n, "t", confidence)
    std = float(kept.std(ddof=1))
    if std == 0.0:  # scipy refuses scale 0; every seed gave the same value
        return Interval(mean, 0.0, mean, mean, n, "t", confidence)
    low, high = scipy.stats.t.interval(confidence, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    return Interval(mean, std, float(low), float(high), n, "t", confidence)


# --------------------------------------------------------------------------- per-sample statistics


def per_sample_iou(intersections: Sequence[int] | np.ndarray, unions: Sequence[int] | np.ndarray) -> np.ndarray:
    """I/U per sample, 0 where U = 0 (the RRSIS protocol)."""
    inters = np.asarray(intersections, dtype=float)
    unis = np.asarray(unions, dtype=float)
    return np.divide(inters, unis, out=np.zeros_like(inters), where=unis > 0)


def _ratio_percent(inter_sum: np.ndarray, union_sum: np.ndarray) -> np.ndarray:
    """100·ΣI/ΣU, 0 where ΣU = 0, in compute_metrics' order of operations (same value on all samples)."""
    scaled = 100.0 * np.asarray(inter_sum, dtype=float)
    union_sum = np.asarray(union_sum, dtype=float)
    return np.divide(scaled, union_sum, out=np.zeros_like(scaled), where=union_sum > 0)


def _miou_statistic(iou: np.ndarray, axis: int = -1) -> np.ndarray:
    return 100.0 * np.mean(iou, axis=axis)


def _oiou_statistic(inters: np.ndarray, unions: np.ndarray, axis: int = -1) -> np.ndarray:
    return _ratio_percent(np.sum(inters, axis=axis), np.sum(unions, axis=axis))


def _delta_miou_statistic(iou_a: np.ndarray, iou_b: np.ndarray, axis: int = -1) -> np.ndarray:
    return 100.0 * (np.mean(iou_a, axis=axis) - np.mean(iou_b, axis=axis))


def _delta_oiou_statistic(
    inters_a: np.ndarray, unions_a: np.ndarray, inters_b: np.ndarray, unions_b: np.ndarray, axis: int = -1
) -> np.ndarray:
    return _oiou_statistic(inters_a, unions_a, axis) - _oiou_statistic(inters_b, unions_b, axis)


def _batch(n: int) -> int:
    """Resamples per vectorized call so that one resampled array holds at most ~4M values."""
    return max(1, _MAX_BATCH_ELEMENTS // max(n, 1))


def _bootstrap(
    data: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    point: float,
    *,
    paired: bool,
    confidence: float,
    n_resamples: int,
    seed: int,
    method_name: str,
) -> Interval:
    """``scipy.stats.bootstrap`` with the BCa interval; a degenerate bootstrap distribution gives the point.

    BCa rather than percentile: mIoU over a few hundred samples of bounded, often bimodal IoUs (hits
    near 1, misses near 0) and the ratio ΣI/ΣU are skewed and biased estimators; BCa corrects both
    (second-order accurate) where the percentile interval is only first-order, and it costs one
    jackknife pass, cheap at test-split sizes. When every resample gives the same value (all IoUs
    equal, identical runs) BCa is undefined (0/0 acceleration): the interval is then the point itself,
    zero width, std 0. If BCa is undefined although the resamples vary (jackknife values all equal),
    the percentile interval of the same resamples is returned.
    """
    n = int(data[0].shape[-1])
    if n < 2:  # scipy needs two observations; one sample says nothing about spread
        return Interval(point, math.nan, math.nan, math.nan, n, method_name, confidence)
    kwargs = dict(paired=paired, vectorized=True, confidence_level=confidence, batch=_batch(n))
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        result = scipy.stats.bootstrap(data, statistic, n_resamples=n_resamples, method="BCa",
                                       rng=np.random.default_rng(seed), **kwargs)
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        spread = float(np.ptp(result.bootstrap_distribution))
        if (math.isnan(low) or math.isnan(high)) and spread > 0.0:
            result = scipy.stats.bootstrap(data, statistic, n_resamples=0, method="percentile",
                                           bootstrap_result=result, **kwargs)
            low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if spread == 0.0:
        return Interval(point, 0.0, point, point, n, method_name, confidence)
    return Interval(point, float(result.standard_error), low, high, n, method_name, confidence)


def bootstrap_interval(
    intersections: Sequence[int] | np.ndarray,
    unions: Sequence[int] | np.ndarray,
    metric: str,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """One run's ``mIoU`` or ``oIoU`` (percent) with a bootstrap interval over its test samples.

    mIoU resamples per-sample IoUs (statistic: their mean); oIoU resamples (I, U) pairs jointly
    (``paired=True``; statistic ΣI/ΣU). The interval is BCa (see :func:`_bootstrap`); ``mean`` is the
    metric on all samples, ``std`` the bootstrap standard error. All IoUs equal: a zero-width interval
    at the point; fewer than 2 samples: NaN interval.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}.")
    confidence = _check_confidence(confidence)
    n_resamples = _check_resamples(n_resamples)
    inters = np.asarray(intersections, dtype=np.int64).reshape(-1)
    unis = np.asarray(unions, dtype=np.int64).reshape(-1)
    if inters.size == 0:
        raise ValueError("bootstrap_interval needs at least one sample; got none.")
    metrics = compute_metrics(inters, unis)  # also validates the counts
    point = float(metrics[metric])
    if metric == "mIoU":
        data: tuple[np.ndarray, ...] = (per_sample_iou(inters, unis),)
        statistic, paired = _miou_statistic, False
    else:
        data, statistic, paired = (inters, unis), _oiou_statistic, True
    return _bootstrap(data, statistic, point, paired=paired, confidence=confidence, n_resamples=n_resamples,
                      seed=seed, method_name="bootstrap")


def _permutation_p(data: tuple[np.ndarray, np.ndarray], statistic: Callable[..., np.ndarray],
                   n_resamples: int, seed: int) -> float:
    """Two-sided paired permutation test (labels A/B swapped within a sample); exact when 2^n ≤ n_resamples."""
    n = int(data[0].shape[-1])
    if n == 0:
        return math.nan
    result = scipy.stats.permutation_test(
        data, statistic, permutation_type="samples", vectorized=True, n_resamples=n_resamples,
        batch=_batch(n), alternative="two-sided", rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def permutation_p_value(
    iou_a: Sequence[float] | np.ndarray, iou_b: Sequence[float] | np.ndarray, n_resamples: int = 9999, seed: int = 0
) -> float:
    """p-value of the two-sided paired permutation test of mean(iou_a) − mean(iou_b).

    The arrays are per-sample IoUs aligned by sample (same length, same order). Under the null the two
    runs' IoUs of a sample are exchangeable, so each resample swaps them at random per sample
    (``scipy.stats.permutation_test``, ``permutation_type="samples"``). Identical arrays give 1.0.
    """
    a = np.asarray(iou_a, dtype=float).reshape(-1)
    b = np.asarray(iou_b, dtype=float).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"Got {a.size} IoUs for A but {b.size} for B; align both runs by sample id first.")
    return _permutation_p((a, b), _delta_miou_statistic, _check_resamples(n_resamples), seed)


def _oiou_permutation_p(inters: np.ndarray, unions: np.ndarray, n_resamples: int, seed: int) -> float:
    """Paired permutation test of ΔoIoU: ``inters``/``unions`` hold A's counts then B's (2n each).

    permutation_test swaps values between two samples at the same index, but here a sample's I and U
    must move together: the test permutes row indices (i into A's half, n + i into B's) and the
    statistic looks the counts up.
    """
    n = inters.size // 2

    def statistic(rows_a: np.ndarray, rows_b: np.ndarray, axis: int = -1) -> np.ndarray:
        return (_oiou_statistic(inters[rows_a], unions[rows_a], axis)
                - _oiou_statistic(inters[rows_b], unions[rows_b], axis))

    return _permutation_p((np.arange(n), np.arange(n, 2 * n)), statistic, n_resamples, seed)


def oiou_permutation_p_value(
    inters_a: Sequence[int] | np.ndarray, unions_a: Sequence[int] | np.ndarray,
    inters_b: Sequence[int] | np.ndarray, unions_b: Sequence[int] | np.ndarray,
    n_resamples: int = 9999, seed: int = 0,
) -> float:
    """p-value of the two-sided paired permutation test of ΔoIoU = ΣI_a/ΣU_a − ΣI_b/ΣU_b; the counts are
    aligned by sample and each resample swaps a sample's (I, U) between A and B."""
    arrays = [np.asarray(x, dtype=np.int64).reshape(-1) for x in (inters_a, unions_a, inters_b, unions_b)]
    if len({a.size for a in arrays}) != 1:
        raise ValueError("oiou_permutation_p_value needs the same number of samples in all four count arrays; "
                         "align both runs by sample id first.")
    return _oiou_permutation_p(np.concatenate([arrays[0], arrays[2]]), np.concatenate([arrays[1], arrays[3]]),
                               _check_resamples(n_resamples), seed)


def wilcoxon_p_value(diffs: Sequence[float] | np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of per-sample differences (``scipy.stats.wilcoxon``).

    Zero differences are dropped before ranking (``zero_method="wilcox"``, scipy's default); with no
    non-zero difference at all there is no evidence either way and p = 1.0.
    """
    d = np.asarray(diffs, dtype=float).reshape(-1)
    if not np.any(d != 0):
        return 1.0
    return float(scipy.stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


# --------------------------------------------------------------------------- paired comparison


@dataclass(frozen=True)
class PairedComparison:
    """Two runs on the same test samples; deltas are A − B in percent points."""

    n: int
    miou_a: float
    miou_b: float
    oiou_a: float
    oiou_b: float
    delta_miou: float
    delta_oiou: float
    delta_miou_interval: Interval
    delta_oiou_interval: Interval
    wilcoxon_p: float
    nonzero_differences: int
    permutation_p_miou: float
    permutation_p_oiou: float
    wins_a: int
    wins_b: int
    ties: int
    per_sample: pd.DataFrame  # sample_id, iou_a, iou_b, diff (= iou_a − iou_b), sorted by sample_id
    confidence: float
    n_resamples: int
    seed: int


def _examples(ids: Iterable[str]) -> str:
    ids = sorted(ids)
    shown = ", ".join(repr(i) for i in ids[:_ID_EXAMPLES])
    return shown + (", …" if len(ids) > _ID_EXAMPLES else "")


def _check_frame(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    missing = [column for column in PER_SAMPLE_COLUMNS if column not in frame.columns]
    if missing:
        raise ComparisonError(
            f"The per-sample table of {label} lacks the column(s) {', '.join(missing)}; it needs "
            f"{', '.join(PER_SAMPLE_COLUMNS)} (the per_sample.csv a run writes)."
        )
    ids = frame["sample_id"].astype(str)
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise ComparisonError(
            f"The per-sample table of {label} lists {duplicated.nunique()} sample id(s) more than once "
            f"(e.g. {_examples(set(duplicated))}); each sample must be scored once."
        )
    for column in ("intersection", "union"):
        if frame[column].dtype.kind not in "iu":
            raise ComparisonError(
                f"The per-sample table of {label} has non-integer or missing values in column '{column}'; "
                "it must hold pixel counts (rewrite it from the run, or re-run the evaluation)."
            )
    return frame.assign(sample_id=ids)


def align_per_sample(a: pd.DataFrame, b: pd.DataFrame, labels: tuple[str, str] = ("A", "B")) -> pd.DataFrame:
    """A's and B's rows joined on ``sample_id`` (sorted by id, so row order in the files does not matter).

    Columns: sample_id, intersection_a, union_a, intersection_b, union_b. Refuses (ComparisonError)
    tables whose sample id sets differ, naming how many ids are only in one of them, with examples.
    """
    a = _check_frame(a, labels[0])
    b = _check_frame(b, labels[1])
    ids_a, ids_b = set(a["sample_id"]), set(b["sample_id"])
    only_a, only_b = ids_a - ids_b, ids_b - ids_a
    if only_a or only_b:
        parts = [f"{len(ids)} sample id(s) only in {label}" + (f" (e.g. {_examples(ids)})" if ids else "")
                 for ids, label in ((only_a, labels[0]), (only_b, labels[1]))]
        raise ComparisonError(
            f"{labels[0]} and {labels[1]} were scored on different samples: {' and '.join(parts)}; paired "
            "statistics need both runs scored on the same test samples (evaluate both on the same split)."
        )
    columns = list(PER_SAMPLE_COLUMNS)
    merged = a[columns].merge(b[columns], on="sample_id", suffixes=("_a", "_b"), validate="one_to_one")
    return merged.sort_values("sample_id", kind="stable", ignore_index=True)


def paired_comparison(
    a: pd.DataFrame,
    b: pd.DataFrame,
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
    labels: tuple[str, str] = ("A", "B"),
) -> PairedComparison:
    """Paired statistics of two per-sample tables (columns sample_id, intersection, union; others ignored).

    The tables are aligned by sample id (:func:`align_per_sample`, which refuses differing id sets).
    ΔmIoU and ΔoIoU get paired bootstrap intervals (samples resampled jointly for both runs,
    ``paired=True``, BCa); p-values: the Wilcoxon signed-rank test on per-sample IoU differences
    (:func:`wilcoxon_p_value`) and paired permutation tests of ΔmIoU and ΔoIoU. Each procedure uses
    ``np.random.default_rng(seed)`` of its own.
    """
    confidence = _check_confidence(confidence)
    n_resamples = _check_resamples(n_resamples)
    aligned = align_per_sample(a, b, labels)
    inters_a, unions_a = (aligned[c].to_numpy(np.int64) for c in ("intersection_a", "union_a"))
    inters_b, unions_b = (aligned[c].to_numpy(np.int64) for c in ("intersection_b", "union_b"))
    metrics_a, metrics_b = compute_metrics(inters_a, unions_a), compute_metrics(inters_b, unions_b)
    iou_a, iou_b = per_sample_iou(inters_a, unions_a), per_sample_iou(inters_b, unions_b)
    diff = iou_a - iou_b
    delta_miou = metrics_a["mIoU"] - metrics_b["mIoU"]
    delta_oiou = metrics_a["oIoU"] - metrics_b["oIoU"]
    settings = dict(confidence=confidence, n_resamples=n_resamples, seed=seed, method_name="paired bootstrap")
    miou_interval = _bootstrap((iou_a, iou_b), _delta_miou_statistic, delta_miou, paired=True, **settings)
    oiou_interval = _bootstrap((inters_a, unions_a, inters_b, unions_b), _delta_oiou_statistic, delta_oiou,
                               paired=True, **settings)
    return PairedComparison(
        n=len(aligned),
        miou_a=metrics_a["mIoU"], miou_b=metrics_b["mIoU"], oiou_a=metrics_a["oIoU"], oiou_b=metrics_b["oIoU"],
        delta_miou=delta_miou, delta_oiou=delta_oiou,
        delta_miou_interval=miou_interval, delta_oiou_interval=oiou_interval,
        wilcoxon_p=wilcoxon_p_value(diff),
        nonzero_differences=int(np.count_nonzero(diff)),
        permutation_p_miou=permutation_p_value(iou_a, iou_b, n_resamples, seed),
        permutation_p_oiou=_oiou_permutation_p(np.concatenate([inters_a, inters_b]),
                                               np.concatenate([unions_a, unions_b]), n_resamples, seed),
        wins_a=int(np.sum(iou_a > iou_b)), wins_b=int(np.sum(iou_b > iou_a)), ties=int(np.sum(iou_a == iou_b)),
        per_sample=pd.DataFrame({"sample_id": aligned["sample_id"], "iou_a": iou_a, "iou_b": iou_b, "diff": diff}),
        confidence=confidence, n_resamples=n_resamples, seed=seed,
    )


# --------------------------------------------------------------------------- two run folders


@dataclass(frozen=True)
class RunSummary:
    """Who a compared run is: where it lives, what was trained and its recorded metrics."""

    label: str  # "A" or "B"
    folder: str
    method: str
    strategy: str
    seed: int
    run_id: str
    group_hash: str  # first 8 hex digits
    metrics: dict[str, float]


@dataclass(frozen=True)
class ComparisonReport:
    """Two runs' identities, the test set they share and their paired statistics."""

    run_a: RunSummary
    run_b: RunSummary
    data: dict[str, Any]  # name, split, manifest_sha256, num_samples
    comparison: PairedComparison

    @property
    def alpha(self) -> float:
        """The significance level that matches the intervals' confidence (1 − confidence)."""
        return 1.0 - self.comparison.confidence


@dataclass(frozen=True)
class _Run:
    label: str
    folder: Path
    record: dict[str, Any]


def _read_run(path: str | os.PathLike, label: str) -> _Run:
    """The complete record of run folder ``path`` (or of the record.json file ``path``)."""
    path = Path(path)
    record_file = path / RECORD_FILE if path.is_dir() else path
    if not record_file.is_file() or record_file.name != RECORD_FILE:
        raise ComparisonError(
            f"Run {label}: {path} is not a run folder (no {RECORD_FILE} in it); pass the folder a run or eval "
            f"wrote (it holds {RECORD_FILE} and per_sample.csv), or that {RECORD_FILE}."
        )
    loaded = load_records([record_file])  # validates the schema; ValueError names the file
    if not loaded.records:
        reason = loaded.skipped[0].reason if loaded.skipped else "it is not complete"
        raise ComparisonError(
            f"Run {label}: {record_file} is not a complete run ({reason}); only runs that scored the whole "
            "test split can be compared (a partial run was capped, e.g. by trainer.max_eval_samples: re-run "
            "or re-evaluate it without the cap)."
        )
    record = loaded.records[0]
    return _Run(label, record_file.parent, record)


def _per_sample_file(run: _Run) -> Path:
    artifacts = run.record.get("artifacts")
    name = artifacts.get("per_sample") if isinstance(artifacts, Mapping) else None
    record_file = run.folder / RECORD_FILE
    if not isinstance(name, str) or not name:
        raise ComparisonError(
            f"Run {run.label}: {record_file} names no per-sample file (artifacts.per_sample); only runs that "
            "kept their per-sample IoUs can be compared (re-evaluate the checkpoint with `rrsis-bench eval`)."
        )
    path = run.folder / name
    if not path.is_file():
        raise ComparisonError(
            f"Run {run.label}: the per-sample file {path} named by {record_file} is missing; restore it "
            "(paired statistics need every sample's intersection and union) or re-evaluate the checkpoint."
        )
    return path


_DATA_KEYS = (("name", "dataset"), ("split", "split"), ("manifest_sha256", "test manifest (data.manifest_sha256)"))


def _check_same_test_set(run_a: _Run, run_b: _Run) -> None:
    for key, what in _DATA_KEYS:
        value_a, value_b = run_a.record["data"].get(key), run_b.record["data"].get(key)
        if value_a is None or value_b is None:
            missing = run_a if value_a is None else run_b
            raise ComparisonError(
                f"Run {missing.label}: {missing.folder / RECORD_FILE} has no data.{key}, so it cannot be shown "
                "that both runs were scored on the same test samples; re-evaluate it with this rrsis-bench."
            )
        if value_a != value_b:
            raise ComparisonError(
                f"The runs were scored on different test sets: {what} is {value_a!r} for A ({run_a.folder}) "
                f"but {value_b!r} for B ({run_b.folder}); paired statistics need the same test samples, so "
                "compare runs evaluated on the same dataset split (re-evaluate one with `rrsis-bench eval`)."
            )


def read_per_sample(path: str | os.PathLike) -> pd.DataFrame:
    """A run's per_sample.csv with sample ids as strings (extra columns kept)."""
    path = Path(path)
    try:
        return pd.read_csv(path, dtype={"sample_id": str}, keep_default_na=False,
                           na_values={"intersection": [""], "union": [""]})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ComparisonError(f"The per-sample file {path} is not a readable CSV ({err}); re-evaluate the run.") from err


def _check_reproduces(run: _Run, frame: pd.DataFrame, path: Path) -> None:
    """The per-sample rows must give the record's metrics: otherwise the folder was edited or mixed."""
    try:
        metrics = compute_metrics(frame["intersection"].to_numpy(), frame["union"].to_numpy())
    except ValueError as err:
        raise ComparisonError(f"Run {run.label}: {path} holds invalid counts ({err}); re-evaluate the run.") from err
    recorded = run.record.get("metrics") or {}
    for key in METRICS:
        if abs(float(metrics[key]) - float(recorded[key])) > METRIC_TOLERANCE:
            raise ComparisonError(
                f"Run {run.label}: {path} gives {key} = {metrics[key]:.12g} but {run.folder / RECORD_FILE} records "
                f"{float(recorded[key]):.12g}; the folder holds files of different runs (or an edited file): "
                "restore the run's own per_sample.csv or re-evaluate it."
            )
    num_samples = run.record["data"].get("num_samples")
    if num_samples is not None and int(num_samples) != len(frame):
        raise ComparisonError(
            f"Run {run.label}: {path} has {len(frame)} rows but {run.folder / RECORD_FILE} records "
            f"data.num_samples = {num_samples}; restore the run's own per_sample.csv or re-evaluate it."
        )


def _summary(run: _Run) -> RunSummary:
    record = run.record
    return RunSummary(
        label=run.label, folder=str(run.folder), method=record["method"]["name"],
        strategy=record_strategy(record).get("name", "standard"), seed=int(record["seed"]),
        run_id=str(record["run_id"]), group_hash=str(record["group_hash"])[:8],
        metrics={key: float(value) for key, value in (record.get("metrics") or {}).items()},
    )


def compare_runs(
    run_a: str | os.PathLike,
    run_b: str | os.PathLike,
    *,
    n_resamples: int = 9999,
    seed: int = 0,
    confidence: float = 0.95,
) -> ComparisonReport:
    """Paired statistics of two run folders (or their record.json files) scored on the same test samples.

    Before computing anything it refuses (ComparisonError, one sentence with the fix): a path without a
    record, a record that is not complete, a record without its per-sample file, runs scored on a
    different dataset, split or test manifest, per-sample rows that do not reproduce the record's oIoU
    and mIoU (within 1e-9) or its sample count, and differing sample id sets.
    """
    confidence = _check_confidence(confidence)
    n_resamples = _check_resamples(n_resamples)
    runs = (_read_run(run_a, "A"), _read_run(run_b, "B"))
    files = [_per_sample_file(run) for run in runs]
    _check_same_test_set(*runs)
    frames = []
    for run, path in zip(runs, files, strict=True):
        frame = _check_frame(read_per_sample(path), f"run {run.label} ({path})")
        _check_reproduces(run, frame, path)
        frames.append(frame)
    comparison = paired_comparison(frames[0], frames[1], confidence=confidence, n_resamples=n_resamples,
                                   seed=seed, labels=(f"run A ({files[0]})", f"run B ({files[1]})"))
    data = runs[0].record["data"]
    return ComparisonReport(
        run_a=_summary(runs[0]), run_b=_summary(runs[1]),
        data={"name": data["name"], "split": data["split"], "manifest_sha256": data["manifest_sha256"],
              "num_samples": comparison.n},
        comparison=comparison,
    )


# --------------------------------------------------------------------------- presenting a comparison


def _format_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.1e}"


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.2f}"


def _metric_fields(comparison: PairedComparison, metric: str) -> tuple[float, float, float, Interval, float]:
    """(A's value, B's value, Δ, Δ's interval, permutation p) of ``metric``."""
    if metric == "mIoU":
        return (comparison.miou_a, comparison.miou_b, comparison.delta_miou, comparison.delta_miou_interval,
                comparison.permutation_p_miou)
    return (comparison.oiou_a, comparison.oiou_b, comparison.delta_oiou, comparison.delta_oiou_interval,
            comparison.permutation_p_oiou)


def verdict(report: ComparisonReport) -> str:
    """One line: per metric, which run is better by the paired permutation test at α = 1 − confidence."""
    alpha = report.alpha
    parts = []
    for metric in METRICS:
        _, _, delta, _, p = _metric_fields(report.comparison, metric)
        if p < alpha and delta != 0:
            better, worse = ("A", "B") if delta > 0 else ("B", "A")
            parts.append(f"{better} is better than {worse} on {metric} (p = {_format_p(p)})")
        else:
            parts.append(f"no significant difference on {metric} at α = {alpha:.2g} (p = {_format_p(p)})")
    return "; ".join(parts) + "."


def _describe_run(run: RunSummary) -> str:
    return (f"{run.label}: {run.method} · {run.strategy} · seed {run.seed} · run {run.run_id} · "
            f"group {run.group_hash}  ({run.folder})")


def render_comparison(report: ComparisonReport) -> str:
    """The comparison as Markdown for the terminal: runs, a metric table with Δ, intervals, p-values, wins."""
    comparison = report.comparison
    level = f"{100 * comparison.confidence:g} %"
    lines = [
        f"Paired comparison on {report.data['name']}/{report.data['split']}: {comparison.n} samples, "
        f"manifest {str(report.data['manifest_sha256'])[:8]}",
        _describe_run(report.run_a),
        _describe_run(report.run_b),
        "",
        f"| metric | A | B | Δ (A − B) | {level} interval of Δ | permutation p |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for metric in METRICS:
        value_a, value_b, delta, interval, p = _metric_fields(comparison, metric)
        lines.append(f"| {metric} | {value_a:.2f} | {value_b:.2f} | {_signed(delta)} | "
                     f"[{_signed(interval.low)}, {_signed(interval.high)}] | {_format_p(p)} |")
    lines += [
        "",
        f"Wilcoxon signed-rank test on per-sample IoU differences: p = {_format_p(comparison.wilcoxon_p)} "
        f"({comparison.nonzero_differences} non-zero differences; zero differences dropped)",
        f"Samples won: A {comparison.wins_a}, B {comparison.wins_b}, ties {comparison.ties}",
        f"Intervals: paired bootstrap (BCa, {comparison.n_resamples} resamples, seed {comparison.seed}); "
        f"permutation tests: two-sided, paired ({comparison.n_resamples} resamples or exact).",
        f"Verdict: {verdict(report)}",
    ]
    return "\n".join(lines)


def _json_number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _interval_json(interval: Interval) -> dict[str, Any]:
    return {"low": _json_number(interval.low), "high": _json_number(interval.high),
            "std_error": _json_number(interval.std), "method": interval.method, "confidence": interval.confidence}


def comparison_json(report: ComparisonReport) -> dict[str, Any]:
    """The report as plain JSON data (NaN as null); the per-sample table is left out."""
    comparison = report.comparison
    runs = {}
    for run in (report.run_a, report.run_b):
        runs[run.label] = {"folder": run.folder, "method": run.method, "strategy": run.strategy, "seed": run.seed,
                           "run_id": run.run_id, "group_hash": run.group_hash, "metrics": run.metrics}
    metrics = {}
    for metric in METRICS:
        value_a, value_b, delta, interval, p = _metric_fields(comparison, metric)
        metrics[metric] = {"A": value_a, "B": value_b, "delta": delta, "delta_interval": _interval_json(interval),
                           "permutation_p": _json_number(p)}
    return {
        "runs": runs,
        "data": dict(report.data),
        "n": comparison.n,
        "metrics": metrics,
        "wilcoxon": {"p": _json_number(comparison.wilcoxon_p), "nonzero_differences": comparison.nonzero_differences,
                     "zero_method": "wilcox"},
        "wins": {"A": comparison.wins_a, "B": comparison.wins_b, "ties": comparison.ties},
        "settings": {"confidence": comparison.confidence, "alpha": report.alpha,
                     "n_resamples": comparison.n_resamples, "seed": comparison.seed,
                     "interval_method": "BCa", "permutation_type": "samples"},
        "verdict": verdict(report),
    }
