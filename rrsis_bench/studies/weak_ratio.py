"""`rrsis-bench study weak_ratio`: the weak-label ratio study (strategy × accurate ratio × seed) in one
command. Every cell is an ordinary `rrsis-bench run` with its own folder and record, launched through
Hydra's launcher (`hydra/launcher=...` spreads the cells over a cluster); `resume=auto` makes a second
call skip complete cells and resume interrupted ones. The outputs are made by
:mod:`rrsis_bench.results.study`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from rrsis_bench.errors import UserError
from rrsis_bench.io import atomic_write_json

FULL_SUPERVISION = "standard"  # the strategy of every ratio-1.0 cell (nothing is weak there)
DEFAULT_STRATEGIES = ("only_accurate", "naive_wrel", "lrb_wrel")
STUDY_RECORD = "study.json"
CELLS = "cells"

#: The embedded study (`rrsis-bench study weak_ratio` with no arguments): the baseline on a small
#: synthetic set at 64 px, CPU-sized, about 20 minutes on 2 cores; every strategy at equal epochs per stage.
EMBEDDED: dict[str, Any] = {
    "method": "baseline",
    "data": "synthetic",
    "ratios": [0.1, 0.3, 1.0],
    "strategies": list(DEFAULT_STRATEGIES),
    "seeds": [0, 1, 2],
    "overrides": [
        "data.image_size=64",
        "+data.options.num_images={train:100,val:30,test:80}",
        "trainer.epochs=3",
        "strategy.warmup_epochs=3",
        "strategy.bank_epochs=1",
    ],
}

STUDY_HELP = """\
usage: rrsis-bench study weak_ratio [method=M] [data=D] [ratios=[0.1,0.3,0.5,1.0]]
                                    [strategies=[only_accurate,naive_wrel,lrb_wrel]] [seeds=[0,1,2]]
                                    [out=DIR] [KEY=VALUE ...]

Train method M on dataset D with a share R of the training expressions accurate (the rest read their
class name, data.weak.accurate_ratio=R) for every strategy and seed, and summarise. Each cell is an
ordinary `rrsis-bench run` in DIR/cells/<strategy>-acc<R>-seed<S>/ with its own record.json; ratio 1.0
has nothing weak, so it is one `standard` cell per seed, the shared end point of every curve. The
cells go through Hydra's launcher: hydra/launcher=submitit_slurm (hydra-submitit-launcher) spreads them
over a cluster. Calling the same command again skips complete cells and resumes interrupted ones
(resume=auto). Other KEY=VALUE words go to every cell (trainer.epochs=8, data.root=DIR, strategy.*).

Writes DIR/study.csv (one row per cell), DIR/study.md (mean ± std and 95 % t-interval over seeds per
strategy × ratio; the epochs of each strategy's stages and the equal-epoch caveat), DIR/study.png (mIoU
and oIoU against the accurate ratio, one line per strategy, 95 % intervals; the published LRB-WREL
curves beside it when the test set is the one they were reported on) and DIR/study.json (the study
record: the grid and its cells). DIR defaults to outputs/study/weak_ratio-M-D.

Without method= and data=: the embedded study, baseline on a small synthetic set at 64 px (3 epochs per
stage, lrb_wrel's bank stage 1 epoch), ratios 0.1/0.3/1.0, the three strategies, seeds 0/1/2 (21
cells, about 20 minutes on 2 CPU cores); out=, seeds= and other words still apply.
"""


class StudyUsageError(UserError, ValueError):
    """Bad arguments to `rrsis-bench study`."""


def _list(value: str, key: str, kind=str) -> list:
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        parsed = [kind(item) for item in items]
    except ValueError as exc:
        raise StudyUsageError(f"{key}={value} is not a list of {kind.__name__} values: write {key}=[a,b,c].") from exc
    if not parsed:
        raise StudyUsageError(f"{key} is empty; write {key}=[a,b,c].")
    if len(set(parsed)) != len(parsed):
        raise StudyUsageError(f"{key}={value} names a value twice.")
    return parsed


def parse_args(args: Sequence[str]) -> dict[str, Any]:
    """The study's grid from ``key=value`` words; anything else is a run override for every cell.

    Without ``method=`` and ``data=`` it is the embedded study (:data:`EMBEDDED`); the other words
    still apply (``out=``, ``seeds=``, overrides after the embedded ones)."""
    words = {}
    overrides = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise StudyUsageError(f"Unexpected argument {arg!r}; arguments are key=value (see `rrsis-bench study --help`).")
        if key in ("strategy", "seed", "resume", "hydra.run.dir", "hydra.sweep.dir", "data.weak.accurate_ratio"):
            raise StudyUsageError(f"{key} is set by the study for each cell; use ratios=, strategies=, seeds= or out=.")
        if key in ("method", "data", "out", "ratios", "strategies", "seeds"):
            words[key] = value
        else:
            overrides.append(arg)
    embedded = "method" not in words and "data" not in words
    grid: dict[str, Any] = {
        "method": words.get("method", EMBEDDED["method"] if embedded else "baseline"),
        "data": words.get("data", EMBEDDED["data"]),
        "ratios": _list(words["ratios"], "ratios", float) if "ratios" in words else
        list(EMBEDDED["ratios"] if embedded else [0.1, 0.3, 0.5, 1.0]),
        "strategies": _list(words["strategies"], "strategies") if "strategies" in words else list(DEFAULT_STRATEGIES),
        "seeds": _list(words["seeds"], "seeds", int) if "seeds" in words else list(EMBEDDED["seeds"]),
        "out": words.get("out"),
        "overrides": [*(EMBEDDED["overrides"] if embedded else []), *overrides],
        "embedded": embedded,
    }
    bad = [r for r in grid["ratios"] if not 0.0 < r <= 1.0]
    if bad:
        raise StudyUsageError(f"ratios must lie in (0, 1], not {bad[0]}: a ratio is the accurate share of the training set.")
    if FULL_SUPERVISION in grid["strategies"]:
        raise StudyUsageError("strategies lists standard, which trains on accurate expressions only: it is the "
                              "ratio-1.0 cell of every study; list the weak-label strategies.")
    return grid


def cell_name(strategy: str, ratio: float, seed: int) -> str:
    """The cell's folder name, as Hydra's sweep subdir spells it (``lrb_wrel-acc0.1-seed0``)."""
    return f"{strategy}-acc{float(ratio)!r}-seed{seed}"


def cells_of(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """Every cell of the grid: each strategy at each ratio below 1, and standard at 1.0, for each seed."""
    cells = []
    for seed in grid["seeds"]:
        for ratio in sorted(grid["ratios"]):
            strategies = [FULL_SUPERVISION] if ratio == 1.0 else grid["strategies"]
            for strategy in strategies:
                cells.append({"strategy": strategy, "ratio": ratio, "seed": seed,
                              "name": cell_name(strategy, ratio, seed)})
    return cells


def strategy_keys(name: str) -> set[str]:
    """The option keys of ``conf/strategy/<name>.yaml`` (``strategy.KEY=VALUE`` words go to the
    strategies that have KEY, so ``strategy.bank_epochs=1`` reaches lrb_wrel only)."""
    from rrsis_bench.config import compose_run_config

    return set(compose_run_config([f"strategy={name}"])["strategy"]) - {"name"}


def _launch(grid: dict[str, Any], cells_dir: Path, strategy: str, ratios: list[float]) -> BaseException | None:
    """One Hydra multirun of ``strategy`` over ``ratios × seeds``; returns what failed, if anything."""
    from rrsis_bench.cli import run_hydra

    keys = strategy_keys(strategy)
    overrides = [a for a in grid["overrides"]
                 if not a.startswith("strategy.") or a.partition("=")[0].removeprefix("strategy.") in keys]
    args = ["-m", f"method={grid['method']}", f"data={grid['data']}", f"strategy={strategy}",
            f"data.weak.accurate_ratio={','.join(repr(float(r)) for r in ratios)}",
            f"seed={','.join(str(s) for s in grid['seeds'])}", "resume=auto",
            f"hydra.sweep.dir={cells_dir}",
            "hydra.sweep.subdir=${strategy.name}-acc${data.weak.accurate_ratio}-seed${seed}",
            *overrides]
    try:
        run_hydra("run", args)
    except Exception as exc:  # the cells that failed left their own failed records
        return exc
    except SystemExit as exc:  # Hydra's exit when a cell run in another process (submitit) failed; it printed why
        return UserError(f"a {strategy} cell failed in its own process (its error is printed above; exit status "
                         f"{exc.code})")
    return None


def read_cell(out: Path, name: str) -> dict[str, Any] | None:
    """The record of cell ``name`` of the study in ``out``, its ``record_path`` relative to ``out`` (so
    study.csv names the same files wherever the study folder is copied)."""
    path = out / CELLS / name / "record.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    record["record_path"] = f"{CELLS}/{name}/record.json"
    return record


def study_title(method: str, data: str) -> str:
    return f"Weak-label ratio study: {method} on {data}"


def weak_ratio(args: Sequence[str], console: Console) -> int:
    """Run (or continue) the study and write its outputs; exit status 1 when a cell did not complete."""
    from rrsis_bench.results.leaderboard import load_reported
    from rrsis_bench.results.provenance import code_version
    from rrsis_bench.results.record import new_run_id
    from rrsis_bench.results.study import study_frame, write_study

    grid = parse_args(args)
    out = Path(grid["out"] or f"outputs/study/weak_ratio-{grid['method']}-{grid['data']}")
    cells_dir = out / CELLS
    cells = cells_of(grid)
    weak_ratios = sorted(r for r in grid["ratios"] if r < 1.0)
    console.print(f"Study weak_ratio: {grid['method']} on {grid['data']}, {len(cells)} cells "
                  f"({', '.join(grid['strategies'])} at {', '.join(f'{r:g}' for r in weak_ratios)}"
                  f"{'; standard at 1.0' if 1.0 in grid['ratios'] else ''}; seeds {grid['seeds']}) in {cells_dir}",
                  highlight=False)
    unknown = sorted({a.partition("=")[0] for a in grid["overrides"] if a.startswith("strategy.")}
                     - {f"strategy.{k}" for name in grid["strategies"] for k in strategy_keys(name)})
    if unknown:
        raise StudyUsageError(f"{unknown[0]} is an option of none of the strategies {grid['strategies']}.")
    failures = [_launch(grid, cells_dir, FULL_SUPERVISION, [1.0])] if 1.0 in grid["ratios"] else []
    if weak_ratios:
        failures += [_launch(grid, cells_dir, strategy, weak_ratios) for strategy in grid["strategies"]]
    records, missing = [], []
    for cell in cells:
        record = read_cell(out, cell["name"])
        cell["folder"] = f"{CELLS}/{cell['name']}"  # relative to the study folder
        cell["status"] = record.get("status") if record else "missing"
        if record is not None and record.get("status") in ("complete", "partial"):  # partial: capped, flagged
            records.append(record)
            cell.update(run_id=record["run_id"], config_hash=record["config_hash"],
                        metrics={k: record["metrics"][k] for k in ("mIoU", "oIoU")},
                        wall_s=record["timing"]["wall_s"])
        else:
            missing.append(cell["name"])
    if not records:
        raise StudyUsageError(f"No cell of the study completed (see the cells' folders under {cells_dir}); "
                              f"first error: {next((str(f) for f in failures if f), 'none')}.")
    title = study_title(grid["method"], grid["data"])
    paths = write_study(out, records, title=title, reported=load_reported())
    frame = study_frame(records)
    study_record = {
        "kind": "study", "study": "weak_ratio", "study_id": new_run_id(),
        "grid": {k: grid[k] for k in ("method", "data", "ratios", "strategies", "seeds", "overrides")},
        "embedded": grid["embedded"], "cells": cells, "complete": len(records), "missing": missing,
        "total_wall_s": round(float(frame["wall_s"].sum()), 1), "code": code_version(),
        "outputs": {key: path.name for key, path in paths.items()},
    }
    atomic_write_json(out / STUDY_RECORD, study_record)
    console.print(Path(paths["md"]).read_text(), markup=False, highlight=False)
    console.print(f"Wrote {paths['csv']}, {paths['md']}, {paths['png']} and {out / STUDY_RECORD}", highlight=False)
    if missing:
        console.print(f"{len(missing)} of {len(cells)} cells did not complete ({', '.join(missing[:5])}"
                      f"{' …' if len(missing) > 5 else ''}); run the same command again to resume them.",
                      highlight=False)
        return 1
    return 0

