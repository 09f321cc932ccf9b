"""Full-size training step (pytest-benchmark, ``slow``): FIANet and LAVT, fast path vs faithful.

One step of ``rrsis-bench run`` (forward, loss, backward, grad clipping, AdamW; channels-last as the
trainer's default) at 480x480, batch 1, random init, fp32 on CPU, for ``fianet`` and ``lavt`` with
``faithful=true`` (the official computation) and the default fast path, and the fast path with
activation checkpointing (``set_checkpointing(True)``, what ``trainer.checkpointing`` turns on).

Each case runs in a fresh process (``train_step.py``): process peak RSS only means something per
process. The benchmark's own timing is that whole process (build + warm-up + steps); the figures to
read are in ``extra_info``: ``best_s``/``median_s``/``step_s`` per training step (wall),
``cpu_s`` (process CPU time per step), ``peak_rss_gib`` and the peak after each phase of the first
step (``peak_rss_after_gib``). Run one case at a time (a FIANet step needs ~6 GiB)::

    pytest tests/benchmarks/test_bench_train_step.py -m slow --benchmark-enable \\
        --benchmark-json=train_step.json

A 480x480 FIANet step takes about 7 s on 2 idle cores (12-15 s single-threaded; several times that on
a busy machine, where ``train_step.py --threads 1`` and its ``cpu_s`` give the steadier comparison).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import run_case  # noqa: E402

STEPS, WARMUP = 3, 1


@pytest.mark.slow
@pytest.mark.parametrize("path", ["faithful", "fast", "fast_checkpointing"])
@pytest.mark.parametrize("method", ["fianet", "lavt"])
def test_bench_train_step_480(benchmark, method, path):
    options = {"checkpointing": path == "fast_checkpointing"}
    result = benchmark.pedantic(run_case, args=(method,), kwargs={"faithful": path == "faithful", "steps": STEPS,
                                                                  "warmup": WARMUP, **options},
                                rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert len(result["step_s"]) == STEPS and all(t > 0 for t in result["step_s"])
    assert 0 < result["losses"][-1] < 10 and result["peak_rss_gib"] > result["rss_after_build_gib"]


def test_train_step_script_runs_a_tiny_case():
    """The measuring script itself (tiny FIANet at 96x96, fresh process): the fields the benchmark reads."""
    result = run_case("test_fianet", faithful=False, image_size=96, batch_size=2, steps=1, warmup=1,
                      checkpointing=True, timeout=300)
    assert result["method"] == "test_fianet" and result["checkpointing"] is True and len(result["step_s"]) == 1
    assert set(result["peak_rss_after_gib"]) == {"forward", "backward", "optimizer"}
    assert 0 < result["rss_after_build_gib"] <= result["peak_rss_gib"] and len(result["losses"]) == 2


def test_bf16_deviation_script_on_a_tiny_model():
    """bf16_deviation.py (the bf16-vs-fp32 logit figures): a tiny FIANet moves, but stays close."""
    from bf16_deviation import deviation

    result = deviation("test_fianet", 64, 2)
    assert 0 < result["mean_abs"] <= result["max_abs"] < 1.0
    assert 0 <= result["sign_flip_share"] < 0.5 and result["mean_abs_fp32_logit"] > 0
