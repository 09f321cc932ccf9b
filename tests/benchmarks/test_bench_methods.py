"""Method speed (pytest-benchmark): a CPU-size FIANet training step and the faithful forward at 480.

Measure with `pytest tests/benchmarks --benchmark-enable -m "slow or not slow"`; by default the
training step runs once as a test and the 480x480 forward (a 256 M-parameter model) is `slow`.
"""

from __future__ import annotations

import pytest
import torch
from rrsis_bench.methods.fianet import create_fianet, create_fianet_lite

from rrsis_bench.engine.evaluator import to_device
from rrsis_bench.profile import dummy_batch


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "contiguous"])
def test_bench_fianet_lite_train_step(benchmark, channels_last):
    """One optimizer step of the embedded-default FIANet (batch 8, 128x128, as `rrsis-bench run`),
    in channels-last memory format (`trainer.channels_last=true`, the default) and contiguous."""
    torch.manual_seed(0)
    model = create_fianet_lite().train()
    batch = dummy_batch(8, 128, 20, torch.device("cpu"), model.spec.inputs)
    batch["mask"] = (torch.rand(8, 128, 128) > 0.8).float()
    batch = to_device(batch, torch.device("cpu"), channels_last)  # as the trainer feeds it
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> float:
        loss = model.loss(model(batch), batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    assert benchmark.pedantic(step, rounds=5, warmup_rounds=1) > 0


@pytest.mark.slow
def test_bench_fianet_faithful_forward_480(benchmark):
    """Inference of the faithful FIANet (Swin-B + BERT-base, num_tmem 3, random init) on one 480x480 image."""
    torch.manual_seed(0)
    model = create_fianet(pretrained=False, text_pretrained=False).eval()
    batch = dummy_batch(1, 480, 20, torch.device("cpu"), model.spec.inputs)

    def forward():
        with torch.no_grad():
            return model(batch)

    assert benchmark.pedantic(forward, rounds=2, warmup_rounds=1).shape == (1, 1, 480, 480)
