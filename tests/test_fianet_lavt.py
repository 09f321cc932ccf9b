"""LAVT and FIANet: shapes, gradients, ablation switches, fast == faithful, sizes, checkpoints."""

from __future__ import annotations

import pytest
import torch
from rrsis_bench.methods.fianet import create_fianet, create_fianet_lite, create_test_fianet
from rrsis_bench.methods.lavt import create_lavt, create_test_lavt

from rrsis_bench.engine.checkpoint import load_weights, save_checkpoint
from rrsis_bench.nn.interleaved import TINY_SWIN
from rrsis_bench.nn.lavt import LanguageAttention

LENGTH = 10


def make_batch(batch_size: int = 2, size: int = 64, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (batch_size, LENGTH), generator=g)
    full = torch.ones(batch_size, LENGTH, dtype=torch.long)
    full[1, 7:] = 0  # a shorter expression
    obj = torch.zeros_like(full)
    obj[:, 2:4] = 1  # a class name of two word pieces
    obj[1] = 0  # no class word found: the official all-zero object mask
    pos = torch.zeros_like(full)
    pos[:, 4:6] = 1
    return {"image": torch.randn(batch_size, 3, size, size, generator=g), "input_ids": ids, "attention_mask": full,
            "object_mask": obj, "position_mask": pos,
            "mask": (torch.rand(batch_size, size, size, generator=g) > 0.7).float()}


# Parameters that never receive a gradient, by design of the official models (documented in the
# method docstrings): the last stage's fused stream is discarded (its skip feature is the PWAM output),
# and FIANet declares a projection it never calls.
LAVT_NO_GRAD = ("gates.3.",)
FIANET_NO_GRAD = ("fusions.3.channel_gate.", "fusions.3.context_gate.", "fusions.3.object_position.",
                  "unused_embedding")


@pytest.mark.parametrize("factory,no_grad", [(create_test_lavt, LAVT_NO_GRAD), (create_test_fianet, FIANET_NO_GRAD)])
@pytest.mark.parametrize("faithful", [False, True])
def test_exactly_the_parameters_that_never_get_a_gradient_are_frozen(factory, no_grad, faithful):
    """They are built with requires_grad=False (out of the optimizer and DDP; still in the state dict);
    made trainable again, exactly they get no gradient, on the fast and on the faithful path."""
    torch.manual_seed(0)
    model = factory(faithful=faithful)
    frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    assert frozen and all(any(key in n for key in no_grad) for n in frozen)
    assert set(frozen) <= set(model.state_dict())
    model.requires_grad_(True)
    batch = make_batch()
    logits = model(batch)
    assert logits.shape == (2, 1, 64, 64)
    losses = model.loss(logits, batch)
    assert set(losses) == {"loss", "ce", "dice"} and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert sorted(n for n, p in model.named_parameters() if p.grad is None) == frozen
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("factory", [create_test_lavt, create_test_fianet])
def test_fast_path_equals_faithful_path(factory):
    """SDPA + skipped dead stream vs explicit attention + computed dead stream: same outputs (eval)."""
    torch.manual_seed(0)
    fast = factory(faithful=False).eval()
    faithful = factory(faithful=True).eval()
    faithful.load_state_dict(fast.state_dict())
    batch = make_batch(seed=1)
    with torch.no_grad():
        a, b = fast(batch), faithful(batch)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_language_attention_by_hand():
    """One head, 2 tokens, 3 words (the last masked): softmax weights computed by hand."""
    torch.manual_seed(0)
    for faithful in (False, True):
        att = LanguageAttention(2, 2, 2, 2, 2, faithful=faithful)
        with torch.no_grad():
            for lin in (att.query, att.key, att.value, att.out):
                lin.weight.copy_(torch.eye(2))
                lin.bias.zero_()
        visual = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        words = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])
        mask = torch.tensor([[1, 1, 0]])
        out = att(visual, words, mask)
        # queries after instance norm over the 2 tokens: [[1, -1], [-1, 1]]
        q = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
        k = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
        weights = torch.softmax(q @ k.T / 2**0.5, dim=-1)
        attended = weights @ k  # values equal keys here
        expected = (attended - attended.mean(0)) / torch.sqrt(attended.var(0, unbiased=False) + 1e-5)
        torch.testing.assert_close(out[0], expected, rtol=1e-5, atol=1e-5)


def test_all_masked_words_give_zero_attention_output_not_nan():
    att = LanguageAttention(4, 3, 4, 4, 4)
    out = att(torch.randn(2, 5, 4), torch.randn(2, 6, 3), torch.zeros(2, 6, dtype=torch.long))
    # values are masked to zero, so the output projection is its bias on every token, and the
    # instance norm over tokens maps a constant to 0 (the official behaviour).
    assert torch.equal(out, torch.zeros_like(out))


def test_single_word_object_mask_silences_the_object_branch():
    """A property of the official design: with one unmasked word every pixel attends to it alone, so
    the attended value is the same on every token and the instance norm over tokens returns 0."""
    att = LanguageAttention(4, 3, 4, 4, 4)
    mask = torch.zeros(2, 6, dtype=torch.long)
    mask[:, 1] = 1
    out = att(torch.randn(2, 5, 4), torch.randn(2, 6, 3), mask)
    assert out.abs().max() < 1e-3
    mask[:, 2] = 1
    assert att(torch.randn(2, 5, 4), torch.randn(2, 6, 3), mask).abs().max() > 0.1


def test_fianet_ablation_switches():
    torch.manual_seed(0)
    full = create_test_fianet().eval()
    no_object = create_test_fianet(object_branch=False).eval()
    no_position = create_test_fianet(position_branch=False).eval()
    no_tmem = create_test_fianet(tmem=False).eval()
    two_tmem = create_test_fianet(num_tmem=2)
    assert not hasattr(no_object.fusions[0].object_position, "object_attention")
    assert not hasattr(no_position.fusions[0].object_position, "position_attention")
    assert no_tmem.tmem is None and len(two_tmem.tmem.blocks) == 2
    # One TMEM block of the tiny model (width 240 / 4 = 60, 32-d words): 2 LayerNorms, attention
    # (query 60x60, key and value 32x60, out 60x60, biases) and the 2x MLP.
    d, t = 60, 32
    block = 2 * 2 * d + (d * d + d) + 2 * (t * d + d) + (d * d + d) + (d * 2 * d + 2 * d) + (2 * d * d + d)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(two_tmem) - count(full) == block
    # Every switch changes the output, and the loaded common weights keep the rest identical.
    batch = make_batch(seed=2)
    with torch.no_grad():
        reference = full(batch)
        for variant in (no_object, no_position, no_tmem):
            variant.load_state_dict(full.state_dict(), strict=False)
            assert not torch.equal(variant(batch), reference)


def test_fianet_uses_three_text_passes_with_the_three_masks():
    model = create_test_fianet().eval()
    seen = []
    original = model.text.forward
    model.text.forward = lambda ids, mask, embeds=None: (seen.append(mask.clone()), original(ids, mask, embeds))[1]
    batch = make_batch()
    with torch.no_grad():
        model(batch)
    assert len(seen) == 3
    for got, key in zip(seen, ("attention_mask", "object_mask", "position_mask"), strict=True):
        assert torch.equal(got, batch[key])


def _train_heads(head_lr_scale: float, *, lr: float, weight_decay: float, steps: int = 5):
    """``steps`` AdamW steps on the same features and targets for our one-logit head (the trainer's
    optimizer over the model's groups) and for a two-logit reference head trained as the official
    decoder group is, from the same init. Returns (ours, the reference's fg - bg) logits, before and
    after."""
    from rrsis_bench.engine.trainer import TrainerSettings, build_optimizer

    torch.manual_seed(0)
    model = create_test_lavt(head_lr_scale=head_lr_scale, loss="ce")
    head = model.decoder.classifier
    g = torch.Generator().manual_seed(0)
    features = torch.randn(4, head.in_channels, 6, 6, generator=g)
    target = (torch.rand(4, 6, 6, generator=g) > 0.6).float()
    reference = torch.nn.Conv2d(head.in_channels, 2, 1)
    with torch.no_grad():  # any background row; foreground - background = our row
        reference.weight[1] = reference.weight[0] + head.weight[0]
        reference.bias[1] = reference.bias[0] + head.bias[0]
    optimizer = build_optimizer(model, TrainerSettings(lr=lr, weight_decay=weight_decay))
    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=lr, weight_decay=weight_decay)

    def reference_logit():
        two = reference(features)
        return two[:, 1:] - two[:, :1]

    with torch.no_grad():
        before = head(features), reference_logit()
    for _ in range(steps):
        model.loss(head(features), {"mask": target})["loss"].backward()
        torch.nn.functional.cross_entropy(reference(features), target.long(),
                                          weight=torch.tensor([0.9, 1.1])).backward()
        for opt in (optimizer, reference_optimizer):
            opt.step()
            opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        after = head(features), reference_logit()
    return before, after


def test_folded_head_moves_as_the_official_two_logit_head():
    """The official head's two rows get opposite gradients, so under AdamW their difference moves
    twice as far as a single logit does: head_lr_scale 2 (the faithful default) restores the official
    step; weight decay is divided by it, so the decay per step stays the official one."""
    def moved(before, after):
        return [float((a - b).norm()) for a, b in zip(after, before, strict=True)]

    ours, official = moved(*_train_heads(2.0, lr=1e-3, weight_decay=0.0))
    assert official / ours == pytest.approx(1.0, abs=1e-3)
    ours, official = moved(*_train_heads(1.0, lr=1e-3, weight_decay=0.0))
    assert official / ours == pytest.approx(2.0, abs=0.02)
    # With strong weight decay the whole trajectory matches, not only its speed.
    _, (ours_after, official_after) = _train_heads(2.0, lr=0.05, weight_decay=0.5)
    torch.testing.assert_close(ours_after, official_after, rtol=1e-5, atol=1e-5)
    assert create_test_lavt().head_lr_scale == create_fianet_lite(pretrained=False).head_lr_scale * 2


def test_lavt_ris_loss_is_class_weighted_ce_alone():
    model = create_test_lavt(loss="ce")
    logits = torch.tensor([[[[0.0, 2.0]]]])  # p_fg = 0.5 and sigmoid(2)
    target = torch.tensor([[[1.0, 0.0]]])
    terms = model.loss(logits, {"mask": target})
    expected = (1.1 * -torch.log(torch.tensor(0.5)) + 0.9 * -torch.log(1 - torch.sigmoid(torch.tensor(2.0)))) / 2.0
    assert set(terms) == {"loss", "ce"}
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="method.loss='dice'.*'ce'"):
        create_test_lavt(loss="dice")


def test_official_param_groups():
    model = create_test_lavt()
    groups = model.param_groups(0.01)
    by_id = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    table = next(n for n in named if "relative_position_bias_table" in n)
    assert by_id[id(named[table])] == 0.0
    assert by_id[id(named["stage_norms.0.weight"])] == 0.0
    assert by_id[id(named["decoder.levels.0.0.1.weight"])] == 0.01  # decoder BN decays (official)
    assert by_id[id(named["fusions.0.attention.query.bias"])] == 0.01  # backbone biases decay (official)
    head = next(g for g in groups if any(p is named["decoder.classifier.weight"] for p in g["params"]))
    assert head["lr_scale"] == 2.0 and head["weight_decay"] == 0.005
    assert {id(p) for p in head["params"]} == {id(named["decoder.classifier.weight"]), id(named["decoder.classifier.bias"])}
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in model.parameters())


def test_text_encoder_partial_training_follows_lavt():
    with torch.device("meta"):
        model = create_lavt(pretrained=False, text_pretrained=False)
    text = model.text.model
    assert not any(p.requires_grad for p in text.embeddings.parameters())
    assert all(p.requires_grad for layer in text.encoder.layer[:10] for p in layer.parameters())
    assert not any(p.requires_grad for layer in text.encoder.layer[10:] for p in layer.parameters())
    assert model.spec.tokenizer == "minilm"  # same uncased WordPiece vocabulary, available offline


def _count(model, prefix=""):
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))


def test_faithful_parameter_counts_match_the_official_models():
    """Counts of the official models (random init, pooler removed): LAVT 227,739,514; FIANet
    251,918,706 (num_tmem 1) and 256,168,626 (num_tmem 3). Ours predict one logit instead of two
    (513 parameters fewer)."""
    with torch.device("meta"):
        lavt = create_lavt(pretrained=False, text_pretrained=False)
        fianet1 = create_fianet(pretrained=False, text_pretrained=False, num_tmem=1)
        fianet3 = create_fianet(pretrained=False, text_pretrained=False, num_tmem=3)
    swin_b = _count(lavt, "backbone.") + _count(lavt, "stage_norms.")
    assert swin_b == 86_880_376
    assert _count(lavt, "text.") == 108_891_648
    assert _count(lavt) == 227_739_514 - 513
    assert _count(fianet1) == 251_918_706 - 513
    assert _count(fianet3) == 256_168_626 - 513
    for model, published in ((lavt, 227.74e6), (fianet3, 256.17e6)):
        assert abs(_count(model) - published) / published < 0.015
    # The parameters that can never get a gradient (13.2 M in FIANet) are the frozen ones outside the
    # text encoder (whose embeddings and layers 10-11 LAVT keeps frozen).
    for model, dead in ((lavt, 2 * 1024 * 1024), (fianet3, 13_198_482)):
        assert sum(p.numel() for n, p in model.named_parameters()
                   if not p.requires_grad and not n.startswith("text.")) == dead
    dead = sum(p.numel() for n, p in fianet3.named_parameters() if any(k in n for k in FIANET_NO_GRAD))
    assert dead == 13_198_482


@pytest.mark.parametrize("factory", [create_test_lavt, create_test_fianet])
def test_checkpoint_round_trip(tmp_path, factory):
    torch.manual_seed(0)
    model = factory().eval()
    save_checkpoint(tmp_path / "ckpt", model)
    torch.manual_seed(1)
    other = factory().eval()
    load_weights(tmp_path / "ckpt", other)
    batch = make_batch()
    with torch.no_grad():
        assert torch.equal(model(batch), other(batch))


def test_fianet_lite_is_the_same_architecture_on_a_small_backbone():
    model = create_fianet_lite(pretrained=False, text_pretrained=False,
                               text_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                            "intermediate_size": 64})
    assert model.backbone.reductions == [2, 4, 8, 16]
    assert [type(f).__name__ for f in model.fusions] == ["FineGrainedAlignment"] * 4
    assert model.tmem is not None and model.fusions[0].coordinates
    batch = make_batch(size=64)
    assert model(batch).shape == (2, 1, 64, 64)


def test_missing_pretrained_weights_fail_with_the_fix(monkeypatch):
    from rrsis_bench.nn.backbones import PretrainedWeightsUnavailable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedWeightsUnavailable, match="method.pretrained=false") as info:
        create_fianet(text_pretrained=False)  # the Swin-B weights are not in this machine's cache
    assert "swin_base_patch4_window12_384.ms_in22k" in str(info.value)
    with pytest.raises(OSError, match="text_pretrained=false") as info:
        create_lavt(pretrained=False, backbone="swin_tiny_patch4_window7_224", backbone_kwargs=TINY_SWIN)  # nor BERT
    assert "bert-base-uncased" in str(info.value)


@pytest.mark.parametrize("method", ["test_fianet", "test_lavt"])
def test_run_and_eval_through_the_engine(method, tmp_path, data_overrides):
    """The whole path: data pipeline (object/position masks) -> trainer -> val/test -> record; then eval."""
    import json

    from rrsis_bench.cli import main

    run_dir = tmp_path / "run"
    assert main(["run", f"method={method}", "trainer=debug", "trainer.max_eval_samples=null", *data_overrides,
                 "data.image_size=64", f"hydra.run.dir={run_dir}"]) == 0
    record = json.loads((run_dir / "record.json").read_text())
    assert record["method"]["name"] == method and record["status"] == "complete"
    assert 0.0 <= record["metrics"]["mIoU"] <= 100.0
    # eval adds data keys without Hydra's "+" (the run's data config is the base)
    assert main(["eval", f"checkpoint={run_dir}", "split=val", "data.eval_size=64",
                 f"hydra.run.dir={tmp_path / 'eval'}"]) == 0
    evaluated = json.loads((tmp_path / "eval" / "record.json").read_text())
    assert evaluated["config"]["data"]["eval_size"] == 64
