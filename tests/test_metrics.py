"""Exact RRSIS metrics: hand-computed cases, threshold boundaries, streaming, merging, input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console

import rrsis_bench.metrics as metrics_module
from rrsis_bench.metrics import (
    METRIC_KEYS,
    PRECISION_THRESHOLDS,
    RRSISMetric,
    compute_metrics,
    format_metrics_table,
    intersection_union,
)


def mask(shape: tuple[int, int], *cells: tuple[int, int]) -> np.ndarray:
    """A bool mask of ``shape`` with the given (row, col) cells set."""
    out = np.zeros(shape, dtype=bool)
    for row, col in cells:
        out[row, col] = True
    return out


def test_metric_keys_and_thresholds():
    assert PRECISION_THRESHOLDS == (0.5, 0.6, 0.7, 0.8, 0.9)
    assert METRIC_KEYS == ("oIoU", "mIoU", "Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9")


def test_intersection_union_by_hand():
    # pred = row 0 (4 px), gt = column 0 (4 px) of a 4x4 grid: overlap is (0, 0) only.
    # I = 1, U = 4 + 4 - 1 = 7.
    pred = mask((4, 4), (0, 0), (0, 1), (0, 2), (0, 3))
    gt = mask((4, 4), (0, 0), (1, 0), (2, 0), (3, 0))
    assert intersection_union(pred, gt) == (1, 7)
    assert intersection_union(torch.from_numpy(pred), torch.from_numpy(gt)) == (1, 7)
    assert all(type(v) is int for v in intersection_union(pred, gt))


def test_compute_metrics_by_hand():
    # Samples (I, U):  (3, 4) IoU .75 | (1, 4) IoU .25 | (9, 10) IoU .9 | (0, 5) IoU 0
    # oIoU = (3+1+9+0)/(4+4+10+5) = 13/23 = 56.5217...%
    # mIoU = (.75+.25+.9+0)/4 = 1.9/4 = 47.5%
    # Pr@0.5: .75, .9 -> 2/4 = 50%; Pr@0.6: same 50%; Pr@0.7: same 50%; Pr@0.8: .9 -> 25%; Pr@0.9: .9 >= .9 -> 25%
    metrics = compute_metrics([3, 1, 9, 0], [4, 4, 10, 5])
    assert metrics["oIoU"] == pytest.approx(100 * 13 / 23)
    assert metrics["mIoU"] == pytest.approx(47.5)
    assert [metrics[f"Pr@{x}"] for x in PRECISION_THRESHOLDS] == [50.0, 50.0, 50.0, 25.0, 25.0]
    assert metrics["num_samples"] == 4
    assert set(metrics) == {*METRIC_KEYS, "num_samples"}
    assert all(type(metrics[key]) is float for key in METRIC_KEYS)


def test_empty_union_scores_zero():
    # Empty prediction on empty GT: U = 0 -> IoU = 0 (not 1); oIoU = 0/0 -> 0.
    metric = RRSISMetric()
    empty = np.zeros((1, 5, 5), dtype=bool)
    metric.update(["empty"], empty, empty)
    assert metric.rows() == [{"sample_id": "empty", "intersection": 0, "union": 0, "iou": 0.0}]
    metrics = metric.compute()
    assert {key: metrics[key] for key in METRIC_KEYS} == dict.fromkeys(METRIC_KEYS, 0.0)


def test_empty_prediction_on_nonempty_gt():
    # pred empty, gt has 3 px: I = 0, U = 3, IoU = 0. Second sample perfect: I = U = 2, IoU = 1.
    # oIoU = 2/5 = 40%; mIoU = (0 + 1)/2 = 50%; every Pr@X = 1/2 = 50%.
    metric = RRSISMetric()
    metric.update(
        ["miss", "hit"],
        [mask((2, 2)), mask((2, 2), (0, 0), (1, 1))],
        [mask((2, 2), (0, 0), (0, 1), (1, 0)), mask((2, 2), (0, 0), (1, 1))],
    )
    metrics = metric.compute()
    assert metric.rows()[0]["iou"] == 0.0
    assert metrics["oIoU"] == pytest.approx(40.0)
    assert metrics["mIoU"] == pytest.approx(50.0)
    assert all(metrics[f"Pr@{x}"] == 50.0 for x in PRECISION_THRESHOLDS)


@pytest.mark.parametrize(
    ("inter", "union", "threshold"),
    [(1, 2, 0.5), (3, 5, 0.6), (7, 10, 0.7), (4, 5, 0.8), (9, 10, 0.9), (21, 30, 0.7), (6, 10, 0.6)],
)
def test_iou_exactly_at_threshold_counts(inter, union, threshold):
    # IoU == X exactly must count (non-strict). The comparison is I*den >= num*U in integers, so no
    # float rounding (float32 IoUs, percentages such as 100*7/10 vs 70) can drop a boundary sample.
    metrics = compute_metrics([inter], [union])
    assert metrics[f"Pr@{threshold}"] == 100.0


@pytest.mark.parametrize(
    ("inter", "union", "threshold"), [(499, 1000, 0.5), (599, 1000, 0.6), (899_999, 1_000_000, 0.9)]
)
def test_iou_just_below_threshold_does_not_count(inter, union, threshold):
    assert compute_metrics([inter], [union])[f"Pr@{threshold}"] == 0.0


def test_compute_metrics_with_no_samples():
    metrics = compute_metrics([], [])
    assert metrics["num_samples"] == 0
    assert all(metrics[key] == 0.0 for key in METRIC_KEYS)


@pytest.mark.parametrize(("inters", "unions"), [([3], [2]), ([-1], [2]), ([0.5], [1]), ([1, 2], [3])])
def test_compute_metrics_rejects_bad_counts(inters, unions):
    with pytest.raises(ValueError):
        compute_metrics(inters, unions)


def random_masks(count: int, shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((count, *shape)) > 0.6, rng.random((count, *shape)) > 0.5


def test_streaming_equals_one_shot():
    preds, gts = random_masks(10, (16, 12), seed=0)
    ids = [f"s{i}" for i in range(10)]
    one_shot = RRSISMetric()
    one_shot.update(ids, preds, gts)
    streamed = RRSISMetric()
    for start, stop in [(0, 3), (3, 4), (4, 10)]:
        streamed.update(ids[start:stop], preds[start:stop], gts[start:stop])
    assert streamed.compute() == one_shot.compute()
    assert streamed.rows() == one_shot.rows()
    # Per-sample counts against a direct numpy computation.
    for row, pred, gt in zip(one_shot.rows(), preds, gts, strict=True):
        assert (row["intersection"], row["union"]) == ((pred & gt).sum(), (pred | gt).sum())


def test_list_of_different_sizes():
    # 2x3 mask: pred 3 px, gt 2 px, overlap 2 -> I=2, U=3. 4x1 mask: pred 1 px, gt 2 px, overlap 1 -> I=1, U=2.
    preds = [np.array([[1, 1, 1], [0, 0, 0]], dtype=bool), np.array([[1], [0], [0], [0]], dtype=bool)]
    gts = [np.array([[1, 1, 0], [0, 0, 0]], dtype=bool), np.array([[1], [1], [0], [0]], dtype=bool)]
    metric = RRSISMetric()
    metric.update(["wide", "tall"], preds, gts)
    assert [(r["intersection"], r["union"]) for r in metric.rows()] == [(2, 3), (1, 2)]
    # oIoU = 3/5 = 60%; mIoU = (2/3 + 1/2)/2 = 58.33%; Pr@0.5 = 100%, Pr@0.6 = 50% (2/3), Pr@0.7 = 0%.
    metrics = metric.compute()
    assert metrics["oIoU"] == pytest.approx(60.0)
    assert metrics["mIoU"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert (metrics["Pr@0.5"], metrics["Pr@0.6"], metrics["Pr@0.7"]) == (100.0, 50.0, 0.0)


def test_torch_and_numpy_inputs_agree():
    preds, gts = random_masks(6, (9, 7), seed=1)
    ids = [str(i) for i in range(6)]
    results = []
    for convert_pred, convert_gt in [
        (np.asarray, np.asarray),
        (torch.from_numpy, torch.from_numpy),
        (torch.from_numpy, np.asarray),
        (lambda a: torch.from_numpy(a).to(torch.uint8), lambda a: a.astype(np.uint8) * 255),
    ]:
        metric = RRSISMetric()
        metric.update(ids, convert_pred(preds), convert_gt(gts))
        results.append(metric.rows())
        listed = RRSISMetric()
        listed.update(ids, [convert_pred(p) for p in preds], [convert_gt(g) for g in gts])
        results.append(listed.rows())
    assert all(rows == results[0] for rows in results)


def test_device_reduction_path_matches_numpy(monkeypatch):
    # Force the on-device branch (used for CUDA tensors) so it is exercised on CPU-only machines.
    preds, gts = random_masks(5, (8, 6), seed=3)
    ids = list("abcde")
    reference = RRSISMetric()
    reference.update(ids, preds, gts)
    monkeypatch.setattr(metrics_module, "_on_accelerator", lambda pred, gt: True)
    batched, listed = RRSISMetric(), RRSISMetric()
    batched.update(ids, torch.from_numpy(preds), gts.astype(np.uint8))
    listed.update(ids, [torch.from_numpy(p) for p in preds], list(gts))
    assert batched.rows() == listed.rows() == reference.rows()
    assert intersection_union(torch.from_numpy(preds[0]), gts[0]) == tuple(
        reference.rows()[0][k] for k in ("intersection", "union")
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_match_cpu():
    preds, gts = random_masks(4, (33, 17), seed=2)
    ids = list("abcd")
    cpu, cuda, cuda_list = RRSISMetric(), RRSISMetric(), RRSISMetric()
    cpu.update(ids, preds, gts)
    cuda.update(ids, torch.from_numpy(preds).cuda(), torch.from_numpy(gts).cuda())
    cuda_list.update(ids, [torch.from_numpy(p).cuda() for p in preds], list(gts))
    assert cpu.rows() == cuda.rows() == cuda_list.rows()


def test_duplicate_sample_id_is_an_error():
    metric = RRSISMetric()
    metric.add("ref-7", 1, 2)
    with pytest.raises(ValueError, match="ref-7"):
        metric.add("ref-7", 1, 2)
    with pytest.raises(ValueError, match="dup"):
        metric.update(["dup", "dup"], [mask((1, 1))] * 2, [mask((1, 1))] * 2)
    assert len(metric) == 1  # a failed update adds nothing


def test_merge_drops_identical_padding_duplicates():
    # Rank 0 scored a, b; rank 1 scored c plus a again (DistributedSampler padding).
    rank0, rank1 = RRSISMetric(), RRSISMetric()
    rank0.add("a", 3, 4)
    rank0.add("b", 0, 5)
    rank1.add("c", 2, 2)
    rank1.add("a", 3, 4)
    merged = RRSISMetric()
    for rows in (rank0.rows(), rank1.rows()):
        merged.merge(rows, drop_duplicates=True)
    assert [r["sample_id"] for r in merged.rows()] == ["a", "b", "c"]
    # oIoU = (3+0+2)/(4+5+2) = 5/11; mIoU = (.75 + 0 + 1)/3
    assert merged.compute()["oIoU"] == pytest.approx(500 / 11)
    assert merged.compute()["mIoU"] == pytest.approx(100 * 1.75 / 3)


def test_merge_rejects_duplicates_by_default_and_conflicting_duplicates_always():
    metric = RRSISMetric()
    metric.add("a", 3, 4)
    with pytest.raises(ValueError, match="'a'"):
        metric.merge([{"sample_id": "a", "intersection": 3, "union": 4}])
    with pytest.raises(ValueError, match="'a'"):
        metric.merge([{"sample_id": "a", "intersection": 2, "union": 4}], drop_duplicates=True)
    with pytest.raises(ValueError, match="'z'"):
        metric.merge(
            [
                {"sample_id": "n", "intersection": 0, "union": 1},
                {"sample_id": "z", "intersection": 1, "union": 1},
                {"sample_id": "z", "intersection": 0, "union": 1},
            ],
            drop_duplicates=True,
        )
    assert len(metric) == 1  # nothing from a failed merge is kept


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        intersection_union(np.zeros((3, 4), bool), np.zeros((4, 3), bool))
    metric = RRSISMetric()
    with pytest.raises(ValueError, match=r"'x'.*\(2, 2\).*\(2, 3\)"):
        metric.update(["x"], [np.zeros((2, 2), bool)], [np.zeros((2, 3), bool)])
    with pytest.raises(ValueError, match=r"\(1, 2, 2\).*\(1, 2, 3\)"):
        metric.update(["x"], torch.zeros(1, 2, 2, dtype=torch.bool), torch.zeros(1, 2, 3, dtype=torch.bool))


def test_input_errors():
    metric = RRSISMetric()
    with pytest.raises(ValueError, match="floating-point"):
        metric.update(["a"], torch.rand(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="1 sample ids, 2 predictions"):
        metric.update(["a"], np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool))
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        metric.update(["a"], np.zeros((1, 1, 2, 2), bool), np.zeros((1, 1, 2, 2), bool))
    with pytest.raises(TypeError, match="one string"):
        metric.update("a", [mask((1, 1))], [mask((1, 1))])
    with pytest.raises(ValueError, match="intersection <= union"):
        metric.add("a", 5, 4)


def test_rows_frame_and_table():
    metric = RRSISMetric()
    assert list(metric.to_frame().columns) == ["sample_id", "intersection", "union", "iou"]
    metric.add("a", 1, 3)
    frame = metric.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert frame.to_dict("records") == [
        {"sample_id": "a", "intersection": 1, "union": 3, "iou": pytest.approx(1 / 3)}
    ]
    console = Console(record=True, width=120)
    console.print(format_metrics_table(metric.compute(), "val"))
    text = console.export_text()
    assert "val" in text and "33.33" in text and "Pr@0.9" in text


def test_annotations_ride_along_rows_merge_and_frame_without_touching_metrics():
    metric = RRSISMetric()
    metric.add("a", 1, 2)
    metric.add("b", 3, 4)
    metric.annotate("a", target_pixels=5, pixels=16)
    assert metric.rows()[0] == {"sample_id": "a", "intersection": 1, "union": 2, "iou": 0.5,
                                "target_pixels": 5, "pixels": 16}
    frame = metric.to_frame()
    assert list(frame.columns) == ["sample_id", "intersection", "union", "iou", "target_pixels", "pixels"]
    assert frame["target_pixels"].isna().tolist() == [False, True]
    merged = RRSISMetric()
    merged.merge(metric.rows())
    merged.merge([{**metric.rows()[0], "target_pixels": 99}], drop_duplicates=True)  # a padding repeat
    assert merged.rows() == metric.rows() and merged.compute() == metric.compute()
    with pytest.raises(KeyError, match="has not been scored"):
        metric.annotate("c", pixels=1)
    with pytest.raises(ValueError, match="cannot replace"):
        metric.annotate("a", iou=1.0)
