"""Data-loading throughput (pytest-benchmark): raw reader, and reader + transform + collate.

Measure with `pytest tests/benchmarks --benchmark-enable`; by default each runs once as a test.
"""

from __future__ import annotations

import pytest
from rrsis_bench.datasets.synthetic import SyntheticDataset
from torch.utils.data import DataLoader

from rrsis_bench.data.pipeline import SampleTransform, TransformedDataset, class_phrases, collate
from rrsis_bench.data.text import ExpressionEncoder
from rrsis_bench.method import IMAGENET_MEAN, IMAGENET_STD
from rrsis_bench.nn.text import build_tokenizer

BATCH = 16


@pytest.fixture(scope="module")
def raw(synthetic_root):
    return SyntheticDataset(root=synthetic_root, split="train", num_images={"train": 12, "val": 4, "test": 5})


@pytest.fixture(scope="module")
def raw_800(tmp_path_factory):
    """RRSIS-D-sized scenes (800x800 JPEGs, the DIOR size) in the RRSIS-D layout."""
    root = tmp_path_factory.mktemp("synthetic800")
    return SyntheticDataset(root=root, split="train", image_size=800, num_images={"train": 6, "val": 1, "test": 1})


def read_all(dataset) -> int:
    return sum(int(dataset[i]["mask"].any()) for i in range(len(dataset)))


def load_epoch(loader) -> int:
    return sum(batch["image"].shape[0] for batch in loader)


def test_bench_raw_reader(benchmark, raw):
    """Raw samples/s of the rrsisd reader (JPEG decode + COCO mask decode) on synthetic data."""
    assert benchmark(read_all, raw) == len(raw)


@pytest.mark.parametrize("size", [160, 480])
def test_bench_pipeline(benchmark, raw, size):
    """Samples/s through reader + resize + normalize + text encoding (ids, object/position masks) + collate at ``size``², one process."""
    encode = ExpressionEncoder(build_tokenizer("minilm"), 20, class_phrases(raw))
    transform = SampleTransform(encode, image_size=size, mean=IMAGENET_MEAN,
                                std=IMAGENET_STD, eval_size=None, with_gt=True)
    loader = DataLoader(TransformedDataset(raw, transform), batch_size=BATCH, collate_fn=collate)
    assert benchmark(load_epoch, loader) == len(raw)


def test_bench_pipeline_rrsisd_sized_480(benchmark, raw_800):
    """Samples/s from 800x800 RRSIS-D-layout files to 480x480 tensors (the published protocol)."""
    encode = ExpressionEncoder(build_tokenizer("minilm"), 22, class_phrases(raw_800))
    transform = SampleTransform(encode, image_size=480, mean=IMAGENET_MEAN, std=IMAGENET_STD, eval_size=480,
                                with_gt=True)
    loader = DataLoader(TransformedDataset(raw_800, transform), batch_size=8, collate_fn=collate)
    assert benchmark(load_epoch, loader) == len(raw_800)
