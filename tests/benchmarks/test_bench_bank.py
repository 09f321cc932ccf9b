"""Cost of lrb_wrel's reference bank (pytest-benchmark): one bank update for a batch of 8 weak samples
at RRSIS-D's size (10,954 weak samples at 10 % accurate × 20 vectors × 768, BERT-base's width), with
the sparse lookup + RowAdamW the strategy uses, against a dense AdamW over the whole bank (what a
plain nn.Parameter bank costs).

Measure (and write the figures docs/strategies.md quotes) with
`pytest tests/benchmarks/test_bench_bank.py --benchmark-enable -m "slow or not slow"
--benchmark-json=docs/figures/bank-benchmark.json`; by default the small size runs once as a test
and the RRSIS-D size is `slow` (it allocates the 673 MB bank).
"""

from __future__ import annotations

import pytest
import torch

from rrsis_bench.strategies.lrb_wrel import ReferenceBank, RowAdamW, fill_pad_positions

RRSISD_WEAK_AT_10 = 10_954
BATCH, TOKENS, LENGTH = 8, 20, 20


def bank_step(bank: ReferenceBank, optimizer, rows: torch.Tensor) -> None:
    """Look up the rows, fill the PAD positions of a class-name sequence, a stand-in loss, one update."""
    optimizer.zero_grad(set_to_none=True)
    embeds = torch.zeros(rows.numel(), TOKENS, bank.width)
    mask = torch.zeros(rows.numel(), TOKENS, dtype=torch.long)
    mask[:, :3] = 1  # [CLS] class [SEP]
    filled, _ = fill_pad_positions(embeds, mask, bank(rows), torch.ones(rows.numel(), dtype=torch.bool))
    (filled ** 2).mean().backward()
    optimizer.step()


def make(num_rows: int, width: int, *, sparse: bool):
    bank = ReferenceBank(num_rows, LENGTH, width, std=0.02, generator=torch.Generator().manual_seed(0))
    if not sparse:
        bank.table.sparse = False
        return bank, torch.optim.AdamW(bank.parameters(), lr=1e-5)
    return bank, RowAdamW(bank.parameters(), lr=1e-5)


def batches(num_rows: int):
    generator = torch.Generator().manual_seed(1)
    while True:
        yield torch.randperm(num_rows, generator=generator)[:BATCH]


@pytest.mark.parametrize("sparse", [True, False], ids=["row_adamw", "dense_adamw"])
def test_bench_bank_step_small(benchmark, sparse):
    bank, optimizer = make(200, 32, sparse=sparse)
    rows = batches(200)
    benchmark(lambda: bank_step(bank, optimizer, next(rows)))


@pytest.mark.slow
@pytest.mark.parametrize("sparse", [True, False], ids=["row_adamw", "dense_adamw"])
def test_bench_bank_step_rrsisd(benchmark, sparse):
    bank, optimizer = make(RRSISD_WEAK_AT_10, 768, sparse=sparse)
    assert bank.num_numbers == RRSISD_WEAK_AT_10 * LENGTH * 768  # about 168 M numbers
    rows = batches(RRSISD_WEAK_AT_10)
    benchmark.pedantic(lambda: bank_step(bank, optimizer, next(rows)), rounds=10, warmup_rounds=1)
    if sparse:  # optimizer state exists only for the rows updated so far (11 steps of 8 rows)
        assert int(optimizer.state[bank.table.weight]["used"]) <= 11 * BATCH
