"""`rrsis-bench data text`: what a method's text branch is fed, one CSV row per sample.

Each row shows how an expression is tokenized and decoupled: ``sample_id``, ``text``, ``tokens``
(the WordPieces from [CLS] to [SEP], space-separated), ``object_phrase`` (the phrases under the
ground-object mask, ``|``-separated; empty when none was found), ``position_phrases``
(``|``-separated), ``object_tokens`` and ``position_tokens`` (one 0/1 per token of ``tokens``).
The masks are 0 on the padding after [SEP], which the CSV leaves out.

The encoder is built by :func:`rrsis_bench.data.pipeline.build_encoder`, the same helper that
training and evaluation use, from the same composed data config (``max_tokens``, ``object_mask``,
the dataset's class phrases); the train split gets the run's weak expressions when
``data.weak.accurate_ratio`` < 1. So the CSV is exactly what the model is fed.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rrsis_bench.data.manifest import sample_metadata
from rrsis_bench.data.pipeline import build_encoder
from rrsis_bench.io import atomic_write

COLUMNS = ("sample_id", "text", "tokens", "object_phrase", "position_phrases", "object_tokens", "position_tokens")


def method_tokenizer(method_cfg: Mapping[str, Any]) -> str:
    """The tokenizer name a method's spec declares (``spec.tokenizer``), for a method config such as
    ``conf/method/fianet_lite.yaml``. The method is built to ask it, so the answer is the one training
    uses; its image backbone is built without pretrained weights (``pretrained: false`` where the config
    has that key), which the tokenizer does not depend on, so FIANet's Swin-B weights are not needed."""
    from rrsis_bench.tasks import build_method

    config = dict(method_cfg)
    if "pretrained" in config:
        config["pretrained"] = False
    return build_method(config).spec.tokenizer


def expression_rows(data_cfg: Mapping[str, Any], split: str, tokenizer: str) -> list[dict[str, str]]:
    """The CSV rows (see the module docstring) of split ``split`` (a key of ``data.splits``)."""
    from rrsis_bench.nn.text import build_tokenizer
    from rrsis_bench.tasks import load_split, prepare_train_split

    data_cfg = dict(data_cfg)
    samples = load_split(data_cfg, split)
    if split == "train":  # the run's weak expressions (data.weak); box augmentation does not touch text
        samples, _ = prepare_train_split(samples, {**data_cfg, "augment": {}}, seed=0)
    hf_tokenizer = build_tokenizer(tokenizer)
    encode = build_encoder(hf_tokenizer, data_cfg, samples)
    rows = []
    for index in range(len(samples)):
        meta = sample_metadata(samples, index)
        encoded = encode(str(meta["text"]))
        length = sum(encoded.attention_mask)
        rows.append({
            "sample_id": str(meta["sample_id"]),
            "text": str(meta["text"]),
            "tokens": " ".join(hf_tokenizer.convert_ids_to_tokens(list(encoded.input_ids[:length]))),
            "object_phrase": "|".join(encoded.object_phrases),
            "position_phrases": "|".join(encoded.position_phrases),
            "object_tokens": "".join(map(str, encoded.object_mask[:length])),
            "position_tokens": "".join(map(str, encoded.position_mask[:length])),
        })
    return rows


def export_expression_text(
    data_cfg: Mapping[str, Any], split: str, out: str | os.PathLike, tokenizer: str
) -> Path:
    """Write the rows of :func:`expression_rows` to the CSV file ``out`` (atomically); returns its path.

    ``data_cfg`` is the composed data config of the run (``conf/data/<name>.yaml`` with ``root`` and
    any recipe keys applied); ``tokenizer`` is the method's tokenizer (:func:`method_tokenizer`).
    """
    return write_expression_csv(expression_rows(data_cfg, split, tokenizer), out)


def write_expression_csv(rows: list[dict[str, str]], out: str | os.PathLike) -> Path:
    """Write rows of :func:`expression_rows` to the CSV file ``out`` (atomically); returns its path."""

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(Path(out), write)
