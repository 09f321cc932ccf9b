"""A tiny method written against rrsis-bench's public contract only.

It encodes the image with a few strided convolutions, modulates the features with the sentence
(FiLM from the mean word feature), decodes to one logit and trains with rrsis-bench's BCE + Dice.
Its text path is exposed (``encode_text``, ``inputs_embeds``), so training strategies can prompt it;
``tests/test_conformance.py`` checks the whole contract with ``rrsis_bench.testing.check_method``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rrsis_bench.method import MethodSpec, RRSISMethod
from rrsis_bench.nn.fusion import masked_mean
from rrsis_bench.nn.losses import bce_dice_loss
from rrsis_bench.nn.text import MINILM, TextEncoder

TINY_TEXT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


class ExampleFiLM(RRSISMethod):
    """Tiny conv encoder-decoder conditioned on the sentence by FiLM (example plugin)."""

    def __init__(self, width: int = 16, text_pretrained: bool = False) -> None:
        super().__init__()
        self.text = TextEncoder(MINILM, pretrained=text_pretrained, config_overrides=None if text_pretrained else TINY_TEXT)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.film = nn.Linear(self.text.dim, 4 * width)
        self.head = nn.Conv2d(2 * width, 1, 1)
        self.spec = MethodSpec(tokenizer=MINILM)

    def encode_text(self, batch: dict) -> torch.Tensor:
        """Word features (B, L, D): from ``inputs_embeds`` when a training strategy put them in the batch
        (injected word embeddings, e.g. learned prompts), else from ``input_ids``."""
        return self.text.encode_batch(batch, batch["attention_mask"])

    def forward(self, batch: dict) -> torch.Tensor:
        words = self.encode_text(batch)
        scale, shift = self.film(masked_mean(words, batch["attention_mask"])).chunk(2, dim=-1)
        features = self.encoder(batch["image"])
        features = features * (1 + scale[..., None, None]) + shift[..., None, None]
        logits = self.head(F.relu(features))
        return F.interpolate(logits, size=batch["image"].shape[-2:], mode="bilinear", align_corners=False)

    def loss(self, output: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        return bce_dice_loss(output, batch["mask"])


def create_example_film(**kwargs) -> ExampleFiLM:
    """Example plugin method: tiny conv encoder-decoder with sentence FiLM."""
    return ExampleFiLM(**kwargs)
