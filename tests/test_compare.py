"""`rrsis-bench compare`: run folders in, refusals before any statistics, Δ equal to the records' metrics."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from rrsis_bench.commands.compare import COMPARE_HELP, CompareUsageError, compare_command
from rrsis_bench.results.record import RECORD_FILE, write_record
from rrsis_bench.results.stats import ComparisonError, compare_runs

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "leaderboards" / "records" / "synthetic"
RUN_A = RECORDS / "fianet_lite-4ep-seed0"
RUN_B = RECORDS / "baseline-seed0"


def read_record(folder: Path) -> dict:
    return json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))


def copy_run(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for name in (RECORD_FILE, "per_sample.csv"):
        shutil.copy(source / name, target / name)
    return target


def edit_record(folder: Path, **data) -> None:
    record = read_record(folder)
    record["data"].update(data)
    write_record(folder, record)


def run_command(args: list[str]) -> str:
    buffer = io.StringIO()
    assert compare_command(args, Console(file=buffer, width=300)) == 0
    return buffer.getvalue()


def table_row(text: str, metric: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {metric} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_command_on_committed_runs_prints_the_records_differences(tmp_path):
    out = tmp_path / "nested" / "comparison.json"
    text = run_command([str(RUN_A), str(RUN_B / RECORD_FILE), "resamples=200", "seed=1", f"out={out}"])
    record_a, record_b = read_record(RUN_A), read_record(RUN_B)
    for metric in ("mIoU", "oIoU"):
        _, value_a, value_b, delta, interval, p = table_row(text, metric)
        assert value_a == f"{record_a['metrics'][metric]:.2f}"
        assert value_b == f"{record_b['metrics'][metric]:.2f}"
        assert delta == f"{record_a['metrics'][metric] - record_b['metrics'][metric]:+.2f}"
        low, high = (float(x) for x in re.fullmatch(r"\[(\S+), (\S+)\]", interval).groups())
        assert low < float(delta) < high
    assert "fianet_lite · standard · seed 0" in text and "baseline · standard · seed 0" in text
    assert "synthetic/test: 777 samples" in text
    wins = re.search(r"Samples won: A (\d+), B (\d+), ties (\d+)", text)
    assert sum(int(x) for x in wins.groups()) == 777
    # fianet_lite-4ep is 4.2 mIoU points below the baseline; with 200 permutations p = 2/201.
    assert "B is better than A on mIoU (p = 0.00995)" in text

    saved = json.loads(out.read_text(encoding="utf-8"))
    for metric in ("mIoU", "oIoU"):
        expected = record_a["metrics"][metric] - record_b["metrics"][metric]
        assert saved["metrics"][metric]["delta"] == pytest.approx(expected, abs=1e-9)
    assert saved["runs"]["A"]["run_id"] == record_a["run_id"]
    assert saved["runs"]["B"]["group_hash"] == record_b["group_hash"][:8]
    assert saved["data"]["manifest_sha256"] == record_a["data"]["manifest_sha256"]
    assert saved["settings"]["n_resamples"] == 200 and saved["settings"]["seed"] == 1
    assert list(tmp_path.joinpath("nested").iterdir()) == [out]  # written atomically: no temporary left


@pytest.mark.parametrize(
    ("key", "value", "what"),
    [("manifest_sha256", "0" * 64, "test manifest (data.manifest_sha256)"),
     ("split", "val", "split"),
     ("name", "rrsisd", "dataset")],
)
def test_compare_refuses_runs_scored_on_other_test_sets(tmp_path, key, value, what):
    other = copy_run(RUN_B, tmp_path / "b")
    edit_record(other, **{key: value})
    original = read_record(RUN_A)["data"][key]
    with pytest.raises(ComparisonError) as err:
        compare_runs(RUN_A, other, n_resamples=10)
    message = str(err.value)
    assert f"{what} is {original!r} for A" in message and f"but {value!r} for B" in message
    assert "paired statistics need the same test samples" in message


def test_compare_refuses_different_sample_ids(tmp_path):
    other = copy_run(RUN_B, tmp_path / "b")
    rows = pd.read_csv(other / "per_sample.csv", dtype={"sample_id": str})
    renamed = rows["sample_id"].iloc[0]
    rows.loc[0, "sample_id"] = "renamed_0"  # same counts: the metrics still match the record
    rows.to_csv(other / "per_sample.csv", index=False)
    with pytest.raises(ComparisonError) as err:
        compare_runs(RUN_A, other, n_resamples=10)
    message = str(err.value)
    assert f"1 sample id(s) only in run A ({RUN_A / 'per_sample.csv'}) (e.g. {renamed!r})" in message
    assert "1 sample id(s) only in run B" in message and "'renamed_0'" in message
    assert "evaluate both on the same split" in message


def test_compare_refuses_per_sample_rows_that_do_not_give_the_record(tmp_path):
    other = copy_run(RUN_B, tmp_path / "b")
    rows = pd.read_csv(other / "per_sample.csv", dtype={"sample_id": str})
    rows.loc[0, "intersection"] -= 1
    rows.to_csv(other / "per_sample.csv", index=False)
    with pytest.raises(ComparisonError, match=r"per_sample.csv gives mIoU = .* but .*record.json records"):
        compare_runs(RUN_A, other, n_resamples=10)


def test_compare_refuses_what_is_not_a_complete_run_with_its_samples(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ComparisonError, match=r"Run B: .*empty is not a run folder \(no record.json in it\)"):
        compare_runs(RUN_A, empty, n_resamples=10)

    partial = copy_run(RUN_B, tmp_path / "partial")
    record = read_record(partial)
    record["status"] = "partial"
    write_record(partial, record)
    with pytest.raises(ComparisonError, match=r"Run A: .* is not a complete run \(status is 'partial'\)"):
        compare_runs(partial, RUN_B, n_resamples=10)

    lost = copy_run(RUN_B, tmp_path / "lost")
    (lost / "per_sample.csv").unlink()
    with pytest.raises(ComparisonError, match=r"the per-sample file .*lost/per_sample.csv named by .* is missing"):
        compare_runs(RUN_A, lost, n_resamples=10)


def test_command_arguments():
    assert run_command(["--help"]).strip() == COMPARE_HELP.strip()
    with pytest.raises(CompareUsageError, match="has no option 'resample'; it takes out, resamples, seed, confidence"):
        compare_command([str(RUN_A), str(RUN_B), "resample=10"], Console(file=io.StringIO()))
    with pytest.raises(CompareUsageError, match="needs two run folders before any key=value option, got 1"):
        compare_command([str(RUN_A), "seed=1"], Console(file=io.StringIO()))
    with pytest.raises(CompareUsageError, match="extra argument 'third'"):
        compare_command([str(RUN_A), str(RUN_B), "third"], Console(file=io.StringIO()))
    for bad in ("confidence=95", "resamples=0", "seed=-1", "seed=x"):
        with pytest.raises(CompareUsageError, match=f"{bad.partition('=')[0]} takes"):
            compare_command([str(RUN_A), str(RUN_B), bad], Console(file=io.StringIO()))


def test_compare_through_the_cli(capsys, tmp_path):
    from rrsis_bench.cli import main

    records = Path(__file__).resolve().parents[1] / "leaderboards" / "records" / "synthetic"
    out = tmp_path / "cmp.json"
    assert main(["compare", str(records / "fianet_lite-seed0"), str(records / "baseline-8ep-seed0"),
                 "resamples=200", f"out={out}"]) == 0
    result = json.loads(out.read_text())
    a = json.loads((records / "fianet_lite-seed0" / "record.json").read_text())["metrics"]
    b = json.loads((records / "baseline-8ep-seed0" / "record.json").read_text())["metrics"]
    assert abs(result["metrics"]["mIoU"]["delta"] - (a["mIoU"] - b["mIoU"])) < 1e-9
    assert main(["compare", str(records / "fianet_lite-seed0")]) == 2  # usage error: one run given
