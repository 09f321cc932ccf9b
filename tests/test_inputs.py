"""Per-sample inputs a method declares in ``spec.inputs``: built, resized, collated, checked at start."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import SMALL_SYNTHETIC, exit_code, one_line
from data.refsegrs_fixture import write_refsegrs_fixture
from data.rrsisd_fixture import FIXTURE_WARNINGS, write_rrsisd_fixture
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from PIL import Image
from rrsis_bench.datasets.refsegrs import RefSegRSDataset
from rrsis_bench.datasets.rrsisd import RRSISDDataset, annotation_category, decode_segmentation
from rrsis_bench.datasets.synthetic import SyntheticDataset

from rrsis_bench import tasks
from rrsis_bench.data.augment import AugmentedDataset, RandomBoxes
from rrsis_bench.data.inputs import (
    FIELDS,
    InputUnavailable,
    InvalidInputs,
    check_inputs,
    dummy_batch,
    input_names,
    resize_label_map,
)
from rrsis_bench.data.manifest import sample_metadata
from rrsis_bench.data.pipeline import SampleTransform, TransformedDataset, build_encoder, collate
from rrsis_bench.data.weak import build_weak_train_set
from rrsis_bench.masks import resize_mask
from rrsis_bench.method import MethodSpec
from rrsis_bench.nn.text import build_tokenizer
from rrsis_bench.profile import dummy_batch as profile_batch
from rrsis_bench.registry import create_method

pytestmark = FIXTURE_WARNINGS

ALWAYS = {"image", "mask", "input_ids", "attention_mask", "sample_id", "text", "class_name", "weak"}


@pytest.fixture(scope="module")
def rrsisd_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("rrsisd")
    write_rrsisd_fixture(root)
    return root


@pytest.fixture(scope="module")
def synthetic(synthetic_root):
    return SyntheticDataset(synthetic_root, "train", num_images=SMALL_SYNTHETIC)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("minilm")


def transform_for(samples, tokenizer, image_size, inputs=(), **kw):
    return SampleTransform(build_encoder(tokenizer, {"max_tokens": 12}, samples), image_size=image_size,
                           mean=(0, 0, 0), std=(1, 1, 1), inputs=inputs, **kw)


def index_of(dataset, sample_id):
    return next(i for i in range(len(dataset)) if dataset.sample_id(i) == sample_id)


def block(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    return mask


# -- RRSISDDataset.instance_map ---------------------------------------------------------------------
def test_instance_map_by_hand_on_the_rrsisd_fixture(rrsisd_root):
    train = RRSISDDataset(rrsisd_root, "train")
    # Image 1 holds two vehicles: ann 11 (two polygon parts, 48 + 48 px) and ann 12 (rows 20..27 x cols 30..39).
    vehicle_12 = block((32, 48), (20, 28), (30, 40))
    left = train.instance_map(index_of(train, "1_101"))  # refers to ann 11
    assert left.dtype == np.int64 and left.shape == (32, 48)
    assert sorted(np.unique(left).tolist()) == [0, 1, 2]  # the storage tank and the court are other classes
    assert int((left == 1).sum()) == 96 and np.array_equal(left == 2, vehicle_12)
    right = train.instance_map(index_of(train, "2_103"))  # refers to ann 12: the labels swap
    assert np.array_equal(right == 1, vehicle_12) and np.array_equal(right == 2, left == 1)
    # Image 2 is 80x80 on disk but annotated at 40x40: the map is at the image's size, like the mask.
    test = RRSISDDataset(rrsisd_root, "test")
    small = test.instance_map(index_of(test, "4_105"))
    assert small.shape == (80, 80) and int((small == 1).sum()) == 240
    assert np.array_equal(small == 2, block((80, 80), (40, 60), (40, 70)))  # ann 22, rows 20..29 x cols 20..34, x2
    single = test.instance_map(index_of(test, "6_107"))
    assert sorted(np.unique(single).tolist()) == [0, 1] and int(single.sum()) == 100


def test_referred_object_wins_overlaps(tmp_path):
    write_rrsisd_fixture(tmp_path)
    path = tmp_path / "rrsisd" / "instances.json"
    instances = json.loads(path.read_text())
    # ann 12 becomes x 2..9 x y 4..5 (16 px), inside ann 11's first part (x 2..9 x y 2..7)
    next(a for a in instances["annotations"] if a["id"] == 12)["segmentation"] = [[2, 4, 10, 4, 10, 6, 2, 6]]
    path.write_text(json.dumps(instances))
    train = RRSISDDataset(tmp_path, "train")
    inner = block((32, 48), (4, 6), (2, 10))
    # referred ann 11 is painted after ann 12 although its id is smaller: ann 12 is hidden entirely
    outer = train.instance_map(index_of(train, "1_101"))
    assert int((outer == 1).sum()) == 96 and not (outer == 2).any()
    referred_inner = train.instance_map(index_of(train, "2_103"))
    assert np.array_equal(referred_inner == 1, inner) and int((referred_inner == 2).sum()) == 96 - 16


def test_instance_map_on_synthetic_matches_the_masks_and_annotations(synthetic):
    several_others = 0
    for index in range(len(synthetic)):
        labels = synthetic.instance_map(index)
        assert np.array_equal(labels == 1, synthetic.target_mask(index))
        assert np.array_equal(labels > 0, synthetic.class_union_mask(index))
        ref = synthetic.ref_of(index)
        info = synthetic.images[ref["image_id"]]
        category = annotation_category(synthetic.annotations[ref["ann_id"]])
        others = sorted(a for a in synthetic.anns_by_image_class[(ref["image_id"], category)] if a != ref["ann_id"])
        assert set(np.unique(labels).tolist()) - {0, 1} <= set(range(2, len(others) + 2))
        for label, ann_id in enumerate(others, start=2):  # label k + 2 is the k-th other annotation by id
            ann = decode_segmentation(synthetic.annotations[ann_id]["segmentation"], info["height"], info["width"])
            assert (labels == label).any() and not ((labels == label) & ~ann).any()
        several_others += len(others) >= 2
    assert several_others  # the id order is exercised


# -- SampleTransform ---------------------------------------------------------------------------------
def test_transform_resizes_the_map_by_nearest(rrsisd_root, synthetic, tokenizer):
    train = RRSISDDataset(rrsisd_root, "train")
    index = index_of(train, "1_101")
    # 48x32 -> 96x96: each pixel becomes 3 rows x 2 columns
    out = transform_for(train, tokenizer, 96, ("instance_map",))(train[index], source=train, index=index)
    native = train.instance_map(index)
    assert out["instance_map"].dtype == torch.long
    assert np.array_equal(out["instance_map"].numpy(), np.repeat(np.repeat(native, 3, axis=0), 2, axis=1))
    # a non-integer factor (256 -> 37): the same geometry as the mask's resize, labels kept as labels
    transform = transform_for(synthetic, tokenizer, 37, ("instance_map",))
    for index in range(3):
        out = transform(synthetic[index], source=synthetic, index=index)
        labels = out["instance_map"].numpy()
        assert np.array_equal(labels == 1, out["mask"].numpy() == 1)
        assert np.array_equal(labels > 0, resize_mask(synthetic.class_union_mask(index), (37, 37)))
        assert set(np.unique(labels).tolist()) <= set(np.unique(synthetic.instance_map(index)).tolist())


def test_resize_label_map_keeps_dtype_kind_and_geometry():
    labels = np.array([[0, 5], [7, 1]], dtype=np.int16)
    assert resize_label_map(labels, (4, 4)).tolist() == np.kron(labels, np.ones((2, 2), int)).tolist()
    assert resize_label_map(labels, (4, 4)).dtype == np.int64
    assert resize_label_map(labels.astype(np.float64) / 2, (4, 2)).dtype == np.float32
    assert resize_label_map(labels > 1, (4, 4)).dtype == bool
    with pytest.raises(ValueError, match="fit in int32"):
        resize_label_map(np.array([[2**40]]), (2, 2))


def test_no_token_masks_unless_declared(synthetic, tokenizer):
    plain = transform_for(synthetic, tokenizer, 16)(synthetic[0])
    assert set(plain) == ALWAYS  # no object/position mask for a method that does not ask
    encode = build_encoder(tokenizer, {"max_tokens": 12}, synthetic)
    one = transform_for(synthetic, tokenizer, 16, ("object_mask",))(synthetic[0])
    assert set(one) == ALWAYS | {"object_mask"}
    assert one["object_mask"].tolist() == list(encode(synthetic[0]["text"]).object_mask)
    both = transform_for(synthetic, tokenizer, 16, ("position_mask", "object_mask"))(synthetic[0])
    assert both["position_mask"].tolist() == list(encode(synthetic[0]["text"]).position_mask)
    assert both["object_mask"].dtype == both["position_mask"].dtype == torch.long


def test_make_transform_takes_the_specs_inputs(synthetic, tokenizer):
    encode = build_encoder(tokenizer, {"max_tokens": 12}, synthetic)
    model = SimpleNamespace(spec=MethodSpec(tokenizer="minilm", inputs=("category_id",)))
    transform = tasks.make_transform(model, {"image_size": 16}, encode, with_gt=False)
    assert transform.inputs == ("category_id",)
    assert set(transform(synthetic[0])) == ALWAYS | {"category_id"}


def test_collate_of_declared_inputs(synthetic, tokenizer):
    inputs = ("instance_map", "category_id", "ref_id", "image_id")
    data = TransformedDataset(synthetic, transform_for(synthetic, tokenizer, 24, inputs, with_gt=True))
    batch = collate([data[i] for i in range(3)])
    assert batch["instance_map"].shape == (3, 24, 24) and batch["instance_map"].dtype == torch.long
    meta = [sample_metadata(synthetic, i) for i in range(3)]
    assert batch["category_id"].shape == (3,) and batch["category_id"].tolist() == [m["category_id"] for m in meta]
    assert batch["ref_id"] == [m["ref_id"] for m in meta] and batch["image_id"] == [m["image_id"] for m in meta]
    assert isinstance(batch["gt_mask"], list) and batch["index"].tolist() == [0, 1, 2]


def test_instance_map_through_train_wrappers(synthetic, tokenizer):
    weak, _ = build_weak_train_set(synthetic, accurate_ratio=0.5, seed=0)
    boxed = AugmentedDataset(weak, RandomBoxes(seed=0))
    check_inputs(boxed, ("instance_map", "category_id"), method="m", dataset="synthetic")
    data = TransformedDataset(boxed, transform_for(boxed, tokenizer, 32, ("instance_map",)))
    for index in range(len(boxed)):
        expected = resize_label_map(synthetic.instance_map(index), (32, 32))
        assert np.array_equal(data[index]["instance_map"].numpy(), expected)


class PluginSamples(list):
    """A plugin dataset whose samples carry extra keys of every kind."""


def plugin_sample(k):
    depth = np.arange(12, dtype=np.float64).reshape(3, 4) + k
    return {"image": Image.fromarray(np.zeros((3, 4, 3), np.uint8)), "mask": depth > 5, "text": "a car",
            "class_name": "car", "sample_id": f"p{k}", "image_id": k, "depth": depth, "difficulty": k + 1,
            "hard": k == 1, "source": f"survey {k}", "tags": ["x"]}


def test_unknown_inputs_are_read_from_the_raw_sample(tokenizer):
    samples = PluginSamples(plugin_sample(k) for k in range(2))
    inputs = ("depth", "difficulty", "hard", "source", "tags")
    check_inputs(samples, inputs, method="m", dataset="plugin")
    batch = collate([item for item in TransformedDataset(samples, transform_for(samples, tokenizer, 8, inputs))])
    # 4x3 -> 8x8 nearest: columns x2, rows 0,0,0,1,1,2,2,2 (PIL's centre sampling)
    rows = [0, 0, 0, 1, 1, 2, 2, 2]
    assert batch["depth"].dtype == torch.float32 and batch["depth"].shape == (2, 8, 8)
    assert batch["depth"][1].tolist() == [[float(4 * r + c // 2 + 1) for c in range(8)] for r in rows]
    assert batch["difficulty"].tolist() == [1, 2] and batch["difficulty"].dtype == torch.long
    assert batch["hard"].tolist() == [False, True]
    assert batch["source"] == ["survey 0", "survey 1"] and batch["tags"] == [["x"], ["x"]]


def test_a_map_not_at_the_image_size_is_refused(tokenizer):
    samples = PluginSamples([{**plugin_sample(0), "depth": np.zeros((5, 5))}])
    with pytest.raises(ValueError, match=r"Input 'depth' of sample 'p0' has shape \(5, 5\), but its mask has \(3, 4\)"):
        transform_for(samples, tokenizer, 8, ("depth",))(samples[0])


# -- check_inputs --------------------------------------------------------------------------------------
def test_check_inputs_refuses_what_the_dataset_lacks(tmp_path):
    write_refsegrs_fixture(tmp_path)
    refsegrs = RefSegRSDataset(tmp_path, "train")
    check_inputs(refsegrs, ("object_mask", "position_mask", "image_id"), method="fianet", dataset="refsegrs")
    with pytest.raises(InputUnavailable) as caught:
        check_inputs(refsegrs, ("object_mask", "instance_map"), method="alignformer", dataset="refsegrs")
    assert str(caught.value) == (
        "Method 'alignformer' needs the per-sample input 'instance_map', which dataset 'refsegrs' cannot provide: "
        "its samples carry one mask per expression and no instance annotations (its reader has no "
        "instance_map(index)); use a dataset that has it, or turn off the method option that needs it (see the "
        "method's docs).")
    with pytest.raises(InputUnavailable, match="input 'category_id', which dataset 'refsegrs' cannot provide: its "
                                               "samples have no 'category_id'"):
        check_inputs(refsegrs, ("category_id",), method="m", dataset="refsegrs")
    with pytest.raises(InputUnavailable, match="'depth' is neither a built-in input .* nor a key of its samples"):
        check_inputs(refsegrs, ("depth",), method="m", dataset="refsegrs")


def test_declared_inputs_are_checked():
    with pytest.raises(InvalidInputs, match=r"not the string 'instance_map'; write \('instance_map',\)"):
        input_names("instance_map")
    with pytest.raises(InvalidInputs, match="'ref_id' more than once"):
        input_names(("ref_id", "ref_id"))
    with pytest.raises(InvalidInputs, match="'mask', which every batch already has"):
        input_names(("mask",))


def _declaring(inputs: tuple[str, ...]):
    """A stand-in for tasks.build_method whose method also declares ``inputs``."""

    def build(method_cfg):
        model = create_method(method_cfg["name"], **tasks.method_kwargs(method_cfg))
        model.spec = dataclasses.replace(model.spec, inputs=inputs)
        return model

    return build


def test_run_refuses_a_method_whose_inputs_the_dataset_lacks(tmp_path, monkeypatch, capsys):
    write_refsegrs_fixture(tmp_path / "data")
    monkeypatch.setattr(tasks, "build_method", _declaring(("instance_map",)))
    run_dir = tmp_path / "run"
    args = ["run", "method=test_baseline", "data=refsegrs", f"data.root={tmp_path / 'data'}", "trainer=debug",
            f"hydra.run.dir={run_dir}"]
    assert exit_code(args) != 0
    assert ("Method 'test_baseline' needs the per-sample input 'instance_map', which dataset 'refsegrs' cannot "
            "provide") in one_line(capsys)
    assert not run_dir.exists()


def test_eval_refuses_a_method_whose_inputs_the_split_lacks(tmp_path, monkeypatch, capsys):
    write_refsegrs_fixture(tmp_path / "data")
    with initialize_config_module(config_module="rrsis_bench.conf", version_base="1.3"):
        run_config = compose(config_name="run", overrides=["method=test_baseline", "data=refsegrs",
                                                           f"data.root={tmp_path / 'data'}"])
    config_file = tmp_path / "config.yaml"
    config_file.write_text(OmegaConf.to_yaml(run_config))
    monkeypatch.setattr(tasks, "resolve_checkpoint", lambda path: (tmp_path / "weights", config_file))
    monkeypatch.setattr(tasks.ckpt, "load_weights", lambda *args, **kwargs: None)  # random init will do
    monkeypatch.setattr(tasks, "build_method", _declaring(("category_id",)))
    run_dir = tmp_path / "eval"
    assert exit_code(["eval", f"checkpoint={tmp_path}", "split=test", f"hydra.run.dir={run_dir}"]) != 0
    assert ("Method 'test_baseline' needs the per-sample input 'category_id', which dataset 'refsegrs' cannot "
            "provide: its samples have no 'category_id'") in one_line(capsys)
    assert not run_dir.exists()


# -- dummies ---------------------------------------------------------------------------------------
def test_dummy_batch_shapes():
    batch = dummy_batch(("instance_map", "object_mask", "position_mask", "category_id", "ref_id", "image_id"),
                        2, 8, 5)
    assert batch["instance_map"].shape == (2, 8, 8) and sorted(batch["instance_map"].unique().tolist()) == [0, 1, 2]
    assert batch["object_mask"].shape == batch["position_mask"].shape == (2, 5)
    assert batch["category_id"].shape == (2,) and batch["ref_id"] == [0, 1] and batch["image_id"] == [0, 1]
    assert set(FIELDS) == set(batch)
    with pytest.raises(InvalidInputs, match="No dummy value for input 'depth'"):
        dummy_batch(("depth",), 2, 8, 5)


def test_profile_batch_has_only_what_the_method_declares():
    plain = profile_batch(2, 16, 6, torch.device("cpu"))
    assert "object_mask" not in plain and plain["image"].shape == (2, 3, 16, 16)
    assert set(plain) >= ALWAYS | {"index"}
    fianet_like = profile_batch(2, 16, 6, torch.device("cpu"), ("object_mask", "position_mask"))
    assert fianet_like["object_mask"].shape == fianet_like["position_mask"].shape == (2, 6)
