"""The cross-modal instance contrastive loss of the AlignFormer-style method.

What the abstracts give: a contrastive loss at the instance level, between the linguistic centre and
the pixel embeddings, that lessens the effect of pixels in ambiguous regions. Everything else here is
our choice (docs/methods/alignformer.md gives the reasons):

- similarities are cosines of L2-normalised embeddings divided by the grouping temperature ``tau``,
  the quantity the mask logits are made of;
- **centre → pixels** (InfoNCE with many positives, one term per positive pixel): each pixel of the
  referred object must score above the pixels of its image that are not the object,
  ``-log(e^{s_p} / (e^{s_p} + sum_n w_n e^{s_n}))``; the other instances of the same class (labels >= 2
  of the instance map) are the hard negatives and weigh ``hard_negative_weight`` times a background
  pixel;
- **pixel → centres**: each pixel of the referred object must be closer to its own sample's centre
  than to the centres of the other samples in the batch (samples whose target mask is identical, i.e.
  another expression of the same object, are not negatives);
- **ambiguous pixels** weigh ``ambiguity_weight`` instead of 1, as positives and as negatives:
  ``boundary`` = the band around the target's edge (dilation minus erosion by ``radius`` pixels at the
  embedding resolution), ``uncertain`` = pixels whose predicted probability lies in (0.25, 0.75),
  ``both`` = either, ``none`` = no down-weighting.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AMBIGUITY_RULES = ("boundary", "uncertain", "both", "none")


def downsample_target(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) 0/1 mask → (B, h, w) bool: a cell is the object when at least half of its area is."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask > 0.5
    return F.interpolate(mask[:, None].float(), size=size, mode="area")[:, 0] >= 0.5


def downsample_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) integer label map → (B, h, w) by nearest neighbour."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.long()
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def boundary_band(target: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, h, w) bool: pixels within ``radius`` (Chebyshev) of the target's edge, inside or outside."""
    x = target[:, None].float()
    k = 2 * radius + 1
    dilated = F.max_pool2d(x, k, stride=1, padding=radius)
    eroded = -F.max_pool2d(-x, k, stride=1, padding=radius)
    return (dilated - eroded)[:, 0] > 0


def ambiguity_weights(target: torch.Tensor, coarse_logits: torch.Tensor | None, *, rule: str, weight: float,
                      radius: int) -> torch.Tensor:
    """(B, h, w) pixel weights: ``weight`` on ambiguous pixels (see the module docstring), 1 elsewhere."""
    if rule not in AMBIGUITY_RULES:
        raise ValueError(f"ambiguity={rule!r} is not a rule; choose one of {', '.join(AMBIGUITY_RULES)}.")
    ambiguous = torch.zeros_like(target, dtype=torch.bool)
    if rule in ("boundary", "both"):
        ambiguous |= boundary_band(target, radius)
    if rule in ("uncertain", "both"):
        if coarse_logits is None:
            raise ValueError("ambiguity='uncertain' needs the coarse logits of the prediction.")
        prob = torch.sigmoid(coarse_logits.detach().float())
        ambiguous |= (prob > 0.25) & (prob < 0.75)
    ones = torch.ones_like(target, dtype=torch.float32)
    return torch.where(ambiguous, ones * weight, ones)


def instance_contrastive_loss(
    pixels: torch.Tensor,
    centres: torch.Tensor,
    mask: torch.Tensor,
    *,
    temperature: torch.Tensor | float,
    instance_map: torch.Tensor | None = None,
    coarse_logits: torch.Tensor | None = None,
    hard_negative_weight: float = 2.0,
    batch_negatives: bool = True,
    ambiguity: str = "boundary",
    ambiguity_weight: float = 0.25,
    radius: int = 1,
) -> dict[str, torch.Tensor]:
    """Centre↔pixel contrastive terms (see the module docstring).

    ``pixels`` (B, E, h, w) and ``centres`` (B, E) are L2-normalised; ``mask`` (B, H, W) is the target
    at input size (downsampled here by area); ``instance_map`` (B, H, W) labels the instances of the
    referred class (1 = the referred object, >= 2 the others; downsampled by nearest); ``coarse_logits``
    (B, 1, h, w) are needed by the ``uncertain`` rule. Returns ``{"contrast": total, "centre_to_pixels",
    "pixel_to_centres"}`` (the last two detached); samples without a target pixel at (h, w) add nothing.
    """
    b, _, h, w = pixels.shape
    target = downsample_target(mask, (h, w)).flatten(1)  # (B, N)
    weights = ambiguity_weights(target.view(b, h, w), None if coarse_logits is None else coarse_logits[:, 0],
                                rule=ambiguity, weight=ambiguity_weight, radius=radius).flatten(1)
    flat = pixels.flatten(2).float()  # (B, E, N)
    own = torch.einsum("be,ben->bn", centres.float(), flat) / temperature  # s_p for every pixel of image i

    negative_weights = weights * (~target)
    if instance_map is not None:
        hard = (downsample_labels(instance_map, (h, w)).flatten(1) >= 2) & ~target
        negative_weights = negative_weights * (1.0 + (hard_negative_weight - 1.0) * hard.float())
    # log sum_n w_n e^{s_n} over each image's negatives; a pixel of weight 0 gets log w = -1e4 instead of
    # -inf, so an image without negatives gives a zero term with finite gradients
    log_w = torch.log(negative_weights.clamp_min(1e-30)).masked_fill(negative_weights <= 0, -1e4)
    log_neg = torch.logsumexp(own + log_w, dim=1, keepdim=True)
    per_pixel = F.softplus(log_neg - own)  # -log(e^s / (e^s + sum_n w_n e^{s_n}))
    positive_weights = weights * target
    has_positive = positive_weights.sum(1) > 0
    denominator = positive_weights.sum(1).clamp_min(1e-12)
    centre_to_pixels = ((per_pixel * positive_weights).sum(1) / denominator)[has_positive]

    terms = [centre_to_pixels]
    pixel_to_centres = own.new_zeros(0)
    if batch_negatives and b > 1:
        every = torch.einsum("je,ben->bjn", centres.float(), flat) / temperature  # (B_pixels, B_centres, N)
        same_object = (target[:, None, :] == target[None, :, :]).all(-1)  # another expression of the same target
        exclude = same_object & ~torch.eye(b, dtype=torch.bool, device=pixels.device)
        every = every.masked_fill(exclude[:, :, None], float("-inf"))
        log_prob = own - torch.logsumexp(every, dim=1)  # (B, N)
        pixel_to_centres = (-(log_prob * positive_weights).sum(1) / denominator)[has_positive]
        terms.append(pixel_to_centres)
    total = sum(term.mean() if term.numel() else own.sum() * 0.0 for term in terms)
    return {
        "contrast": total,
        "centre_to_pixels": (centre_to_pixels.mean() if centre_to_pixels.numel() else own.new_zeros(())).detach(),
        "pixel_to_centres": (pixel_to_centres.mean() if pixel_to_centres.numel() else own.new_zeros(())).detach(),
    }
