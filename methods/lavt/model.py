"""LAVT (Yang et al., CVPR 2022): language-aware visual encoding with Swin-B + BERT-base.

After the blocks of every backbone stage, pixel-word attention (PWAM) fuses the words into the
visual tokens; a tanh language gate adds the fused tokens back into the visual stream, which
continues to the next stage. The PWAM output (through a per-stage LayerNorm) is the stage's skip
feature for the decoder, which predicts at 1/4 resolution; logits are upsampled bilinearly to the
input. Loss: ``loss=official`` (default) is the RRSIS pipeline's 0.9 x weighted CE + 0.1 x Dice
(RMSIN/FIANet, with which the RRSIS papers re-trained LAVT); ``loss=ce`` is LAVT-RIS's own
class-weighted CE; ``loss=bce_dice`` the other choice. The last stage's gated stream is computed and
discarded by the official model (its gate never gets a gradient, so it is built frozen);
``faithful=false`` skips it (same outputs).

``lavt`` is the faithful configuration (Swin-B window 12 at 480x480, BERT-base with layers 0-9
trained, decoder width 512): 227.74 M parameters, as published.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from rrsis_bench.nn.interleaved import TINY_SWIN, InterleavedFusionModel
from rrsis_bench.nn.lavt import LanguageGate, PixelWordAttention
from rrsis_bench.nn.official_lavt import Rule
from rrsis_bench.nn.text import MINILM, TINY_TEXT_CONFIG

from .official import lavt_rules

LAVT_PAPER = "Yang et al., LAVT: Language-Aware Vision Transformer for Referring Image Segmentation, CVPR 2022"
LAVT_CODE = "https://github.com/yz93/LAVT-RIS"


class LAVT(InterleavedFusionModel):
    """LAVT on any staged timm backbone (see the module docstring)."""

    paper, code_url = LAVT_PAPER, LAVT_CODE

    def __init__(self, *, fusion_heads: int = 1, fusion_dropout: float = 0.0, **options) -> None:
        """``options``: the shared settings of :class:`InterleavedFusionModel` (faithful by default)."""
        super().__init__(**options)
        faithful = self.faithful
        channels, text_dim = self.backbone.channels, self.text.dim
        self.fusions = nn.ModuleList(
            PixelWordAttention(c, text_dim, heads=fusion_heads, dropout=fusion_dropout, faithful=faithful)
            for c in channels
        )
        self.gates = nn.ModuleList(LanguageGate(c) for c in channels)
        self.init_new_layers()

    def fuse_stage(self, index, tokens, size, text, need_stream):
        fused = self.fusions[index](tokens, text["context"], text["context_mask"])
        if not need_stream:
            return fused, None
        return fused, tokens + self.gates[index](fused)

    def stream_modules(self, index: int) -> list[nn.Module]:
        return [self.gates[index]]

    def official_layout(self) -> list[Rule]:
        """The LAVT-RIS checkpoint layout (see :mod:`rrsis_bench.methods.lavt.official`)."""
        return lavt_rules()


# Factories: their keyword defaults are the configuration (conf/method/<name>.yaml repeats them);
# any other keyword goes to LAVT.
def create_lavt(**options) -> LAVT:
    """Faithful LAVT: Swin-B (window 12, ImageNet-22K 384 weights) + BERT-base, 480x480."""
    return LAVT(**options)


def create_test_lavt(*, backbone: str = "swin_tiny_patch4_window7_224", pretrained: bool = False,
                     backbone_kwargs: Mapping | None = TINY_SWIN, text_encoder: str = MINILM,
                     text_pretrained: bool = False, text_config: Mapping | None = TINY_TEXT_CONFIG,
                     text_trainable_layers: int | None = None, decoder_hidden: int = 16, **options) -> LAVT:
    """Tiny LAVT: 4-stage Swin of width 16, a 2-layer 32-d text encoder, decoder width 16."""
    return LAVT(backbone=backbone, pretrained=pretrained, backbone_kwargs=backbone_kwargs, text_encoder=text_encoder,
                text_pretrained=text_pretrained, text_config=text_config, text_trainable_layers=text_trainable_layers,
                decoder_hidden=decoder_hidden, **options)
