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


def class_weighted_ce(logits: torch.Tensor, target: torch.Tensor, *,
                      class_weights: tuple[float, float] = (0.9, 1.1)) -> torch.Tensor:
    """Class-weighted cross-entropy of the two-logit softmax (0, z) on one foreground logit z:
    PyTorch's weighted mean Σ wᵧ·(−log pᵧ) / Σ wᵧ with (bg, fg) weights ``class_weights``
    (LAVT-RIS's loss, and the CE term of :func:`rrsis_official_loss`)."""
    if logits.dim() == 4:
        logits = logits[:, 0]
    z = logits.float()
    fg = target.float()
    w_bg, w_fg = class_weights
    pixel_weights = w_fg * fg + w_bg * (1 - fg)
    return -(pixel_weights * (fg * F.logsigmoid(z) + (1 - fg) * F.logsigmoid(-z))).sum() / pixel_weights.sum()


def rrsis_official_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    class_weights: tuple[float, float] = (0.9, 1.1),
    ce_weight: float = 0.9,
    dice_weight: float = 0.1,
    eps: float = 1e-6,
) -> dict[str, torch.Tensor]:
    """The LAVT/RMSIN/FIANet loss, expressed on one foreground logit.

    The official models predict two logits (background, foreground); with logits (0, z) the
    softmax equals (1 − σ(z), σ(z)), so one logit loses nothing. The loss is
    ``ce_weight`` × class-weighted cross-entropy (weights (bg, fg) = ``class_weights``, PyTorch's
    weighted mean: Σ wᵧ·(−log pᵧ) / Σ wᵧ) + ``dice_weight`` × Dice, where Dice is
    1 − (2·Σpg + eps) / (Σp + Σg + eps) per image and per class, **summed** over the batch and both
    classes (so it grows with the batch size, as in the official code).
    """
    if logits.dim() == 4:
        logits = logits[:, 0]
    z = logits.float()
    fg = target.float()
    ce = class_weighted_ce(z, fg, class_weights=class_weights)
    p_fg = torch.sigmoid(z).flatten(1)
    dice = z.new_zeros(())
    for prob, truth in ((p_fg, fg.flatten(1)), (1 - p_fg, 1 - fg.flatten(1))):
        inter = (prob * truth).sum(1)
        dice = dice + (1 - (2 * inter + eps) / (prob.sum(1) + truth.sum(1) + eps)).sum()
    return {"loss": ce_weight * ce + dice_weight * dice, "ce": ce.detach(), "dice": dice.detach()}
