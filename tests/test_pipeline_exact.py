"""The fast paths of the data pipeline change no bit of what a method receives.

The reference below is the transform as it was before them (PIL convert + bilinear resize, float
normalisation out of place, a mask resize per output); the new code must give identical tensors
(values and dtypes) on RRSIS-D-sized samples (800x800 JPEGs read by the RRSIS-D reader) and on images
built to hit every case (other sizes, upsampling, other PIL modes, every uint8 value).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from rrsis_bench.datasets.synthetic import SyntheticDataset

from rrsis_bench.data import pipeline
from rrsis_bench.data.pipeline import (
    SampleTransform,
    resize_rgb,
    torch_bilinear_matches_pil,
)
from rrsis_bench.data.text import ExpressionEncoder
from rrsis_bench.masks import resize_mask
from rrsis_bench.method import IMAGENET_MEAN, IMAGENET_STD
from rrsis_bench.nn.text import build_tokenizer

MEAN = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)


def reference_image(image: Image.Image, size: int) -> torch.Tensor:
    """The image tensor as SampleTransform computed it before the fast paths."""
    resized = image.convert("RGB").resize((size, size), Image.BILINEAR)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    return (pixels - MEAN) / STD


def reference_item(sample: dict, size: int, eval_size: int | None) -> dict[str, torch.Tensor]:
    mask = np.asarray(sample["mask"], dtype=bool)
    gt = mask if eval_size is None else resize_mask(mask, (eval_size, eval_size))
    return {"image": reference_image(sample["image"], size),
            "mask": torch.from_numpy(resize_mask(mask, (size, size)).astype(np.float32)),
            "gt_mask": torch.from_numpy(gt.copy())}


def assert_identical(new: torch.Tensor, old: torch.Tensor, what: str) -> None:
    assert new.dtype == old.dtype and new.shape == old.shape, what
    assert torch.equal(new, old), f"{what}: {int((new != old).sum())} values differ"


@pytest.fixture(scope="module")
def encode():
    return ExpressionEncoder(build_tokenizer("minilm"), 22, ["vehicle", "storage tank", "building"])


@pytest.fixture(scope="module")
def scenes_800(tmp_path_factory):
    """RRSIS-D-sized files: 800x800 JPEGs and COCO masks, read by the RRSIS-D reader."""
    root = tmp_path_factory.mktemp("exact800")
    return SyntheticDataset(root=root, split="train", image_size=800, num_images={"train": 2, "val": 1, "test": 1})


@pytest.mark.parametrize(("size", "eval_size"), [(480, 480), (480, None), (480, 320), (160, 480)])
def test_transform_equals_the_reference_on_rrsisd_sized_samples(scenes_800, encode, size, eval_size):
    transform = SampleTransform(encode, image_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD, eval_size=eval_size,
                                with_gt=True, inputs=("object_mask", "position_mask"))
    for index in range(len(scenes_800)):
        sample = scenes_800[index]
        new, old = transform(sample, source=scenes_800, index=index), reference_item(sample, size, eval_size)
        for key, value in old.items():
            assert_identical(new[key], value, f"{key} of sample {index} at {size} (eval {eval_size})")
        assert new["image"].is_contiguous()


def odd_images() -> list[Image.Image]:
    """Noise at RRSIS-D's size (the torch kernel at 480) and at sizes off it, upsampling, other modes (L,
    RGBA, P), and every uint8 value per channel."""
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (517, 333, 3), dtype=np.uint8)
    every_value = np.stack([np.roll(np.arange(480 * 480) % 256, c).reshape(480, 480) for c in range(3)], axis=2)
    return [
        Image.fromarray(rng.integers(0, 256, (800, 800, 3), dtype=np.uint8)),
        Image.fromarray(noise),
        Image.fromarray(rng.integers(0, 256, (100, 90, 3), dtype=np.uint8)),
        Image.fromarray(noise[:, :, 0]),  # L
        Image.fromarray(np.dstack([noise, noise[:, :, :1]])),  # RGBA
        Image.fromarray(noise).convert("P"),
        Image.fromarray(every_value.astype(np.uint8)),  # same size: normalisation alone, all 256 values
    ]


@pytest.mark.parametrize("size", [480, 64])
def test_resize_and_normalisation_equal_the_reference(size):
    for number, image in enumerate(odd_images()):
        new = resize_rgb(image, (size, size)).to(torch.float32, memory_format=torch.contiguous_format)
        new = new.div_(255.0).sub_(MEAN).div_(STD)
        assert_identical(new, reference_image(image, size), f"image {number} ({image.mode} {image.size}) at {size}")


def test_rrsisd_size_takes_the_torch_kernel_and_a_wrong_kernel_is_refused(monkeypatch):
    assert torch_bilinear_matches_pil((800, 800), (480, 480))  # RRSIS-D's DIOR images at the protocol size
    real = pipeline._torch_bilinear

    def off_by_one(pixels, size):
        out = real(pixels, size).clone()
        out[0, 0, 0] ^= 1
        return out

    torch_bilinear_matches_pil.cache_clear()
    monkeypatch.setattr(pipeline, "_torch_bilinear", off_by_one)
    try:
        assert not torch_bilinear_matches_pil((800, 800), (480, 480))
        image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (800, 800, 3), dtype=np.uint8))
        assert_identical(resize_rgb(image, (480, 480)), reference_image_uint8(image, 480), "PIL fallback")
    finally:
        torch_bilinear_matches_pil.cache_clear()


def reference_image_uint8(image: Image.Image, size: int) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR)).copy()).permute(2, 0, 1)

