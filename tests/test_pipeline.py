"""Data pipeline: tokenization, transforms, collate, manifests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image

from rrsis_bench.data.manifest import sample_content_sha256, split_manifest
from rrsis_bench.data.pipeline import (
    SampleTransform,
    TransformedDataset,
    build_encoder,
    class_phrases,
    collate,
)
from rrsis_bench.data.text import ExpressionEncoder
from rrsis_bench.masks import resize_mask
from rrsis_bench.nn.text import build_tokenizer


@pytest.fixture(scope="module")
def tokenize():
    return ExpressionEncoder(build_tokenizer("minilm"), max_tokens=8, class_phrases=["vehicle", "car"])


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
                                eval_size=None, with_gt=True, inputs=("object_mask", "position_mask"))
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


def test_class_phrases_from_dataset_or_class_names():
    samples = [sample("a"), {**sample("b"), "class_name": "storage tank"}]
    assert class_phrases(samples) == ["storage tank", "vehicle"]  # no declared phrases: the class names

    class WithPhrases(list):
        class_phrases = {"storagetank": ("storage tank", "tank"), "vehicle": ("vehicle", "car"), "ship": "ship"}

    # declared phrases win over the identifiers in class_name
    assert class_phrases(WithPhrases([{**sample("c"), "class_name": "storagetank"}])) == [
        "car", "ship", "storage tank", "tank", "vehicle"]


class Identified(list):
    """Samples whose class_name is an identifier that never occurs in an expression."""

    class_phrases = {"storagetank": ("storage tank",)}


def test_build_encoder_uses_the_phrases_and_the_object_mask_rule():
    tokenizer = build_tokenizer("minilm")
    samples = Identified([{**sample("a"), "class_name": "storagetank"}])
    text = "the storage tank near the ship"
    clean = build_encoder(tokenizer, {"max_tokens": 12, "object_mask": "clean"}, samples)(text)
    assert clean.object_phrases == ("storage tank",) and sum(clean.object_mask) == 2
    # Without declared phrases the identifier is all the encoder knows: no phrase, full mask.
    blind = build_encoder(tokenizer, {"max_tokens": 12}, list(samples))(text)
    assert blind.object_phrases == () and blind.object_mask == blind.attention_mask
    none = build_encoder(tokenizer, {"max_tokens": 12, "object_mask": "official"}, samples)("the ship")
    assert none.object_mask == (0,) * 12
    # A run config from before data.object_mask: object_fallback=full is the clean rule.
    assert build_encoder(tokenizer, {"max_tokens": 12, "object_fallback": "full"}, samples).object_mask_rule == "clean"
    with pytest.raises(ValueError, match="data.object_mask=official"):
        build_encoder(tokenizer, {"max_tokens": 12, "object_fallback": "zeros"}, samples)


@pytest.mark.parametrize(
    "overrides, rule, options",
    [
        ([], "clean", {"seed": 0}),
        (["data=rrsisd"], "clean", {}),
        (["method=fianet", "data=rrsisd"], "official", {"overlap": "official"}),
        (["experiment=fianet_rrsisd"], "official", {"overlap": "official"}),
        (["experiment=fianet_refsegrs"], "official", {}),
        (["method=lavt", "data=rrsisd"], "clean", {}),
    ],
)
def test_fianet_recipes_use_the_official_object_mask(overrides, rule, options):
    with initialize_config_module(config_module="rrsis_bench.conf", version_base="1.3"):
        cfg = compose(config_name="run", overrides=overrides)
    assert cfg.data.object_mask == rule and dict(cfg.data.options) == options
    assert "object_fallback" not in cfg.data


def test_empty_expression_names_the_sample(tokenize):
    transform = SampleTransform(tokenize, image_size=8, mean=(0, 0, 0), std=(1, 1, 1))
    with pytest.raises(ValueError, match="Sample 'blank' \\(image 1\\) has an empty referring expression"):
        transform(sample("blank", text="  "))


def test_content_hash_sees_image_bytes_and_masks(tmp_path):
    class OnDisk(list):
        def sample_files(self, index):
            return [tmp_path / f"{self[index]['sample_id']}.bin"]

    data = OnDisk([sample("x", "one"), sample("y", "two")])
    for item in data:
        (tmp_path / f"{item['sample_id']}.bin").write_bytes(b"image bytes")

    def manifest():
        return split_manifest(data, {item["sample_id"]: sample_content_sha256(data, i) for i, item in enumerate(data)})

    before = manifest()
    assert before["sha256"] == split_manifest(data)["sha256"] and "content_sha256" not in split_manifest(data)
    (tmp_path / "y.bin").write_bytes(b"image bytes, re-encoded")
    changed_file = manifest()
    assert changed_file["sha256"] == before["sha256"] and changed_file["content_sha256"] != before["content_sha256"]
    data[0]["mask"] = ~data[0]["mask"]
    assert manifest()["content_sha256"] not in (before["content_sha256"], changed_file["content_sha256"])
    with pytest.raises(ValueError, match="No content digest for sample 'y'"):
        split_manifest(data, {"x": "0" * 64})
