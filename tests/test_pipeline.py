"""Data pipeline: tokenization, transforms, collate, manifests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rrsis_bench.data.manifest import split_manifest
from rrsis_bench.data.pipeline import SampleTransform, TransformedDataset, class_words, collate
from rrsis_bench.data.text import ExpressionEncoder
from rrsis_bench.masks import resize_mask
from rrsis_bench.nn.text import build_tokenizer


@pytest.fixture(scope="module")
def tokenize():
    return ExpressionEncoder(build_tokenizer("minilm"), max_tokens=8, class_words=["vehicle", "car"])


def sample(sample_id="s0", text="the red car", size=(6, 4)):
    w, h = size
    mask = np.zeros((h, w), bool)
    mask[1:3, 2:5] = True
    image = Image.fromarray(np.full((h, w, 3), 128, np.uint8))
    return {"image": image, "mask": mask, "text": text, "class_name": "vehicle", "sample_id": sample_id, "image_id": 1}


def test_tokenize_pads_truncates_and_masks(tokenize):
    text = tokenize("the red car")
    assert len(text.input_ids) == len(text.attention_mask) == 8
    assert text.input_ids[0] == 101 and text.input_ids[4] == 102  # [CLS] the red car [SEP]
    assert list(text.attention_mask) == [1, 1, 1, 1, 1, 0, 0, 0]
    assert list(text.object_mask) == [0, 0, 0, 1, 0, 0, 0, 0]  # "car"
    long = tokenize("the red car parked on the left of the large white building")
    assert len(long.input_ids) == 8 and sum(long.attention_mask) == 8 and long.input_ids[-1] == 102


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_text_is_an_error(tokenize, text):
    with pytest.raises(ValueError, match="empty or whitespace-only"):
        tokenize(text)


def test_transform_shapes_normalization_and_gt(tokenize):
    transform = SampleTransform(tokenize, image_size=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                                eval_size=None, with_gt=True)
    out = transform(sample())
    assert out["image"].shape == (3, 8, 8)
    assert torch.allclose(out["image"], torch.full((3, 8, 8), (128 / 255 - 0.5) / 0.25), atol=1e-6)
    assert out["mask"].shape == (8, 8) and set(out["mask"].unique().tolist()) <= {0.0, 1.0}
    assert out["gt_mask"].shape == (4, 6) and int(out["gt_mask"].sum()) == 6  # native size kept
    assert out["object_mask"].tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
    assert out["position_mask"].tolist() == out["attention_mask"].tolist()  # no position phrase: full mask
    fixed = SampleTransform(tokenize, image_size=8, mean=(0, 0, 0), std=(1, 1, 1), eval_size=12, with_gt=True)
    assert fixed(sample())["gt_mask"].shape == (12, 12)


def test_resize_mask_is_nearest():
    mask = np.array([[1, 0], [0, 1]], bool)
    assert resize_mask(mask, (4, 4)).tolist() == np.kron(mask, np.ones((2, 2), bool)).tolist()


def test_collate_keeps_variable_gt_sizes(tokenize):
    transform = SampleTransform(tokenize, image_size=8, mean=(0, 0, 0), std=(1, 1, 1), with_gt=True)
    data = TransformedDataset([sample("a", size=(6, 4)), sample("b", size=(5, 7))], transform)
    batch = collate([data[0], data[1]])
    assert batch["image"].shape == (2, 3, 8, 8) and batch["input_ids"].shape == (2, 8)
    assert [tuple(g.shape) for g in batch["gt_mask"]] == [(4, 6), (7, 5)]
    assert batch["sample_id"] == ["a", "b"] and batch["index"].tolist() == [0, 1]


def test_manifest_is_order_independent_and_sees_text_changes():
    a = [sample("x", "one"), sample("y", "two")]
    assert split_manifest(a)["sha256"] == split_manifest(a[::-1])["sha256"]
    assert split_manifest(a)["sha256"] != split_manifest([sample("x", "one"), sample("y", "vehicle")])["sha256"]
    with pytest.raises(ValueError, match="'x' appears more than once"):
        split_manifest([sample("x"), sample("x")])


def test_class_words_from_samples_or_dataset():
    samples = [sample("a"), {**sample("b"), "class_name": "storage tank"}]
    assert class_words(samples) == ["storage tank", "vehicle"]

    class WithWords(list):
        class_words = ("car", "vehicle", "car")

    assert class_words(WithWords(samples)) == ["car", "vehicle"]
