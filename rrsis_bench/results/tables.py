"""The tables of one test set, built once as :class:`~rrsis_bench.results.webpage.Table` data and
rendered both as Markdown (the committed ``<dataset>.md``) and as HTML (``index.html``).

Per test set: the accuracy table (mean ± std over seeds, 95 % intervals, p-value against the best row),
the cost and provenance table, the breakdowns (object size, category, expression type) and, when rows
differ by the share of accurate training expressions, mIoU per share.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from rrsis_bench.metrics import METRIC_KEYS
from rrsis_bench.results.analysis import BREAKDOWNS, TIE_ALPHA, breakdown, seed_interval
from rrsis_bench.results.webpage import Cell, Table

INTERVAL_NOTE = (
    "Cells: mean ± sample std over seeds. 95 % interval of the mean: a t interval over seeds when a row "
    "has two or more seeds; for a single run, a bootstrap over its test samples (BCa, 2,000 resamples), "
    "which reflects test-set sampling only, not seed-to-seed variation. p vs best: two-sided paired "
    f"permutation test (9,999 resamples) of the per-sample IoUs (averaged over seeds) against the best "
    f"row's; ★ marks the best row by mean mIoU, ≈ a row statistically tied with it (p ≥ {TIE_ALPHA}). "
    "The test sees the test samples, not seed variation: with one seed per row, a 'significant' gap can "
    "still be within what another seed gives."
)
COST_NOTE = (
    "Params: all parameters (frozen ones included). GFLOPs: forward FLOPs of one sample at the run's "
    "input size (torch.utils.flop_counter: 2 per multiply-add of matmuls/convolutions/attention; GMACs "
    "are half), counted once per method and setting. Train time: the training loop (validation "
    "excluded), mean over seeds; Train img/s: training samples per second; Latency: median of 10 "
    "batch-1 forward passes on the run's device after training; Peak memory: the process's peak "
    "resident memory on a CPU (the whole run), the peak allocated memory on a GPU. Measured on the "
    "hardware shown; rows measured on other hardware or under other load are not comparable on cost."
)


def duration_text(seconds: Any) -> str:
    """A wall time as leaderboards and studies show it: ``45s``, ``1m 37s``, ``2h 05m``; ``–`` when unknown."""
    if seconds is None or pd.isna(seconds):
        return "–"
    minutes, secs = divmod(round(float(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{secs}s")


def finite_number(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing, not a number or not finite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _num(value: Any, digits: int = 2, scale: float = 1.0) -> Cell:
    number = finite_number(value)
    if number is None:
        return Cell("–", None)
    return Cell(f"{number * scale:,.{digits}f}", number * scale)


def _mean_std(mean: Any, std: Any) -> Cell:
    m = finite_number(mean)
    if m is None:
        return Cell("–", None)
    s = finite_number(std)
    return Cell(f"{m:.2f}" + ("" if s is None else f" ± {s:.2f}"), m)


def _interval(low: Any, high: Any) -> Cell:
    lo, hi = finite_number(low), finite_number(high)
    if lo is None or hi is None:
        return Cell("–", None)
    return Cell(f"[{lo:.2f}, {hi:.2f}]", hi - lo, title="width of the interval sorts this column")


def _text(value: Any) -> Cell:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return Cell(text, text)


def _input_size(value: Any) -> Cell:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    first = finite_number(text.split(",")[0]) if text else None
    return Cell(text or "–", first)


def _p_value(value: Any) -> Cell:
    p = finite_number(value)
    if p is None:
        return Cell("–", None)
    return Cell(f"{p:.3g}" if p >= 1e-3 else f"{p:.1e}", p)


def row_label(row: Mapping[str, Any]) -> str:
    mark = " ★" if row["best"] else (" ≈" if row["tied"] else "")
    return f"{row['row_id']}{mark}"


def _row_classes(row: Mapping[str, Any]) -> tuple[str, ...]:
    # The label already carries ★/≈ (Markdown needs them); on the page the best row is also bold.
    return ("best",) if row["best"] else ()


def _links(records: Sequence[str], links_from: Path | None) -> Cell:
    if links_from is None:
        return Cell(", ".join(records), None)
    relative = [os.path.relpath(path, links_from).replace(os.sep, "/") for path in records]
    return Cell(" ".join(f"[{i}]" for i in range(1, len(relative) + 1)), len(relative),
                href=relative[0] if len(relative) == 1 else None, title="; ".join(relative))


def accuracy_table(part: pd.DataFrame, table_id: str) -> Table:
    columns = ["#", "Method", "Strategy", "Train expressions", "Setting", "mIoU", "mIoU 95 % interval",
               "oIoU", "oIoU 95 % interval", *METRIC_KEYS[2:], "p vs best", "Seeds", "Interval from"]
    numeric = [False, False, False, False, False, True, True, True, True, *[True] * (len(METRIC_KEYS) - 2),
               True, False, False]
    rows = []
    for _, row in part.iterrows():
        classes = _row_classes(row)
        cells = [Cell(row_label(row), row["row_id"], classes=classes), _text(row["method"]), _text(row["strategy"]),
                 _text(row["weak"]), _text(row["setting"]),
                 _mean_std(row["mIoU mean"], row["mIoU std"]), _interval(row["mIoU ci low"], row["mIoU ci high"]),
                 _mean_std(row["oIoU mean"], row["oIoU std"]), _interval(row["oIoU ci low"], row["oIoU ci high"])]
        cells += [_mean_std(row[f"{m} mean"], row[f"{m} std"]) for m in METRIC_KEYS[2:]]
        cells += [_p_value(row["p_vs_best"]), _text(", ".join(str(s) for s in row["seeds"])),
                  _text(row["ci method"])]
        rows.append(cells)
    return Table("Accuracy", columns, numeric, rows, note=INTERVAL_NOTE, table_id=table_id)


def cost_table(part: pd.DataFrame, table_id: str, links_from: Path | None) -> Table:
    columns = ["#", "Method", "Params (M)", "GFLOPs", "GFLOPs input (px)", "Train time", "Train img/s",
               "Latency b1 (ms)", "Peak memory (GB)", "Hardware", "Code", "Dates", "Records"]
    numeric = [False, False, True, True, True, True, True, True, True, False, False, False, False]
    rows = []
    for _, row in part.iterrows():
        train = finite_number(row["train_s mean"])
        rows.append([
            Cell(row_label(row), row["row_id"], classes=_row_classes(row)), _text(row["method"]),
            _num(row["params"], 2, 1e-6), _num(row["gflops"], 3), _input_size(row["gflops_input"]),
            Cell(duration_text(train), train), _num(row["train_img_per_s mean"], 1),
            _num(row["latency_ms mean"], 1), _num(row["peak_memory_mb mean"], 2, 1 / 1024),
            _text(row["hardware"]), _text(row["code"] + (" (dirty tree!)" if row["dirty"] else "")),
            _text(row["dates"]), _links(list(row["records"]), links_from),
        ])
    return Table("Cost and provenance", columns, numeric, rows, note=COST_NOTE, table_id=table_id)


def breakdown_tables(part: pd.DataFrame, samples: Mapping[str, pd.DataFrame | None], table_id: str) -> list[Table]:
    """mIoU per object size, category and expression type (rows whose per-sample files lack the column
    are listed in the note)."""
    tables = []
    for title, column, order in BREAKDOWNS:
        values = {}
        missing = []
        for _, row in part.iterrows():
            result = breakdown([samples.get(run_id) for run_id in row["run_ids"]], column)
            if result:
                values[row["row_id"]] = (row, result)
            else:
                missing.append(row["row_id"])
        if not values:
            continue
        groups = list(order) if order else sorted({g for _, result in values.values() for g in result})
        counts = {g: next((r[g][2] for _, r in values.values() if g in r), 0) for g in groups}
        groups = [g for g in groups if counts[g] > 0]
        columns = ["#", "Method", "Strategy", *[f"{g} (n={counts[g]})" for g in groups]]
        rows = []
        for row, result in values.values():
            cells = [Cell(row_label(row), row["row_id"], classes=_row_classes(row)), _text(row["method"]),
                     _text(row["strategy"])]
            cells += [_mean_std(*result[g][:2]) if g in result else Cell("–", None) for g in groups]
            rows.append(cells)
        note = ("mIoU of the samples in each group, mean ± sample std over the row's seeds; n: test samples "
                "in the group.")
        if missing:
            note += (f" Not shown: {', '.join(missing)} (their per_sample.csv predates the "
                     f"{column} column; re-evaluate them with `rrsis-bench eval` to add it).")
        tables.append(Table(f"mIoU by {title}", columns, [False, False, False, *[True] * len(groups)], rows,
                            note=note, table_id=f"{table_id}-by-{column.replace('_', '-')}"))
    return tables


def ratio_rows(part: pd.DataFrame) -> pd.DataFrame:
    """The rows that form weak-label ratio curves: rows of one method whose Settings are equal once the
    strategy's own options are set aside, when that family covers two or more accurate shares (a
    ratio study). Rows trained differently otherwise (other epochs, sizes) never share a curve."""
    family = part["method"] + " | " + part["setting"].map(
        lambda text: " ".join(token for token in str(text).split() if not token.startswith("strategy.")))
    keep = family.map(part.groupby(family)["accurate_ratio"].nunique()) >= 2
    return part[keep]


def ratio_table(part: pd.DataFrame, table_id: str) -> Table | None:
    """mIoU per share of accurate training expressions, one row per (method, strategy), over the rows
    of :func:`ratio_rows` (none: no table)."""
    part = ratio_rows(part)
    ratios = sorted(set(part["accurate_ratio"]))
    if len(ratios) < 2:
        return None
    columns = ["Method", "Strategy", *[f"{round(100 * r, 2):g} % accurate" for r in ratios]]
    rows = []
    for (method, strategy), group in part.groupby(["method", "strategy"], sort=True):
        cells = [_text(method), _text(strategy)]
        for ratio in ratios:
            match = group[group["accurate_ratio"] == ratio]
            if match.empty:
                cells.append(Cell("–", None))
                continue
            row = match.iloc[0]
            low, high = finite_number(row["mIoU ci low"]), finite_number(row["mIoU ci high"])
            interval = "" if low is None or high is None else f" [{low:.2f}, {high:.2f}]"
            cell = _mean_std(row["mIoU mean"], row["mIoU std"])
            cells.append(Cell(cell.text + interval, cell.sort, title=f"{row['row_id']}: {row['ci method']}"))
        rows.append(cells)
    note = ("mIoU mean ± sample std [95 % interval] per share of accurate training expressions (the others "
            "were class names). At 100 % every strategy trains on the same data: the standard rows are "
            "the shared end point.")
    return Table("mIoU by share of accurate training expressions", columns, [False, False, *[True] * len(ratios)],
                 rows, note=note, table_id=f"{table_id}-by-ratio")


def test_set_tables(part: pd.DataFrame, samples: Mapping[str, pd.DataFrame | None], table_id: str,
                    links_from: Path | None) -> list[Table]:
    tables = [accuracy_table(part, table_id), cost_table(part, f"{table_id}-cost", links_from)]
    tables += breakdown_tables(part, samples, table_id)
    by_ratio = ratio_table(part, table_id)
    if by_ratio is not None:
        tables.append(by_ratio)
    return tables


def _md_cell(cell: Cell, column: str) -> str:
    text = cell.text.replace("|", "\\|").replace("\n", " ")
    if column == "Records" and cell.title:  # one link per record
        return " ".join(f"[{i}]({link})" for i, link in enumerate(cell.title.split("; "), start=1))
    return f"[{text}]({cell.href})" if cell.href else text


def markdown_table(table: Table, heading: str = "####") -> list[str]:
    """The table as GitHub-flavoured Markdown under ``heading`` with its note below."""
    align = ["---:" if numeric else "---" for numeric in table.numeric]
    lines = [f"{heading} {table.caption}", "", "| " + " | ".join(table.columns) + " |",
             "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_md_cell(c, name) for c, name in zip(row, table.columns, strict=True)) + " |"
              for row in table.rows]
    if table.note:
        lines += ["", table.note]
    return [*lines, ""]


__all__ = ["duration_text", "markdown_table", "row_label", "seed_interval", "test_set_tables"]
