"""The synthetic dataset: deterministic, RRSIS-D layout, atomic generation, referring that matters."""

from __future__ import annotations

import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from rrsis_bench.datasets import synthetic
from rrsis_bench.datasets.rrsisd import RRSISDDataset, decode_segmentation
from rrsis_bench.datasets.synthetic import SyntheticDataset

from rrsis_bench.results.oracle import class_only_oracle

# pycocotools (2.0.x) trips numpy 2's `__array__(copy=...)` deprecation inside its own decode.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TINY = {"train": 6, "val": 2, "test": 4}
SMALL = {"train": 16, "val": 4, "test": 12}
EXPRESSION_TYPES = {"class", "colour", "size", "position", "relation", "combination"}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "small"
    SyntheticDataset(root, "train", num_images=SMALL)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_samples(tmp_path):
    first = SyntheticDataset(tmp_path / "a", "test", seed=3, num_images=TINY)
    second = SyntheticDataset(tmp_path / "b", "test", seed=3, num_images=TINY)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    for one, two in zip(first, second, strict=True):
        assert one["text"] == two["text"] and one["sample_id"] == two["sample_id"]
        assert np.array_equal(one["mask"], two["mask"])
        assert np.array_equal(np.asarray(one["image"]), np.asarray(two["image"]))


def test_different_seed_gives_different_data(tmp_path):
    SyntheticDataset(tmp_path / "a", "test", seed=0, num_images=TINY)
    SyntheticDataset(tmp_path / "b", "test", seed=1, num_images=TINY)
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert first["rrsisd/refs(unc).p"] != second["rrsisd/refs(unc).p"]
    assert first["images/rrsisd/JPEGImages/00001.jpg"] != second["images/rrsisd/JPEGImages/00001.jpg"]


def test_layout_is_read_by_the_rrsisd_reader(small_root):
    for split in ("train", "val", "test"):
        plain = RRSISDDataset(small_root, split)
        wrapped = SyntheticDataset(small_root, split, num_images=SMALL)
        assert len(plain) == len(wrapped) > 0
        assert plain[0]["sample_id"] == wrapped[0]["sample_id"]
    sample = SyntheticDataset(small_root, "val", num_images=SMALL)[0]
    assert sample["image"].mode == "RGB" and sample["image"].size == (256, 256)
    assert sample["mask"].dtype == bool and sample["mask"].shape == (256, 256) and sample["mask"].any()
    assert sample["expression_type"] in EXPRESSION_TYPES


def test_annotations_use_polygons_and_both_rle_forms(small_root):
    annotations = RRSISDDataset(small_root, "train").annotations.values()
    kinds = set()
    for ann in annotations:
        segmentation = ann["segmentation"]
        kinds.add("polygon" if isinstance(segmentation, list) else type(segmentation["counts"]).__name__)
        mask = decode_segmentation(segmentation, 256, 256)
        assert int(mask.sum()) == ann["area"]
    assert kinds == {"polygon", "str", "list"}


def test_painted_masks_are_the_decoded_annotations():
    rng = np.random.default_rng(0)
    scene = synthetic._compose_scene(rng, 256)
    occupied = np.zeros((256, 256), dtype=int)
    for obj in scene.objects:
        assert np.array_equal(obj.mask, decode_segmentation(obj.segmentation, 256, 256))
        occupied += obj.mask
    assert occupied.max() == 1  # no two objects share a pixel


def test_refs_carry_class_name_and_expression_type(small_root):
    refs = pickle.loads((small_root / "rrsisd" / "refs(unc).p").read_bytes())
    dataset = RRSISDDataset(small_root, "train")
    for ref in refs:
        assert ref["class_name"] == dataset.categories[ref["category_id"]]
        assert ref["expression_type"] in EXPRESSION_TYPES
        assert ref["sentences"][0]["raw"].strip()


def test_each_expression_names_one_target_per_image(small_root):
    refs = pickle.loads((small_root / "rrsisd" / "refs(unc).p").read_bytes())
    targets = defaultdict(set)
    refs_per_image = defaultdict(list)
    for ref in refs:
        targets[(ref["image_id"], ref["sentences"][0]["raw"])].add(ref["ann_id"])
        refs_per_image[ref["image_id"]].append(ref["ann_id"])
    assert all(len(ann_ids) == 1 for ann_ids in targets.values())
    assert all(len(ann_ids) == len(set(ann_ids)) for ann_ids in refs_per_image.values())


def test_class_phrases_cover_every_expression(small_root):
    """Each class maps to the nouns its expressions use; every expression names its target's class."""
    from rrsis_bench.data.pipeline import build_encoder
    from rrsis_bench.nn.text import build_tokenizer

    dataset = SyntheticDataset(small_root, "train", num_images=SMALL)
    assert dataset.class_phrases["vehicle"] == ("vehicle", "car")
    assert dataset.class_phrases["storage tank"] == ("storage tank", "tank", "oil tank")
    assert set(dataset.class_phrases) == set(dataset.categories.values())  # keyed by the class names
    encode = build_encoder(build_tokenizer("minilm"), {"max_tokens": 20, "object_mask": "official"}, dataset)
    for index in range(len(dataset)):
        meta = dataset.metadata(index)
        assert encode(meta["text"]).object_phrases, meta["text"]


def test_class_only_oracle_is_imperfect(small_root):
    scores = class_only_oracle(SyntheticDataset(small_root, "test", num_images=SMALL))
    assert 0 < scores["mIoU"] < 80
    assert scores["num_samples"] == len(SyntheticDataset(small_root, "test", num_images=SMALL))


def test_default_cache_folder_and_reuse(tmp_path, monkeypatch):
    monkeypatch.setenv("RRSIS_BENCH_CACHE", str(tmp_path))
    first = SyntheticDataset(split="val", seed=5, num_images=TINY)
    expected = tmp_path / "synthetic-v1-seed5-256px-6-2-4"
    assert first.root == expected
    assert (expected / "rrsisd" / "DONE").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [expected.name]  # no temporary folder left

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished dataset was generated again")

    monkeypatch.setattr(synthetic, "generate_synthetic", must_not_run)
    again = SyntheticDataset(split="val", seed=5, num_images=TINY)
    assert [s["sample_id"] for s in again] == [s["sample_id"] for s in first]


def test_losing_the_race_uses_the_winner_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "data"
    real_generate = synthetic.generate_synthetic

    def another_process_finishes_first(folder, **kwargs):
        real_generate(target, **kwargs)  # the winner renames into place while we are still building
        real_generate(folder, **kwargs)

    monkeypatch.setattr(synthetic, "generate_synthetic", another_process_finishes_first)
    dataset = SyntheticDataset(target, "train", num_images=TINY)
    assert len(dataset) > 0
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    def crash(folder, **kwargs):
        (Path(folder) / "partial.txt").write_text("half written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "generate_synthetic", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        SyntheticDataset(tmp_path / "data", "train", num_images=TINY)
    assert list(tmp_path.iterdir()) == []


def test_half_written_or_foreign_folder_is_refused(tmp_path):
    (tmp_path / "half" / "rrsisd").mkdir(parents=True)
    (tmp_path / "half" / "rrsisd" / "instances.json").write_text("{}")
    with pytest.raises(FileExistsError, match="DONE"):
        SyntheticDataset(tmp_path / "half", "train", num_images=TINY)
    SyntheticDataset(tmp_path / "other", "train", seed=0, num_images=TINY)
    with pytest.raises(ValueError, match="other settings"):
        SyntheticDataset(tmp_path / "other", "train", seed=1, num_images=TINY)


def test_bad_arguments_are_explained(tmp_path):
    with pytest.raises(ValueError, match="train, val, test"):
        SyntheticDataset(tmp_path, "validation")
    with pytest.raises(ValueError, match="unknown split"):
        SyntheticDataset(tmp_path, "train", num_images={"training": 3})
    with pytest.raises(ValueError, match="image_size"):
        SyntheticDataset(tmp_path, "train", image_size=64)
    assert not any(tmp_path.iterdir())


def test_name_and_one_line_description():
    assert SyntheticDataset.name == "synthetic"
    assert SyntheticDataset.__doc__.strip().splitlines()[0]
