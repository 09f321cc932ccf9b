"""LAVT's building blocks: pixel-word attention (PWAM), the language gate and the LAVT decoder.

Written from the published description (LAVT, CVPR 2022; the FIANet/RMSIN reports); shapes and
initialisation follow it. Visual features are tokens (B, N, C), N = H*W; words are (B, L, D) with
a 0/1 mask (B, L). The official code uses 1x1 Conv1d layers on (B, C, N); here they are
``nn.Linear`` on (B, N, C), the same function (the checkpoint importer reshapes the weights).

``faithful=True`` runs the attention as written (explicit product, softmax, weighted sum);
``faithful=False`` gives the same masked softmax to ``F.scaled_dot_product_attention`` (fused
kernel) on accelerators and to one fused scaled product + bias (``baddbmm``) on CPU, where SDPA's
backward is several times slower for many pixels and few words. Both add the official additive
bias ``1e4 * mask - 1e4`` (not -inf), so a sample whose every word is masked behaves as in the
official code instead of producing NaNs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rrsis_bench.nn.checkpointing import checkpointed

MASK_BIAS = 1e4


class Pointwise(nn.Linear):
    """A 1x1 ``Conv1d`` of the official code applied as a Linear over tokens (same default init).

    A separate type so :func:`init_lavt_weights` leaves it at PyTorch's conv init, as LAVT does.
    """


def coordinate_tokens(batch: int, size: tuple[int, int], device, dtype) -> torch.Tensor:
    """(B, H*W, 2): x and y of every token in [-1, 1] (row-major), for coordinate-aware queries."""
    ys = torch.linspace(-1.0, 1.0, size[0], device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, size[1], device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(1, -1, 2).expand(batch, -1, -1)


def token_instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """InstanceNorm1d without affine over the token axis of (B, N, C): per sample and channel."""
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, keepdim=True, unbiased=False)
    return (x - mean) * torch.rsqrt(var + eps)


class LanguageAttention(nn.Module):
    """Pixels (queries) attend to words (keys/values): LAVT's spatial image-language attention.

    query = InstanceNorm(Linear(visual)); key, value = Linear(words) x mask; attention logits
    q.k / sqrt(key_dim) + (1e4 * mask - 1e4), softmax over the words; output =
    InstanceNorm(Linear(attended values)) with ``out_dim`` channels. With several heads the official
    code still scales by the full ``key_dim`` (not the per-head size); so does this one.
    """

    has_faithful_path = True  # InterleavedFusionModel.set_faithful switches it

    def __init__(self, visual_dim: int, text_dim: int, key_dim: int, value_dim: int, out_dim: int | None = None,
                 *, heads: int = 1, query_extra: int = 0, faithful: bool = False) -> None:
        super().__init__()
        if key_dim % heads or value_dim % heads:
            raise ValueError(f"key_dim {key_dim} and value_dim {value_dim} must be divisible by heads={heads}.")
        self.heads, self.key_dim, self.value_dim = heads, key_dim, value_dim
        # query_extra: channels appended to the query input only (e.g. pixel coordinates); 0 = official.
        self.query_extra = query_extra
        self.query = Pointwise(visual_dim + query_extra, key_dim)
        self.key = Pointwise(text_dim, key_dim)
        self.value = Pointwise(text_dim, value_dim)
        self.out = Pointwise(value_dim, out_dim or visual_dim)
        self.faithful = faithful

    def forward(self, visual: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor,
                query_extra: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = visual.shape
        length = words.shape[1]
        mask = word_mask.to(words.dtype)
        if self.query_extra:
            visual = torch.cat([visual, query_extra.to(visual.dtype)], dim=-1)
        q = token_instance_norm(self.query(visual))
        k = self.key(words) * mask[..., None]
        v = self.value(words) * mask[..., None]
        h = self.heads
        q = q.view(b, n, h, -1).transpose(1, 2)  # (B, h, N, dk)
        k = k.view(b, length, h, -1).transpose(1, 2)
        v = v.view(b, length, h, -1).transpose(1, 2)
        bias = (MASK_BIAS * mask - MASK_BIAS)[:, None, None, :].to(q.dtype)  # (B, 1, 1, L)
        if self.faithful:
            logits = (q @ k.transpose(-2, -1)) * self.key_dim**-0.5 + bias
            attended = logits.softmax(dim=-1) @ v
        elif q.device.type == "cpu":
            # Few words per pixel: the (N, L) weights are small, and one fused bias + scaled product
            # beats SDPA's CPU kernel, whose backward is slow for many queries and few keys.
            logits = torch.baddbmm(bias.expand(b, h, n, length).reshape(b * h, n, length), q.reshape(b * h, n, -1),
                                   k.reshape(b * h, length, -1).transpose(1, 2), alpha=self.key_dim**-0.5)
            attended = torch.bmm(logits.softmax(dim=-1), v.reshape(b * h, length, -1)).view(b, h, n, -1)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.key_dim**-0.5)
        attended = attended.transpose(1, 2).reshape(b, n, self.value_dim)
        return token_instance_norm(self.out(attended))


class PixelWordAttention(nn.Module):
    """LAVT's PWAM: ``GELU(Linear(GELU(Linear(visual)) * LanguageAttention(visual, words)))``."""

    def __init__(self, dim: int, text_dim: int, *, heads: int = 1, dropout: float = 0.0, query_extra: int = 0,
                 faithful: bool = False) -> None:
        super().__init__()
        self.visual_proj = nn.Sequential(Pointwise(dim, dim), nn.GELU(), nn.Dropout(dropout))
        self.attention = LanguageAttention(dim, text_dim, dim, dim, dim, heads=heads, query_extra=query_extra,
                                           faithful=faithful)
        self.out = nn.Sequential(Pointwise(dim, dim), nn.GELU(), nn.Dropout(dropout))

    def forward(self, visual: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor,
                query_extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.visual_proj(visual) * self.attention(visual, words, word_mask, query_extra))


class LanguageGate(nn.Module):
    """LAVT's language gate: ``x * tanh(Linear(ReLU(Linear(x))))`` (no biases)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.ReLU(), nn.Linear(dim, dim, bias=False),
                                  nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x) * x


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    # In-place ReLU: BN's backward reads its input, not its output, so the output need not be kept twice.
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True))


def top_down_levels(channels: list[int] | tuple[int, ...], hidden: int) -> tuple[nn.ModuleList, int]:
    """The levels of LAVT's top-down decoder for stage ``channels`` (finest first), coarsest level
    first: two 3x3 conv-BN-ReLU at width ``hidden`` on [upsampled map, skip]; and the output width."""
    *finer, coarsest = channels
    levels = nn.ModuleList()
    previous = coarsest
    for ch in reversed(finer):
        levels.append(nn.Sequential(_conv_bn_relu(previous + ch, hidden), _conv_bn_relu(hidden, hidden)))
        previous = hidden
    return levels, previous


def top_down_step(level: nn.Module, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """One decoder level: upsample ``x`` to ``skip`` (bilinear, ``align_corners=True`` as in LAVT),
    concatenate, convolve."""
    x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
    return level(torch.cat([x, skip], dim=1))


class LAVTDecoder(nn.Module):
    """LAVT's top-down decoder: from the coarsest map, upsample, concat the next, two 3x3 convs.

    ``channels`` are the stage channels finest first (Swin-B: 128, 256, 512, 1024). Every conv is
    3x3 without bias + BN + ReLU at width ``hidden`` (512 in LAVT); a 1x1 conv gives one
    foreground logit at the finest map's resolution (1/4 of the input). Upsampling is bilinear
    with ``align_corners=True`` as in the official decoder.
    """

    def __init__(self, channels: list[int] | tuple[int, ...], hidden: int = 512) -> None:
        super().__init__()
        self.levels, width = top_down_levels(channels, hidden)
        self.classifier = nn.Conv2d(width, 1, 1)
        self.checkpointing = False  # recompute each level in the backward pass (see set_checkpointing)

    def set_checkpointing(self, enabled: bool) -> None:
        self.checkpointing = bool(enabled)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        *finer, x = features
        for level, skip in zip(self.levels, reversed(finer), strict=True):
            if self.checkpointing and self.training:
                x = checkpointed(top_down_step, level, x, skip, state=level)
            else:
                x = top_down_step(level, x, skip)
        return self.classifier(x)


def init_lavt_weights(module: nn.Module) -> None:
    """LAVT's init of new layers: truncated normal (std 0.02) for Linear weights with zero bias,
    LayerNorm 1/0; 1x1 convs (:class:`Pointwise`, ``nn.Conv*``) keep PyTorch's default init."""
    for m in module.modules():
        if isinstance(m, nn.Linear) and not isinstance(m, Pointwise):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
