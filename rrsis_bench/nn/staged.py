"""Run a timm backbone one stage at a time, so a method can fuse language between stages.

LAVT-style methods change the visual stream *inside* the backbone: after the blocks of stage i the
features are fused with the text and the fused features enter stage i + 1. timm's feature
extractors (``FeatureListNet``) are an ordered list of modules with tap points; this wrapper cuts
that list at the tap points and exposes each piece as a stage:

    x = backbone.stem(image)                 # nothing for most models; kept for symmetry
    for i in range(backbone.num_stages):
        x = backbone.run_stage(i, x)         # the backbone's own layout (NCHW, or NHWC for Swin)
        tokens = backbone.to_tokens(x)       # (B, H*W, C)
        tokens = fuse(tokens)
        x = backbone.from_tokens(tokens, x)  # back to the backbone's layout

It works for every timm model that timm can turn into a ``FeatureListNet`` (Swin, EfficientNet,
MobileNet, ConvNeXt, ...). For Swin it also restores the official window padding order (pad the
map to whole windows first, then shift), which the Swin code LAVT and FIANet build on uses; timm
shifts first and pads afterwards, which gives different windows whenever the grid is not a
multiple of the window (30x30 and 15x15 grids with window 12 at 480x480).
"""

from __future__ import annotations

import os
import types
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.models import FeatureListNet
from torch import nn

from rrsis_bench.nn.backbones import create_timm_model
from rrsis_bench.nn.checkpointing import batch_norms, checkpointed


def _official_swin_attention(self, x: torch.Tensor) -> torch.Tensor:
    """Shifted-window attention with the official order: pad to whole windows, then shift.

    ``self`` is a timm ``SwinTransformerBlock``; ``x`` is (B, H, W, C) after ``norm1``. The
    shift mask is computed on the padded grid, as in the original Swin code, so padded tokens
    take part as keys inside their window (they are zero vectors before the qkv projection).
    """
    _, height, width, channels = x.shape
    win_h, win_w = self.window_size
    pad_h, pad_w = (win_h - height % win_h) % win_h, (win_w - width % win_w) % win_w
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    padded_h, padded_w = x.shape[1], x.shape[2]
    shift_h, shift_w = self.shift_size
    shifted = shift_h or shift_w
    mask = None
    if shifted:
        x = torch.roll(x, shifts=(-shift_h, -shift_w), dims=(1, 2))
        mask = _shift_mask(padded_h, padded_w, self.window_size, self.shift_size, x.device, x.dtype)
    windows = x.view(-1, padded_h // win_h, win_h, padded_w // win_w, win_w, channels)
    windows = windows.permute(0, 1, 3, 2, 4, 5).reshape(-1, win_h * win_w, channels)
    out = self.attn(windows, mask=mask)
    out = out.view(-1, padded_h // win_h, padded_w // win_w, win_h, win_w, channels)
    out = out.permute(0, 1, 3, 2, 4, 5).reshape(-1, padded_h, padded_w, channels)
    if shifted:
        out = torch.roll(out, shifts=(shift_h, shift_w), dims=(1, 2))
    return out[:, :height, :width, :].contiguous()


_MASK_CACHE: dict[tuple, torch.Tensor] = {}


def _shift_mask(height: int, width: int, window: tuple[int, int], shift: tuple[int, int], device, dtype):
    """(num_windows, area, area) additive mask: -100 between tokens of different shifted regions."""
    key = (height, width, window, shift, str(device), dtype)
    if key not in _MASK_CACHE:
        regions = torch.zeros(height, width, device=device)
        label = 0
        for rows in (slice(0, -window[0]), slice(-window[0], -shift[0]), slice(-shift[0], None)):
            for cols in (slice(0, -window[1]), slice(-window[1], -shift[1]), slice(-shift[1], None)):
                regions[rows, cols] = label
                label += 1
        windows = regions.view(height // window[0], window[0], width // window[1], window[1])
        windows = windows.permute(0, 2, 1, 3).reshape(-1, window[0] * window[1])
        diff = windows[:, None, :] - windows[:, :, None]
        _MASK_CACHE[key] = torch.zeros_like(diff, dtype=dtype).masked_fill(diff != 0, -100.0)
    return _MASK_CACHE[key]


def _feature_list(model: nn.Module, out_indices: Sequence[int]) -> FeatureListNet:
    """Wrap a full timm model as a ``FeatureListNet`` (cut after the last tap point)."""
    output_fmt = "NHWC" if getattr(model, "output_fmt", "NCHW") == "NHWC" else "NCHW"
    errors = []
    for flatten in (True, False):
        try:
            return FeatureListNet(model, out_indices=tuple(out_indices), flatten_sequential=flatten,
                                  output_fmt=output_fmt)
        except (AssertionError, ValueError) as exc:
            errors.append(exc)
    raise ValueError(
        f"timm model {type(model).__name__} cannot be run stage by stage: its feature tap points are not "
        f"top-level modules ({errors[-1]}). Use a backbone such as swin_*, efficientnet_*, convnext_*."
    )


class StagedBackbone(nn.Module):
    """A timm backbone split into its feature stages (see the module docstring).

    ``out_indices`` picks the feature levels (timm's ``feature_info`` indices; default the last
    four, i.e. strides 4-32 for most models). ``channels`` and ``reductions`` describe the stages.
    ``official_swin_padding`` (Swin only) switches the window padding to the original order.
    """

    def __init__(
        self,
        name: str,
        *,
        pretrained: bool = False,
        weights: str | os.PathLike | None = None,
        out_indices: Sequence[int] | None = None,
        official_swin_padding: bool = True,
        **timm_kwargs,
    ) -> None:
        super().__init__()
        model = create_timm_model(name, pretrained=pretrained, weights=weights, **timm_kwargs)
        levels = len(model.feature_info)
        out_indices = tuple(range(levels))[-4:] if out_indices is None else tuple(out_indices)
        features = _feature_list(model, out_indices)
        self.name = name
        self.channels_last_input = features.output_fmt == "NHWC"
        # Cut the module list after each tap point: stage i = the modules up to tap point i.
        stages, current = [], []
        for module_name, module in features.items():
            current.append((module_name, module))
            if module_name in features.return_layers:
                stages.append(nn.Sequential(OrderedDict(current)))
                current = []
        self.stages = nn.ModuleList(stages)
        self.channels = list(features.feature_info.channels())
        self.reductions = list(features.feature_info.reduction())
        self.num_stages = len(self.stages)
        self.is_swin = any(type(m).__name__ == "SwinTransformerBlock" for m in self.modules())
        if self.is_swin and official_swin_padding:
            for module in self.modules():
                if type(module).__name__ == "SwinTransformerBlock":
                    module._attn = types.MethodType(_official_swin_attention, module)
        self.official_swin_padding = official_swin_padding
        self.checkpointing = False

    def set_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in the backward pass instead of storing them (same results, less
        memory, about one more forward of time): block by block where timm can (its stages'
        ``grad_checkpointing``, e.g. Swin), else each module of a stage (e.g. an EfficientNet block
        group), BatchNorm statistics kept exact (see :func:`rrsis_bench.nn.checkpointing.checkpointed`)."""
        self.checkpointing = bool(enabled)
        for stage in self.stages:
            for child in stage:
                if hasattr(child, "grad_checkpointing") and next(batch_norms(child), None) is None:
                    child.grad_checkpointing = self.checkpointing

    def stem(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        stage = self.stages[index]
        if not (self.checkpointing and self.training and torch.is_grad_enabled()):
            return stage(x)
        for child in stage:  # children checkpointing their own blocks run as they are
            x = child(x) if getattr(child, "grad_checkpointing", False) else checkpointed(child, x)
        return x

    def to_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, H*W, C) tokens and the grid size (H, W) of a stage output."""
        if self.channels_last_input:
            b, h, w, c = x.shape
            return x.reshape(b, h * w, c), (h, w)
        b, c, h, w = x.shape
        return x.flatten(2).transpose(1, 2), (h, w)

    def from_tokens(self, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Tokens back to the layout the next stage expects."""
        b, _, c = tokens.shape
        if self.channels_last_input:
            return tokens.reshape(b, size[0], size[1], c)
        return tokens.transpose(1, 2).reshape(b, c, size[0], size[1])

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Plain multi-scale features (no fusion), NCHW; equals timm's feature extractor."""
        x, outs = self.stem(image), []
        for i in range(self.num_stages):
            x = self.run_stage(i, x)
            outs.append(x.permute(0, 3, 1, 2) if self.channels_last_input else x)
        return outs
