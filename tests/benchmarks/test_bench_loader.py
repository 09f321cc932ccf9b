"""Does the loader keep up? A DataLoader at the published protocol against the model it feeds (issue 12 §3).

RRSIS-D-form data (800x800 JPEG scenes in the RRSIS-D layout, COCO masks) through the training
transform at 480x480: JPEG decode, bilinear resize, normalisation, nearest mask resize, tokenisation
with FIANet's declared inputs (ground-object and spatial-position token masks), collate, batch 8;
with 0, 2 and 4 worker processes. One round is one epoch over the whole set. Workers are persistent
and the first epoch is a warm-up round, so the figures are the steady state (worker start-up and
first-use caches excluded). The figure is samples/s and samples/s per worker (``extra_info``; 0 workers
count as one, and the main process then runs with one torch thread, as a worker does).
``test_bench_fianet_train_step_480`` is what the model consumes on the same CPU (one training step of
the full FIANet at 480x480, batch 1, random init), for the ratio.

Measure (and write docs/figures/loader-benchmark.json) with
`pytest tests/benchmarks/test_bench_loader.py --benchmark-enable -m "slow or not slow"
--benchmark-json=docs/figures/loader-benchmark.json`; by default one small epoch per worker count
runs once as a test, and the full set (40 scenes, 155 samples) and the FIANet step are `slow`.
"""

from __future__ import annotations

import pytest
import torch
from rrsis_bench.datasets.synthetic import SyntheticDataset
from torch.utils.data import DataLoader

from rrsis_bench.data.pipeline import SampleTransform, TransformedDataset, class_phrases, collate
from rrsis_bench.data.text import ExpressionEncoder
from rrsis_bench.method import IMAGENET_MEAN, IMAGENET_STD
from rrsis_bench.nn.text import build_tokenizer

SIZE, BATCH, MAX_TOKENS = 480, 8, 22  # the RRSIS-D protocol: 480x480, batch 8, data.max_tokens of data=rrsisd
FIANET_INPUTS = ("object_mask", "position_mask")  # what create_method("fianet").spec.inputs declares
SMALL_SCENES, FULL_SCENES = 4, 40  # ~4 expressions per scene: 15 and 155 samples
WORKERS = (0, 2, 4)


def scenes(tmp_path_factory, count: int) -> SyntheticDataset:
    root = tmp_path_factory.mktemp(f"rrsisd800-{count}")
    return SyntheticDataset(root=root, split="train", image_size=800, num_images={"train": count, "val": 1, "test": 1})


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return scenes(tmp_path_factory, SMALL_SCENES)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return scenes(tmp_path_factory, FULL_SCENES)


def make_loader(raw, workers: int) -> DataLoader:
    """The training loader's form (no ground truth at eval size), in a fixed order."""
    encode = ExpressionEncoder(build_tokenizer("minilm"), MAX_TOKENS, class_phrases(raw))
    transform = SampleTransform(encode, image_size=SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD, inputs=FIANET_INPUTS)
    return DataLoader(TransformedDataset(raw, transform), batch_size=BATCH, num_workers=workers, collate_fn=collate,
                      persistent_workers=workers > 0)


def epoch(loader) -> tuple[list[int], set[tuple]]:
    """The sample indices one epoch yields and the distinct (image, mask, object_mask) batch shapes."""
    seen, shapes = [], set()
    for batch in loader:
        seen.extend(batch["index"].tolist())
        shapes.add((tuple(batch["image"].shape), tuple(batch["mask"].shape), tuple(batch["object_mask"].shape)))
    return seen, shapes


def measure_epochs(benchmark, raw, workers: int, rounds: int) -> None:
    loader = make_loader(raw, workers)
    threads = torch.get_num_threads()
    if workers == 0:
        torch.set_num_threads(1)  # a worker process runs with one thread; so does the 0-worker case
    try:
        seen, shapes = benchmark.pedantic(epoch, args=(loader,), rounds=rounds, warmup_rounds=1)
    finally:
        torch.set_num_threads(threads)
        del loader  # stops persistent workers
    n = len(raw)
    assert sorted(seen) == list(range(n))  # every sample exactly once per epoch
    full_batches = {((BATCH, 3, SIZE, SIZE), (BATCH, SIZE, SIZE), (BATCH, MAX_TOKENS))}
    assert shapes - full_batches <= {((n % BATCH, 3, SIZE, SIZE), (n % BATCH, SIZE, SIZE), (n % BATCH, MAX_TOKENS))}
    assert full_batches <= shapes
    benchmark.extra_info.update(samples=n, workers=workers, batch=BATCH, image_size=SIZE)
    if benchmark.stats is not None:  # None when benchmarks are disabled (the single test run)
        per_epoch = benchmark.stats.stats
        rate = n / per_epoch.min
        benchmark.extra_info.update(
            samples_per_s_best=round(rate, 2),
            samples_per_s_worst=round(n / per_epoch.max, 2),
            samples_per_s_per_worker_best=round(rate / max(workers, 1), 2),
        )


@pytest.mark.parametrize("workers", WORKERS)
def test_bench_loader_480_small(benchmark, small, workers):
    """A short epoch per worker count (the default test run: shapes, coverage)."""
    measure_epochs(benchmark, small, workers, rounds=1)


@pytest.mark.slow
@pytest.mark.parametrize("workers", WORKERS)
def test_bench_loader_480(benchmark, full, workers):
    """Steady-state samples/s at 480x480 from 800x800 RRSIS-D-form files: 3 epochs of 155 samples."""
    measure_epochs(benchmark, full, workers, rounds=3)


def test_workers_change_nothing(small):
    """The batches of 2 worker processes are the batches of the main process, tensor for tensor."""
    from rrsis_bench import create_method

    assert create_method("test_fianet").spec.inputs == FIANET_INPUTS
    main, workers = list(make_loader(small, 0)), list(make_loader(small, 2))
    assert len(main) == len(workers) == -(-len(small) // BATCH)
    for one, two in zip(main, workers, strict=True):
        assert one.keys() == two.keys()
        for key, value in one.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == two[key].dtype and torch.equal(value, two[key]), key
            else:
                assert value == two[key], key


@pytest.mark.slow
def test_bench_fianet_train_step_480(benchmark):
    """What the model consumes on this CPU: one optimizer step of the full FIANet (Swin-B + BERT-base,
    random init, fp32) at 480x480, batch 1 (a dummy batch of the loader's shapes); samples/s = 1 / step time."""
    from rrsis_bench import create_method
    from rrsis_bench.profile import dummy_batch

    torch.manual_seed(0)
    model = create_method("fianet", pretrained=False, text_pretrained=False).train()
    assert tuple(model.spec.inputs) == FIANET_INPUTS
    batch = dummy_batch(1, SIZE, MAX_TOKENS, torch.device("cpu"), model.spec.inputs)
    batch["mask"] = (torch.rand(1, SIZE, SIZE) > 0.8).float()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step() -> float:
        loss = model.loss(model(batch), batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    assert benchmark.pedantic(step, rounds=2, warmup_rounds=1) > 0
    benchmark.extra_info.update(batch=1, image_size=SIZE, torch_threads=torch.get_num_threads())
    if benchmark.stats is not None:
        benchmark.extra_info["samples_per_s_best"] = round(1 / benchmark.stats.stats.min, 3)
