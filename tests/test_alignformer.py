"""The AlignFormer-style method: grouping around the linguistic centre, both VLBA directions and their
switches, the instance contrastive loss against hand-computed values, and its recipes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from rrsis_bench.methods.alignformer.losses import boundary_band, instance_contrastive_loss

import rrsis_bench
from rrsis_bench.method import MethodOutput, logits_of
from rrsis_bench.nn.losses import rrsis_official_loss

SIZE, LENGTH = 64, 10


def make_batch(batch_size: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch_size, SIZE, SIZE)
    instances = torch.zeros(batch_size, SIZE, SIZE, dtype=torch.long)
    for i in range(batch_size):
        mask[i, 8 + 4 * i: 30 + 4 * i, 10:34] = 1
        instances[i][mask[i] > 0] = 1
        instances[i, 40:56, 40:56] = 2  # another instance of the referred class: a hard negative
    attention = torch.ones(batch_size, LENGTH, dtype=torch.long)
    attention[-1, 6:] = 0
    return {"image": torch.randn(batch_size, 3, SIZE, SIZE, generator=g),
            "input_ids": torch.randint(1000, 2000, (batch_size, LENGTH), generator=g),
            "attention_mask": attention, "mask": mask, "instance_map": instances}


def build(**options):
    torch.manual_seed(0)
    return rrsis_bench.create_method("test_alignformer", **options)


def test_logits_are_the_cosine_to_the_centre_over_the_temperature():
    model = build(temperature=0.2).eval()
    with torch.no_grad():
        model.logit_bias.fill_(0.3)
        out = model(make_batch())
    assert isinstance(out, MethodOutput) and logits_of(out).shape == (2, 1, SIZE, SIZE)
    pixels, centre = out.aux["pixels"], out.aux["centre"]
    assert torch.allclose(pixels.norm(dim=1), torch.ones(()), atol=1e-5)
    assert torch.allclose(centre.norm(dim=1), torch.ones(()), atol=1e-5)
    expected = torch.einsum("bchw,bc->bhw", pixels, centre)[:, None] / 0.2 + 0.3
    assert torch.allclose(out.aux["coarse_logits"], expected, atol=1e-5)
    upsampled = F.interpolate(expected, size=(SIZE, SIZE), mode="bilinear", align_corners=True)
    assert torch.allclose(out.logits, upsampled, atol=1e-5)
    # no classifier kernel: the grouping is the cosine, bounded by 1 / temperature around the bias
    assert out.logits.abs().max() <= 1 / 0.2 + 0.3 + 1e-4


def test_the_centre_comes_from_the_words_refined_by_the_pixels():
    """pixels -> text: the centre of the same expression changes with the image; with that direction off
    (in encoder and decoder) the centre is a function of the text alone."""
    batch = make_batch()
    other = {**batch, "image": torch.randn_like(batch["image"])}
    for pixel_to_text, changes in ((True, True), (False, False)):
        model = build(pixel_to_text=pixel_to_text).eval()
        with torch.no_grad():
            a, b = model(batch).aux["centre"], model(other).aux["centre"]
        assert (not torch.allclose(a, b, atol=1e-6)) is changes


@pytest.mark.parametrize("options", [{"text_to_pixel": False}, {"pixel_to_text": False}, {"decoder_vlba": False},
                                     {"contrastive_weight": 0.0}, {"learn_temperature": True},
                                     {"ambiguity": "both"}, {"instance_negatives": False, "batch_negatives": False}],
                         ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_ablation_switch_builds_trains_and_changes_the_model(options):
    full, variant = build(), build(**options)
    batch = make_batch()
    terms = variant.loss(variant(batch), batch)
    terms["loss"].backward()
    assert math.isfinite(float(terms["loss"].detach()))
    no_grad = sorted(n for n, p in variant.named_parameters() if p.requires_grad and p.grad is None)
    assert no_grad == []  # DDP-safe in every configuration
    if "text_to_pixel" in options:
        assert all(f.text_to_pixel is None for f in variant.fusions) and variant.decoder.vlba[0].gate is None
    if "pixel_to_text" in options:
        assert all(f.pixel_to_text is None for f in variant.fusions)
    if "decoder_vlba" in options:
        assert variant.decoder.vlba is None
    if "learn_temperature" in options:
        assert variant.log_temperature.grad is not None
    with torch.no_grad():
        full_terms = full.loss(full(batch), batch)
    assert float(full_terms["loss"]) != pytest.approx(float(terms["loss"]), abs=1e-6)


def test_contrastive_switch_off_is_the_mask_loss_alone_and_needs_no_instance_map():
    model = build(contrastive_weight=0.0)
    assert model.spec.inputs == ()
    batch = make_batch()
    del batch["instance_map"]
    out = model(batch)
    terms = model.loss(out, batch)
    assert set(terms) == {"loss", "ce", "dice"}
    assert torch.equal(terms["loss"], rrsis_official_loss(out.logits, batch["mask"])["loss"])
    assert build().spec.inputs == ("instance_map",)
    assert build(instance_negatives=False).spec.inputs == ()


def test_centre_to_pixel_term_by_hand_with_a_hard_negative():
    # one image of 3 pixels: the target (1, 0), background (0, 1), another instance (-1, 0); centre (1, 0)
    pixels = torch.tensor([[[[1.0, 0.0, -1.0]], [[0.0, 1.0, 0.0]]]])  # (1, E=2, h=1, w=3)
    centre = torch.tensor([[1.0, 0.0]])
    mask = torch.tensor([[[1.0, 0.0, 0.0]]])
    instances = torch.tensor([[[1, 0, 2]]])
    got = instance_contrastive_loss(pixels, centre, mask, temperature=0.5, instance_map=instances,
                                    hard_negative_weight=2.0, ambiguity="none")
    s_target, s_background, s_hard = 2.0, 0.0, -2.0
    expected = -math.log(math.exp(s_target) / (math.exp(s_target) + math.exp(s_background) + 2 * math.exp(s_hard)))
    assert float(got["contrast"]) == pytest.approx(expected, rel=1e-6)
    plain = instance_contrastive_loss(pixels, centre, mask, temperature=0.5, ambiguity="none")
    expected_plain = -math.log(math.exp(2.0) / (math.exp(2.0) + 1.0 + math.exp(-2.0)))
    assert float(plain["contrast"]) == pytest.approx(expected_plain, rel=1e-6)


def test_pixel_to_centre_term_by_hand_and_same_target_is_not_a_negative():
    # sample 0: target (1, 0), background (0, 1); sample 1: background (1, 0), target (0, 1)
    pixels = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]], [[[1.0, 0.0]], [[0.0, 1.0]]]])  # (2, 2, 1, 2)
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    masks = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    got = instance_contrastive_loss(pixels, centres, masks, temperature=1.0, ambiguity="none")
    one_term = math.log(1 + math.exp(-1.0))  # -log(e^1 / (e^1 + e^0))
    assert float(got["centre_to_pixels"]) == pytest.approx(one_term, rel=1e-6)
    assert float(got["pixel_to_centres"]) == pytest.approx(one_term, rel=1e-6)
    assert float(got["contrast"]) == pytest.approx(2 * one_term, rel=1e-6)
    # Two expressions of the same object (identical target masks): the other centre is no negative.
    same = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])
    centres_same = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    got_same = instance_contrastive_loss(pixels, centres_same, same, temperature=1.0, ambiguity="none")
    assert float(got_same["pixel_to_centres"]) == pytest.approx(0.0, abs=1e-6)
    off = instance_contrastive_loss(pixels, centres, masks, temperature=1.0, ambiguity="none", batch_negatives=False)
    assert float(off["contrast"]) == pytest.approx(one_term, rel=1e-6)


def test_boundary_band_and_ambiguous_pixels_weigh_less():
    target = torch.zeros(1, 9, 9, dtype=torch.bool)
    target[0, 2:7, 2:7] = True
    band = boundary_band(target, radius=1)
    expected = torch.zeros(9, 9, dtype=torch.bool)
    expected[1:8, 1:8] = True
    expected[3:6, 3:6] = False
    assert torch.equal(band[0], expected) and int(band.sum()) == 40
    # Weighting: a boundary target pixel that scores badly counts less with ambiguity on.
    pixels = torch.tensor([[[[1.0, -1.0, 0.0]], [[0.0, 0.0, 1.0]]]])  # target pixels (1,0) and (-1,0); bg (0,1)
    centre = torch.tensor([[1.0, 0.0]])
    mask = torch.tensor([[[1.0, 1.0, 0.0]]])
    plain = instance_contrastive_loss(pixels, centre, mask, temperature=1.0, ambiguity="none")
    weighted = instance_contrastive_loss(pixels, centre, mask, temperature=1.0, ambiguity="boundary",
                                         ambiguity_weight=0.5)
    # band of [1, 1, 0] (the image border is no edge): the bad target pixel and the background pixel
    assert boundary_band(mask > 0, radius=1)[0, 0].tolist() == [False, True, True]
    good, bad = math.log(1 + math.exp(0 - 1)), math.log(1 + math.exp(0 + 1))
    assert float(plain["contrast"]) == pytest.approx((good + bad) / 2, rel=1e-6)
    good_w, bad_w = math.log(1 + 0.5 * math.exp(-1)), math.log(1 + 0.5 * math.exp(1))
    assert float(weighted["contrast"]) == pytest.approx((1.0 * good_w + 0.5 * bad_w) / 1.5, rel=1e-6)
    assert float(weighted["contrast"]) < float(plain["contrast"])


def test_loss_has_its_terms_and_the_other_instances_matter():
    model = build()
    batch = make_batch()
    out = model(batch)
    terms = model.loss(out, batch)
    assert {"loss", "ce", "dice", "contrast", "centre_to_pixels", "pixel_to_centres"} <= set(terms)
    expected = terms["ce"] * 0.9 + terms["dice"] * 0.1 + 0.5 * terms["contrast"]
    assert float(terms["loss"]) == pytest.approx(float(expected), rel=1e-5)
    without = model.loss(out, {**batch, "instance_map": torch.clamp(batch["instance_map"], max=1)})
    assert float(without["contrast"]) != pytest.approx(float(terms["contrast"]), abs=1e-6)


def test_stage_hook_hands_refined_words_to_later_stages():
    model = build().eval()
    seen = []
    original = model.fuse_stage

    def spy(index, tokens, size, text, need_stream):
        seen.append(text["context"].clone())
        return original(index, tokens, size, text, need_stream)

    model.fuse_stage = spy
    with torch.no_grad():
        model(make_batch())
    assert len(seen) == model.backbone.num_stages
    assert all(not torch.allclose(a, b) for a, b in zip(seen, seen[1:], strict=False))


def test_bad_switch_values_are_refused():
    with pytest.raises(ValueError, match="method.temperature"):
        build(temperature=0.0)
    with pytest.raises(ValueError, match="method.ambiguity"):
        build(ambiguity="edges")
    with pytest.raises(ValueError, match="pixel_to_text_heads"):
        build(pixel_to_text_heads=3)


def _compose(*overrides: str):
    with initialize_config_module(config_module="rrsis_bench.conf", version_base="1.3"):
        return compose(config_name="run", overrides=list(overrides))


def test_recipes_follow_the_lavt_family_and_refsegrs_needs_no_instances():
    refsegrs = _compose("experiment=alignformer_refsegrs")
    fianet = _compose("experiment=fianet_refsegrs")
    assert refsegrs.method.name == "alignformer" and refsegrs.trainer == fianet.trainer
    assert refsegrs.method.instance_negatives is False  # RefSegRS ships no instance annotations
    rrsisd, fianet_rrsisd = _compose("experiment=alignformer_rrsisd"), _compose("experiment=fianet_rrsisd")
    assert rrsisd.trainer == fianet_rrsisd.trainer and rrsisd.method.instance_negatives is True
    assert rrsisd.data.augment.boxes and rrsisd.data.options.overlap == "official"
    assert (rrsisd.data.image_size, rrsisd.data.eval_size, rrsisd.data.max_tokens) == (480, 480, 22)
    lite = _compose("method=alignformer_lite")
    assert lite.trainer == _compose("method=fianet_lite").trainer  # same budget as fianet_lite (8 epochs)


def test_faithful_path_gives_the_same_outputs():
    """`faithful=true` (explicit attention products, what `profile` counts) computes the same function."""
    model = build().eval()
    batch = make_batch()
    with torch.no_grad():
        fast = model(batch).logits
        model.set_faithful(True)
        assert all(m.faithful for m in model.modules() if getattr(m, "has_faithful_path", False))
        slow = model(batch).logits
    assert torch.allclose(fast, slow, atol=1e-5)
