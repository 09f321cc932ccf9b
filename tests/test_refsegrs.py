"""RefSegRS reader on the hand-written fixture in tests/data/refsegrs_fixture.py."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pytest
from data.refsegrs_fixture import write_refsegrs_fixture
from PIL import Image
from rrsis_bench.datasets.refsegrs import CATEGORIES, RefSegRSDataset, class_name_of, read_mask

from rrsis_bench.masks import mask_bbox

# The fixture's 24×24 mask for a 48×48 image is there on purpose; the warning has its own test.
pytestmark = pytest.mark.filterwarnings("ignore:.*but its image is:UserWarning")


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("refsegrs")
    return root, write_refsegrs_fixture(root)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_counts_per_split(fixture_root, split):
    root, expected = fixture_root
    dataset = RefSegRSDataset(root, split)
    assert isinstance(dataset, Sequence)
    assert len(dataset) == expected["counts"][split]
    assert dataset.num_skipped == 0
    assert dataset.num_unclassified == expected["unclassified"][split]


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_samples_match_expected_masks(fixture_root, split):
    root, expected = fixture_root
    for sample in RefSegRSDataset(root, split):
        facts = expected["samples"][sample["sample_id"]]
        assert facts["split"] == split
        assert isinstance(sample["image"], Image.Image) and sample["image"].mode == "RGB"
        assert sample["mask"].dtype == bool
        assert sample["mask"].shape == (sample["image"].height, sample["image"].width)
        assert int(sample["mask"].sum()) == facts["area"]
        assert mask_bbox(sample["mask"]) == facts["bbox"]
        for key in ("text", "class_name", "image_id", "line_number"):
            assert sample[key] == facts[key], key


def test_metadata_is_the_sample_without_pixels(fixture_root):
    root, _ = fixture_root
    dataset = RefSegRSDataset(root, "train")
    for index in range(len(dataset)):
        sample = dataset[index]
        assert dataset.metadata(index) == {k: v for k, v in sample.items() if k not in ("image", "mask")}
        assert np.array_equal(dataset.target_mask(index), sample["mask"])
        assert dataset.image_size(index) == sample["image"].size


def test_sample_ids_are_unique_and_follow_line_numbers(fixture_root):
    root, expected = fixture_root
    ids = [s["sample_id"] for split in ("train", "val", "test") for s in RefSegRSDataset(root, split)]
    assert len(ids) == len(set(ids)) == len(expected["samples"])
    # Line 3 of the train file is blank: it is skipped, and later lines keep their own numbers.
    assert [RefSegRSDataset(root, "train").sample_id(i) for i in range(6)] == [
        "train_1",
        "train_2",
        "train_4",
        "train_5",
        "train_6",
        "train_7",
    ]


def test_lines_sharing_a_name_share_image_and_mask(fixture_root):
    root, _ = fixture_root
    samples = [s for s in RefSegRSDataset(root, "train") if s["image_id"] == "scene_a"]
    assert len(samples) == 2 and samples[0]["text"] != samples[1]["text"]
    assert np.array_equal(samples[0]["mask"], samples[1]["mask"])


def test_threshold_keeps_values_above_50_in_16_bit_masks(fixture_root):
    root, expected = fixture_root
    raw = np.asarray(Image.open(expected["mask_files"]["scene_b"]))
    assert raw.dtype == np.uint16
    mask = read_mask(expected["mask_files"]["scene_b"])
    assert mask[2:8, 2:10].all()  # 60
    assert mask[20:22, 0:5].all()  # 300: only right when all 16 bits are read
    assert not mask[12:20, 12:20].any()  # 40
    assert not mask[10].any()  # exactly 50 is background
    assert int(mask.sum()) == 58
    assert np.array_equal(read_mask(expected["mask_files"]["scene_b"], threshold=0), raw > 0)


def test_colour_mask_is_read_as_grey(tmp_path):
    values = np.zeros((4, 6, 3), dtype=np.uint8)
    values[1:3, 2:5] = 255
    values[0, 0] = (40, 40, 40)
    Image.fromarray(values).save(tmp_path / "rgb.tif")
    mask = read_mask(tmp_path / "rgb.tif")
    assert mask.shape == (4, 6) and mask.sum() == 6 and mask[1:3, 2:5].all()


def test_size_mismatch_resizes_mask_and_warns_once(fixture_root):
    root, expected = fixture_root
    dataset = RefSegRSDataset(root, "train")
    assert dataset.num_resized == 0  # counted as masks are decoded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = list(dataset) + list(dataset)
    resized = [w for w in caught if "but its image is" in str(w.message)]
    assert len(resized) == 1
    message = str(resized[0].message)
    assert "scene_c.tif" in message and "24x24" in message and "48x48" in message and "resized" in message
    assert dataset.num_resized == expected["resized"]["train"] == 1
    assert dataset.size_mismatches == [
        f"{root / 'masks' / 'scene_c.tif'} is 24x24 but its image is 48x48; the mask is resized (nearest) to the image"
    ]
    sample = next(s for s in samples if s["image_id"] == "scene_c")
    assert sample["image"].size == (48, 48) and sample["mask"].shape == (48, 48)
    assert sample["mask"][12:24, 6:18].all() and sample["mask"].sum() == 144


def test_no_mismatch_no_warning(fixture_root):
    root, _ = fixture_root
    dataset = RefSegRSDataset(root, "val")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        list(dataset)
    assert dataset.num_resized == 0


@pytest.mark.parametrize(
    ("text", "class_name"),
    [
        ("road marking on the road", "road marking"),  # longest phrase at the earliest match
        ("the road next to the road marking", "road"),  # earliest match, even if shorter
        ("vehicle beside the road marking", "vehicle"),
        ("the cars parked along the street", "car"),  # plural; "street" is not tree
        ("trees along the street", "tree"),
        ("the trees", "tree"),
        ("buses near the sidewalk", "bus"),  # "es" plural after s
        ("the business district", ""),  # "business" is not bus
        ("the cares of the town", ""),  # "es" only after s, x, z, ch, sh
        ("a roadside cafe", ""),  # whole words only
        ("Low  Vegetation by the BUILDING", "low vegetation"),  # case and spacing
        ("low-vegetation strip", "low vegetation"),
        ("impervious surfaces", "impervious surface"),
        ("road markings", "road marking"),
        ("", ""),
    ],
)
def test_class_name_rule(text, class_name):
    assert class_name_of(text, CATEGORIES) == class_name


def test_class_name_of_other_category_lists():
    assert class_name_of("the Storage Tanks", ("tank", "storage tank")) == "storage tank"
    assert class_name_of("a box of boxes", ("box",)) == "box"
    assert class_name_of("boxes", ("box",)) == "box"
    assert class_name_of("oilxtank", ("oil.tank",)) == ""  # categories are literal text, not regexes
    assert class_name_of("an oil.tank", ("oil.tank",)) == "oil.tank"
    assert class_name_of("anything", ()) == ""
    assert len(CATEGORIES) == 14 and len(set(CATEGORIES)) == 14


def test_class_union_mask_is_not_available(fixture_root):
    root, _ = fixture_root
    with pytest.raises(NotImplementedError, match="no instance annotations"):
        RefSegRSDataset(root, "val").class_union_mask(0)


def test_missing_phrase_file_explains_the_fix(tmp_path):
    expected = write_refsegrs_fixture(tmp_path)
    expected["phrase_files"]["val"].unlink()
    with pytest.raises(FileNotFoundError) as error:
        RefSegRSDataset(tmp_path, "val")
    message = str(error.value)
    assert str(expected["phrase_files"]["val"]) in message
    assert "data.root" in message and "output_phrase_" in message


@pytest.mark.parametrize("folder", ["images", "masks"])
def test_missing_folder_explains_the_fix(tmp_path, folder):
    (tmp_path / ("masks" if folder == "images" else "images")).mkdir()
    (tmp_path / "output_phrase_train.txt").write_text("scene_a road\n")
    with pytest.raises(FileNotFoundError) as error:
        RefSegRSDataset(tmp_path, "train")
    message = str(error.value)
    assert str(tmp_path / folder) in message
    assert "data.root" in message and "images/, masks/ and output_phrase_*.txt" in message


def test_line_without_expression_names_file_and_line(tmp_path):
    expected = write_refsegrs_fixture(tmp_path)
    path = expected["phrase_files"]["test"]
    path.write_text("scene_a the road\n\nscene_b   \n")
    with pytest.raises(ValueError) as error:
        RefSegRSDataset(tmp_path, "test")
    message = str(error.value)
    assert str(path) in message and "Line 3" in message and "scene_b" in message


@pytest.mark.parametrize("kind", ["image_files", "mask_files"])
def test_missing_file_is_named_or_skipped(tmp_path, kind):
    expected = write_refsegrs_fixture(tmp_path)
    missing = expected[kind]["scene_d"]
    missing.unlink()
    with pytest.raises(FileNotFoundError) as error:
        RefSegRSDataset(tmp_path, "test")
    message = str(error.value)
    assert str(missing) in message and "line 3" in message and "skip_missing=True" in message
    assert "+data.options.skip_missing=true" in message  # the command-line form too
    dataset = RefSegRSDataset(tmp_path, "test", skip_missing=True)
    assert len(dataset) == expected["counts"]["test"] - 1 and dataset.num_skipped == 1
    assert dataset.missing_files == [missing]
    assert "scene_d" not in {s["image_id"] for s in dataset}
    assert len(RefSegRSDataset(tmp_path, "train")) == expected["counts"]["train"]


@pytest.mark.filterwarnings("ignore:Truncated File Read|Corrupt EXIF:UserWarning")  # PIL, on the broken TIFF
@pytest.mark.parametrize("kind", ["image_files", "mask_files"])
def test_truncated_file_names_the_file_and_the_sample(tmp_path, kind):
    expected = write_refsegrs_fixture(tmp_path)
    broken = expected[kind]["scene_d"]  # used by test line 3 only
    broken.write_bytes(broken.read_bytes()[:100])
    dataset = RefSegRSDataset(tmp_path, "test")
    with pytest.raises(OSError) as error:
        dataset[2]
    message = str(error.value)
    assert str(broken) in message and "test_3" in message and "+data.options.skip_missing=true" in message


def test_class_phrases_are_the_category_words(fixture_root):
    root, _ = fixture_root
    phrases = RefSegRSDataset(root, "train").class_phrases
    assert phrases == {category: (category,) for category in CATEGORIES} and len(phrases) == 14


def test_negative_and_out_of_range_index(fixture_root):
    root, _ = fixture_root
    dataset = RefSegRSDataset(root, "test")
    assert dataset[-1]["sample_id"] == dataset[len(dataset) - 1]["sample_id"] == "test_3"
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_unknown_split_lists_valid_ones(fixture_root):
    root, _ = fixture_root
    with pytest.raises(ValueError, match="train, val, test"):
        RefSegRSDataset(root, "testA")


def test_name_and_one_line_description():
    assert RefSegRSDataset.name == "refsegrs"
    assert RefSegRSDataset.__doc__.strip().splitlines()[0]


def test_dataset_module_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys, rrsis_bench.datasets.refsegrs; print(sorted({'torch', 'tokenizers'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_created_through_the_registry(fixture_root):
    import rrsis_bench

    root, expected = fixture_root
    dataset = rrsis_bench.create_dataset("refsegrs", root=root, split="val")
    assert isinstance(dataset, RefSegRSDataset)
    assert len(dataset) == expected["counts"]["val"]
    assert "refsegrs" in rrsis_bench.list_datasets()
