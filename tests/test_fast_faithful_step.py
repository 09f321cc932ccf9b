"""LAVT and FIANet: one training step on the fast path, on the faithful path and with activation
checkpointing gives the same logits, loss, gradients, BatchNorm statistics and updated weights.

The full-size step is measured in tests/benchmarks/test_bench_train_step.py; here the tiny test_*
configurations at 96x96, where the tiny Swin (window 4) has 24, 12, 6 and 3 tokens a side: the last
two stages are padded to whole windows, as Swin-B's are at 480x480 (30 and 15 tokens, window 12).
"""

from __future__ import annotations

import pytest
import torch
from rrsis_bench.methods.fianet import create_test_fianet
from rrsis_bench.methods.lavt import create_test_lavt

import rrsis_bench

SIZE, LENGTH, TOL = 96, 10, 1e-4


def make_batch(batch_size: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (batch_size, LENGTH), generator=g)
    full = torch.ones(batch_size, LENGTH, dtype=torch.long)
    full[1, 6:] = 0  # a shorter expression
    obj, pos = torch.zeros_like(full), torch.zeros_like(full)
    obj[:, 2:4] = 1
    pos[:, 4:6] = 1
    return {"image": torch.randn(batch_size, 3, SIZE, SIZE, generator=g), "input_ids": ids, "attention_mask": full,
            "object_mask": obj, "position_mask": pos,
            "mask": (torch.rand(batch_size, SIZE, SIZE, generator=g) > 0.7).float()}


def one_step(model: torch.nn.Module, batch: dict) -> dict:
    """Forward, loss, backward, clip, AdamW step (as the trainer); what it produced, and the next logits."""
    model.train()
    optimizer = torch.optim.AdamW(model.param_groups(0.01), lr=1e-5)
    torch.manual_seed(1)  # dropout in the text encoder draws the same numbers on every path
    logits = model(batch)
    loss = model.loss(logits, batch)["loss"]
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 1.0)
    optimizer.step()
    model.eval()
    with torch.no_grad():
        after = model(batch)
    return {"logits": logits.detach(), "loss": loss.detach(), "grads": grads, "after": after,
            "state": {k: v.clone() for k, v in model.state_dict().items()}}


@pytest.mark.parametrize("factory", [create_test_lavt, create_test_fianet], ids=["lavt", "fianet"])
def test_one_training_step_is_the_same_fast_faithful_and_checkpointed(factory):
    torch.manual_seed(0)
    faithful = factory(faithful=True)
    fast, checkpointed = factory(faithful=False), factory(faithful=False)
    checkpointed.set_checkpointing(True)
    for model in (fast, checkpointed):
        model.load_state_dict(faithful.state_dict())
    batch = make_batch()
    reference = one_step(faithful, batch)
    for name, model in (("fast", fast), ("checkpointing", checkpointed)):
        result = one_step(model, batch)
        torch.testing.assert_close(result["logits"], reference["logits"], rtol=TOL, atol=TOL, msg=name)
        torch.testing.assert_close(result["loss"], reference["loss"], rtol=TOL, atol=TOL, msg=name)
        assert result["grads"].keys() == reference["grads"].keys()
        for key, grad in reference["grads"].items():
            torch.testing.assert_close(result["grads"][key], grad, rtol=TOL, atol=TOL, msg=f"{name}: grad {key}")
        for key, value in reference["state"].items():  # weights after the step, BN running statistics
            torch.testing.assert_close(result["state"][key], value, rtol=TOL, atol=TOL, msg=f"{name}: {key}")
        torch.testing.assert_close(result["after"], reference["after"], rtol=TOL, atol=TOL, msg=name)
    assert any(key.endswith("num_batches_tracked") and int(v) == 1 for key, v in reference["state"].items())


def test_checkpointing_stores_fewer_activations():
    """The point of the option: the tensors autograd keeps for the backward pass shrink."""
    torch.manual_seed(0)
    batch = make_batch()

    def saved_bytes(model) -> int:
        total = 0

        def pack(tensor):
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.loss(model(batch), batch)["loss"].backward()
        return total

    model = create_test_fianet().train()
    plain = saved_bytes(model)
    model.set_checkpointing(True)
    assert saved_bytes(model) < 0.5 * plain


@pytest.mark.parametrize("name", rrsis_bench.list_methods("test_*"))
def test_trainer_checkpointing_on_every_method(name, tmp_path):
    """trainer.checkpointing=true: a method with set_checkpointing trains one step to the same loss and
    weights as without it; one without gets a clear error naming the setting, before anything runs."""
    from rrsis_bench.data.pipeline import collate
    from rrsis_bench.engine.trainer import Trainer, TrainerSettingError, TrainerSettings

    def item(i: int) -> dict:
        batch = make_batch(batch_size=2, seed=i)
        sample = {k: v[i % 2] for k, v in batch.items()}
        return {**sample, "index": i, "sample_id": str(i), "text": "x", "class_name": "x", "weak": False}

    data = [item(i) for i in range(4)]
    results = {}
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = rrsis_bench.create_method(name)
        settings = TrainerSettings(epochs=1, batch_size=2, max_steps_per_epoch=1, progress=False,
                                   checkpointing=checkpointing, channels_last=False)
        if checkpointing and not hasattr(model, "set_checkpointing"):
            with pytest.raises(TrainerSettingError, match="trainer.checkpointing=true needs a method with"):
                Trainer(model, data, data, settings, run_dir=tmp_path / name, seed=0, collate_fn=collate)
            return
        trainer = Trainer(model, data, data, settings, run_dir=tmp_path / f"{name}-{checkpointing}", seed=0,
                          collate_fn=collate)
        trainer.optimizer, trainer.scheduler = trainer.build_optimizer(1)
        torch.manual_seed(1)
        outcome = trainer.plain_step(trainer.batches(iter(trainer._loaders["all"][1])))
        results[checkpointing] = (outcome.loss, {k: v.clone() for k, v in model.state_dict().items()})
    assert results[True][0] == pytest.approx(results[False][0], abs=TOL)
    for key, value in results[False][1].items():
        torch.testing.assert_close(results[True][1][key], value, rtol=TOL, atol=TOL, msg=key)
