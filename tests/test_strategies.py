"""Training strategies: the registry, the plain strategies' data, and LRB-WREL (bank, optimizer, teacher
schedule, stages, resume) over every test_* method."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from conftest import exit_code, one_line
from safetensors.torch import load_file

import rrsis_bench
from rrsis_bench.engine.trainer import Trainer
from rrsis_bench.strategies import STRATEGIES, StrategyError, build_strategy, create_strategy
from rrsis_bench.strategies.lrb_wrel import (
    LRBWREL,
    ReferenceBank,
    RowAdamW,
    fill_pad_positions,
    select_rows,
    teacher_momentum,
)


def run(run_dir, data_overrides, *extra) -> int:
    return exit_code(["run", "trainer=debug", "trainer.progress=false", *data_overrides,
                      f"hydra.run.dir={run_dir}", *extra])


def record_of(run_dir) -> dict:
    return json.loads((run_dir / "record.json").read_text())


# -- registry and plain strategies -----------------------------------------------------------------------
def test_the_built_in_strategies_are_registered_and_a_typo_is_named():
    assert {"standard", "only_accurate", "naive_wrel", "lrb_wrel"} <= set(STRATEGIES.names())
    with pytest.raises(LookupError, match=r"Unknown strategy 'lrb_wrl'\. Did you mean: lrb_wrel\?.*list strategies"):
        create_strategy("lrb_wrl")


def test_options_are_checked():
    with pytest.raises(StrategyError, match=r"strategy=standard takes no options \(got strategy.epochs\)"):
        build_strategy({"name": "standard", "epochs": 3})
    with pytest.raises(StrategyError, match=r"strategy.bank_selection must be one of"):
        build_strategy({"name": "lrb_wrel", "bank_selection": "best"})
    with pytest.raises(StrategyError, match=r"strategy=lrb_wrel: .*unexpected keyword argument 'bank_size'"):
        build_strategy({"name": "lrb_wrel", "bank_size": 3})


@pytest.mark.parametrize("name, weak, message", [
    ("standard", [True, False], r"strategy=standard trains on accurate expressions, but 1 of 2 .*strategy=naive_wrel"),
    ("lrb_wrel", [False, False], r"strategy=lrb_wrel needs training samples with weak expressions"),
    ("only_accurate", [True, True], r"every training sample is weak"),
])
def test_a_strategy_refuses_data_it_cannot_train(name, weak, message):
    with pytest.raises(StrategyError, match=message):
        create_strategy(name).check_data(weak)


def test_standard_refuses_weak_data_before_anything_is_written(tmp_path, data_overrides, capsys):
    run_dir = tmp_path / "refused"
    assert run(run_dir, data_overrides, "method=test_baseline", "data.weak.accurate_ratio=0.5") == 1
    assert "strategy=standard trains on accurate expressions" in one_line(capsys)
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "record.json").exists()


@pytest.mark.parametrize("strategy", ["only_accurate", "naive_wrel"])
def test_plain_strategies_iterate_over_their_samples(strategy, tmp_path, data_overrides):
    run_dir = tmp_path / strategy
    assert run(run_dir, data_overrides, "method=test_baseline", f"strategy={strategy}",
               "data.weak.accurate_ratio=0.5") == 0
    record = record_of(run_dir)
    counts = record["data"]["weak"]["counts"]
    (stage,) = record["strategy"]["stages"]
    assert record["strategy"]["name"] == strategy
    assert stage["samples"] == (counts["accurate"] if strategy == "only_accurate" else counts["total"])
    assert stage["data"] == ("accurate" if strategy == "only_accurate" else "all")
    assert record["config"]["strategy"] == {"name": strategy}


# -- LRB-WREL pieces -------------------------------------------------------------------------------------
@pytest.mark.parametrize("progress, momentum", [
    (0.0, 0.95), (0.5, 0.97), (1.0, 0.99), (2.0, 0.9945), (3.0, 0.9995), (5.0, 0.9995),
])
def test_teacher_momentum_follows_the_released_schedule(progress, momentum):
    # 0.95 + 0.04 p on [0, 1); 0.99 + 0.009 (p - 1) / 2 on [1, 3); 0.9995 from 3
    assert teacher_momentum(progress) == pytest.approx(momentum, abs=1e-12)


def test_pad_positions_are_filled_in_order_and_switched_on():
    embeds = torch.zeros(2, 5, 2)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    vectors = torch.tensor([[[1.0, 1.0], [2.0, 2.0]], [[3.0, 3.0], [4.0, 4.0]]])
    out, out_mask = fill_pad_positions(embeds, mask, vectors, torch.tensor([True, False]))
    # row 0: PAD positions 2, 3 get vectors 0, 1; position 4 is past the bank length and stays PAD
    assert out[0, :, 0].tolist() == [0.0, 0.0, 1.0, 2.0, 0.0]
    assert out_mask[0].tolist() == [1, 1, 1, 1, 0]
    assert torch.equal(out[1], embeds[1]) and torch.equal(out_mask[1], mask[1])  # not weak: untouched
    assert mask[0].tolist() == [1, 1, 0, 0, 0]  # inputs are not modified


def test_row_adamw_equals_adamw_when_every_row_has_a_gradient():
    torch.manual_seed(0)
    dense = torch.nn.Parameter(torch.randn(4, 3))
    table = torch.nn.Embedding(4, 3, sparse=True, _weight=dense.detach().clone())
    ref = torch.optim.AdamW([dense], lr=0.1, weight_decay=0.01)
    row = RowAdamW(table.parameters(), lr=0.1, weight_decay=0.01)
    for step in range(3):
        target = torch.randn(4, 3, generator=torch.Generator().manual_seed(step))
        for optimizer, lookup in ((ref, lambda rows: dense[rows]), (row, table)):
            optimizer.zero_grad()
            ((lookup(torch.arange(4)) - target) ** 2).sum().backward()
            optimizer.step()
    assert torch.allclose(table.weight, dense, atol=1e-6)


def test_row_adamw_moves_only_used_rows_and_keeps_state_for_them_only():
    table = torch.nn.Embedding(1000, 8, sparse=True)
    before = table.weight.detach().clone()
    optimizer = RowAdamW(table.parameters(), lr=0.1)
    for rows in ([3, 7], [7, 9]):
        optimizer.zero_grad()
        table(torch.tensor(rows)).sum().backward()
        optimizer.step()
    changed = (table.weight != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [3, 7, 9]
    state = optimizer.state[table.weight]
    assert int(state["used"]) == 3 and state["exp_avg"].shape[0] < 1000  # not one row of state per bank row
    assert state["row_steps"][state["slot"][torch.tensor([3, 7, 9])]].tolist() == [1, 2, 1]
    # a checkpoint round trip keeps the bookkeeping integer (torch casts state to the parameter's dtype)
    again = RowAdamW(table.parameters(), lr=0.1)
    again.load_state_dict(optimizer.state_dict())
    assert again.state[table.weight]["slot"].dtype == torch.long
    assert torch.equal(again.state[table.weight]["exp_avg"], state["exp_avg"])
    # one step of Adam moves a row by lr (sign of the gradient, times 1 + decay) whatever its scale
    assert torch.allclose(table.weight[3], before[3] * (1 - 0.1 * 0.01) - 0.1, atol=1e-5)


def test_select_rows_indexes_every_batch_field():
    batch = {"image": torch.zeros(3, 1, 2, 2), "index": torch.tensor([5, 6, 7]), "text": ["a", "b", "c"],
             "note": "kept"}
    picked = select_rows(batch, torch.tensor([2, 0]))
    assert picked["index"].tolist() == [7, 5] and picked["text"] == ["c", "a"] and picked["note"] == "kept"


def test_the_bank_is_drawn_from_n0_002_with_its_own_generator():
    bank = ReferenceBank(500, 20, 16, std=0.02, generator=torch.Generator().manual_seed(0))
    again = ReferenceBank(500, 20, 16, std=0.02, generator=torch.Generator().manual_seed(0))
    assert torch.equal(bank.table.weight, again.table.weight)
    assert bank(torch.tensor([1, 2])).shape == (2, 20, 16)
    weight = bank.table.weight.detach()
    assert abs(float(weight.std()) - 0.02) < 0.001 and abs(float(weight.mean())) < 0.001


def test_learning_rates_default_to_the_release_scaled_by_the_base_lr():
    strategy = LRBWREL()

    class Settings:
        lr = 3e-5

    class FakeTrainer:
        settings = Settings()

    assert [strategy._lr(k, FakeTrainer()) for k in ("student_lr", "bank_lr", "joint_bank_lr")] == pytest.approx(
        [2e-5, 1e-5, 1e-6])
    assert LRBWREL(student_lr=0.5)._lr("student_lr", FakeTrainer()) == 0.5


# -- LRB-WREL end to end, every test_* method ------------------------------------------------------------
@pytest.fixture(scope="module", params=rrsis_bench.list_methods("test_*"))
def lrb_run(request, tmp_path_factory, data_overrides):
    run_dir = tmp_path_factory.mktemp(f"lrb-{request.param}") / "run"
    assert run(run_dir, data_overrides, f"method={request.param}", "strategy=lrb_wrel",
               "data.weak.accurate_ratio=0.5", "trainer.max_eval_samples=null") == 0
    return request.param, run_dir


def test_lrb_wrel_trains_every_test_method_in_three_stages(lrb_run):
    method, run_dir = lrb_run
    record = record_of(run_dir)
    assert record["status"] == "complete" and record["method"]["name"] == method
    stages = record["strategy"]["stages"]
    counts = record["data"]["weak"]["counts"]
    assert [(s["name"], s["data"], s["samples"], s["select"]) for s in stages] == [
        ("warmup", "accurate", counts["accurate"], False), ("bank", "weak", counts["weak"], False),
        ("joint", "all", counts["total"], True)]
    assert [h["stage"] for h in record["history"]] == ["warmup"] * 2 + ["bank"] * 2 + ["joint"] * 2
    assert "val_mIoU" in record["history"][-1] and "val_mIoU" not in record["history"][0]
    assert "bank_train_oIoU" in record["history"][2]
    assert record["selection"]["best_epoch"] in (5, 6)  # only the joint stage selects
    log = pd.read_csv(run_dir / "train_log.csv")
    assert list(log["stage"]) == ["warmup"] * 4 + ["bank"] * 4 + ["joint"] * 4
    assert log.loc[log["stage"] == "bank", "terms"].str.startswith("bank_loss=").all()
    assert log.loc[log["stage"] == "joint", "terms"].str.contains("bank_loss=").all()


def test_stage_two_trains_the_bank_only_and_stage_three_moves_the_student(lrb_run):
    _, run_dir = lrb_run
    state = torch.load(run_dir / "checkpoints" / "last" / "state.pt", weights_only=True)
    bank = state["strategy"]["state"]["bank"]
    initial = ReferenceBank(bank.shape[0], 20, bank.shape[1] // 20, std=0.02,
                            generator=torch.Generator().manual_seed(0)).table.weight
    moved = (bank != initial).any(dim=1)
    assert 0 < int(moved.sum()) <= bank.shape[0]  # debug epochs see only some weak samples
    teacher = state["strategy"]["state"]["teacher"]
    student = load_file(run_dir / "checkpoints" / "last" / "model.safetensors")
    assert set(teacher) < set(student)  # the text encoder is shared: the teacher stores none of it
    assert not any(k.startswith("text.") for k in teacher)
    assert any(not torch.equal(teacher[k], student[k]) for k in teacher if teacher[k].is_floating_point())


class Interrupted(Exception):
    pass


# Epoch 4 is the first joint epoch (resume at the stage boundary: the checkpoint is the end of stage 2), 5
# the second (the checkpoint holds the teacher and the bank's optimizer). Checked on test_baseline.
@pytest.mark.parametrize("lrb_run", ["test_baseline"], indirect=True)
@pytest.mark.parametrize("crash_at_epoch", [4, 5])
def test_a_killed_stage_three_run_resumes_to_identical_metrics(lrb_run, crash_at_epoch, tmp_path, data_overrides,
                                                               monkeypatch):
    method, reference = lrb_run
    run_dir = tmp_path / "crashed"
    real_epoch = Trainer._train_epoch

    def crash(self, index, stage_epoch, epoch, *args):
        if epoch == crash_at_epoch:
            raise Interrupted("simulated crash")
        return real_epoch(self, index, stage_epoch, epoch, *args)

    args = [f"method={method}", "strategy=lrb_wrel", "data.weak.accurate_ratio=0.5", "trainer.max_eval_samples=null"]
    monkeypatch.setattr(Trainer, "_train_epoch", crash)
    assert run(run_dir, data_overrides, *args) != 0
    assert record_of(run_dir)["last_checkpoint"]["epoch"] == crash_at_epoch
    monkeypatch.setattr(Trainer, "_train_epoch", real_epoch)
    assert run(run_dir, data_overrides, *args, "resume=true") == 0
    resumed, straight = record_of(run_dir), record_of(reference)
    assert resumed["metrics"] == straight["metrics"] and resumed["selection"] == straight["selection"]
    assert resumed["history"] == straight["history"]
    a, b = pd.read_csv(run_dir / "train_log.csv"), pd.read_csv(reference / "train_log.csv")
    assert list(a["loss"]) == list(b["loss"]) and list(a["stage"]) == list(b["stage"])
    resumed_w, straight_w = (load_file(d / "checkpoints/last/model.safetensors") for d in (run_dir, reference))
    assert all(torch.equal(resumed_w[k], straight_w[k]) for k in straight_w)
    bank = [torch.load(d / "checkpoints/last/state.pt", weights_only=True)["strategy"]["state"]["bank"]
            for d in (run_dir, reference)]
    assert torch.equal(*bank)
    shutil.rmtree(run_dir)


def _option(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize(("method", "ablation"), [pytest.param(m, a, id=f"{m}-{a}")
                                                  for m in rrsis_bench.list_methods("test_*")
                                                  for a in LRBWREL.ablations])
def test_every_lrb_wrel_ablation_trains_every_test_method(method, ablation, tmp_path, data_overrides):
    """Each switch of docs/strategies.md trains end to end (one epoch per stage) and does what it says."""
    options = [f"strategy.{key}={_option(value)}" for key, value in LRBWREL.ablations[ablation].items()]
    run_dir = tmp_path / "run"
    assert run(run_dir, data_overrides, f"method={method}", "strategy=lrb_wrel", "data.weak.accurate_ratio=0.5",
               "trainer.epochs=1", *options) == 0
    record = record_of(run_dir)
    assert record["status"] == "partial"  # trainer=debug caps the test pass
    epochs = {s["name"]: s["epochs"] for s in record["strategy"]["stages"]}
    expected = {"warmup": 1, "bank": 1, "joint": 1}
    expected.update({"no_bank": {"bank": 0}, "no_bank_stage": {"bank": 0}, "no_warmup": {"warmup": 0}}.get(ablation, {}))
    assert epochs == expected
    joint_terms = pd.read_csv(run_dir / "train_log.csv").query("stage == 'joint'")["terms"]
    assert joint_terms.str.contains("bank_loss=").all() == (ablation != "no_bank")
    state = torch.load(run_dir / "checkpoints" / "last" / "state.pt", weights_only=True)["strategy"]["state"]
    assert ("bank" in state) == (ablation != "no_bank")
    assert ("teacher" in state) == (ablation != "no_teacher")


def test_lrb_wrel_ablations_refuse_what_they_cannot_do():
    with pytest.raises(StrategyError, match=r"strategy.bank=false has no bank to fit: set strategy.bank_epochs"):
        LRBWREL(bank=False, bank_epochs=2)
    with pytest.raises(StrategyError, match=r"strategy.teacher=false has no EMA teacher"):
        LRBWREL(teacher=False, eval_model="teacher")
    with pytest.raises(StrategyError, match=r"strategy.teacher=false has no EMA teacher"):
        LRBWREL(teacher=False, kl_weight=0.5)


class BankStepTrainer:
    """What LRBWREL's bank step reads of a trainer."""

    class settings:  # noqa: N801 - stands in for TrainerSettings
        poly_power = 0.9
        lr = 1e-3

    @staticmethod
    def forward_loss(model, batch):
        output = model(batch)
        return dict(model.loss(output, batch))

    @staticmethod
    def check_finite(loss, what="loss"):
        assert torch.isfinite(loss), what


def test_without_a_teacher_the_bank_step_leaves_the_student_untouched():
    """strategy.teacher=false: the stage-3 bank learns through the student, whose parameters get no gradient
    from it and whose batch-norm statistics it does not move (the step runs in eval mode)."""
    torch.manual_seed(0)
    model = rrsis_bench.create_method("test_baseline").train()
    strategy = LRBWREL(teacher=False, bank_length=2)
    strategy.bank = ReferenceBank(2, 2, model.embed_tokens(torch.zeros(1, 1, dtype=torch.long)).shape[-1], std=0.02,
                                  generator=torch.Generator().manual_seed(0))
    strategy.row_of = torch.tensor([0, 1])
    strategy.text_params = list(model.text.parameters())
    strategy._new_bank_optimizer(BankStepTrainer(), 0.1, 10)
    batch = {"image": torch.randn(2, 3, 32, 32), "input_ids": torch.randint(1000, 2000, (2, 6)),
             "attention_mask": torch.tensor([[1, 1, 1, 0, 0, 0]] * 2), "mask": torch.zeros(2, 32, 32),
             "index": torch.tensor([0, 1])}
    batch["mask"][:, 4:20, 4:20] = 1
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    before = strategy.bank.table.weight.detach().clone()
    strategy._bank_step(BankStepTrainer(), model, batch)
    assert not torch.equal(strategy.bank.table.weight, before)  # the bank moved
    assert all(p.grad is None for p in model.parameters())  # the network did not learn from the bank's loss
    assert all(torch.equal(v, buffers[k]) for k, v in model.state_dict().items())  # nor did its BN statistics
    assert model.training  # back in training mode for the student's own step


def test_the_teacher_can_be_the_evaluated_model(tmp_path, data_overrides):
    run_dir = tmp_path / "teacher"
    assert run(run_dir, data_overrides, "method=test_baseline", "strategy=lrb_wrel", "data.weak.accurate_ratio=0.5",
               "strategy.eval_model=teacher", "strategy.warmup_epochs=1", "strategy.bank_epochs=1") == 0
    record = record_of(run_dir)
    assert [s["epochs"] for s in record["strategy"]["stages"]] == [1, 1, 2]
    best = load_file(run_dir / "checkpoints" / "best" / "model.safetensors")
    last = load_file(run_dir / "checkpoints" / "last" / "model.safetensors")
    assert any(not torch.equal(best[k], last[k]) for k in last if best[k].is_floating_point())


def test_the_kl_option_adds_its_term(tmp_path, data_overrides):
    run_dir = tmp_path / "kl"
    assert run(run_dir, data_overrides, "method=test_baseline", "strategy=lrb_wrel", "data.weak.accurate_ratio=0.5",
               "strategy.kl_weight=1.0", "strategy.warmup_epochs=1", "strategy.bank_epochs=1") == 0
    log = pd.read_csv(run_dir / "train_log.csv")
    assert log.loc[log["stage"] == "joint", "terms"].str.contains("kl=").all()
    assert not log.loc[log["stage"] != "joint", "terms"].str.contains("kl=").any()


def test_under_ddp_every_rank_applies_the_mean_of_all_ranks_bank_gradients(monkeypatch):
    from rrsis_bench.engine import distributed as D

    strategy = LRBWREL()
    strategy.bank = ReferenceBank(6, 1, 2, std=0.02, generator=torch.Generator().manual_seed(0))
    weight = strategy.bank.table.weight
    weight.grad = torch.sparse_coo_tensor(torch.tensor([[1, 4]]), torch.tensor([[2.0, 2.0], [4.0, 4.0]]), (6, 2))
    other_rank = (torch.tensor([4, 5]), torch.tensor([[6.0, 6.0], [8.0, 8.0]]))
    monkeypatch.setattr(D, "is_distributed", lambda: True)
    monkeypatch.setattr(D, "world_size", lambda: 2)
    monkeypatch.setattr(D, "all_gather_objects", lambda mine: [mine, other_rank])
    strategy._average_bank_grad()
    grad = weight.grad.coalesce()
    assert grad.indices()[0].tolist() == [1, 4, 5]
    assert grad.values()[:, 0].tolist() == [1.0, 5.0, 4.0]  # (2)/2, (4 + 6)/2, (8)/2


# -- the bank's cost as docs/strategies.md quotes it ---------------------------------------------------------
def test_the_docs_quote_the_committed_bank_benchmark():
    """The figures of the `bank-cost` region of docs/strategies.md come from docs/figures/bank-benchmark.json
    (pytest-benchmark output of tests/benchmarks/test_bench_bank.py) and from the bank's arithmetic."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "docs" / "strategies.md").read_text()
    region = re.search(r"<!-- bank-cost -->(?P<body>.*?)<!-- /bank-cost -->", text, re.S)
    assert region, "docs/strategies.md lost its bank-cost region"
    bench = json.loads((repo / "docs" / "figures" / "bank-benchmark.json").read_text())
    medians = {b["name"]: b["stats"]["median"] * 1000 for b in bench["benchmarks"]}
    numbers = 10_954 * 20 * 768
    expected = [
        f"{numbers:,}", f"{numbers * 4 / 2**20:.1f} MiB", f"{2 * numbers * 4 / 2**20:.1f} MiB",
        f"{8 * 20 * 768 * 4 / 2**10:.0f} KiB",
        f"{medians['test_bench_bank_step_rrsisd[row_adamw]']:.1f} ms",
        f"{medians['test_bench_bank_step_rrsisd[dense_adamw]']:.0f} ms",
    ]
    for figure in expected:
        assert figure in region["body"], f"{figure} is not quoted in the bank-cost region"
