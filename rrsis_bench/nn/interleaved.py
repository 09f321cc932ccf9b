"""The LAVT-family skeleton: language fused inside a staged backbone, then the LAVT decoder.

A subclass says how one stage is fused (:meth:`InterleavedFusionModel.fuse_stage`), which texts it
encodes (:meth:`encode_text`) and, optionally, how the multi-scale maps are refined before the
decoder (:meth:`enhance`). Everything else is shared: the staged timm backbone, the transformers
text encoder with LAVT's partial training, the per-stage LayerNorm on the skip features, the LAVT
decoder, bilinear upsampling to the input size, the official losses and the official optimizer
groups.

Parameters that can never receive a gradient are built with ``requires_grad=False`` (they stay in
the state dict, so parameter counts and the official checkpoint layout are unchanged; the optimizer
and DDP do not see them, as AdamW never updates a parameter without a gradient anyway): the modules
that only build the last stage's fused stream, which the official models compute and discard
(:meth:`InterleavedFusionModel.stream_modules`), and modules the official code declares and never
calls (:meth:`InterleavedFusionModel.never_called_modules`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from rrsis_bench.method import MethodSpec, RRSISMethod
from rrsis_bench.nn.checkpointing import checkpointed
from rrsis_bench.nn.lavt import LAVTDecoder, init_lavt_weights
from rrsis_bench.nn.losses import bce_dice_loss, class_weighted_ce, rrsis_official_loss
from rrsis_bench.nn.staged import StagedBackbone
from rrsis_bench.nn.text import MINILM, TextEncoder

# Without its weights, bert-base-uncased is still tokenized exactly: MiniLM (bundled offline)
# ships the same uncased 30,522-piece WordPiece vocabulary.
OFFLINE_TOKENIZERS = {"bert-base-uncased": MINILM}

# The official optimizer gives these backbone parameters no weight decay (everything else decays,
# biases included).
OFFICIAL_NO_DECAY = ("norm", "relative_position_bias_table", "absolute_pos_embed")

# loss option -> what it is
LOSSES = {
    "official": "0.9 x class-weighted CE + 0.1 x Dice, the RMSIN/FIANet training loss",
    "ce": "class-weighted CE alone, LAVT-RIS's own training loss",
    "bce_dice": "BCE + Dice on the foreground logit",
}


class InterleavedFusionModel(RRSISMethod):
    """Base of LAVT-style methods (see the module docstring).

    ``faithful`` restores the official computation where the fast path differs only in speed:
    explicit attention instead of ``scaled_dot_product_attention`` and the last stage's fused stream,
    which the official models compute and then discard. (Skipping the projections of Swin's padding
    tokens was tried and left out: equal within 1e-4, but its results differed by ~1e-6 between a
    model and its deep copy, which LRB-WREL's teacher check refuses.)
    """

    paper: str = ""
    code_url: str = ""
    # Parameters (by name fragment) a subclass adds that take no weight decay wherever they sit
    # (LayerScale vectors, scalar biases); the official LAVT/FIANet groups have none.
    extra_no_decay_keys: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        backbone: str = "swin_base_patch4_window12_384.ms_in22k",
        pretrained: bool = True,
        backbone_weights: str | os.PathLike | None = None,
        backbone_kwargs: Mapping | None = None,
        out_indices: list[int] | None = None,
        frozen_stages: int = 0,
        text_encoder: str = "bert-base-uncased",
        text_pretrained: bool = True,
        text_trainable_layers: int | None = 10,
        text_config: Mapping | None = None,
        tokenizer: str | None = None,
        decoder_hidden: int = 512,
        faithful: bool = False,
        loss: str = "official",
        head_lr_scale: float = 2.0,
    ) -> None:
        """The defaults are the faithful LAVT/FIANet settings.

        ``backbone`` is a timm name (``backbone_kwargs`` go to ``timm.create_model``; for Swin-B
        window 12 they default to LAVT's), ``out_indices`` the feature levels (default: the last
        four), ``frozen_stages`` freezes the first backbone stages; ``text_encoder`` is a
        transformers model (``text_trainable_layers``: only the first N encoder layers train, None
        all); ``tokenizer`` defaults to the text encoder's own; ``decoder_hidden`` is the LAVT
        decoder width; ``loss`` is one of :data:`LOSSES`.

        ``head_lr_scale`` multiplies the learning rate of the one-logit classifier and divides its
        weight decay (so their product, AdamW's decay per step, is unchanged). The official head
        has two rows, background and foreground, whose gradients are opposite: under AdamW each row
        moves by about lr per step, so their difference, which is our one logit, moves by 2 x lr.
        2 (the default) trains the folded head as the official one trains; 1 is plain AdamW.
        """
        super().__init__()
        backbone_kwargs = swin_b_kwargs(backbone, backbone_kwargs)
        self.backbone = StagedBackbone(backbone, pretrained=pretrained, weights=backbone_weights,
                                       out_indices=out_indices, **(backbone_kwargs or {}))
        self.text = TextEncoder(text_encoder, pretrained=text_pretrained, trainable_layers=text_trainable_layers,
                                config_overrides=text_config)
        for stage in self.backbone.stages[:frozen_stages]:
            stage.requires_grad_(False)
        channels = self.backbone.channels
        self.stage_norms = nn.ModuleList(nn.LayerNorm(c) for c in channels)
        self.decoder = self.make_decoder(channels, decoder_hidden)
        # The backbone's part of the switch; the fusion modules of a subclass take it as they are built.
        self.set_faithful(faithful)
        self.checkpointing = False
        if loss not in LOSSES:
            choices = "; ".join(f"{name!r} ({what})" for name, what in LOSSES.items())
            raise ValueError(f"method.loss={loss!r} is not a loss of this method; choose one of {choices}.")
        if head_lr_scale <= 0:
            raise ValueError(f"method.head_lr_scale must be positive, got {head_lr_scale}.")
        self.loss_name = loss
        self.head_lr_scale = float(head_lr_scale)
        if tokenizer is None:
            tokenizer = text_encoder if text_pretrained else OFFLINE_TOKENIZERS.get(text_encoder, text_encoder)
        self.spec = MethodSpec(tokenizer=tokenizer, paper=self.paper, code_url=self.code_url,
                               notes=f"backbone={backbone} (pretrained={pretrained}), text={text_encoder} "
                                     f"(pretrained={text_pretrained}), faithful={faithful}")

    def set_faithful(self, faithful: bool) -> None:
        """Switch between the fast and the faithful computation (same weights, same outputs)."""
        self.faithful = faithful
        for module in self.modules():
            if getattr(module, "has_faithful_path", False):
                module.faithful = faithful

    def set_checkpointing(self, enabled: bool) -> None:
        """Activation checkpointing (``trainer.checkpointing``): in training, the backbone blocks, each
        stage's fusion and each decoder level keep only their inputs and recompute the rest in the
        backward pass. Same outputs, gradients and BatchNorm statistics; less memory for about one
        more forward pass of time."""
        self.checkpointing = bool(enabled)
        self.backbone.set_checkpointing(enabled)
        if hasattr(self.decoder, "set_checkpointing"):
            self.decoder.set_checkpointing(enabled)

    def _checkpointing(self) -> bool:
        return self.checkpointing and self.training and torch.is_grad_enabled()

    def init_new_layers(self) -> None:
        """LAVT's init for every layer outside the backbone's own and the text encoder; then the
        parameters that can never get a gradient stop requiring one (see the module docstring)."""
        for name, module in self.named_children():
            if name not in ("backbone", "text"):
                init_lavt_weights(module)
        for module in [*self.stream_modules(self.backbone.num_stages - 1), *self.never_called_modules()]:
            module.requires_grad_(False)

    # -- what a subclass defines -------------------------------------------------------------
    def encode_text(self, batch: dict) -> dict[str, torch.Tensor]:
        """The text features the stages, the enhancement and the decoder read (a dict; LAVT: the
        token features ``context`` and their mask ``context_mask``). Reads ``inputs_embeds`` in place
        of ``input_ids`` when the batch has them (see :meth:`TextEncoder.encode_batch`)."""
        mask = batch["attention_mask"]
        return {"context": self.text.encode_batch(batch, mask), "context_mask": mask}

    def fuse_stage(self, index: int, tokens: torch.Tensor, size: tuple[int, int], text: dict,
                   need_stream: bool) -> tuple:
        """Return ``(skip tokens for the decoder, fused tokens for the next stage or None)``, or
        ``(skip, stream, text)`` to hand updated text features (a dict like :meth:`encode_text`'s) to
        the later stages, the enhancement and the decoder: language refined by vision."""
        raise NotImplementedError

    def enhance(self, maps: list[torch.Tensor], text: dict) -> list[torch.Tensor]:
        return maps

    def stream_modules(self, index: int) -> list[nn.Module]:
        """The modules stage ``index`` uses only to build its fused stream (none of the skip feature)."""
        raise NotImplementedError

    def never_called_modules(self) -> list[nn.Module]:
        """Modules declared for the official layout and never called."""
        return []

    def make_decoder(self, channels: list[int], hidden: int) -> nn.Module:
        """The decoder from the stage maps (finest first) to the output; LAVT's by default."""
        return LAVTDecoder(channels, hidden)

    # -- shared --------------------------------------------------------------------------------
    def encode(self, batch: dict) -> tuple[list[torch.Tensor], dict]:
        """Run the staged backbone with language fused after every stage; returns the normalised
        stage maps (finest first, NCHW) after :meth:`enhance`, and the text features as the last stage
        left them."""
        text = self.encode_text(batch)
        x = self.backbone.stem(batch["image"])
        maps = []
        last = self.backbone.num_stages - 1
        for i in range(self.backbone.num_stages):
            x = self.backbone.run_stage(i, x)
            tokens, size = self.backbone.to_tokens(x)
            need_stream = i < last or self.faithful
            if self._checkpointing():
                fused = checkpointed(self.fuse_stage, i, tokens, size, text, need_stream, state=self)
            else:
                fused = self.fuse_stage(i, tokens, size, text, need_stream=need_stream)
            skip, stream = fused[0], fused[1]
            if len(fused) == 3:
                text = fused[2]
            skip = self.stage_norms[i](skip)
            maps.append(skip.transpose(1, 2).reshape(skip.shape[0], -1, *size))
            if i < last:
                x = self.backbone.from_tokens(stream, size)
        return self.enhance(maps, text), text

    def forward(self, batch: dict):
        maps, _ = self.encode(batch)
        if self._checkpointing() and not hasattr(self.decoder, "set_checkpointing"):
            logits = checkpointed(self.decoder, maps)  # a decoder without its own per-level checkpointing
        else:
            logits = self.decoder(maps)
        return F.interpolate(logits, size=batch["image"].shape[-2:], mode="bilinear", align_corners=True)

    def loss(self, logits: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        if self.loss_name == "official":
            return rrsis_official_loss(logits, batch["mask"])
        if self.loss_name == "ce":
            ce = class_weighted_ce(logits, batch["mask"])
            return {"loss": ce, "ce": ce.detach()}
        return bce_dice_loss(logits, batch["mask"])

    def param_groups(self, weight_decay: float) -> list[dict]:
        """The official groups: backbone + fusion modules (no decay for norms and relative-position
        tables), decoder (all decay), and the trainable text-encoder layers (all decay); the
        one-logit classifier of the decoder gets ``head_lr_scale`` (see ``__init__``)."""
        decay, no_decay, decoder, head, text = [], [], [], [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            if any(key in name for key in self.extra_no_decay_keys):
                no_decay.append(param)
            elif name.startswith("text."):
                text.append(param)
            elif name.startswith("decoder.classifier."):
                head.append(param)
            elif name.startswith("decoder."):
                decoder.append(param)
            elif any(key in name for key in OFFICIAL_NO_DECAY):
                no_decay.append(param)
            else:
                decay.append(param)
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
            {"params": decoder, "weight_decay": weight_decay},
            {"params": head, "weight_decay": weight_decay / self.head_lr_scale, "lr_scale": self.head_lr_scale},
            {"params": text, "weight_decay": weight_decay},
        ]
        return [g for g in groups if g["params"]]


# Swin-B as LAVT/FIANet build it: window 12, ImageNet-22K weights at 384 px (not the 1K fine-tune),
# 480x480 input, stochastic depth 0.3, windows always partitioned and shifted as in the Swin code.
SWIN_B_PRETRAINED = "swin_base_patch4_window12_384.ms_in22k"
SWIN_B_KWARGS = {"img_size": 480, "window_size": 12, "drop_path_rate": 0.3, "strict_img_size": False,
                 "always_partition": True}


def swin_b_kwargs(backbone: str, backbone_kwargs: Mapping | None) -> Mapping | None:
    """LAVT's Swin-B settings when the backbone is that Swin-B and no kwargs were given."""
    if backbone_kwargs is None and backbone.split(".")[0] == SWIN_B_PRETRAINED.split(".")[0]:
        return dict(SWIN_B_KWARGS)
    return backbone_kwargs


# A tiny 4-stage Swin (width 16) for the test_* methods: seconds on a CPU, no weights needed.
# (Read-only: it is the default of the test_* factories.)
TINY_SWIN = MappingProxyType({"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 2, 2), "window_size": 4,
                              "img_size": 64, "strict_img_size": False, "always_partition": True})
