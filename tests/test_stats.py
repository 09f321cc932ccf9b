"""Intervals and paired tests (rrsis_bench.results.stats) against hand computations and direct scipy calls."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from rrsis_bench.results.stats import (
    ComparisonError,
    bootstrap_interval,
    paired_comparison,
    permutation_p_value,
    seed_interval,
    wilcoxon_p_value,
)

# Six samples with hand-chosen counts. IoU A: .8 .5 0 (U = 0) .75 .2 .9; IoU B: .6 .5 0 .25 .4 1.
# Differences: +.2 0 0 +.5 −.2 −.1 → A wins 2, B wins 2, 2 ties.
IDS = ["s1", "s2", "s3", "s4", "s5", "s6"]
COUNTS_A = [(8, 10), (5, 10), (0, 0), (3, 4), (1, 5), (9, 10)]
COUNTS_B = [(6, 10), (5, 10), (0, 5), (1, 4), (2, 5), (10, 10)]
IOU_A = np.array([0.8, 0.5, 0.0, 0.75, 0.2, 0.9])
IOU_B = np.array([0.6, 0.5, 0.0, 0.25, 0.4, 1.0])


def frame(counts, ids=IDS, **extra) -> pd.DataFrame:
    return pd.DataFrame({"sample_id": ids, "intersection": [i for i, _ in counts],
                         "union": [u for _, u in counts], **extra})


def mean_statistic(x, axis=-1):
    return 100.0 * np.mean(x, axis=axis)


def delta_mean_statistic(x, y, axis=-1):
    return 100.0 * (np.mean(x, axis=axis) - np.mean(y, axis=axis))


# --------------------------------------------------------------------------- seed_interval


def test_seed_interval_is_the_t_interval_of_the_mean():
    interval = seed_interval([1.0, 2.0, 4.0])
    mean, std = 7 / 3, math.sqrt(7 / 3)  # Σ(x − mean)² = 42/9, over n − 1 = 2
    half = scipy.stats.t.ppf(0.975, df=2) * std / math.sqrt(3)
    assert interval.n == 3 and interval.method == "t"
    assert interval.mean == pytest.approx(mean, rel=1e-12)
    assert interval.std == pytest.approx(std, rel=1e-12)
    assert interval.low == pytest.approx(mean - half, rel=1e-12)
    assert interval.high == pytest.approx(mean + half, rel=1e-12)
    narrower = seed_interval([1.0, 2.0, 4.0], confidence=0.9)
    assert narrower.high - narrower.low < interval.high - interval.low


def test_seed_interval_ignores_missing_values_and_needs_two_seeds():
    assert seed_interval([1.0, None, 2.0, float("nan"), 4.0]) == seed_interval([1.0, 2.0, 4.0])
    one = seed_interval([3.5, None])
    assert one.n == 1 and one.mean == 3.5
    assert math.isnan(one.std) and math.isnan(one.low) and math.isnan(one.high)
    assert seed_interval([]).n == 0 and math.isnan(seed_interval([]).mean)
    same = seed_interval([2.0, 2.0, 2.0])
    assert (same.std, same.low, same.high) == (0.0, 2.0, 2.0)


# --------------------------------------------------------------------------- bootstrap_interval

RNG_COUNTS = np.random.default_rng(7)
UNIONS = RNG_COUNTS.integers(20, 200, size=40)
INTERSECTIONS = (UNIONS * RNG_COUNTS.uniform(0, 1, size=40)).astype(int)


def test_bootstrap_interval_of_miou_equals_a_direct_scipy_call():
    interval = bootstrap_interval(INTERSECTIONS, UNIONS, "mIoU", n_resamples=500, seed=3)
    iou = INTERSECTIONS / UNIONS
    direct = scipy.stats.bootstrap((iou,), mean_statistic, n_resamples=500, confidence_level=0.95,
                                   rng=np.random.default_rng(3))
    assert interval.method == "bootstrap" and interval.n == 40
    assert interval.mean == pytest.approx(100 * iou.mean(), rel=1e-12)
    assert interval.low == direct.confidence_interval.low
    assert interval.high == direct.confidence_interval.high
    assert interval.std == direct.standard_error
    assert interval.low < interval.mean < interval.high


def test_bootstrap_interval_of_oiou_resamples_intersection_and_union_together():
    interval = bootstrap_interval(INTERSECTIONS, UNIONS, "oIoU", confidence=0.9, n_resamples=500, seed=3)

    def ratio(inters, unions, axis=-1):
        return 100.0 * np.sum(inters, axis=axis) / np.sum(unions, axis=axis)

    direct = scipy.stats.bootstrap((INTERSECTIONS, UNIONS), ratio, paired=True, n_resamples=500,
                                   confidence_level=0.9, rng=np.random.default_rng(3))
    assert interval.mean == pytest.approx(100 * INTERSECTIONS.sum() / UNIONS.sum(), rel=1e-12)
    assert (interval.low, interval.high) == (direct.confidence_interval.low, direct.confidence_interval.high)
    assert interval.low < interval.mean < interval.high


def test_bootstrap_interval_is_deterministic():
    first = bootstrap_interval(INTERSECTIONS, UNIONS, "mIoU", n_resamples=300, seed=11)
    assert bootstrap_interval(INTERSECTIONS, UNIONS, "mIoU", n_resamples=300, seed=11) == first
    assert bootstrap_interval(INTERSECTIONS, UNIONS, "mIoU", n_resamples=300, seed=12) != first


def test_bootstrap_interval_of_degenerate_data_is_the_point():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DegenerateDataWarning or 0/0 RuntimeWarning escapes
        same = bootstrap_interval([5, 10, 1], [10, 20, 2], "mIoU", n_resamples=100)
        same_ratio = bootstrap_interval([5, 10, 1], [10, 20, 2], "oIoU", n_resamples=100)
    assert (same.mean, same.std, same.low, same.high) == (50.0, 0.0, 50.0, 50.0)
    assert (same_ratio.mean, same_ratio.low, same_ratio.high) == (50.0, 50.0, 50.0)
    single = bootstrap_interval([3], [4], "oIoU", n_resamples=100)
    assert single.mean == 75.0 and math.isnan(single.low) and math.isnan(single.high)
    with pytest.raises(ValueError, match="mIoU, oIoU"):
        bootstrap_interval([3], [4], "Pr@0.5")


# --------------------------------------------------------------------------- paired_comparison


def exact_two_sided_p(statistic, a, b) -> float:
    """Brute force over every swap pattern of the pairs (what an exact paired permutation test is)."""
    observed = statistic(a, b)
    values = []
    for swaps in itertools.product((False, True), repeat=len(a)):
        take = np.array(swaps)
        values.append(statistic(np.where(take[:, None], b, a), np.where(take[:, None], a, b)))
    values = np.array(values)
    tolerance = 1e-12 * max(1.0, abs(observed))
    greater = np.mean(values >= observed - tolerance)
    less = np.mean(values <= observed + tolerance)
    return min(1.0, 2 * min(greater, less))


def test_paired_comparison_of_hand_chosen_samples():
    # B's rows in another order, with an extra column: alignment is by sample id.
    order = [3, 0, 5, 1, 4, 2]
    b = frame([COUNTS_B[i] for i in order], [IDS[i] for i in order], class_name=list("abcdef"))
    result = paired_comparison(frame(COUNTS_A), b, n_resamples=999, seed=0)
    assert result.n == 6
    assert result.miou_a == pytest.approx(100 * 3.15 / 6, rel=1e-12)
    assert result.miou_b == pytest.approx(100 * 2.75 / 6, rel=1e-12)
    assert result.delta_miou == pytest.approx(100 * 0.4 / 6, rel=1e-12)
    assert result.oiou_a == pytest.approx(100 * 26 / 39, rel=1e-12)  # ΣU of A counts the empty sample as 0
    assert result.oiou_b == pytest.approx(100 * 24 / 44, rel=1e-12)
    assert result.delta_oiou == pytest.approx(400 / 33, rel=1e-12)
    assert (result.wins_a, result.wins_b, result.ties) == (2, 2, 2)
    assert result.nonzero_differences == 4
    assert list(result.per_sample["sample_id"]) == IDS
    np.testing.assert_allclose(result.per_sample["diff"], IOU_A - IOU_B, atol=1e-15)

    diffs = IOU_A - IOU_B
    assert result.wilcoxon_p == scipy.stats.wilcoxon(diffs).pvalue

    # 2^6 = 64 swap patterns ≤ 999 resamples: the permutation tests are exact.
    direct = scipy.stats.permutation_test((IOU_A, IOU_B), delta_mean_statistic, permutation_type="samples",
                                          n_resamples=999, rng=np.random.default_rng(0))
    assert result.permutation_p_miou == direct.pvalue
    assert result.permutation_p_miou == pytest.approx(0.75)  # 6 of 16 sign patterns reach +0.4, doubled

    counts_a, counts_b = np.array(COUNTS_A, dtype=float), np.array(COUNTS_B, dtype=float)

    def delta_oiou(a, b):
        return 100 * (a[:, 0].sum() / a[:, 1].sum() - b[:, 0].sum() / b[:, 1].sum())

    assert result.permutation_p_oiou == pytest.approx(exact_two_sided_p(delta_oiou, counts_a, counts_b), abs=1e-12)
    assert result.permutation_p_miou == pytest.approx(
        exact_two_sided_p(lambda a, b: a.mean() - b.mean(), IOU_A[:, None], IOU_B[:, None]), abs=1e-12)


def test_paired_bootstrap_intervals_equal_direct_scipy_calls():
    a, b = frame(COUNTS_A), frame(COUNTS_B)
    result = paired_comparison(a, b, n_resamples=400, seed=5, confidence=0.9)
    direct_miou = scipy.stats.bootstrap((IOU_A, IOU_B), delta_mean_statistic, paired=True, n_resamples=400,
                                        confidence_level=0.9, rng=np.random.default_rng(5))
    interval = result.delta_miou_interval
    assert (interval.low, interval.high) == (direct_miou.confidence_interval.low, direct_miou.confidence_interval.high)
    assert interval.method == "paired bootstrap" and interval.confidence == 0.9
    assert interval.low < result.delta_miou < interval.high

    ia, ua = (np.array([c[k] for c in COUNTS_A]) for k in (0, 1))
    ib, ub = (np.array([c[k] for c in COUNTS_B]) for k in (0, 1))

    def delta_oiou(ia, ua, ib, ub, axis=-1):
        return 100 * (np.sum(ia, axis) / np.sum(ua, axis) - np.sum(ib, axis) / np.sum(ub, axis))

    direct_oiou = scipy.stats.bootstrap((ia, ua, ib, ub), delta_oiou, paired=True, n_resamples=400,
                                        confidence_level=0.9, rng=np.random.default_rng(5))
    # The same resamples; the statistic's order of operations differs by a few ulps.
    assert result.delta_oiou_interval.low == pytest.approx(direct_oiou.confidence_interval.low, abs=1e-9)
    assert result.delta_oiou_interval.high == pytest.approx(direct_oiou.confidence_interval.high, abs=1e-9)
    again = paired_comparison(a, b, n_resamples=400, seed=5, confidence=0.9)
    assert (again.delta_miou_interval, again.delta_oiou_interval, again.permutation_p_oiou) == (
        result.delta_miou_interval, result.delta_oiou_interval, result.permutation_p_oiou)


def test_identical_runs_have_no_difference():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = paired_comparison(frame(COUNTS_A), frame(COUNTS_A), n_resamples=200)
    assert (result.delta_miou, result.delta_oiou) == (0.0, 0.0)
    assert (result.wilcoxon_p, result.permutation_p_miou, result.permutation_p_oiou) == (1.0, 1.0, 1.0)
    assert (result.wins_a, result.wins_b, result.ties) == (0, 0, 6)
    for interval in (result.delta_miou_interval, result.delta_oiou_interval):
        assert (interval.low, interval.high, interval.std) == (0.0, 0.0, 0.0)


def test_paired_comparison_refuses_different_sample_ids():
    b = frame(COUNTS_B, ["s1", "s2", "s3", "s4", "x5", "x6"])
    with pytest.raises(ComparisonError) as err:
        paired_comparison(frame(COUNTS_A), b, n_resamples=10)
    message = str(err.value)
    assert "2 sample id(s) only in A (e.g. 's5', 's6')" in message
    assert "2 sample id(s) only in B (e.g. 'x5', 'x6')" in message
    assert "same test samples" in message
    with pytest.raises(ComparisonError, match="more than once"):
        paired_comparison(frame(COUNTS_A, ["s1"] * 6), frame(COUNTS_B), n_resamples=10)
    with pytest.raises(ComparisonError, match="lacks the column"):
        paired_comparison(frame(COUNTS_A).drop(columns="union"), frame(COUNTS_B), n_resamples=10)


def test_wilcoxon_drops_zero_differences():
    diffs = np.array([0.3, -0.1, 0.25, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.05, -0.2, 0.15, 0.35])
    p = wilcoxon_p_value(diffs)
    assert p == scipy.stats.wilcoxon(diffs, zero_method="wilcox").pvalue
    assert p not in {scipy.stats.wilcoxon(diffs, zero_method=kept).pvalue for kept in ("zsplit", "pratt")}
    assert wilcoxon_p_value(np.zeros(5)) == 1.0


# --------------------------------------------------------------------------- permutation_p_value


def test_permutation_p_value_equals_scipy_and_is_deterministic():
    rng = np.random.default_rng(1)
    iou_a, iou_b = rng.uniform(0, 1, 30), rng.uniform(0, 1, 30)  # 2^30 patterns: a randomized test
    p = permutation_p_value(iou_a, iou_b, n_resamples=2000, seed=4)
    direct = scipy.stats.permutation_test((iou_a, iou_b), delta_mean_statistic, permutation_type="samples",
                                          n_resamples=2000, rng=np.random.default_rng(4))
    assert p == direct.pvalue
    assert permutation_p_value(iou_a, iou_b, n_resamples=2000, seed=4) == p
    assert permutation_p_value(iou_a, iou_a, n_resamples=200) == 1.0
    assert permutation_p_value(iou_a + 0.3, iou_a, n_resamples=200) == pytest.approx(2 / 201)
    with pytest.raises(ValueError, match="align"):
        permutation_p_value(iou_a, iou_b[:-1])
