"""`rrsis-bench study weak_ratio`: the grid, the cells through Hydra's launcher, resume, the outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import exit_code, one_line

from rrsis_bench.results.leaderboard import load_reported
from rrsis_bench.results.record import config_hash
from rrsis_bench.results.study import write_study
from rrsis_bench.studies.weak_ratio import (
    EMBEDDED,
    StudyUsageError,
    cell_name,
    cells_of,
    parse_args,
    read_cell,
    study_title,
)

REPO = Path(__file__).resolve().parents[1]

GRID = ["study", "weak_ratio", "method=test_baseline", "ratios=[0.5,1.0]", "seeds=[0,1]",
        "strategies=[only_accurate,lrb_wrel]", "trainer=debug", "trainer.progress=false",
        "strategy.bank_epochs=1"]


def test_the_grid_has_every_strategy_below_one_and_standard_at_one():
    grid = parse_args(["method=baseline", "ratios=[0.1,0.3,1.0]", "seeds=[0,1]"])
    cells = cells_of(grid)
    assert len(cells) == (2 * 3 + 1) * 2
    assert {c["strategy"] for c in cells if c["ratio"] == 1.0} == {"standard"}
    assert cell_name("lrb_wrel", 0.1, 2) == "lrb_wrel-acc0.1-seed2" and cell_name("standard", 1, 0).endswith("acc1.0-seed0")


def test_without_method_and_data_it_is_the_embedded_study():
    grid = parse_args([])
    assert grid["embedded"] and grid["method"] == EMBEDDED["method"] and grid["data"] == "synthetic"
    assert len(cells_of(grid)) == 21 and grid["overrides"] == EMBEDDED["overrides"]
    moved = parse_args(["out=elsewhere", "seeds=[0]", "trainer.epochs=1"])
    assert moved["embedded"] and moved["out"] == "elsewhere" and len(cells_of(moved)) == 7
    assert moved["overrides"] == [*EMBEDDED["overrides"], "trainer.epochs=1"]  # the user's word comes last
    own = parse_args(["method=fianet_lite"])
    assert not own["embedded"] and own["overrides"] == [] and own["ratios"] == [0.1, 0.3, 0.5, 1.0]


@pytest.mark.parametrize("args, message", [
    (["seed=3"], "seed is set by the study"),
    (["ratios=[0,0.5]"], r"ratios must lie in \(0, 1\]"),
    (["strategies=[standard]"], "it is the ratio-1.0 cell"),
    (["seeds=[a]"], "not a list of int"),
    (["ratios=[0.1,0.1]"], "names a value twice"),
])
def test_bad_arguments_are_named(args, message):
    with pytest.raises(StudyUsageError, match=message):
        parse_args(args)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, data_overrides):
    out = tmp_path_factory.mktemp("study") / "weak"
    assert exit_code([*GRID, *data_overrides, f"out={out}"]) == 0
    return out


def test_the_study_runs_every_cell_and_writes_its_outputs(study_dir):
    names = sorted(p.name for p in (study_dir / "cells").iterdir() if p.is_dir())  # and Hydra's multirun.yaml
    assert names == sorted(["only_accurate-acc0.5-seed0", "only_accurate-acc0.5-seed1", "lrb_wrel-acc0.5-seed0",
                            "lrb_wrel-acc0.5-seed1", "standard-acc1.0-seed0", "standard-acc1.0-seed1"])
    frame = pd.read_csv(study_dir / "study.csv")
    assert len(frame) == 6 and set(frame["strategy"]) == {"standard", "only_accurate", "lrb_wrel"}
    record = json.loads((study_dir / "study.json").read_text())
    assert record["complete"] == 6 and not record["missing"] and len(record["cells"]) == 6
    lrb = json.loads((study_dir / "cells" / "lrb_wrel-acc0.5-seed1" / "record.json").read_text())
    assert lrb["seed"] == 1 and lrb["data"]["weak"]["ratio"] == 0.5
    assert [s["epochs"] for s in lrb["strategy"]["stages"]] == [2, 1, 2]  # strategy.bank_epochs reached it
    standard = json.loads((study_dir / "cells" / "standard-acc1.0-seed0" / "record.json").read_text())
    assert standard["strategy"]["name"] == "standard" and standard["data"]["weak"] is None
    assert "| lrb_wrel |" in (study_dir / "study.md").read_text()
    assert (study_dir / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_second_call_skips_finished_cells_and_runs_missing_ones(study_dir, data_overrides, capsys):
    before = {p.name: json.loads((p / "record.json").read_text())["run_id"]
              for p in (study_dir / "cells").iterdir() if p.is_dir()}
    victim = study_dir / "cells" / "only_accurate-acc0.5-seed1"
    (victim / "record.json").unlink()  # as if that cell had been killed after its checkpoints
    capsys.readouterr()
    assert exit_code([*GRID, *data_overrides, f"out={study_dir}"]) == 0
    out = one_line(capsys)
    assert out.count("(resume=auto): skipped") == 5
    assert "Resuming after epoch 2" in out  # the killed cell continues from its checkpoint
    after = {p.name: json.loads((p / "record.json").read_text())["run_id"]
              for p in (study_dir / "cells").iterdir() if p.is_dir()}
    assert after == before  # same runs: skipped ones untouched, the resumed one keeps its claim


def test_resume_auto_refuses_a_folder_of_another_config(study_dir, data_overrides, capsys):
    cell = study_dir / "cells" / "standard-acc1.0-seed0"
    assert exit_code(["run", "method=test_baseline", "trainer=debug", "trainer.epochs=3", "resume=auto",
                      *data_overrides, f"hydra.run.dir={cell}"]) == 1
    assert "holds the complete record of another configuration" in one_line(capsys)


def test_standard_runs_keep_the_identity_they_had_before_strategies():
    config = {"method": {"name": "baseline"}, "data": {"name": "synthetic", "weak": {"accurate_ratio": 1.0}},
              "seed": 0}
    newer = {**config, "strategy": {"name": "standard"},
             "data": {"name": "synthetic", "weak": {"accurate_ratio": 1.0, "split_file": None}}}
    assert config_hash(newer) == config_hash(config)
    assert config_hash({**newer, "strategy": {"name": "naive_wrel"}}) != config_hash(config)


# -- the committed embedded study ---------------------------------------------------------------------------
COMMITTED = REPO / "leaderboards" / "studies" / "weak_ratio-baseline-synthetic"
DOC = REPO / "docs" / "strategies.md"
DOC_REGION = re.compile(r"<!-- study (?P<folder>\S+) -->\n(?P<body>.*?)<!-- /study -->", re.S)


def doc_tables(study_md: str) -> str:
    """What docs/strategies.md quotes of a study.md: its metric tables, the headings in bold."""
    tables = study_md[study_md.index("## mIoU"):]
    return re.sub(r"^## (\S+)$", r"**\1**", tables, flags=re.M).strip() + "\n"


def test_the_committed_embedded_study_is_generated_from_its_cell_records(tmp_path):
    study = json.loads((COMMITTED / "study.json").read_text())
    assert study["embedded"] and study["complete"] == 21 and not study["missing"]
    assert study["code"]["git_dirty"] is False  # run from a clean tree of the commit it names
    records = [read_cell(COMMITTED, cell["name"]) for cell in study["cells"]]
    write_study(tmp_path, records, title=study_title("baseline", "synthetic"), reported=load_reported())
    assert (tmp_path / "study.md").read_text() == (COMMITTED / "study.md").read_text()
    assert (tmp_path / "study.csv").read_text() == (COMMITTED / "study.csv").read_text()


def test_the_docs_quote_the_committed_study():
    match = DOC_REGION.search(DOC.read_text())
    assert match, "docs/strategies.md lost its <!-- study ... --> region"
    assert REPO / match["folder"] == COMMITTED
    assert match["body"] == doc_tables((COMMITTED / "study.md").read_text())


if __name__ == "__main__":  # rewrite the quoted tables after the committed study changes
    text = DOC.read_text()
    found = DOC_REGION.search(text)
    body = doc_tables((REPO / found["folder"] / "study.md").read_text())
    DOC.write_text(text[:found.start("body")] + body + text[found.end("body"):])
