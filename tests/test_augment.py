"""RRSIS-D random-box augmentation: fixed seeded subset, reproducible boxes, inputs untouched."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from rrsis_bench.data.augment import AugmentedDataset, RandomBoxes


def make_samples(n: int = 10, width: int = 96, height: int = 64) -> list[dict]:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        # Pixels in 1..255 so every black pixel is a pasted box.
        pixels = rng.integers(1, 256, size=(height, width, 3), dtype=np.uint8)
        mask = np.zeros((height, width), dtype=bool)
        mask[10:30, 20:50] = True
        samples.append({
            "image": Image.fromarray(pixels), "mask": mask, "text": f"object {i}", "class_name": "vehicle",
            "sample_id": f"{i}_0", "image_id": i, "ref_id": i,
        })
    return samples


def black_pixels(image: Image.Image) -> int:
    return int((np.asarray(image) == 0).all(axis=2).sum())


@pytest.mark.parametrize("n", [1, 7, 10, 23, 100])
def test_select_count_and_order_independence(n):
    boxes = RandomBoxes(seed=3)
    ids = list(range(n))
    chosen = boxes.select(ids)
    assert len(chosen) == int(np.floor(0.2 * n + 0.5))
    assert chosen <= set(ids)
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert boxes.select(shuffled) == chosen
    assert boxes.select(shuffled + shuffled[:3]) == chosen  # duplicates count once
    assert RandomBoxes(seed=3).select(ids) == chosen


def test_select_depends_on_seed():
    ids = list(range(100))
    assert RandomBoxes(seed=0).select(ids) != RandomBoxes(seed=1).select(ids)


def test_boxes_pasted_mask_unchanged_input_untouched():
    sample = make_samples(1)[0]
    before = sample["image"].tobytes()
    mask_before = sample["mask"].copy()
    boxes = RandomBoxes()
    out = boxes(sample, epoch=0, index=0)
    assert out is not sample and out["image"] is not sample["image"]
    assert sample["image"].tobytes() == before  # input not mutated
    assert out["image"].size == sample["image"].size and out["image"].mode == "RGB"
    assert black_pixels(out["image"]) > 0 and black_pixels(sample["image"]) == 0
    np.testing.assert_array_equal(out["mask"], mask_before)
    assert out["text"] == sample["text"]


def test_box_count_in_range_and_clipped():
    boxes = RandomBoxes()
    for index in range(50):
        drawn = boxes.boxes(96, 64, epoch=1, index=index)
        assert 20 <= len(drawn) <= 60
        x0, y0, x1, y1 = drawn.T
        assert (x0 >= 0).all() and (x0 < 96).all() and (y0 >= 0).all() and (y0 < 64).all()
        assert (x1 <= 96).all() and (y1 <= 64).all() and (x1 > x0).all() and (y1 > y0).all()
        assert ((x1 - x0) <= 32).all() and ((y1 - y0) <= 32).all()


def test_same_epoch_index_same_boxes_new_epoch_new_boxes():
    sample = make_samples(1)[0]
    boxes = RandomBoxes(seed=5)
    first = boxes(sample, epoch=2, index=4)["image"].tobytes()
    assert boxes(sample, epoch=2, index=4)["image"].tobytes() == first
    assert RandomBoxes(seed=5)(sample, epoch=2, index=4)["image"].tobytes() == first
    assert boxes(sample, epoch=3, index=4)["image"].tobytes() != first
    assert boxes(sample, epoch=2, index=5)["image"].tobytes() != first


def test_augmented_dataset_boxes_only_selected_refs():
    samples = make_samples(10)
    originals = [s["image"].tobytes() for s in samples]
    dataset = AugmentedDataset(samples, RandomBoxes(seed=1))
    assert len(dataset.selected_refs) == 2 and len(dataset) == 10
    for i in range(len(dataset)):
        item = dataset[i]
        if samples[i]["ref_id"] in dataset.selected_refs:
            assert black_pixels(item["image"]) > 0
            np.testing.assert_array_equal(item["mask"], samples[i]["mask"])
        else:
            assert item["image"].tobytes() == originals[i]
        assert samples[i]["image"].tobytes() == originals[i]
    assert dataset.metadata(0) is samples[0] or dataset.metadata(0) == samples[0]


def test_augmented_dataset_epochs():
    samples = make_samples(10)
    dataset = AugmentedDataset(samples, RandomBoxes(seed=1))
    index = next(i for i in range(10) if samples[i]["ref_id"] in dataset.selected_refs)
    epoch0 = dataset[index]["image"].tobytes()
    assert dataset[index]["image"].tobytes() == epoch0
    dataset.set_epoch(1)
    assert dataset[index]["image"].tobytes() != epoch0
    dataset.set_epoch(0)
    assert dataset[index]["image"].tobytes() == epoch0
    with pytest.raises(ValueError, match="non-negative"):
        dataset.set_epoch(-1)


def test_augmented_dataset_falls_back_to_sample_id():
    samples = [{k: v for k, v in s.items() if k != "ref_id"} for s in make_samples(5)]
    dataset = AugmentedDataset(samples, RandomBoxes(fraction=1.0))
    assert dataset.selected_refs == {s["sample_id"] for s in samples}
    assert all(black_pixels(dataset[i]["image"]) > 0 for i in range(5))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"box_size": 0}, "box_size"),
        ({"box_size": 2.5}, "box_size"),
        ({"min_boxes": 30, "max_boxes": 10}, "min_boxes"),
        ({"min_boxes": -1}, "min_boxes"),
        ({"fraction": 1.2}, "fraction"),
        ({"seed": -1}, "seed"),
    ],
)
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomBoxes(**kwargs)


def test_zero_fraction_selects_nothing():
    assert RandomBoxes(fraction=0.0).select(range(10)) == set()
    assert RandomBoxes().select([]) == set()
