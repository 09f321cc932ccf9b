"""FIANet (Lei et al., IEEE TGRS 2025): fine-grained image-text alignment for RRSIS.

Built on LAVT (Swin-B + BERT-base, LAVT decoder). The expression is encoded three times by the
text encoder, with the full mask (context), the ground-object mask and the spatial-position mask
(token masks from :mod:`rrsis_bench.data.text`). Read top to bottom:

- :class:`ChannelGate` - SE-style per-channel weights of the stage output (reduction 8).
- :class:`ObjectPositionAlignment` (OPAB) - object cross-attention with a tanh gate, times a
  CBAM-style spatial map from the position cross-attention.
- :class:`FineGrainedAlignment` (FIAM) - after every stage: context pixel-word attention (PWAM)
  with a tanh gate + OPAB, scaled per channel, added to the visual stream. As in the official
  model the stage's skip feature is the PWAM output, so the fused stream of the last stage is
  computed and discarded there; ``faithful=false`` skips that dead compute (same outputs). Its
  modules never get a gradient and are built frozen, like the projection the official OPAB
  declares and never calls (``unused_layers``).
- :class:`ScaleAwareGate` and :class:`TextAwareMultiscaleEnhancement` (TMEM) - all stages pooled
  to the coarsest grid, concatenated, reduced 4x, ``num_tmem`` blocks of text cross-attention +
  MLP, expanded, split and injected back into every scale with a TopFormer-style gate.
- :class:`FIANet` and its configurations: ``fianet`` (faithful), ``fianet_lite`` (CPU size:
  EfficientNet-Lite0 + MiniLM, the same modules), ``test_fianet`` (tiny, random init).

Ablation switches: ``fiam`` (false: LAVT's fusion, ``x + gate(PWAM(x))``, after every stage: the
paper's LAVT base), ``object_branch``, ``position_branch`` (OPAB halves), ``tmem`` and ``num_tmem``.
With the object branch off the spatial map scales the gated context instead; with the position
branch off OPAB is the gated object attention alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from rrsis_bench.nn.interleaved import TINY_SWIN, InterleavedFusionModel
from rrsis_bench.nn.lavt import LanguageAttention, LanguageGate, PixelWordAttention, coordinate_tokens
from rrsis_bench.nn.official_lavt import Rule
from rrsis_bench.nn.text import MINILM, TINY_TEXT_CONFIG

from .official import fianet_rules

FIANET_PAPER = ("Lei et al., Exploring Fine-Grained Image-Text Alignment for Referring Remote Sensing Image "
                "Segmentation, IEEE TGRS 63 (2025), doi:10.1109/TGRS.2024.3522293")
FIANET_CODE = "https://github.com/Shaosifan/FIANet"
EMPTY: Mapping = MappingProxyType({})  # backbone_kwargs of fianet_lite: timm's own settings


class ChannelGate(nn.Module):
    """Per-channel weights in (0, 1) from the token mean: Linear C->C/r, ReLU, Linear C/r->C, sigmoid."""

    def __init__(self, dim: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(dim // reduction, 1)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim), nn.Sigmoid())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(tokens.mean(dim=1))  # (B, C)


class ObjectPositionAlignment(nn.Module):
    """OPAB: gated cross-attention to the ground-object words x a spatial map from the position words."""

    def __init__(self, dim: int, text_dim: int, *, heads: int = 1, object_branch: bool = True,
                 position_branch: bool = True, unused_layers: bool = False, query_extra: int = 0,
                 faithful: bool = False) -> None:
        super().__init__()
        self.object_branch, self.position_branch = object_branch, position_branch
        if object_branch:
            self.object_attention = LanguageAttention(dim, text_dim, dim, dim, dim, heads=heads,
                                                      query_extra=query_extra, faithful=faithful)
            self.object_gate = LanguageGate(dim)
        if position_branch:
            self.position_attention = LanguageAttention(dim, text_dim, dim, dim, dim, heads=heads,
                                                        query_extra=query_extra, faithful=faithful)
            self.spatial = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        if unused_layers:
            # The official block declares this projection and never calls it; kept (frozen: it can get no
            # gradient) only so the faithful parameter count and checkpoint layout match.
            self.unused_embedding = nn.Linear(dim, dim, bias=False)

    def spatial_map(self, tokens: torch.Tensor, size: tuple[int, int], words, word_mask, coords=None) -> torch.Tensor:
        """(B, HW, 1) in (0, 1): sigmoid(conv3x3([mean_c, max_c] of the position attention))."""
        attended = self.position_attention(tokens, words, word_mask, coords)  # (B, HW, C)
        pooled = torch.stack([attended.mean(dim=-1), attended.amax(dim=-1)], dim=1)  # (B, 2, HW)
        pooled = pooled.view(pooled.shape[0], 2, *size)
        return torch.sigmoid(self.spatial(pooled)).flatten(2).transpose(1, 2)

    def forward(self, tokens, size, text: dict, gated_context: torch.Tensor, coords=None) -> torch.Tensor | None:
        out = None
        if self.object_branch:
            out = self.object_gate(self.object_attention(tokens, text["object"], text["object_mask"], coords))
        if self.position_branch:
            weights = self.spatial_map(tokens, size, text["position"], text["position_mask"], coords)
            out = (out if out is not None else gated_context) * weights
        return out


class FineGrainedAlignment(nn.Module):
    """FIAM: ``x + w * (gate(PWAM(x, context)) + OPAB(x, object, position))``; skip = PWAM output.

    With ``fine_grained=False`` (the ``fiam=false`` ablation) it is LAVT's fusion instead,
    ``x + gate(PWAM(x, context))``: no channel gate and no OPAB, only the context text."""

    def __init__(self, dim: int, text_dim: int, *, heads: int = 1, dropout: float = 0.0, object_branch: bool = True,
                 position_branch: bool = True, unused_layers: bool = False, coordinates: bool = False,
                 fine_grained: bool = True, faithful: bool = False) -> None:
        super().__init__()
        extra = 2 if coordinates else 0
        self.coordinates, self.fine_grained = coordinates, fine_grained
        # Registration order = initialisation order (and the official key order): keep it as the official one.
        if fine_grained:
            self.channel_gate = ChannelGate(dim)
        self.context = PixelWordAttention(dim, text_dim, heads=heads, dropout=dropout, query_extra=extra,
                                          faithful=faithful)
        self.context_gate = LanguageGate(dim)
        if fine_grained:
            self.object_position = ObjectPositionAlignment(
                dim, text_dim, heads=heads, object_branch=object_branch, position_branch=position_branch,
                unused_layers=unused_layers, query_extra=extra, faithful=faithful)

    def stream_modules(self) -> list[nn.Module]:
        """The modules that only build the fused stream (none of them reads into the skip feature)."""
        return [self.channel_gate, self.context_gate, self.object_position] if self.fine_grained else [self.context_gate]

    def forward(self, tokens, size, text: dict, need_stream: bool = True):
        coords = coordinate_tokens(tokens.shape[0], size, tokens.device, tokens.dtype) if self.coordinates else None
        context = self.context(tokens, text["context"], text["context_mask"], coords)
        if not need_stream:
            return context, None
        gated = self.context_gate(context)
        if not self.fine_grained:
            return context, tokens + gated
        weights = self.channel_gate(tokens)
        opab = self.object_position(tokens, size, text, gated, coords)
        added = gated if opab is None else gated + opab
        return context, tokens + added * weights[:, None, :]


class ScaleAwareGate(nn.Module):
    """TopFormer-style injection: ``BN(conv(local)) * hsigmoid(BN(conv(g))) + BN(conv(g))``, g upsampled."""

    def __init__(self, dim: int, global_dim: int) -> None:
        super().__init__()

        def conv_bn(c_in):  # the official 1x1 convs keep their bias before the BatchNorm
            return nn.Sequential(nn.Conv2d(c_in, dim, 1), nn.BatchNorm2d(dim))

        self.local_embedding, self.global_embedding, self.global_act = conv_bn(dim), conv_bn(global_dim), conv_bn(global_dim)

    def forward(self, local: torch.Tensor, global_: torch.Tensor) -> torch.Tensor:
        size = local.shape[-2:]
        act = F.interpolate(F.hardsigmoid(self.global_act(global_)), size=size, mode="bilinear", align_corners=False)
        feat = F.interpolate(self.global_embedding(global_), size=size, mode="bilinear", align_corners=False)
        return self.local_embedding(local) * act + feat


class TextCrossAttentionBlock(nn.Module):
    """Pre-norm block: tokens += attention(LN(tokens), words); tokens += MLP(LN(tokens)) (2x hidden)."""

    def __init__(self, dim: int, text_dim: int, *, heads: int = 1, query_extra: int = 0, faithful: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = LanguageAttention(dim, text_dim, dim, dim, dim, heads=heads, query_extra=query_extra,
                                           faithful=faithful)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, tokens, words, word_mask, coords=None):
        tokens = tokens + self.attention(self.norm1(tokens), words, word_mask, coords)
        return tokens + self.mlp(self.norm2(tokens))


class TextAwareMultiscaleEnhancement(nn.Module):
    """TMEM: pool every scale to the coarsest grid, concat (sum C), 1x1 conv to sum C / 4,
    ``num_blocks`` text cross-attention blocks, BN, 1x1 conv back to sum C, split per scale and
    inject into each scale with a :class:`ScaleAwareGate`."""

    def __init__(self, channels: list[int], text_dim: int, *, num_blocks: int = 1, heads: int = 1,
                 coordinates: bool = False, faithful: bool = False) -> None:
        super().__init__()
        total = sum(channels)
        dim = total // 4
        self.channels = list(channels)
        self.coordinates = coordinates
        self.reduce = nn.Conv2d(total, dim, 1)
        self.blocks = nn.ModuleList(TextCrossAttentionBlock(dim, text_dim, heads=heads,
                                                            query_extra=2 if coordinates else 0, faithful=faithful)
                                    for _ in range(num_blocks))
        self.expand = nn.Sequential(nn.BatchNorm2d(dim), nn.Conv2d(dim, total, 1))
        self.gates = nn.ModuleList(ScaleAwareGate(c, c) for c in channels)

    def forward(self, maps: list[torch.Tensor], words, word_mask) -> list[torch.Tensor]:
        size = maps[-1].shape[-2:]
        pooled = torch.cat([F.adaptive_avg_pool2d(m, size) for m in maps], dim=1)
        x = self.reduce(pooled)
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        coords = coordinate_tokens(b, (h, w), x.device, x.dtype) if self.coordinates else None
        for block in self.blocks:
            tokens = block(tokens, words, word_mask, coords)
        x = self.expand(tokens.transpose(1, 2).reshape(b, c, h, w))
        chunks = torch.split(x, self.channels, dim=1)
        return [gate(m, g) for gate, m, g in zip(self.gates, maps, chunks, strict=True)]


class FIANet(InterleavedFusionModel):
    """FIANet on any staged timm backbone (see the module docstring)."""

    paper, code_url = FIANET_PAPER, FIANET_CODE
    #: The ablations of docs/methods/fianet-lavt.md and docs/claims.md (factory overrides): FIANet's two
    #: modules, the two OPAB branches, and both modules off (the paper's LAVT base).
    ablations = MappingProxyType({
        "no_fiam": MappingProxyType({"fiam": False}), "no_tmem": MappingProxyType({"tmem": False}),
        "no_object_branch": MappingProxyType({"object_branch": False}),
        "no_position_branch": MappingProxyType({"position_branch": False}),
        "lavt_base": MappingProxyType({"fiam": False, "tmem": False}),
    })

    def __init__(
        self,
        *,
        fusion_heads: int = 1,
        fusion_dropout: float = 0.0,
        fiam: bool = True,
        object_branch: bool = True,
        position_branch: bool = True,
        tmem: bool = True,
        num_tmem: int = 3,
        unused_layers: bool = True,
        coordinates: bool = False,
        **options,
    ) -> None:
        """``options``: the shared settings of :class:`InterleavedFusionModel` (faithful by default)."""
        super().__init__(**options)
        faithful = self.faithful
        channels, text_dim = self.backbone.channels, self.text.dim
        self.fusions = nn.ModuleList(
            FineGrainedAlignment(c, text_dim, heads=fusion_heads, dropout=fusion_dropout, object_branch=object_branch,
                                 position_branch=position_branch, unused_layers=unused_layers,
                                 coordinates=coordinates, fine_grained=fiam, faithful=faithful)
            for c in channels
        )
        self.tmem = (TextAwareMultiscaleEnhancement(channels, text_dim, num_blocks=num_tmem, heads=fusion_heads,
                                                    coordinates=coordinates, faithful=faithful)
                     if tmem and num_tmem > 0 else None)
        # Without FIAM there is no OPAB, so neither the ground-object nor the spatial-position text is read.
        self.fiam = fiam
        self.object_branch, self.position_branch = object_branch and fiam, position_branch and fiam
        object_branch, position_branch = self.object_branch, self.position_branch
        # The token masks of the ground-object and spatial-position words, for the branches that are on.
        needs = (("object_mask",) if object_branch else ()) + (("position_mask",) if position_branch else ())
        self.spec = dataclasses.replace(self.spec, inputs=needs)
        self.init_new_layers()

    def encode_text(self, batch: dict) -> dict[str, torch.Tensor]:
        full = batch["attention_mask"]
        text = {"context": self.text.encode_batch(batch, full), "context_mask": full}
        if self.object_branch:
            text["object"], text["object_mask"] = self.text.encode_batch(batch, batch["object_mask"]), batch["object_mask"]
        if self.position_branch:
            text["position"], text["position_mask"] = self.text.encode_batch(batch, batch["position_mask"]), batch["position_mask"]
        return text

    def fuse_stage(self, index, tokens, size, text, need_stream):
        return self.fusions[index](tokens, size, text, need_stream=need_stream)

    def enhance(self, maps, text):
        if self.tmem is None:
            return maps
        return self.tmem(maps, text["context"], text["context_mask"])

    def stream_modules(self, index: int) -> list[nn.Module]:
        return self.fusions[index].stream_modules()

    def never_called_modules(self) -> list[nn.Module]:
        blocks = [fusion.object_position for fusion in self.fusions if fusion.fine_grained]
        return [block.unused_embedding for block in blocks if hasattr(block, "unused_embedding")]

    def official_layout(self) -> list[Rule]:
        """The official FIANet checkpoint layout (see :mod:`rrsis_bench.methods.fianet.official`)."""
        return fianet_rules()


# Factories: their keyword defaults are the configuration (conf/method/<name>.yaml repeats them);
# any other keyword goes to FIANet.
def create_fianet(**options) -> FIANet:
    """Faithful FIANet: Swin-B (window 12, ImageNet-22K 384 weights) + BERT-base, 480x480, num_tmem 3."""
    return FIANet(**options)


def create_fianet_lite(*, backbone: str = "efficientnet_lite0", pretrained: bool = True,
                       backbone_kwargs: Mapping | None = EMPTY, out_indices: Sequence[int] | None = (0, 1, 2, 3),
                       frozen_stages: int = 2, text_encoder: str = MINILM, text_trainable_layers: int | None = 0,
                       num_tmem: int = 1, unused_layers: bool = False, coordinates: bool = True,
                       decoder_hidden: int = 32, loss: str = "bce_dice", head_lr_scale: float = 1.0,
                       **options) -> FIANet:
    """CPU-size FIANet: EfficientNet-Lite0 (bundled ImageNet weights) + MiniLM (bundled), same modules."""
    return FIANet(backbone=backbone, pretrained=pretrained, backbone_kwargs=backbone_kwargs,
                  out_indices=list(out_indices) if out_indices is not None else None, frozen_stages=frozen_stages,
                  text_encoder=text_encoder, text_trainable_layers=text_trainable_layers, num_tmem=num_tmem,
                  unused_layers=unused_layers, coordinates=coordinates, decoder_hidden=decoder_hidden, loss=loss,
                  head_lr_scale=head_lr_scale, **options)


def create_test_fianet(*, backbone: str = "swin_tiny_patch4_window7_224", pretrained: bool = False,
                       backbone_kwargs: Mapping | None = TINY_SWIN, text_encoder: str = MINILM,
                       text_pretrained: bool = False, text_config: Mapping | None = TINY_TEXT_CONFIG,
                       text_trainable_layers: int | None = None, num_tmem: int = 1, decoder_hidden: int = 16,
                       **options) -> FIANet:
    """Tiny FIANet: 4-stage Swin of width 16, a 2-layer 32-d text encoder, decoder width 16."""
    return FIANet(backbone=backbone, pretrained=pretrained, backbone_kwargs=backbone_kwargs, text_encoder=text_encoder,
                  text_pretrained=text_pretrained, text_config=text_config,
                  text_trainable_layers=text_trainable_layers, num_tmem=num_tmem, decoder_hidden=decoder_hidden,
                  **options)
