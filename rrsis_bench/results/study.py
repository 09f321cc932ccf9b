"""Weak-label ratio studies: table, intervals and plot of a grid of runs (strategy × accurate ratio × seed).

A study is a set of ordinary runs (its cells), one ``record.json`` each; this module only reads their
records. :func:`study_frame` gives one row per cell, :func:`summary_frame` the mean, sample std and
95 % t-interval over seeds per strategy × ratio, :func:`write_study` the files ``study.csv``,
``study.md`` and ``study.png``.

The shared full-supervision point: at accurate ratio 1.0 every strategy (only_accurate, naive_wrel,
lrb_wrel, ...) has nothing weak to work with, so a study runs ``standard`` training on all accurate
expressions once, and that cell is the 100 % end point of every strategy's curve. A strategy with
cells of its own at 1.0 ends on those instead. The tables keep the ``standard`` cells in a row of
their own; only the plot draws them as every curve's end point.

Published numbers: :func:`reported_weak_curves` reads the LRB-WREL README rows of the packaged
``reported.csv`` (RMSIN as the base model) as curves in the same strategy names, with RMSIN's
full-supervision row as ``standard`` at 1.0; :func:`write_study` draws them dashed beside the study's
own curves when the study's test set is the one they were reported on.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from rrsis_bench.data.inspect import PUBLISHED_SIZES
from rrsis_bench.errors import UserError
from rrsis_bench.io import atomic_write, atomic_write_text
from rrsis_bench.metrics import METRIC_KEYS
from rrsis_bench.results.leaderboard import load_reported, weak_setting
from rrsis_bench.results.record import DEFAULT_STRATEGY, RECORD_PATH_KEY, record_strategy
from rrsis_bench.results.tables import duration_text

#: The metrics a study summarises (tables and plot panels, in this order).
STUDY_METRICS = ("mIoU", "oIoU")
CONFIDENCE = 0.95
#: Statuses of a cell record that hold test metrics; ``partial`` cells (capped test pass) are kept, flagged.
SCORED_STATUSES = ("complete", "partial")
#: Strategies in the order tables and legends list them; any other strategy follows, by name.
STRATEGY_ORDER = (DEFAULT_STRATEGY, "only_accurate", "naive_wrel", "lrb_wrel")
#: ``reported.csv`` rows of the published LRB-WREL curves: their ``source`` (or, where another paper first
#: published the number, e.g. RMSIN's 100 % row, their ``secondary_source``) starts with this.
LRBWREL_SOURCE = "LRB-WREL README"
REPORTED_LABEL = "reported (LRB-WREL paper, RMSIN base)"
#: The base model of the published curves, as a method name.
REPORTED_BASE_METHOD = "rmsin"
#: study.png is FIGURE_INCHES × FIGURE_DPI pixels (1100 × 480).
FIGURE_INCHES = (11.0, 4.8)
FIGURE_DPI = 100
ERROR_BAR_CAPTION = "error bars: 95 % t-interval of the mean over seeds; a point from a single seed has none"

STUDY_COLUMNS = (
    "method", "dataset", "split", "n_samples", "strategy", "accurate_ratio", "scheme", "seed",
    *METRIC_KEYS, "wall_s", "epochs", "stages", "status", "run_id", "record_path",
)
_ACCURATE_SETTING = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*% accurate\s*$")


class StudyError(UserError, ValueError):
    """The records given cannot be summarised as one study."""


# --------------------------------------------------------------------------- cells


def _strategy_rank(name: str) -> tuple[int, str]:
    return (STRATEGY_ORDER.index(name) if name in STRATEGY_ORDER else len(STRATEGY_ORDER), name)


def _stages(record: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(stage name, epochs) of a cell; without strategy stages, one stage of ``timing.epochs``."""
    stages = record_strategy(record).get("stages") or []
    if stages:
        return [(str(stage["name"]), int(stage["epochs"])) for stage in stages]
    epochs = (record.get("timing") or {}).get("epochs")
    return [("train", int(epochs))] if isinstance(epochs, int) and not isinstance(epochs, bool) else []


def study_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per cell, ordered by strategy, accurate ratio, seed: :data:`STUDY_COLUMNS`.

    Cells are the records with test metrics (status complete, or partial for a capped test pass),
    each run once (the first record of a ``run_id``). ``strategy`` is ``standard`` for records
    without one; ``accurate_ratio`` is 1.0 and ``scheme`` "" when the run had no weak expressions;
    ``stages`` lists ``name=epochs`` per training stage, ``epochs`` their sum.
    """
    cells: dict[str, Mapping[str, Any]] = {}
    for record in records:
        if record.get("status") in SCORED_STATUSES:
            cells.setdefault(str(record["run_id"]), record)
    rows = []
    for run_id, record in cells.items():
        data = record["data"]
        ratio, scheme = weak_setting(record)
        stages = _stages(record)
        metrics = record.get("metrics") or {}
        rows.append({
            "method": record["method"]["name"],
            "dataset": data["name"],
            "split": data["split"],
            "n_samples": data.get("num_samples"),
            "strategy": record_strategy(record)["name"],
            "accurate_ratio": ratio,
            "scheme": scheme,
            "seed": int(record["seed"]),
            **{metric: metrics.get(metric, math.nan) for metric in METRIC_KEYS},
            "wall_s": (record.get("timing") or {}).get("wall_s", math.nan),
            "epochs": sum(epochs for _, epochs in stages) if stages else None,
            "stages": ";".join(f"{name}={epochs}" for name, epochs in stages),
            "status": record["status"],
            "run_id": run_id,
            "record_path": str(record.get(RECORD_PATH_KEY) or ""),
        })
    frame = pd.DataFrame(rows, columns=list(STUDY_COLUMNS))
    if frame.empty:
        return frame
    # Counts stay integers in study.csv even where a record does not give them.
    frame = frame.astype({"n_samples": "Int64", "epochs": "Int64"})
    order = frame["strategy"].map(_strategy_rank)
    frame = frame.assign(_order=order).sort_values(
        ["_order", "scheme", "accurate_ratio", "seed", "run_id"], kind="mergesort"
    )
    return frame.drop(columns="_order").reset_index(drop=True)


# --------------------------------------------------------------------------- statistics


def mean_std_interval(
    values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float, float]:
    """(mean, sample std with ddof=1, interval low, interval high) of ``values``.

    The interval is the two-sided Student-t interval of the mean: mean ± t(1 - α/2, n - 1)·std/√n.
    With one value, std and the interval are NaN (one seed says nothing about the spread).
    """
    clean = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(clean)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = math.fsum(clean) / n
    if n == 1:
        return mean, math.nan, math.nan, math.nan
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in clean) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def summary_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Per strategy × weak scheme × accurate ratio: ``n_seeds``, ``seeds``, and for mIoU and oIoU
    ``<metric> mean``, ``<metric> std`` (ddof=1), ``<metric> lo``/``hi`` (95 % t-interval of the mean;
    NaN for one seed); ``wall_s mean``. Raises :class:`StudyError` when one seed has two cells in a group."""
    columns = ["strategy", "scheme", "accurate_ratio", "n_seeds", "seeds"]
    for metric in STUDY_METRICS:
        columns += [f"{metric} {part}" for part in ("mean", "std", "lo", "hi")]
    columns.append("wall_s mean")
    rows = []
    groups = frame.groupby(["strategy", "scheme", "accurate_ratio"], sort=False)
    for (strategy, scheme, ratio), part in groups:
        repeated = part[part["seed"].duplicated(keep=False)]
        if not repeated.empty:
            raise StudyError(
                f"Seed {repeated['seed'].iloc[0]} has {len(repeated)} cells for strategy {strategy} at "
                f"accurate ratio {ratio:g} (runs {', '.join(repeated['run_id'])}); pass one record per seed."
            )
        row: dict[str, Any] = {
            "strategy": strategy,
            "scheme": scheme,
            "accurate_ratio": ratio,
            "n_seeds": len(part),
            "seeds": sorted(int(s) for s in part["seed"]),
        }
        for metric in STUDY_METRICS:
            values = mean_std_interval(part[metric].tolist())
            row.update(zip((f"{metric} {p}" for p in ("mean", "std", "lo", "hi")), values, strict=True))
        row["wall_s mean"] = mean_std_interval(part["wall_s"].tolist())[0]
        rows.append(row)
    summary = pd.DataFrame(rows, columns=columns)
    if summary.empty:
        return summary
    summary = summary.assign(_order=summary["strategy"].map(_strategy_rank)).sort_values(
        ["_order", "scheme", "accurate_ratio"], kind="mergesort"
    )
    return summary.drop(columns="_order").reset_index(drop=True)


# --------------------------------------------------------------------------- published curves


def _accurate_ratio(setting: str, where: str) -> float:
    match = _ACCURATE_SETTING.match(setting)
    if not match:
        raise ValueError(f"{where} has setting {setting!r}; a weak-study row needs 'N% accurate'.")
    return float(match.group(1)) / 100


def weak_curves_from(reported: pd.DataFrame, dataset: str, split: str) -> pd.DataFrame | None:
    """The published LRB-WREL rows of ``reported`` (a :func:`load_reported` frame) for one test set.

    Columns: strategy (only_accurate, naive_wrel, lrb_wrel; ``standard`` for RMSIN's 100 % row),
    accurate_ratio, mIoU, oIoU, method, setting, source. None when there are no such rows.
    """
    rows = reported[
        (reported["dataset"] == dataset)
        & (reported["split"] == split)
        & (
            reported["source"].str.startswith(LRBWREL_SOURCE)
            | reported["secondary_source"].str.startswith(LRBWREL_SOURCE)
        )
    ]
    if rows.empty:
        return None
    curves = pd.DataFrame({
        "strategy": rows["strategy"].to_numpy(),
        "accurate_ratio": [
            _accurate_ratio(setting, f"The reported row {method!r} ({dataset} {split})")
            for setting, method in zip(rows["setting"], rows["method"], strict=True)
        ],
        "mIoU": rows["mIoU"].astype(float).to_numpy(),
        "oIoU": rows["oIoU"].astype(float).to_numpy(),
        "method": rows["method"].to_numpy(),
        "setting": rows["setting"].to_numpy(),
        "source": rows["source"].to_numpy(),
    })
    curves = curves.assign(_order=curves["strategy"].map(_strategy_rank)).sort_values(
        ["_order", "accurate_ratio"], kind="mergesort"
    )
    return curves.drop(columns="_order").reset_index(drop=True)


def reported_weak_curves(dataset: str, split: str) -> pd.DataFrame | None:
    """The published LRB-WREL curves (RMSIN base) for ``dataset``/``split`` from the packaged
    ``reported.csv`` (see :func:`weak_curves_from`); None for a test set they were not reported on."""
    return weak_curves_from(load_reported(), dataset, split)


# --------------------------------------------------------------------------- markdown


def _percent(ratio: float) -> str:
    return f"{round(100 * float(ratio), 2):g} %"


def _summary_cell(row: Mapping[str, Any], metric: str) -> str:
    mean, std = row[f"{metric} mean"], row[f"{metric} std"]
    if pd.isna(mean):
        return "–"
    if row["n_seeds"] < 2:
        return f"{mean:.2f} (n=1, no interval)"
    return f"{mean:.2f} ± {std:.2f} [{row[f'{metric} lo']:.2f}, {row[f'{metric} hi']:.2f}]"


def _series_label(strategy: str, scheme: str, schemes: set[str]) -> str:
    """The strategy's name, with its weak scheme when the study mixes schemes."""
    return f"{strategy} ({scheme})" if len(schemes) > 1 and scheme else strategy


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _metric_table(summary: pd.DataFrame, metric: str) -> list[str]:
    ratios = sorted(set(summary["accurate_ratio"]))
    schemes = {s for s in summary["scheme"] if s}
    rows = []
    for (strategy, scheme), part in summary.groupby(["strategy", "scheme"], sort=False):
        by_ratio = dict(zip(part["accurate_ratio"], part.to_dict("records"), strict=True))
        cells = [_summary_cell(by_ratio[r], metric) if r in by_ratio else "–" for r in ratios]
        rows.append([_series_label(strategy, scheme, schemes), *cells])
    return _table(["Strategy", *(_percent(r) for r in ratios)], rows)


def _budget(frame: pd.DataFrame) -> str:
    """Epochs per stage for each strategy, e.g. ``lrb_wrel: warmup 2 + bank 1 + joint 2 = 5 epochs``."""
    parts = []
    for strategy, cells in frame.groupby("strategy", sort=False):
        budgets = []
        for stages in dict.fromkeys(cells["stages"]):
            pairs = [item.split("=") for item in stages.split(";") if item]
            if not pairs:
                budgets.append("unknown")
                continue
            text = " + ".join(f"{name} {epochs}" for name, epochs in pairs)
            total = sum(int(epochs) for _, epochs in pairs)
            budgets.append(f"{text} = {total} epochs" if len(pairs) > 1 else f"{text} epochs")
        note = " (differs between cells)" if len(budgets) > 1 else ""
        parts.append(f"{strategy}: {' / '.join(budgets)}{note}")
    return "; ".join(parts)


def _wall_times(frame: pd.DataFrame) -> str:
    return ", ".join(
        f"{strategy} {duration_text(mean_std_interval(cells['wall_s'].tolist())[0])}"
        for strategy, cells in frame.groupby("strategy", sort=False)
    )


def _reported_table(curves: pd.DataFrame) -> list[str]:
    ratios = sorted(set(curves["accurate_ratio"]))
    rows = []
    for strategy, part in curves.groupby("strategy", sort=False):
        by_ratio = dict(zip(part["accurate_ratio"], part.to_dict("records"), strict=True))
        cells = [
            f"{by_ratio[r]['mIoU']:.2f} / {by_ratio[r]['oIoU']:.2f}" if r in by_ratio else "–" for r in ratios
        ]
        rows.append([f"{strategy} ({part['method'].iloc[0]})", *cells])
    return _table(["Strategy (paper's name)", *(_percent(r) for r in ratios)], rows)


def render_study_markdown(
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    title: str,
    reported_curves: pd.DataFrame | None = None,
    reported_note: str = "",
) -> str:
    """``study.md``: what was run and with which budget, then mIoU and oIoU tables (strategy × ratio)."""
    first = frame.iloc[0]
    seeds = ", ".join(str(s) for s in sorted(set(frame["seed"])))
    size = "" if pd.isna(first["n_samples"]) else f", {int(first['n_samples']):,} samples"
    schemes = sorted({s for s in frame["scheme"] if s})
    lines = [
        f"# {title}",
        "",
        "Generated by rrsis-bench from the run records of the study's cells (listed in `study.csv`); "
        "do not edit by hand.",
        "",
        f"- Method: {first['method']}; test set: {first['dataset']} {first['split']}{size}; "
        f"seeds: {seeds}; {len(frame)} cells.",
        f"- Weak expressions: the accurate share of the training expressions is the column; the others are "
        f"their class names (scheme: {', '.join(schemes) or 'none'}). Val and test keep their real "
        "expressions.",
        f"- Budget (epochs per training stage): {_budget(frame)}.",
        "- Strategies are compared at equal epochs per stage, not at equal wall time: a stage over fewer "
        "samples takes fewer steps, and extra stages cost time. Mean wall time per cell: "
        f"{_wall_times(frame)}.",
    ]
    if DEFAULT_STRATEGY in set(frame["strategy"]):
        lines.append(
            f"- The `{DEFAULT_STRATEGY}` row at 100 % is the shared full-supervision point: every strategy's "
            "curve in `study.png` ends there (unless it has cells of its own at 100 %)."
        )
    partial = int((frame["status"] == "partial").sum())
    if partial:
        lines.append(
            f"- {partial} of {len(frame)} cells scored a capped test pass (status partial): smoke numbers, "
            "not comparable with full test sets."
        )
    lines += [
        "",
        "Cells: mean ± sample std over seeds [95 % t-interval of the mean]; \"n=1, no interval\" for a "
        f"single seed. `study.png`: {ERROR_BAR_CAPTION}.",
        "",
    ]
    for metric in STUDY_METRICS:
        lines += [f"## {metric}", "", *_metric_table(summary, metric), ""]
    if reported_curves is not None:
        other_base = (
            f" The paper's base model is RMSIN, this study's is {first['method']}: compare the gaps between "
            "strategies, not the absolute numbers."
            if first["method"] != REPORTED_BASE_METHOD else ""
        )
        lines += [
            f"## {REPORTED_LABEL[0].upper()}{REPORTED_LABEL[1:]}: not reproduced here",
            "",
            "Published numbers (mIoU / oIoU, one run each), drawn dashed in `study.png`. "
            f"Source: {reported_curves['source'].iloc[0]}.{other_base}",
            "",
            *_reported_table(reported_curves),
            "",
        ]
    if reported_note:
        lines += [reported_note, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# --------------------------------------------------------------------------- plot


def _with_shared_end(points: pd.DataFrame, standard_end: pd.DataFrame) -> pd.DataFrame:
    """A curve's points plus the shared ``standard`` 100 % point when the curve has none at 1.0."""
    if standard_end.empty or (points["accurate_ratio"] == 1.0).any():
        return points
    joined = pd.concat([points, standard_end], ignore_index=True)
    return joined.sort_values("accurate_ratio", kind="mergesort")


def _draw_panel(axes, metric: str, summary: pd.DataFrame, curves: pd.DataFrame | None, colors: dict) -> list:
    """Draw one metric's curves; returns the legend handles: the study's own lines, then the reported ones."""
    handles = []
    schemes = {s for s in summary["scheme"] if s}
    standard_end = summary[(summary["strategy"] == DEFAULT_STRATEGY) & (summary["accurate_ratio"] == 1.0)]
    for (strategy, scheme), part in summary.groupby(["strategy", "scheme"], sort=False):
        if strategy != DEFAULT_STRATEGY:
            part = _with_shared_end(part, standard_end)
        mean = part[f"{metric} mean"].to_numpy(dtype=float)
        below = (mean - part[f"{metric} lo"].to_numpy(dtype=float))
        above = (part[f"{metric} hi"].to_numpy(dtype=float) - mean)
        is_standard = strategy == DEFAULT_STRATEGY
        label = _series_label(strategy, scheme, schemes)
        label += " (100 % accurate, shared)" if is_standard else ""
        handles.append(axes.errorbar(
            100 * part["accurate_ratio"].to_numpy(dtype=float), mean,
            yerr=[[0 if math.isnan(v) else v for v in below], [0 if math.isnan(v) else v for v in above]],
            color=colors[strategy], marker="s" if is_standard else "o", markersize=5, capsize=3,
            linestyle="none" if is_standard and len(part) == 1 else "-",
            label=label,
            zorder=3 if is_standard else 2,  # the shared end point stays visible on top of the curves
        ))
    if curves is not None:
        reported_end = curves[(curves["strategy"] == DEFAULT_STRATEGY) & (curves["accurate_ratio"] == 1.0)]
        for strategy, part in curves.groupby("strategy", sort=False):
            if strategy == DEFAULT_STRATEGY:
                continue  # drawn as the end point of each reported curve
            part = _with_shared_end(part, reported_end)
            handles += axes.plot(
                100 * part["accurate_ratio"].to_numpy(dtype=float), part[metric].to_numpy(dtype=float),
                color=colors[strategy], linestyle="--", marker="x", markersize=5,
                label=f"{strategy}, {REPORTED_LABEL}",
            )
    axes.set_title(metric)
    axes.set_xlabel("accurate training expressions (%)")
    axes.set_ylabel(f"{metric} (%)")
    axes.grid(True, alpha=0.3)
    return handles


def render_study_png(
    path: str | os.PathLike, summary: pd.DataFrame, *, title: str, reported_curves: pd.DataFrame | None = None
) -> Path:
    """``study.png``: mIoU and oIoU against the accurate ratio (%), one line per strategy with 95 %
    interval error bars, published curves dashed; :data:`FIGURE_INCHES` at :data:`FIGURE_DPI`. Atomic."""
    # The object-oriented API with the Agg canvas: no pyplot state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    strategies = list(dict.fromkeys(summary["strategy"]))
    if reported_curves is not None:
        strategies += [s for s in dict.fromkeys(reported_curves["strategy"]) if s not in strategies]
    palette = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
               "tab:olive", "tab:cyan")
    colors = {
        s: "black" if s == DEFAULT_STRATEGY else palette[i % len(palette)] for i, s in enumerate(strategies)
    }
    figure = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI)
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, 2)
    handles = []
    for axes, metric in zip(panels, STUDY_METRICS, strict=True):
        handles = _draw_panel(axes, metric, summary, reported_curves, colors)
        ticks = sorted(set(100 * summary["accurate_ratio"]) | (
            set(100 * reported_curves["accurate_ratio"]) if reported_curves is not None else set()))
        axes.set_xticks(ticks)
    figure.suptitle(title)
    figure.legend(handles, [h.get_label() for h in handles], loc="lower center", bbox_to_anchor=(0.5, 0.04),
                  ncol=2, fontsize=7, frameon=False)
    caption = ERROR_BAR_CAPTION[0].upper() + ERROR_BAR_CAPTION[1:] + "."
    figure.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=7)
    figure.subplots_adjust(left=0.06, right=0.99, top=0.86, bottom=0.32, wspace=0.18)
    # No Software stamp: the file depends on the data, not on which matplotlib wrote it.
    return atomic_write(
        path, lambda tmp: figure.savefig(tmp, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    )


# --------------------------------------------------------------------------- files


def _one_test_set(frame: pd.DataFrame) -> tuple[str, str, str, Any]:
    sets = frame[["method", "dataset", "split"]].drop_duplicates()
    if len(sets) > 1:
        listed = "; ".join(" ".join(map(str, row)) for row in sets.itertuples(index=False))
        raise StudyError(
            f"A study summarises one method on one test set, but the records give {len(sets)} ({listed}); "
            "pass the records of one study's cells."
        )
    first = frame.iloc[0]
    return first["method"], first["dataset"], first["split"], first["n_samples"]


def _curves_for(
    reported: pd.DataFrame | None, dataset: str, split: str, n_samples: Any
) -> tuple[pd.DataFrame | None, str]:
    """(published curves to draw, a note for study.md when some exist but are not drawn)."""
    if reported is None:
        return None, ""
    curves = weak_curves_from(reported, dataset, split)
    if curves is None:
        return None, ""
    published = PUBLISHED_SIZES.get(dataset, {}).get(split)
    size = None if pd.isna(n_samples) else int(n_samples)
    if published is not None and size != published:
        scored = "an unknown number of" if size is None else f"{size:,}"
        return None, (
            f"The published LRB-WREL numbers for {dataset} {split} are not drawn: they were scored on the "
            f"published split ({published:,} samples), this study on {scored} "
            "samples (see `leaderboards/reported.md`)."
        )
    return curves, ""


def write_study(
    out_dir: str | os.PathLike,
    records: Iterable[Mapping[str, Any]],
    *,
    title: str,
    reported: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write ``study.csv`` (:func:`study_frame`), ``study.md`` and ``study.png`` into ``out_dir``, atomically.

    ``reported`` is a :func:`~rrsis_bench.results.leaderboard.load_reported` frame: its LRB-WREL rows for
    the study's dataset and split are drawn dashed (and tabled) when the study's test set is the one
    they were reported on (its published size, where rrsis-bench knows it). Returns
    ``{"csv": ..., "md": ..., "png": ...}``. Raises :class:`StudyError` when the records hold no scored
    cell, span several methods or test sets, or give one seed twice for a strategy and ratio.
    """
    out_dir = Path(out_dir)
    frame = study_frame(records)
    if frame.empty:
        raise StudyError(
            "None of the records given has test metrics (status complete or partial); run the study's cells "
            "first, or pass the folder that holds their record.json files."
        )
    _, dataset, split, n_samples = _one_test_set(frame)
    summary = summary_frame(frame)
    curves, note = _curves_for(reported, dataset, split, n_samples)
    csv_path = atomic_write(
        out_dir / "study.csv",
        lambda tmp: frame.to_csv(tmp, index=False, float_format="%.4f", lineterminator="\n"),
    )
    markdown = render_study_markdown(frame, summary, title=title, reported_curves=curves, reported_note=note)
    md_path = atomic_write_text(out_dir / "study.md", markdown)
    png_path = render_study_png(out_dir / "study.png", summary, title=title, reported_curves=curves)
    return {"csv": csv_path, "md": md_path, "png": png_path}
