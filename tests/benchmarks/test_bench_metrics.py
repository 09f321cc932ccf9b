"""Scoring throughput (pytest-benchmark). Measure with `pytest tests/benchmarks --benchmark-enable`.

By default (`--benchmark-disable`) each benchmark runs once as a plain test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rrsis_bench.metrics import RRSISMetric
from rrsis_bench.score import score_mask_dirs

NUM_SAMPLES = 256
NUM_PNGS = 64
SIZE = 480


@pytest.fixture(scope="module")
def masks() -> tuple[list[str], np.ndarray, np.ndarray]:
    """256 random 480x480 prediction / ground-truth pairs (about 60 MB each as bool)."""
    rng = np.random.default_rng(0)
    preds = rng.random((NUM_SAMPLES, SIZE, SIZE), dtype=np.float32) > 0.5
    gts = rng.random((NUM_SAMPLES, SIZE, SIZE), dtype=np.float32) > 0.5
    return [f"s{i}" for i in range(NUM_SAMPLES)], preds, gts


def score(ids, preds, gts) -> dict:
    metric = RRSISMetric()
    metric.update(ids, preds, gts)
    return metric.compute()


def test_bench_update_numpy_batch(benchmark, masks):
    ids, preds, gts = masks
    assert benchmark(score, ids, preds, gts)["num_samples"] == NUM_SAMPLES


def test_bench_update_torch_cpu_batch(benchmark, masks):
    ids, preds, gts = masks
    metrics = benchmark(score, ids, torch.from_numpy(preds), torch.from_numpy(gts))
    assert metrics == score(ids, preds, gts)


def test_bench_update_numpy_list(benchmark, masks):
    ids, preds, gts = masks
    assert benchmark(score, ids, list(preds), list(gts))["num_samples"] == NUM_SAMPLES


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bench_update_cuda_batch(benchmark, masks):
    ids, preds, gts = masks
    preds_cuda, gts_cuda = torch.from_numpy(preds).cuda(), torch.from_numpy(gts).cuda()
    metrics = benchmark(score, ids, preds_cuda, gts_cuda)
    assert metrics == score(ids, preds, gts)


@pytest.fixture(scope="module")
def png_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """64 prediction/ground-truth PNG pairs of 480x480 (L mode, 0/255)."""
    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(1)
    for folder in ("pred", "gt"):
        (root / folder).mkdir()
        for i in range(NUM_PNGS):
            fg = rng.random((SIZE, SIZE), dtype=np.float32) > 0.5
            Image.fromarray(fg.astype(np.uint8) * 255, mode="L").save(root / folder / f"{i:03d}.png")
    return root / "pred", root / "gt"


def test_bench_score_mask_dirs(benchmark, png_dirs):
    metrics, frame = benchmark(score_mask_dirs, *png_dirs)
    assert metrics["num_samples"] == NUM_PNGS == len(frame)
