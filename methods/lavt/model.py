"""LAVT (Yang et al., CVPR 2022): language-aware visual encoding with Swin-B + BERT-base.

After the blocks of every backbone stage, pixel-word attention (PWAM) fuses the words into the
visual tokens; a tanh language gate adds the fused tokens back into the visual stream, which
continues to the next stage. The PWAM output (through a per-stage LayerNorm) is the stage's skip
feature for the decoder, which predicts at 1/4 resolution; logits are upsampled bilinearly to the
input. Loss: the official 0.9 x weighted CE + 0.1 x Dice (LAVT itself trained with CE only;
``loss=bce_dice`` is the other choice). The last stage's gated stream is computed and discarded by
the official model; ``faithful=false`` skips it (same outputs).

``lavt`` is the faithful configuration (Swin-B window 12 at 480x480, BERT-base with layers 0-9
trained, decoder width 512): 227.74 M parameters, as published.
"""

from __future__ import annotations

from torch import nn

from rrsis_bench.nn.interleaved import TINY_SWIN, InterleavedFusionModel
from rrsis_bench.nn.lavt import LanguageGate, PixelWordAttention
from rrsis_bench.nn.text import TINY_TEXT_CONFIG

LAVT_PAPER = "Yang et al., LAVT: Language-Aware Vision Transformer for Referring Image Segmentation, CVPR 2022"
LAVT_CODE = "https://github.com/yz93/LAVT-RIS"


class LAVT(InterleavedFusionModel):
    """LAVT on any staged timm backbone (see the module docstring)."""

    def __init__(self, *, fusion_heads: int = 1, fusion_dropout: float = 0.0, **options) -> None:
        """``options``: the shared settings of :class:`InterleavedFusionModel` (faithful by default)."""
        super().__init__(paper=LAVT_PAPER, code_url=LAVT_CODE, **options)
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


def create_lavt(**kwargs) -> LAVT:
    """Faithful LAVT: Swin-B (window 12, ImageNet-22K 384 weights) + BERT-base, 480x480."""
    return LAVT(**kwargs)




def create_test_lavt(**kwargs) -> LAVT:
    """Tiny LAVT: 4-stage Swin of width 16, a 2-layer 32-d text encoder, decoder width 16."""
    options = dict(backbone="swin_tiny_patch4_window7_224", pretrained=False, backbone_kwargs=TINY_SWIN,
                   text_encoder="minilm", text_pretrained=False, text_config=TINY_TEXT_CONFIG,
                   text_trainable_layers=None, decoder_hidden=16)
    options.update(kwargs)
    return LAVT(**options)


