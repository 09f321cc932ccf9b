"""Language-conditioned fusion of a visual feature map with word features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def coordinate_maps(batch: int, height: int, width: int, device, dtype) -> torch.Tensor:
    """Two channels holding x and y in [-1, 1]: lets a fusion block read absolute position."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).unsqueeze(0).expand(batch, -1, -1, -1)


def masked_mean(words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid words: ``words`` (B, L, D), ``mask`` (B, L) of 0/1."""
    weights = mask.to(words.dtype).unsqueeze(-1)
    return (words * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class PixelWordFusion(nn.Module):
    """Pixels attend to the words; the attended language modulates the pixels, gated per channel.

    1. query = 1x1 conv of [visual, x, y] (coordinates make "left"/"top" learnable);
    2. language per pixel = softmax(q·k / sqrt(d)) · v over the valid words;
    3. fused = GELU(1x1 conv(visual)) ⊙ language (multiplicative, as in pixel-word attention);
    4. sentence-level FiLM (scale, shift from the mean word) on the fused map;
    5. output = visual projection + tanh-gate(fused) ⊙ fused.
    """

    def __init__(self, visual_dim: int, text_dim: int, dim: int, *, use_coordinates: bool = True) -> None:
        super().__init__()
        extra = 2 if use_coordinates else 0
        self.use_coordinates = use_coordinates
        self.visual_proj = nn.Sequential(nn.Conv2d(visual_dim, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.GELU())
        self.query = nn.Conv2d(visual_dim + extra, dim, 1)
        self.key = nn.Linear(text_dim, dim)
        self.value = nn.Linear(text_dim, dim)
        self.film = nn.Linear(text_dim, 2 * dim)
        self.out = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.GELU())
        self.gate = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.Tanh())

    def forward(self, visual: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        b, _, h, w = visual.shape
        query_in = visual
        if self.use_coordinates:
            query_in = torch.cat([visual, coordinate_maps(b, h, w, visual.device, visual.dtype)], dim=1)
        q = self.query(query_in).flatten(2).transpose(1, 2)  # (B, HW, d)
        k, v = self.key(words), self.value(words)  # (B, L, d)
        attn_mask = word_mask.bool()[:, None, :]  # (B, 1, L): True = attend
        language = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        language = language.transpose(1, 2).reshape(b, -1, h, w)
        projected = self.visual_proj(visual)
        fused = projected * language
        scale, shift = self.film(masked_mean(words, word_mask)).chunk(2, dim=-1)
        fused = fused * (1 + scale[..., None, None]) + shift[..., None, None]
        fused = self.out(fused)
        return projected + self.gate(fused) * fused


class JointContext(nn.Module):
    """Self-attention over the pixels of one (coarse) map together with the words.

    Per-pixel fusion sees one pixel at a time; superlatives ("the leftmost tank") and relations
    ("the car left of the pool") need the pixels of one object to see the others. Pixel tokens get
    a learned embedding of their (x, y) position; padded words are masked out as keys.
    """

    def __init__(self, dim: int, text_dim: int, *, layers: int = 1, heads: int = 4) -> None:
        super().__init__()
        self.words = nn.Linear(text_dim, dim)
        self.position = nn.Linear(2, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, visual: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = visual.shape
        coords = coordinate_maps(b, h, w, visual.device, visual.dtype).flatten(2).transpose(1, 2)
        pixels = visual.flatten(2).transpose(1, 2) + self.position(coords)
        tokens = torch.cat([pixels, self.words(words)], dim=1)
        padding = torch.cat([torch.zeros(b, h * w, dtype=torch.bool, device=visual.device), ~word_mask.bool()], 1)
        out = self.encoder(tokens, src_key_padding_mask=padding)[:, : h * w]
        return visual + out.transpose(1, 2).reshape(b, c, h, w)
