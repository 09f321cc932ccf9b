"""Segmentation losses on one foreground logit per pixel."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss, averaged over the batch: 1 − (2·Σpt + eps) / (Σp + Σt + eps) per sample."""
    prob = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    inter = (prob * target).sum(1)
    denom = prob.sum(1) + target.sum(1)
    return (1 - (2 * inter + eps) / (denom + eps)).mean()


def bce_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, *, bce_weight: float = 1.0, dice_weight: float = 1.0
) -> dict[str, torch.Tensor]:
    """``bce_weight`` × binary cross-entropy + ``dice_weight`` × Dice; returns all three terms.

    ``logits`` (B, 1, H, W) or (B, H, W); ``target`` of the same spatial size with values in {0, 1}.
    """
    if logits.dim() == 4:
        logits = logits[:, 0]
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    dice = dice_loss(logits, target)
    return {"loss": bce_weight * bce + dice_weight * dice, "bce": bce.detach(), "dice": dice.detach()}
