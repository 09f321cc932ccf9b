"""The leaderboard folder's web page (``index.html``) and its papers-with-code style export
(``model-index.yml``), built from the same rows as the Markdown tables.

The page holds, per dataset page and test set, the tables of :mod:`rrsis_bench.results.tables`
(sortable), a metric-vs-cost scatter (GFLOPs and training time), mIoU per object size as bars, the
weak-label ratio curves where rows differ by the share of accurate training expressions, and the
published numbers in their own section with their sources.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from rrsis_bench.metrics import METRIC_KEYS
from rrsis_bench.results import plots
from rrsis_bench.results.analysis import SIZE_BINS, breakdown
from rrsis_bench.results.tables import finite_number, ratio_rows, test_set_tables
from rrsis_bench.results.webpage import Cell, Figure, Page, Section, Table

TASK_NAME = "Referring Remote Sensing Image Segmentation"
#: At most this many rows get a bar series in the per-size figure (the best ones by mIoU).
MAX_BAR_SERIES = 8


def _yerr(row: Mapping[str, Any]) -> tuple[float, float] | None:
    mean, low, high = (finite_number(row[k]) for k in ("mIoU mean", "mIoU ci low", "mIoU ci high"))
    if mean is None or low is None or high is None:
        return None
    return (max(mean - low, 0.0), max(high - mean, 0.0))


def _cost_figures(part: pd.DataFrame) -> list[Figure]:
    figures = []
    for column, xlabel, scale, name in (
        ("gflops", "GFLOPs per sample (forward, run's input size)", 1.0, "GFLOPs"),
        ("train_s mean", "training time (minutes, mean over seeds)", 1 / 60, "training time"),
    ):
        points = [
            plots.Point(f"{row['row_id']} {row['method']}", finite_number(row[column]) * scale, float(row["mIoU mean"]),
                        yerr=_yerr(row), group=f"{row['method']} ({row['strategy']})")
            for _, row in part.iterrows()
            if finite_number(row[column]) is not None and finite_number(row["mIoU mean"]) is not None
        ]
        if points:
            svg = plots.scatter_svg(points, xlabel, "test mIoU (%)", logx=column == "gflops")
            figures.append(Figure(f"mIoU against {name} (error bars: the rows' 95 % intervals)", svg))
    return figures


def _size_figure(part: pd.DataFrame, samples: Mapping[str, pd.DataFrame | None]) -> Figure | None:
    categories = [label for label, _, _ in SIZE_BINS]
    series, errors = {}, {}
    for _, row in part.iterrows():
        if len(series) >= MAX_BAR_SERIES:
            break
        result = breakdown([samples.get(run_id) for run_id in row["run_ids"]], "size_bin")
        if not result:
            continue
        name = f"{row['row_id']} {row['method']}"
        series[name] = [result[c][0] if c in result else math.nan for c in categories]
        errors[name] = [result[c][1] if c in result and math.isfinite(result[c][1]) else None for c in categories]
    if not series:
        return None
    svg = plots.grouped_bars_svg(categories, series, errors, "test mIoU (%)")
    return Figure("mIoU by object size (share of the image covered by the target; error bars: std over seeds)",
                  svg)


def _ratio_figure(part: pd.DataFrame) -> Figure | None:
    part = ratio_rows(part)
    ratios = sorted(set(part["accurate_ratio"]))
    if len(ratios) < 2:
        return None
    x = [100 * r for r in ratios]
    series = {}
    for (method, strategy), group in part.groupby(["method", "strategy"], sort=True):
        means, lows, highs = [], [], []
        for ratio in ratios:
            match = group[group["accurate_ratio"] == ratio]
            row = match.iloc[0] if not match.empty else None
            means.append(math.nan if row is None else float(row["mIoU mean"]))
            lows.append(math.nan if row is None else float(row["mIoU ci low"]))
            highs.append(math.nan if row is None else float(row["mIoU ci high"]))
        series[f"{method} ({strategy})"] = (means, lows, highs)
    svg = plots.curves_svg(x, series, None, "accurate training expressions (%)", "test mIoU (%)")
    return Figure("mIoU against the share of accurate training expressions (bands: 95 % intervals)", svg)


def _test_set_section(page: str, heading: str, part: pd.DataFrame, samples: Mapping[str, pd.DataFrame | None],
                      out_dir: Path) -> Section:
    from rrsis_bench.results.leaderboard import _table_id

    figures = _cost_figures(part)
    for figure in (_size_figure(part, samples), _ratio_figure(part)):
        if figure is not None:
            figures.append(figure)
    tables = test_set_tables(part, samples, _table_id(page, part), out_dir)
    return Section(heading.lstrip("# "), [], tables, figures)


def _reported_section(reported: pd.DataFrame) -> Section:
    from rrsis_bench.results.leaderboard import _REPORTED_CAVEAT, _sorted_reported

    subsections = []
    for (dataset, split), part in _sorted_reported(reported).groupby(["dataset", "split"], sort=True):
        columns = ["Method", "Venue", "Strategy", "Setting", *METRIC_KEYS, "Source (primary paper, table)",
                   "Taken from / primary not found", "Note"]
        numeric = [False] * 4 + [True] * len(METRIC_KEYS) + [False] * 3
        rows = []
        for _, row in part.iterrows():
            cells = [Cell(str(row[k]), str(row[k])) for k in ("method", "venue", "strategy", "setting")]
            for metric in METRIC_KEYS:
                value = finite_number(row[metric])
                cells.append(Cell("–" if value is None else f"{value:.2f}", value))
            cells += [Cell(str(row[k]), str(row[k])) for k in ("source", "secondary_source", "note")]
            rows.append(cells)
        table = Table(f"{dataset} {split}", columns, numeric, rows,
                      table_id=f"reported-{dataset}-{split}".replace("_", "-"))
        subsections.append(Section(f"{dataset} {split}", [], [table], []))
    return Section("Reported in publications (not reproduced here)", [_REPORTED_CAVEAT], [], [], subsections)


def build_page(frames: Mapping[str, pd.DataFrame], samples: Mapping[str, pd.DataFrame | None],
               reported: pd.DataFrame, out_dir: Path) -> Page:
    """The leaderboard folder's ``index.html`` as :class:`~rrsis_bench.results.webpage.Page` data."""
    from rrsis_bench.results.leaderboard import PROTOCOL, test_set_parts

    sections = []
    for page, frame in frames.items():
        dataset = str(frame["dataset"].iloc[0]) if not frame.empty else page
        intro = [] if page == dataset else [
            f"Rows scored on test sets named {dataset} that are not its published splits: not comparable "
            "with published numbers."]
        subsections = [_test_set_section(page, heading, part, samples, out_dir)
                       for heading, part in test_set_parts(frame)]
        sections.append(Section(f"{page}: reproduced with rrsis-bench", intro, [], [], subsections))
    sections.append(_reported_section(reported))
    paragraphs = [
        f"Protocol: {PROTOCOL}",
        "Click a column header to sort; click again to reverse. Every number comes from the run records "
        "linked in the Records column (record.json, per_sample.csv); the Markdown and CSV files beside this "
        "page hold the same rows.",
    ]
    return Page("RRSIS leaderboards", paragraphs, sections,
                "Generated by `rrsis-bench leaderboard` from run records; do not edit by hand.")


def _rounded(value: Any, digits: int = 2) -> float | None:
    number = finite_number(value)
    return None if number is None else round(number, digits)


def model_index(frames: Mapping[str, pd.DataFrame], runs: Iterable[Mapping[str, Any]], out_dir: Path) -> dict:
    """A papers-with-code style model index: one entry per leaderboard row, with its metrics (means over
    seeds), its configuration (the Setting and the first run's config file) and its weights paths."""
    from rrsis_bench.results.record import RECORD_PATH_KEY

    by_id = {run["run_id"]: run for run in runs}
    models = []
    for frame in frames.values():
        for _, row in frame.iterrows():
            records = [by_id[run_id] for run_id in row["run_ids"]]
            folders = [Path(str(r.get(RECORD_PATH_KEY, ""))).parent for r in records]
            artifacts = [r.get("artifacts") or {} for r in records]
            relative = [os.path.relpath(folder, out_dir).replace(os.sep, "/") for folder in folders]
            models.append({
                "Name": f"{row['page']}/{row['split']}/{row['row_id']} {row['method']}",
                "Method": row["method"],
                "Metadata": {
                    "Strategy": row["strategy"], "Training expressions": row["weak"], "Setting": row["setting"],
                    "Seeds": [int(s) for s in row["seeds"]], "Parameters": int(row["params"])
                    if finite_number(row["params"]) is not None else None,
                    "FLOPs (G)": _rounded(row["gflops"], 4), "Input size": row["gflops_input"] or None,
                    "Training time (s, mean)": _rounded(row["train_s mean"], 1),
                    "Training hardware": row["hardware"], "Code": row["code"],
                },
                "Config": [f"{folder}/{a.get('config')}" for folder, a in zip(relative, artifacts, strict=True)
                           if a.get("config")],
                "Weights": [f"{folder}/{a.get('checkpoint')}" for folder, a in zip(relative, artifacts, strict=True)
                            if a.get("checkpoint")],
                "Records": [f"{folder}/record.json" for folder in relative],
                "Results": [{
                    "Task": TASK_NAME,
                    "Dataset": f"{row['dataset']} {row['split']} ({int(row['n_samples'])} samples, manifest "
                               f"{str(row['manifest_sha256'])[:8]})",
                    "Metrics": {metric: _rounded(row[f"{metric} mean"]) for metric in METRIC_KEYS},
                }],
            })
    return {"Models": models}


def model_index_text(frames: Mapping[str, pd.DataFrame], runs: Iterable[Mapping[str, Any]], out_dir: Path) -> str:
    header = ("# Generated by `rrsis-bench leaderboard`; do not edit by hand. Weights and configs are paths "
              "relative to this file,\n# as the runs wrote them (checkpoints are not committed with the records).\n")
    body = yaml.safe_dump(model_index(frames, runs, out_dir), sort_keys=False, allow_unicode=True, width=110)
    return header + body
