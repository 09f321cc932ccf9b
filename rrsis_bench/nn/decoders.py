"""Mask decoders: multi-scale features in, one foreground logit map out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class FPNDecoder(nn.Module):
    """Top-down FPN: lateral 1x1 convs, upsample-and-add from the coarsest scale, a 3x3 conv per
    level, and a head (3x3 conv + 1x1) giving one logit at the finest input scale."""

    def __init__(self, in_channels: Sequence[int], dim: int = 64) -> None:
        super().__init__()
        self.lateral = nn.ModuleList([nn.Conv2d(c, dim, 1) for c in in_channels])
        self.smooth = nn.ModuleList([conv_bn_relu(dim, dim) for _ in in_channels])
        self.head = nn.Sequential(conv_bn_relu(dim, dim), nn.Conv2d(dim, 1, 1))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.smooth[-1](self.lateral[-1](features[-1]))
        for level in range(len(features) - 2, -1, -1):
            lateral = self.lateral[level](features[level])
            x = F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            x = self.smooth[level](lateral + x)
        return self.head(x)
