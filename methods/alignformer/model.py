"""AlignFormer-style re-implementation: bidirectional vision-language attention, a linguistic centre
that groups pixels, and a cross-modal instance contrastive loss.

AlignFormer (Wei et al., arXiv 2301.06429 v1; renamed LGFormer in later versions) has no public code
and no reachable full text: this module builds what its abstracts describe and chooses the rest from
the common practice of its time. docs/methods/alignformer.md lists every choice and its reason; cite
results as "AlignFormer-style (re-implementation)". Read top to bottom:

- :class:`PixelToText` - pixels → text: the words (queries) attend to the pixels of a stage and are
  refined by them (multi-head attention, LayerScale residual, pre-norm), so the linguistic features
  take in fine-grained visual detail.
- :class:`VLBA` - vision-language bidirectional attention for one feature map: text → pixels is
  LAVT's pixel-word attention (pixel queries attend to words) with its language gate; pixels → text is
  :class:`PixelToText`. Both directions read the same inputs (simultaneous, as in GLIP's deep fusion),
  so switching one off leaves the other's input unchanged.
- :class:`AlignDecoder` - LAVT's top-down decoder (upsample, concatenate, two 3x3 conv-BN-ReLU) with a
  VLBA after each level, ending in a 1x1 projection to pixel embeddings.
- :class:`AlignFormer` - a staged backbone with a VLBA after every stage (the words refined stage by
  stage are handed on through the staged-fusion hook), the decoder, and the centre: the masked mean of
  the refined words, projected by an MLP. Mask logits are ``cos(pixel, centre) / temperature + bias``:
  pixels are grouped around the centre, there is no fixed classifier kernel.
- Loss: the mask loss of the LAVT family (``loss``) + ``contrastive_weight`` x the cross-modal instance
  contrastive loss of :mod:`rrsis_bench.methods.alignformer.losses`.

Ablation switches: ``text_to_pixel``, ``pixel_to_text`` (each direction, encoder and decoder),
``decoder_vlba``, ``grouping`` (false: a fixed 1x1 classifier kernel on the pixel embeddings gives the
mask logits; the centre stays the contrastive loss's anchor), ``contrastive_weight`` (0 = off),
``instance_negatives``, ``batch_negatives``, ``hard_negative_weight``, ``ambiguity`` /
``ambiguity_weight`` / ``ambiguity_radius``, ``temperature`` and ``learn_temperature``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from rrsis_bench.method import MethodOutput
from rrsis_bench.nn.fusion import masked_mean
from rrsis_bench.nn.interleaved import TINY_SWIN, InterleavedFusionModel
from rrsis_bench.nn.lavt import (
    LanguageGate,
    PixelWordAttention,
    coordinate_tokens,
    top_down_levels,
    top_down_step,
)
from rrsis_bench.nn.text import MINILM, TINY_TEXT_CONFIG

from .losses import AMBIGUITY_RULES, instance_contrastive_loss

ALIGNFORMER_PAPER = ("AlignFormer-style re-implementation of Wei et al., Learning Aligned Cross-Modal Representations "
                     "for Referring Image Segmentation, arXiv:2301.06429 (v1; later versions: LGFormer)")
EMPTY: Mapping = MappingProxyType({})


class PixelToText(nn.Module):
    """Words attend to pixels: ``words + scale * Attention(LN(words), LN(pixels))`` then a LayerScale'd
    MLP; ``scale`` is a per-channel LayerScale vector starting at ``layer_scale`` (0.1).

    ``faithful`` computes the attention as written (explicit product and softmax, which FLOP counters
    see) instead of ``F.scaled_dot_product_attention``; the outputs are the same.

    The keys and values are the pixels average-pooled to at most ``grid`` x ``grid`` cells (the
    spatial-reduction attention of PVT): a word needs the layout of the image, not every pixel of a
    stride-4 map, and the finest maps would otherwise cost most of the training step. With
    ``key_extra`` = 2 the keys also see each cell's (x, y) centre.
    """

    has_faithful_path = True  # InterleavedFusionModel.set_faithful switches it

    def __init__(self, text_dim: int, visual_dim: int, *, heads: int = 8, key_extra: int = 0,
                 layer_scale: float = 0.1, grid: int = 30, faithful: bool = False) -> None:
        super().__init__()
        if text_dim % heads:
            raise ValueError(f"The text width {text_dim} must be divisible by pixel_to_text_heads={heads}.")
        if grid < 1:
            raise ValueError(f"method.pixel_to_text_grid must be at least 1, got {grid}.")
        self.heads, self.key_extra, self.grid, self.faithful = heads, key_extra, grid, faithful
        self.norm_words = nn.LayerNorm(text_dim)
        self.norm_pixels = nn.LayerNorm(visual_dim)
        self.query = nn.Linear(text_dim, text_dim)
        self.key = nn.Linear(visual_dim + key_extra, text_dim)
        self.value = nn.Linear(visual_dim, text_dim)
        self.out = nn.Linear(text_dim, text_dim)
        self.norm_mlp = nn.LayerNorm(text_dim)
        self.mlp = nn.Sequential(nn.Linear(text_dim, 2 * text_dim), nn.GELU(), nn.Linear(2 * text_dim, text_dim))
        self.attention_layer_scale = nn.Parameter(torch.full((text_dim,), float(layer_scale)))
        self.mlp_layer_scale = nn.Parameter(torch.full((text_dim,), float(layer_scale)))

    def forward(self, words: torch.Tensor, pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, length, dim = words.shape
        h = self.heads
        cells = (min(size[0], self.grid), min(size[1], self.grid))
        if cells != tuple(size):
            grid = pixels.transpose(1, 2).reshape(b, -1, *size)
            pixels = F.adaptive_avg_pool2d(grid, cells).flatten(2).transpose(1, 2)
        n = pixels.shape[1]
        normed = self.norm_pixels(pixels)
        if self.key_extra:
            coords = coordinate_tokens(b, cells, normed.device, normed.dtype)
            keys_in = torch.cat([normed, coords], dim=-1)
        else:
            keys_in = normed
        q = self.query(self.norm_words(words)).view(b, length, h, -1).transpose(1, 2)
        k = self.key(keys_in).view(b, n, h, -1).transpose(1, 2)
        v = self.value(normed).view(b, n, h, -1).transpose(1, 2)
        if self.faithful:
            attended = ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(dim=-1) @ v
        else:
            attended = F.scaled_dot_product_attention(q, k, v)
        attended = attended.transpose(1, 2).reshape(b, length, dim)
        words = words + self.attention_layer_scale * self.out(attended)
        return words + self.mlp_layer_scale * self.mlp(self.norm_mlp(words))


class VLBA(nn.Module):
    """Vision-language bidirectional attention on one map of tokens (see the module docstring).

    ``forward`` returns ``(attended, stream, words)``: the text → pixels output (the decoder's skip
    feature; the tokens themselves when that direction is off), the tokens plus the gated attended
    features (None unless ``need_stream``), and the words refined by the pixels (unchanged when the
    pixels → text direction is off).
    """

    def __init__(self, dim: int, text_dim: int, *, text_to_pixel: bool = True, pixel_to_text: bool = True,
                 fusion_heads: int = 1, pixel_to_text_heads: int = 8, pixel_to_text_grid: int = 30,
                 coordinates: bool = False, layer_scale: float = 0.1, faithful: bool = False) -> None:
        super().__init__()
        extra = 2 if coordinates else 0
        self.coordinates = coordinates
        self.text_to_pixel = (PixelWordAttention(dim, text_dim, heads=fusion_heads, query_extra=extra, faithful=faithful)
                              if text_to_pixel else None)
        self.gate = LanguageGate(dim) if text_to_pixel else None
        self.pixel_to_text = (PixelToText(text_dim, dim, heads=pixel_to_text_heads, key_extra=extra,
                                          layer_scale=layer_scale, grid=pixel_to_text_grid, faithful=faithful)
                              if pixel_to_text else None)

    def forward(self, tokens: torch.Tensor, size: tuple[int, int], words: torch.Tensor, word_mask: torch.Tensor,
                need_stream: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        coords = coordinate_tokens(tokens.shape[0], size, tokens.device, tokens.dtype) if self.coordinates else None
        if self.text_to_pixel is not None:
            attended = self.text_to_pixel(tokens, words, word_mask, coords)
            stream = tokens + self.gate(attended) if need_stream else None
        else:
            attended, stream = tokens, (tokens if need_stream else None)
        refined = self.pixel_to_text(words, tokens, size) if self.pixel_to_text is not None else words
        return attended, stream, refined


class AlignDecoder(nn.Module):
    """LAVT's top-down decoder with a :class:`VLBA` after each level (when ``vlba_options`` is given),
    ending in a 1x1 conv to ``embed_dim``-d pixel embeddings at the finest map's resolution."""

    def __init__(self, channels: Sequence[int], hidden: int, embed_dim: int, text_dim: int,
                 vlba_options: Mapping | None) -> None:
        super().__init__()
        self.levels, width = top_down_levels(channels, hidden)
        self.vlba = (nn.ModuleList(VLBA(hidden, text_dim, **vlba_options) for _ in self.levels)
                     if vlba_options is not None else None)
        self.embed = nn.Conv2d(width, embed_dim, 1)

    def forward(self, maps: list[torch.Tensor], words: torch.Tensor,
                word_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        *finer, x = maps
        for i, (level, skip) in enumerate(zip(self.levels, reversed(finer), strict=True)):
            x = top_down_step(level, x, skip)
            if self.vlba is not None:
                b, c, h, w = x.shape
                tokens = x.flatten(2).transpose(1, 2)
                _, stream, words = self.vlba[i](tokens, (h, w), words, word_mask, need_stream=True)
                x = stream.transpose(1, 2).reshape(b, c, h, w)
        return self.embed(x), words


class AlignFormer(InterleavedFusionModel):
    """AlignFormer-style method on any staged timm backbone (see the module docstring)."""

    paper, code_url = ALIGNFORMER_PAPER, ""
    #: The ablations of docs/methods/alignformer.md and docs/claims.md (factory overrides): the contrastive
    #: loss, each direction of the bidirectional attention, the grouping around the centre, the decoder VLBAs.
    ablations = MappingProxyType({
        "no_contrastive": MappingProxyType({"contrastive_weight": 0.0}),
        "text_to_pixel_only": MappingProxyType({"pixel_to_text": False}),
        "pixel_to_text_only": MappingProxyType({"text_to_pixel": False}),
        "no_grouping": MappingProxyType({"grouping": False}),
        "no_grouping_no_contrastive": MappingProxyType({"grouping": False, "contrastive_weight": 0.0}),
        "no_decoder_vlba": MappingProxyType({"decoder_vlba": False}),
    })
    extra_no_decay_keys = ("layer_scale", "logit_bias", "log_temperature")

    def __init__(
        self,
        *,
        text_to_pixel: bool = True,
        pixel_to_text: bool = True,
        decoder_vlba: bool = True,
        fusion_heads: int = 1,
        pixel_to_text_heads: int = 8,
        pixel_to_text_grid: int = 30,
        layer_scale: float = 0.1,
        coordinates: bool = False,
        embed_dim: int = 256,
        temperature: float = 0.1,
        learn_temperature: bool = False,
        grouping: bool = True,
        contrastive_weight: float = 0.5,
        instance_negatives: bool = True,
        batch_negatives: bool = True,
        hard_negative_weight: float = 2.0,
        ambiguity: str = "boundary",
        ambiguity_weight: float = 0.25,
        ambiguity_radius: int = 1,
        head_lr_scale: float = 1.0,
        **options,
    ) -> None:
        """``options``: the shared settings of :class:`InterleavedFusionModel` (backbone, text encoder,
        decoder width, mask loss, ...); the rest are this method's switches (module docstring)."""
        if temperature <= 0:
            raise ValueError(f"method.temperature must be positive, got {temperature}.")
        if ambiguity not in AMBIGUITY_RULES:
            raise ValueError(f"method.ambiguity={ambiguity!r} is not a rule; choose one of {', '.join(AMBIGUITY_RULES)}.")
        if contrastive_weight < 0:
            raise ValueError(f"method.contrastive_weight must be >= 0 (0 turns the loss off), got {contrastive_weight}.")
        self._vlba_options = {"text_to_pixel": text_to_pixel, "pixel_to_text": pixel_to_text,
                              "fusion_heads": fusion_heads, "pixel_to_text_heads": pixel_to_text_heads,
                              "pixel_to_text_grid": pixel_to_text_grid, "coordinates": coordinates, "layer_scale": layer_scale}
        self._decoder_vlba, self._embed_dim = decoder_vlba, embed_dim
        super().__init__(head_lr_scale=head_lr_scale, **options)
        faithful = self.faithful
        text_dim = self.text.dim
        self.fusions = nn.ModuleList(VLBA(c, text_dim, faithful=faithful, **self._vlba_options)
                                     for c in self.backbone.channels)
        self.grouping = bool(grouping)
        # The centre groups the pixels (grouping) and is the anchor of the contrastive loss; with neither it
        # is not built. Without grouping a fixed 1x1 classifier kernel gives the mask logits.
        self.uses_centre = self.grouping or contrastive_weight > 0
        if self.uses_centre:
            self.centre = nn.Sequential(nn.Linear(text_dim, text_dim), nn.GELU(), nn.Linear(text_dim, embed_dim))
        if self.grouping:
            self.logit_bias = nn.Parameter(torch.zeros(()))
        else:
            self.classifier = nn.Conv2d(embed_dim, 1, 1)
        log_t = torch.tensor(math.log(temperature))
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t, persistent=False)
        self.text_to_pixel, self.pixel_to_text, self.decoder_vlba = text_to_pixel, pixel_to_text, decoder_vlba
        self.contrastive_weight = float(contrastive_weight)
        self.instance_negatives, self.batch_negatives = instance_negatives, batch_negatives
        self.hard_negative_weight = float(hard_negative_weight)
        self.ambiguity, self.ambiguity_weight, self.ambiguity_radius = ambiguity, float(ambiguity_weight), ambiguity_radius
        # The instance map (other instances of the referred class = hard negatives) only when the loss uses it.
        needs = ("instance_map",) if self.contrastive_weight > 0 and instance_negatives else ()
        self.spec = dataclasses.replace(self.spec, inputs=needs, notes=self.spec.notes + " (AlignFormer-style)")
        self.init_new_layers()
        for module in self._unread_word_refiners():
            module.requires_grad_(False)

    def _unread_word_refiners(self) -> list[nn.Module]:
        """The pixels → text blocks whose refined words nothing reads: after the last text → pixels block
        when there is no centre (``grouping=false`` with the contrastive loss off). They can get no
        gradient, so they are built frozen (DDP runs without ``find_unused_parameters``)."""
        if self.uses_centre:
            return []
        blocks = [*self.fusions, *(self.decoder.vlba or [])]
        readers = [i for i, block in enumerate(blocks) if block.text_to_pixel is not None]
        last_reader = readers[-1] if readers else -1
        return [block.pixel_to_text for i, block in enumerate(blocks)
                if block.pixel_to_text is not None and i >= last_reader]

    def make_decoder(self, channels: list[int], hidden: int) -> nn.Module:
        options = dict(self._vlba_options) if self._decoder_vlba else None
        return AlignDecoder(channels, hidden, self._embed_dim, self.text.dim, options)

    # -- the staged-fusion hooks ---------------------------------------------------------------
    def fuse_stage(self, index, tokens, size, text, need_stream):
        attended, stream, words = self.fusions[index](tokens, size, text["context"], text["context_mask"],
                                                      need_stream=need_stream)
        return attended, stream, {**text, "context": words}

    def stream_modules(self, index: int) -> list[nn.Module]:
        gate = self.fusions[index].gate
        return [gate] if gate is not None else []

    # -- forward and loss ----------------------------------------------------------------------
    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def forward(self, batch: dict) -> MethodOutput:
        maps, text = self.encode(batch)
        embeddings, words = self.decoder(maps, text["context"], text["context_mask"])
        pixels = F.normalize(embeddings, dim=1)
        aux = {"pixels": pixels}
        if self.uses_centre:
            aux["centre"] = F.normalize(self.centre(masked_mean(words, text["context_mask"])), dim=-1)
        if self.grouping:
            coarse = torch.einsum("bchw,bc->bhw", pixels, aux["centre"])[:, None] / self.temperature + self.logit_bias
        else:
            coarse = self.classifier(embeddings)
        logits = F.interpolate(coarse, size=batch["image"].shape[-2:], mode="bilinear", align_corners=True)
        return MethodOutput(logits, {**aux, "coarse_logits": coarse})

    def loss(self, output: MethodOutput, batch: dict) -> dict[str, torch.Tensor]:
        terms = super().loss(output.logits, batch)
        if self.contrastive_weight > 0:
            contrast = instance_contrastive_loss(
                output.aux["pixels"], output.aux["centre"], batch["mask"], temperature=self.temperature,
                instance_map=batch.get("instance_map") if self.instance_negatives else None,
                coarse_logits=output.aux["coarse_logits"], hard_negative_weight=self.hard_negative_weight,
                batch_negatives=self.batch_negatives, ambiguity=self.ambiguity, ambiguity_weight=self.ambiguity_weight,
                radius=self.ambiguity_radius)
            terms = {**terms, "loss": terms["loss"] + self.contrastive_weight * contrast["contrast"],
                     "contrast": contrast["contrast"].detach(), "centre_to_pixels": contrast["centre_to_pixels"],
                     "pixel_to_centres": contrast["pixel_to_centres"]}
        return terms


# Factories: their keyword defaults are the configuration (conf/method/<name>.yaml repeats them);
# any other keyword goes to AlignFormer.
def create_alignformer(**options) -> AlignFormer:
    """AlignFormer-style (re-implementation): Swin-B (window 12) + BERT-base, VLBA in encoder and decoder."""
    return AlignFormer(**options)


def create_alignformer_lite(*, backbone: str = "efficientnet_lite0", pretrained: bool = True,
                            backbone_kwargs: Mapping | None = EMPTY, out_indices: Sequence[int] | None = (0, 1, 2, 3),
                            frozen_stages: int = 2, text_encoder: str = MINILM, text_trainable_layers: int | None = 0,
                            coordinates: bool = True, decoder_hidden: int = 32, embed_dim: int = 32,
                            pixel_to_text_heads: int = 6, pixel_to_text_grid: int = 16, loss: str = "bce_dice",
                            **options) -> AlignFormer:
    """CPU-size AlignFormer-style: EfficientNet-Lite0 (bundled ImageNet weights) + MiniLM (bundled)."""
    return AlignFormer(backbone=backbone, pretrained=pretrained, backbone_kwargs=backbone_kwargs,
                       out_indices=list(out_indices) if out_indices is not None else None, frozen_stages=frozen_stages,
                       text_encoder=text_encoder, text_trainable_layers=text_trainable_layers, coordinates=coordinates,
                       decoder_hidden=decoder_hidden, embed_dim=embed_dim, pixel_to_text_heads=pixel_to_text_heads,
                       pixel_to_text_grid=pixel_to_text_grid, loss=loss, **options)


def create_test_alignformer(*, backbone: str = "swin_tiny_patch4_window7_224", pretrained: bool = False,
                            backbone_kwargs: Mapping | None = TINY_SWIN, text_encoder: str = MINILM,
                            text_pretrained: bool = False, text_config: Mapping | None = TINY_TEXT_CONFIG,
                            text_trainable_layers: int | None = None, decoder_hidden: int = 16, embed_dim: int = 16,
                            pixel_to_text_heads: int = 2, **options) -> AlignFormer:
    """Tiny AlignFormer-style: 4-stage Swin of width 16, a 2-layer 32-d text encoder, decoder width 16."""
    return AlignFormer(backbone=backbone, pretrained=pretrained, backbone_kwargs=backbone_kwargs,
                       text_encoder=text_encoder, text_pretrained=text_pretrained, text_config=text_config,
                       text_trainable_layers=text_trainable_layers, decoder_hidden=decoder_hidden, embed_dim=embed_dim,
                       pixel_to_text_heads=pixel_to_text_heads, **options)
