"""RRSIS-D reader on the hand-written fixture in tests/data/rrsisd_fixture.py."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from data.rrsisd_fixture import FIXTURE_WARNINGS, RELEASED_NAMES, write_rrsisd_fixture
from PIL import Image
from pycocotools import mask as coco_mask
from rrsis_bench.datasets.rrsisd import (
    DIOR_CLASS_PHRASES,
    RRSISDDataset,
    class_phrases_of,
    decode_segmentation,
)

from rrsis_bench.data.pipeline import build_encoder
from rrsis_bench.masks import mask_bbox
from rrsis_bench.nn.text import build_tokenizer
from rrsis_bench.results.oracle import class_only_oracle

pytestmark = FIXTURE_WARNINGS


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("rrsisd")
    return root, write_rrsisd_fixture(root)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_counts_per_split(fixture_root, split):
    root, expected = fixture_root
    dataset = RRSISDDataset(root, split)
    assert isinstance(dataset, Sequence)
    assert len(dataset) == expected["counts"][split]
    assert dataset.num_skipped == 0


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_samples_match_expected_masks(fixture_root, split):
    root, expected = fixture_root
    for sample in RRSISDDataset(root, split):
        facts = expected["samples"][sample["sample_id"]]
        assert facts["split"] == split
        assert isinstance(sample["image"], Image.Image) and sample["image"].mode == "RGB"
        assert sample["mask"].dtype == bool
        assert sample["mask"].shape == (sample["image"].height, sample["image"].width)
        assert int(sample["mask"].sum()) == facts["area"]
        assert mask_bbox(sample["mask"]) == facts["bbox"]
        assert sample["class_name"] == facts["class_name"] == expected["class_names"][sample["category_id"]]
        assert sample["text"] == facts["text"]
        assert sample["image_id"] == facts["image_id"]


def test_polygon_parts_are_united(fixture_root):
    root, _ = fixture_root
    mask = next(s["mask"] for s in RRSISDDataset(root, "train") if s["ann_id"] == 11)
    assert mask[2:8, 2:10].all() and mask[4:12, 20:26].all()
    assert mask.sum() == 96


def test_compressed_and_uncompressed_rle(fixture_root):
    root, _ = fixture_root
    compressed = next(s["mask"] for s in RRSISDDataset(root, "train") if s["ann_id"] == 12)
    uncompressed = RRSISDDataset(root, "val")[0]["mask"]
    assert compressed[20:28, 30:40].all() and compressed.sum() == 80
    assert uncompressed[14:18, 2:8].all() and uncompressed.sum() == 24


def test_several_sentences_give_several_samples(tmp_path):
    # The release has one sentence per ref; RefCOCO-style files may have several.
    write_rrsisd_fixture(tmp_path)
    refs_path = tmp_path / "rrsisd" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    refs[0]["sentences"].append({"raw": "the left car", "sent": "the left car", "tokens": [], "sent_id": 102})
    refs_path.write_bytes(pickle.dumps(refs))
    samples = list(RRSISDDataset(tmp_path, "train"))
    ids = [s["sample_id"] for s in samples]
    assert sorted(ids) == ["1_101", "1_102", "2_103"]
    same_ref = [s for s in samples if s["ref_id"] == 1]
    assert {s["text"] for s in same_ref} == {"The vehicle on the left", "the left car"}
    assert np.array_equal(same_ref[0]["mask"], same_ref[1]["mask"])


def test_released_form_is_read(fixture_root):
    """The fixture is in the released form: `categories_id` in annotations, ids from 0, glued names."""
    root, expected = fixture_root
    instances = json.loads((root / "rrsisd" / "instances.json").read_text())
    assert all("categories_id" in a and "category_id" not in a for a in instances["annotations"])
    assert [c["id"] for c in instances["categories"]] == list(range(20))
    assert [c["name"] for c in instances["categories"]] == list(RELEASED_NAMES)
    test = RRSISDDataset(root, "test")
    by_id = {test.sample_id(i): test.metadata(i) for i in range(len(test))}
    assert by_id["4_105"]["category_id"] == 0 and by_id["4_105"]["class_name"] == "Expressway-Service-area"
    assert by_id["6_107"]["class_name"] == "storagetank"
    assert sum(len(RRSISDDataset(root, split)) for split in ("train", "val", "test")) == len(expected["samples"])


@pytest.mark.parametrize("key", ["category_id", "categories_id"])
def test_either_annotation_class_key_gives_the_same_samples_and_oracle(tmp_path, key):
    expected = write_rrsisd_fixture(tmp_path)
    instances_path = tmp_path / "rrsisd" / "instances.json"
    instances = json.loads(instances_path.read_text())
    for ann in instances["annotations"]:
        ann[key] = ann.pop("categories_id")
    instances_path.write_text(json.dumps(instances))
    test = RRSISDDataset(tmp_path, "test")
    for index in range(len(test)):
        facts = expected["samples"][test.sample_id(index)]
        assert test.metadata(index)["class_name"] == facts["class_name"]
        assert int(test.class_union_mask(index).sum()) == facts["class_union_area"]
    assert class_only_oracle(test)["oIoU"] == pytest.approx(100 * 940 / 1780)


# An annotation without its class (the error names both keys the reader accepts) or without a segmentation.
@pytest.mark.parametrize(("field", "message"), [("categories_id", "category_id or categories_id"),
                                                ("segmentation", "segmentation")])
def test_annotation_missing_a_field_is_reported(tmp_path, field, message):
    write_rrsisd_fixture(tmp_path)
    instances_path = tmp_path / "rrsisd" / "instances.json"
    instances = json.loads(instances_path.read_text())
    del instances["annotations"][0][field]
    instances_path.write_text(json.dumps(instances))
    with pytest.raises(ValueError, match=message):
        RRSISDDataset(tmp_path, "train")


def test_class_phrases_are_the_spaced_dior_words(fixture_root):
    root, _ = fixture_root
    phrases = RRSISDDataset(root, "train").class_phrases
    assert set(phrases) == set(RELEASED_NAMES)  # keyed by the identifiers; class_name stays the identifier
    assert phrases["storagetank"] == ("storage tank",)
    assert phrases["Expressway-Service-area"] == ("expressway service area",)
    assert phrases["groundtrackfield"] == ("ground track field",)
    assert sorted(p for ps in phrases.values() for p in ps) == sorted([
        "airplane", "airport", "golf field", "expressway service area", "baseball field", "stadium",
        "ground track field", "storage tank", "basketball court", "chimney", "tennis court", "overpass",
        "train station", "ship", "expressway toll station", "dam", "harbor", "bridge", "vehicle", "windmill",
    ])
    # Other spellings of a DIOR class find its words; an unknown class keeps its own name.
    assert class_phrases_of(["storage tank", "Storage_Tank", "pier"]) == {
        "storage tank": ("storage tank",), "Storage_Tank": ("storage tank",), "pier": ("pier",),
    }
    assert len(DIOR_CLASS_PHRASES) == 20


@pytest.mark.parametrize("rule", ["clean", "official"])
def test_every_expression_naming_a_class_gets_its_object_phrase(fixture_root, rule):
    root, expected = fixture_root
    tokenizer = build_tokenizer("minilm")
    for split in ("train", "val", "test"):
        dataset = RRSISDDataset(root, split)
        encode = build_encoder(tokenizer, {"max_tokens": 22, "object_mask": rule}, dataset)
        for index in range(len(dataset)):
            facts = expected["samples"][dataset.sample_id(index)]
            encoded = encode(dataset.metadata(index)["text"])
            marked = tokenizer.decode([t for t, m in zip(encoded.input_ids, encoded.object_mask, strict=True) if m])
            if facts["object_phrase"] is None:  # names no class: full mask (clean) or all zero (official)
                assert encoded.object_phrases == ()
                assert encoded.object_mask == (encoded.attention_mask if rule == "clean" else (0,) * 22)
            elif rule == "clean":
                assert encoded.object_phrases == (facts["object_phrase"],)
                assert marked == facts["object_phrase"].lower()
            else:
                assert encoded.object_phrases == facts["class_phrases"]
                assert marked == " ".join(facts["class_phrases"]).lower()


def test_size_mismatch_resizes_mask_to_image(fixture_root):
    root, _ = fixture_root
    sample = next(s for s in RRSISDDataset(root, "test") if s["ann_id"] == 21)
    assert sample["image"].size == (80, 80)
    assert sample["mask"].shape == (80, 80)


def test_negative_and_out_of_range_index(fixture_root):
    root, _ = fixture_root
    dataset = RRSISDDataset(root, "test")
    assert dataset[-1]["sample_id"] == dataset[len(dataset) - 1]["sample_id"]
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_class_union_mask(fixture_root):
    root, expected = fixture_root
    dataset = RRSISDDataset(root, "test")
    for index in range(len(dataset)):
        union = dataset.class_union_mask(index)
        sample = dataset[index]
        assert union.shape == sample["mask"].shape
        assert int(union.sum()) == expected["samples"][sample["sample_id"]]["class_union_area"]
        assert not (sample["mask"] & ~union).any()


def test_oracle_matches_hand_computation(fixture_root):
    root, expected = fixture_root
    facts = [f for f in expected["samples"].values() if f["split"] == "test"]
    # The target lies inside the class union, so I = target area and U = class union area.
    inter = np.array([f["area"] for f in facts], dtype=float)
    union = np.array([f["class_union_area"] for f in facts], dtype=float)
    ious = inter / union
    scores = class_only_oracle(RRSISDDataset(root, "test"))
    assert scores["oIoU"] == pytest.approx(100 * inter.sum() / union.sum())
    assert scores["mIoU"] == pytest.approx(100 * ious.mean())
    for threshold in (0.5, 0.6, 0.7, 0.8, 0.9):
        assert scores[f"Pr@{threshold}"] == pytest.approx(100 * np.mean(ious >= threshold))
    # Spelled out for this fixture: IoUs 240/840, 600/840 and 1.
    assert scores["oIoU"] == pytest.approx(100 * 940 / 1780) and scores["num_samples"] == 3
    assert scores["Pr@0.7"] == pytest.approx(200 / 3) and scores["Pr@0.8"] == pytest.approx(100 / 3)


def test_missing_image_is_named_or_skipped(tmp_path):
    expected = write_rrsisd_fixture(tmp_path)
    missing = expected["image_files"][1]
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=missing.name) as error:
        RRSISDDataset(tmp_path, "train")
    # The command-line form (Hydra needs the +) and the Python form.
    assert "+data.options.skip_missing=true" in str(error.value) and "skip_missing=True" in str(error.value)
    dataset = RRSISDDataset(tmp_path, "train", skip_missing=True)
    assert len(dataset) == 0 and dataset.num_skipped == expected["counts"]["train"]
    assert dataset.missing_files == [missing]
    assert len(RRSISDDataset(tmp_path, "test")) == expected["counts"]["test"]


def test_truncated_image_names_the_file_and_the_sample(tmp_path):
    expected = write_rrsisd_fixture(tmp_path)
    image = expected["image_files"][3]  # used by test sample 6_107 only
    image.write_bytes(image.read_bytes()[: len(image.read_bytes()) // 2])
    dataset = RRSISDDataset(tmp_path, "test")
    index = next(i for i in range(len(dataset)) if dataset.sample_id(i) == "6_107")
    with pytest.raises(OSError) as error:
        dataset[index]
    message = str(error.value)
    assert str(image) in message and "6_107" in message and "+data.options.skip_missing=true" in message


def test_empty_expression_names_the_sample_and_the_file(tmp_path):
    write_rrsisd_fixture(tmp_path)
    refs_path = tmp_path / "rrsisd" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    refs[2]["sentences"][0]["raw"] = "  "
    refs_path.write_bytes(pickle.dumps(refs))
    with pytest.raises(ValueError) as error:
        RRSISDDataset(tmp_path, "val")
    assert "3_104" in str(error.value) and str(refs_path) in str(error.value) and "empty" in str(error.value)
    assert len(RRSISDDataset(tmp_path, "train")) == 2  # other splits are unaffected


def test_dataset_modules_import_no_metrics_tokenizers_or_torch():
    """DESIGN.md: a dataset imports the raw-sample contract only (no metrics, tokenizers, torch or
    models), not even inside a function; the class-only oracle lives in rrsis_bench.results.oracle."""
    import ast
    import importlib

    forbidden = ("rrsis_bench.metrics", "rrsis_bench.nn", "rrsis_bench.results", "torch", "transformers", "tokenizers")
    for name in ("rrsisd", "refsegrs", "synthetic"):
        module = importlib.import_module(f"rrsis_bench.datasets.{name}")
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not [m for m in imported if m.startswith(forbidden)], name
        assert not hasattr(module, "class_only_oracle")
    code = "import sys, rrsis_bench.datasets.rrsisd; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_refs_file_explains_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        RRSISDDataset(tmp_path, "train")
    message = str(error.value)
    assert str(tmp_path / "rrsisd" / "refs(unc).p") in message
    assert "data.root" in message


def test_ref_without_required_field_is_reported(tmp_path):
    write_rrsisd_fixture(tmp_path)
    refs_path = tmp_path / "rrsisd" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    del refs[0]["ann_id"]
    refs_path.write_bytes(pickle.dumps(refs))
    with pytest.raises(ValueError, match="ann_id"):
        RRSISDDataset(tmp_path, "train")


def test_unknown_split_lists_valid_ones(fixture_root):
    root, _ = fixture_root
    with pytest.raises(ValueError, match="train, val, test"):
        RRSISDDataset(root, "testA")


def test_name_and_one_line_description():
    assert RRSISDDataset.name == "rrsisd"
    assert RRSISDDataset.__doc__.strip().splitlines()[0]


def test_overlapping_parts_union_versus_official(fixture_root):
    root, expected = fixture_root
    union = next(s for s in RRSISDDataset(root, "val") if s["ann_id"] == 14)
    official = next(s for s in RRSISDDataset(root, "val", overlap="official") if s["ann_id"] == 14)
    shared = (slice(6, 10), slice(36, 40))  # rows y 6..9, columns x 36..39: covered by both parts
    assert int(union["mask"].sum()) == expected["samples"]["7_108"]["area"] == 80 + 80 - 16
    assert union["mask"][shared].all()
    assert int(official["mask"].sum()) == expected["official_areas"]["7_108"] == 80 + 80 - 2 * 16
    assert not official["mask"][shared].any()
    outside = union["mask"].copy()
    outside[shared] = False
    assert np.array_equal(official["mask"], outside)


def test_official_overlap_changes_nothing_without_overlaps(fixture_root):
    root, expected = fixture_root
    for split in ("train", "val", "test"):
        union = RRSISDDataset(root, split)
        official = RRSISDDataset(root, split, overlap="official")
        assert official.overlap == "official" and union.overlap == "union"
        for index in range(len(union)):
            sample_id = union.sample_id(index)
            if sample_id in expected["official_areas"]:
                continue
            assert np.array_equal(union.target_mask(index), official.target_mask(index))


def test_official_overlap_on_rle_parts():
    first = np.zeros((6, 8), dtype=np.uint8)
    first[0:4, 0:4] = 1
    second = np.zeros((6, 8), dtype=np.uint8)
    second[2:6, 2:8] = 1
    parts = [coco_mask.encode(np.asfortranarray(part)) for part in (first, second)]
    union = decode_segmentation(parts, 6, 8)
    official = decode_segmentation(parts, 6, 8, overlap="official")
    assert union.sum() == 16 + 24 - 4
    assert official.sum() == 16 + 24 - 2 * 4 and not official[2:4, 2:4].any()


def test_unknown_overlap_lists_the_modes(fixture_root):
    root, _ = fixture_root
    with pytest.raises(ValueError, match="'union', 'official'"):
        RRSISDDataset(root, "train", overlap="sum")
    with pytest.raises(ValueError, match="'union', 'official'"):
        decode_segmentation([[0, 0, 4, 0, 4, 4]], 8, 8, overlap="max")


def test_size_mismatch_is_counted_and_warned_once(fixture_root):
    root, expected = fixture_root
    dataset = RRSISDDataset(root, "test")
    assert dataset.num_size_mismatch == 0  # counted as masks are decoded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            for index in range(len(dataset)):
                dataset[index]
                dataset.class_union_mask(index)
    mismatch = [
        w for w in caught if issubclass(w.category, UserWarning) and "annotation says" in str(w.message)
    ]
    assert len(mismatch) == 1
    message = str(mismatch[0].message)
    assert "fixture_002.jpg" in message and "80x80" in message and "40x40" in message and "resized" in message
    assert dataset.num_size_mismatch == expected["size_mismatch"]["test"] == 1
    assert len(dataset.size_mismatches) == 1
    assert "fixture_002.jpg is 80x80 but its annotation says 40x40" in dataset.size_mismatches[0]
    # Once per dataset object: a new object reports it again.
    with pytest.warns(UserWarning, match="fixture_002.jpg"):
        RRSISDDataset(root, "test").target_mask(
            next(i for i in range(len(dataset)) if dataset[i]["image_id"] == 2)
        )


def test_no_size_mismatch_no_warning(fixture_root):
    root, expected = fixture_root
    for split in ("train", "val"):
        dataset = RRSISDDataset(root, split)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            for sample in dataset:
                assert sample["mask"].shape == (sample["image"].height, sample["image"].width)
        assert dataset.num_size_mismatch == expected["size_mismatch"][split] == 0


def test_released_form_trains_and_evaluates_end_to_end(tmp_path):
    """`rrsis-bench run` on a tree in the released form, with FIANet's official object mask."""
    from rrsis_bench.cli import main

    write_rrsisd_fixture(tmp_path / "data")
    run_dir = tmp_path / "run"
    code = main(["run", "method=test_fianet", "data=rrsisd", f"data.root={tmp_path / 'data'}", "trainer=debug",
                 "data.image_size=32", "data.eval_size=null", "data.object_mask=official",
                 "+data.options.overlap=official", "trainer.batch_size=2", f"hydra.run.dir={run_dir}"])
    assert code == 0
    record = json.loads((run_dir / "record.json").read_text())
    assert record["data"]["name"] == "rrsisd" and record["metrics"]["num_samples"] == 3
