"""The staged timm backbone wrapper and the official Swin window padding."""

from __future__ import annotations

import pytest
import timm
import torch

from rrsis_bench.nn.staged import StagedBackbone

TINY_SWIN = {"embed_dim": 8, "depths": (2, 2, 2, 2), "num_heads": (1, 1, 2, 2), "window_size": 4, "img_size": 64,
             "strict_img_size": False, "always_partition": True}


def test_cnn_stages_equal_timm_feature_extractor():
    image = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    staged = StagedBackbone("test_efficientnet").eval()
    reference = timm.create_model("test_efficientnet", pretrained=False, features_only=True,
                                  out_indices=(1, 2, 3, 4)).eval()
    reference.load_state_dict(_stage_keys(staged, reference))
    expected = reference(image)
    got = staged(image)
    assert staged.channels == reference.feature_info.channels() == [24, 32, 48, 64]
    assert staged.reductions == [4, 8, 16, 32]
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)
    # Stage by stage with a round trip through tokens gives the same maps.
    x = staged.stem(image)
    for i in range(staged.num_stages):
        x = staged.run_stage(i, x)
        tokens, size = staged.to_tokens(x)
        assert tokens.shape == (2, size[0] * size[1], staged.channels[i])
        x = staged.from_tokens(tokens, size)
        torch.testing.assert_close(x, expected[i])


def _stage_keys(staged: StagedBackbone, reference) -> dict:
    """Our stage-prefixed keys mapped onto timm's feature-extractor keys, in order."""
    ours = list(staged.state_dict().items())
    theirs = list(reference.state_dict().keys())
    assert len(ours) == len(theirs)
    return {k: v for k, (_, v) in zip(theirs, ours, strict=True)}


@pytest.fixture
def swin_pair():
    """A tiny Swin with the official window padding order and the same weights with timm's order."""
    torch.manual_seed(0)
    staged = StagedBackbone("swin_tiny_patch4_window7_224", **TINY_SWIN).eval()
    timm_order = StagedBackbone("swin_tiny_patch4_window7_224", official_swin_padding=False, **TINY_SWIN).eval()
    timm_order.load_state_dict(staged.state_dict())
    return staged, timm_order


def test_swin_stages_are_nhwc_tokens_and_match_timm_when_windows_tile(swin_pair):
    # 128 px, patch 4, window 4: grids 32, 16, 8, 4 all tile, so the two padding orders agree exactly.
    staged, timm_order = swin_pair
    image = torch.randn(1, 3, 128, 128)
    for a, b in zip(staged(image), timm_order(image), strict=True):
        torch.testing.assert_close(a, b)
    assert staged.channels == [8, 16, 32, 64]
    x = staged.run_stage(0, staged.stem(image))
    assert x.shape == (1, 32, 32, 8)  # Swin stages run in NHWC
    tokens, size = staged.to_tokens(x)
    assert size == (32, 32) and tokens.shape == (1, 1024, 8)


def test_official_swin_padding_differs_from_timm_when_padding_differs_from_the_shift(swin_pair):
    # 80 px: grids 20, 10, 5, 3 with window 4 and shift 2. A 10x10 grid pads by 2 = the shift, so the
    # padded zeros fill exactly one masked region and both orders agree; a 5x5 grid pads by 3: timm
    # then puts wrapped-around tokens in one window region with unwrapped ones, the official order
    # does not (at 480 px with window 12 this is the 15x15 last stage: pad 9, shift 6).
    staged, timm_order = swin_pair
    image = torch.randn(1, 3, 80, 80)
    ours, theirs = staged(image), timm_order(image)
    torch.testing.assert_close(ours[1], theirs[1])
    assert not torch.allclose(ours[2], theirs[2], atol=1e-4)


def test_official_padding_matches_a_direct_computation():
    """The overridden attention equals pad -> shift -> window attention with the region mask, by hand."""
    torch.manual_seed(0)
    staged = StagedBackbone("swin_tiny_patch4_window7_224", **TINY_SWIN).eval()
    block = staged.stages[1].layers_1.blocks[1]  # a shifted block at stride 8
    assert block.shift_size == (2, 2) and block.window_size == (4, 4)
    x = torch.randn(1, 6, 6, 16)
    got = block._attn(x)
    padded = torch.nn.functional.pad(x, (0, 0, 0, 2, 0, 2))  # 8x8
    rolled = torch.roll(padded, shifts=(-2, -2), dims=(1, 2))
    region = torch.zeros(8, 8)
    label = 0
    for rows in (slice(0, 4), slice(4, 6), slice(6, 8)):
        for cols in (slice(0, 4), slice(4, 6), slice(6, 8)):
            region[rows, cols] = label
            label += 1
    out = torch.zeros_like(rolled)
    for wy in range(2):
        for wx in range(2):
            tokens = rolled[:, 4 * wy:4 * wy + 4, 4 * wx:4 * wx + 4].reshape(1, 16, 16)
            labels = region[4 * wy:4 * wy + 4, 4 * wx:4 * wx + 4].reshape(16)
            mask = torch.where(labels[None, :] == labels[:, None], 0.0, -100.0)[None]
            out[:, 4 * wy:4 * wy + 4, 4 * wx:4 * wx + 4] = block.attn(tokens, mask=mask).reshape(1, 4, 4, 16)
    expected = torch.roll(out, shifts=(2, 2), dims=(1, 2))[:, :6, :6]
    torch.testing.assert_close(got, expected)


def test_frozen_stage_parameters_get_no_gradient_and_later_ones_do():
    staged = StagedBackbone("test_efficientnet")
    staged.stages[0].requires_grad_(False)
    sum(o.sum() for o in staged(torch.randn(2, 3, 64, 64))).backward()
    assert all(p.grad is None for p in staged.stages[0].parameters())
    assert all(p.grad is not None for p in staged.stages[1].parameters())
