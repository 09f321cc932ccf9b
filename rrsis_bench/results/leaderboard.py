"""Leaderboards derived from run records, with published numbers kept in a separate section.

Reproduced rows aggregate complete records per (test set, method, training strategy, weak setting,
group hash), i.e. over runs that differ only by seed; each run counts once
(:func:`rrsis_bench.results.record.one_record_per_run`). The strategy (``record["strategy"]["name"]``,
``standard`` for records without one) and the weak setting (``data.weak``: accurate share and scheme)
are in the grouping key themselves, not only through the config hash, so runs of different strategies
or ratios are never averaged together.
A test set is a dataset's identity, not its layout: its name, split, manifest sha256 and sample
count. A dataset with published split sizes (RRSIS-D, RefSegRS) gets two pages: ``<name>.md`` for
rows scored on the published split, beside the published numbers, and ``<name>-other.md`` for rows
scored on any other test set under that name, never beside published numbers. Published numbers
come from the packaged ``reported.csv`` and are never mixed into the reproduced tables.

Committed tables change only when asked for: the default output folder is ``outputs/leaderboards``,
and :func:`write_leaderboards` refuses to rewrite a page whose rows' runs are not all among the
records given (``replace=True`` drops them). Output is deterministic: the same records give
byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from rrsis_bench.data.inspect import PUBLISHED_SIZES
from rrsis_bench.errors import UserError
from rrsis_bench.io import atomic_write, atomic_write_text
from rrsis_bench.metrics import METRIC_KEYS
from rrsis_bench.results.analysis import (
    TIE_ALPHA,
    as_float,
    mean_of,
    mean_sample_iou,
    read_run_samples,
    row_intervals,
    tie_p_values,
)
from rrsis_bench.results.provenance import hardware_summary
from rrsis_bench.results.record import (
    RECORD_PATH_KEY,
    VOLATILE_KEYS,
    LoadedRecords,
    canonical_config,
    load_records,
    one_record_per_run,
    record_strategy,
    record_weak,
)
from rrsis_bench.results.tables import markdown_table, test_set_tables

REPORTED_TEXT_COLUMNS = (
    "dataset", "split", "method", "venue", "setting", "source", "note", "strategy", "secondary_source",
)
REPORTED_COLUMNS = (*REPORTED_TEXT_COLUMNS[:4], *METRIC_KEYS, *REPORTED_TEXT_COLUMNS[4:])
#: The training strategy of a reported row whose ``strategy`` cell is blank (ordinary full supervision).
REPORTED_DEFAULT_STRATEGY = "standard"
REPORTED_NAME = "reported"
#: The web page and the papers-with-code style export written beside the Markdown/CSV tables.
PAGE_NAME = "index.html"
MODEL_INDEX_NAME = "model-index.yml"
#: Page suffix for rows of a dataset with published splits that were scored on another test set.
OTHER_SUFFIX = "-other"
#: `rrsis-bench leaderboard` defaults: runs under these folders, tables outside the committed leaderboards/.
DEFAULT_RECORDS = ("outputs", "multirun")
DEFAULT_OUT = "outputs/leaderboards"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LIST_COLUMNS = ("seeds", "run_ids", "records")

LEADERBOARD_HELP = """\
usage: rrsis-bench leaderboard [records=DIR[,DIR...]] [out=DIR] [replace=false]

Generate, from the complete run records (record.json files, searched recursively under each DIR;
default records=outputs,multirun out=outputs/leaderboards):
  <out>/<dataset>.md, .csv  one table set per test set: accuracy (mean ± std over seeds, 95 % intervals:
                            t over seeds, or a bootstrap over test samples for a single run; p-value of a
                            paired permutation test against the best row, ties marked), cost and
                            provenance (params, GFLOPs, train time, img/s, latency, peak memory, hardware,
                            code, dates, record links), mIoU by object size, category and expression type
                            (from each run's per_sample.csv), and by share of accurate training expressions
  <out>/index.html          the same tables, sortable, with plots (mIoU vs cost, per size, weak-ratio
                            curves); a static page that works from file:// with no network
  <out>/model-index.yml     one entry per row, papers-with-code style (metrics, config, weights paths)
  <out>/reported.md, .csv   published numbers with their sources, never mixed with reproduced rows
Runs that differ only by seed are aggregated; a run found twice counts once; runs of different
training strategies or weak settings are always separate rows. For RRSIS-D and RefSegRS, rows scored
on the published split go to <dataset>.md beside the published numbers, rows scored on any other test
set to <dataset>-other.md. Partial (capped test pass), failed and running records are skipped.
A page is rewritten only if the records given include every run it already lists; replace=true
drops the runs that are missing. The committed tables:
  rrsis-bench leaderboard records=leaderboards/records,leaderboards/studies out=leaderboards
Files are written atomically, after everything was rendered; the same records give the same files.
"""


class LeaderboardOverwrite(UserError, ValueError):
    """Writing would drop rows of an existing leaderboard page whose records were not given."""


PROTOCOL = (
    "oIoU = ΣI/ΣU over the split; mIoU = mean per-sample IoU, with IoU = 0 when the union is empty; "
    "Pr@X = % of samples with IoU ≥ X; the checkpoint is selected on val and scored on test."
)


def mean_column(metric: str) -> str:
    return f"{metric} mean"


def std_column(metric: str) -> str:
    return f"{metric} std"


def load_reported() -> pd.DataFrame:
    """The published numbers shipped with the package (``rrsis_bench/results/reported.csv``).

    ``setting`` is blank for full supervision, else the share of accurate training expressions
    (``"10% accurate"``); ``strategy`` is the suite's name for how the row's model was trained
    (``only_accurate``, ``naive_wrel``, ``lrb_wrel``), ``standard`` where the file leaves it blank.
    """
    source = resources.files("rrsis_bench.results").joinpath("reported.csv")
    with source.open("r", encoding="utf-8") as f:
        frame = pd.read_csv(
            f,
            dtype={col: str for col in REPORTED_TEXT_COLUMNS},
            keep_default_na=False,
            na_values={m: [""] for m in METRIC_KEYS},
        )
    frame["strategy"] = frame["strategy"].replace("", REPORTED_DEFAULT_STRATEGY)
    return frame[list(REPORTED_COLUMNS)]


# --------------------------------------------------------------------------- aggregation


def scored_set(record: Mapping[str, Any]) -> tuple[str, str, str | None, int | None]:
    """The samples a record was scored on: (dataset name, split, manifest sha256, samples scored)."""
    data = record["data"]
    return (data["name"], data["split"], data.get("manifest_sha256"), data.get("num_samples"))


def is_published_split(dataset: str, split: str, num_samples: int | None) -> bool:
    """Whether a test set is the split the papers report on: at least its size must be the published one."""
    published = PUBLISHED_SIZES.get(dataset, {}).get(split)
    return published is not None and num_samples == published


def page_name(record: Mapping[str, Any]) -> str:
    """``<dataset>`` or, for a dataset with published splits scored on another test set, ``<dataset>-other``."""
    dataset, split, _, num_samples = scored_set(record)
    if dataset in PUBLISHED_SIZES and not is_published_split(dataset, split, num_samples):
        return f"{dataset}{OTHER_SUFFIX}"
    return dataset


def weak_setting(record: Mapping[str, Any]) -> tuple[float, str]:
    """(accurate share of the training expressions, weak scheme): ``(1.0, "")`` when all were accurate."""
    weak = record_weak(record)
    if weak is None:
        return 1.0, ""
    # Rounded so that 0.3 from one config and 0.30000000000000004 from another are one setting.
    return round(float(weak["ratio"]), 6), str(weak.get("scheme") or "")


def weak_label(accurate_ratio: float, scheme: str) -> str:
    """``"30 % accurate (nested)"``; ``"100 % accurate"`` without weak expressions."""
    percent = f"{round(100 * float(accurate_ratio), 2):g} % accurate"
    return f"{percent} ({scheme})" if scheme else percent


class _GroupKey(NamedTuple):
    page: str
    dataset: str
    split: str
    manifest: str | None
    num_samples: int | None
    method: str
    strategy: str
    accurate_ratio: float
    weak_scheme: str
    group_hash: str


def _group_key(record: Mapping[str, Any]) -> _GroupKey:
    return _GroupKey(
        page_name(record),
        *scored_set(record),
        record["method"]["name"],
        record_strategy(record)["name"],
        *weak_setting(record),
        record["group_hash"],
    )


def _siblings_key(key: _GroupKey) -> tuple:
    """Rows whose labels are told apart by their differing config keys: same page, split, method,
    strategy and weak setting (those have columns of their own)."""
    return (key.page, key.split, key.manifest, key.num_samples, key.method, key.strategy, key.accurate_ratio,
            key.weak_scheme)


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted key -> canonical JSON of the leaf value (lists are leaves)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return flat


#: Override keys a Setting never shows: they have columns of their own (method, data, strategy, seed,
#: train expressions) or say where/how a run executed, not what it computed (see VOLATILE_KEYS).
_OWN_COLUMN_KEYS = ("method", "data", "strategy", "seed", "data.weak.accurate_ratio", "data.weak.scheme")


def _shown_override(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    if key in _OWN_COLUMN_KEYS or key in ("experiment", "recipe") or key.startswith("hydra"):
        return False
    return not any(key == volatile or key.startswith(f"{volatile}.") for volatile in VOLATILE_KEYS)


def _composed_setting(run: Mapping[str, Any]) -> str | None:
    """``experiment X`` / ``recipe X`` / ``method defaults``, then the overrides a reader needs, in full;
    None when the record does not say how its config was composed (records before the field existed)."""
    source = run.get("setting")
    if not isinstance(source, Mapping):
        return None
    if source.get("experiment"):
        base = f"experiment {source['experiment']}"
    elif source.get("recipe"):
        base = f"recipe {source['recipe']}"
    else:
        base = "method defaults"
    shown = [str(o) for o in source.get("overrides") or [] if _shown_override(str(o))]
    return " ".join([f"{base}:", *shown]) if shown else base


def _setting_labels(groups: Mapping[_GroupKey, list[dict]]) -> dict[_GroupKey, str]:
    """A Setting a reader understands without the CSV: how the config was composed (experiment or
    recipe, then every override in full). Records that did not store their composition show, in full,
    the config keys in which they differ from the other rows of the same method."""
    flats = {
        key: _flatten(canonical_config(runs[0].get("config") or {}, include_seed=False))
        for key, runs in groups.items()
    }
    siblings: dict[tuple, list[_GroupKey]] = defaultdict(list)
    for key in groups:
        siblings[_siblings_key(key)].append(key)
    labels = {}
    for key, runs in groups.items():
        composed = _composed_setting(runs[0])
        if composed is not None:
            labels[key] = composed
            continue
        labels[key] = _setting_from_config_diff(runs[0], flats[key])
    return labels


def _setting_from_config_diff(run: Mapping[str, Any], flat: Mapping[str, str]) -> str:
    """For a record that did not store how its config was composed: the keys in which its config
    differs from what ``rrsis-bench run method=M data=D strategy=S`` composes today (recipe included),
    marked as reconstructed; a key missing from the record (added to the configs later) is not shown."""
    config = run.get("config") or {}
    overrides = [f"method={run['method']['name']}", f"data={config.get('data', {}).get('name', '')}",
                 f"strategy={record_strategy(run)['name']}"]
    try:
        from rrsis_bench.config import compose_run_config

        base = _flatten(canonical_config(compose_run_config(overrides), include_seed=False))
    except Exception:  # a plugin that is not installed, a renamed group: say what we can
        return "(composition not recorded; defaults unknown)"
    differing = sorted(k for k in flat if k in base and flat[k] != base[k] and _shown_override(k))
    shown = [f"{k}={_value_text(flat[k])}" for k in differing]
    return " ".join(["[reconstructed]", *shown]) if shown else "[reconstructed] the defaults"


def _value_text(text: str | None) -> str:
    if text is None:
        return "unset"
    return text[1:-1] if text.startswith('"') else text


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for fewer than two values)."""
    clean = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not clean:
        return math.nan, math.nan
    mean = math.fsum(clean) / len(clean)
    if len(clean) < 2:
        return mean, math.nan
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in clean) / (len(clean) - 1))


def _code_label(run: Mapping[str, Any]) -> str:
    """The short git commit a record's code came from, ``-dirty`` when the tree had uncommitted changes."""
    code = run.get("code") or {}
    sha = code.get("git_sha")
    label = sha[:7] if isinstance(sha, str) and sha else "unknown"
    return f"{label}-dirty" if code.get("git_dirty") else label


def _cost(runs: list[dict]) -> dict[str, Any]:
    """Efficiency columns: parameters and FLOPs (per method+setting), and per-run measurements averaged."""
    efficiency = [run.get("efficiency") or {} for run in runs]
    timing = [run.get("timing") or {} for run in runs]
    flops = [e.get("gflops") for e in efficiency if e.get("gflops") is not None]
    inputs = sorted({(e.get("input") or {}).get("image_size") for e in efficiency if e.get("input")} - {None})
    return {
        "params": as_float(efficiency[0].get("params", runs[0]["method"].get("num_params"))),
        "gflops": flops[0] if flops else math.nan,
        "gflops_input": ",".join(str(size) for size in inputs),
        "wall_s mean": mean_of([t.get("wall_s") for t in timing]),
        "train_s mean": mean_of([t.get("train_s") for t in timing]),
        "train_img_per_s mean": mean_of([t.get("train_samples_per_s") for t in timing]),
        "latency_ms mean": mean_of([(e.get("latency_ms") or {}).get("median") for e in efficiency]),
        "peak_memory_mb mean": mean_of([t.get("peak_memory_mb") for t in timing]),
    }


def _aggregate(key: _GroupKey, runs: list[dict], setting: str, samples: list[pd.DataFrame | None]) -> dict[str, Any]:
    """One leaderboard row from the runs of one group (``samples``: their per-sample frames, or None)."""
    row: dict[str, Any] = {
        "page": key.page,
        "dataset": key.dataset,
        "split": key.split,
        "manifest_sha256": key.manifest or "",
        "n_samples": key.num_samples,
        "published_split": is_published_split(key.dataset, key.split, key.num_samples),
        "method": key.method,
        "strategy": key.strategy,
        "accurate_ratio": key.accurate_ratio,
        "weak_scheme": key.weak_scheme,
        "weak": weak_label(key.accurate_ratio, key.weak_scheme),
        "setting": setting,
        "group_hash": key.group_hash,
        "n_runs": len(runs),
        "n_seeds": len({run["seed"] for run in runs}),
        "seeds": [run["seed"] for run in runs],
    }
    for metric in METRIC_KEYS:
        row[mean_column(metric)], row[std_column(metric)] = _mean_std(
            [run["metrics"][metric] for run in runs]
        )
    row.update(row_intervals(runs, samples))
    row.update(_cost(runs))
    row["hardware"] = " / ".join(sorted({hardware_summary(run.get("hardware")) for run in runs}))
    row["code"] = ", ".join(sorted({_code_label(run) for run in runs}))
    row["dirty"] = any((run.get("code") or {}).get("git_dirty") for run in runs)
    dates = sorted(str(run.get("created", ""))[:10] for run in runs if run.get("created"))
    row["dates"] = (dates[0] if dates[0] == dates[-1] else f"{dates[0]} – {dates[-1]}") if dates else ""
    row["run_ids"] = [run["run_id"] for run in runs]
    row["records"] = [str(run.get(RECORD_PATH_KEY, run["run_id"])) for run in runs]
    return row


def _run_order(run: Mapping[str, Any]) -> tuple[int, str]:
    return (run["seed"], run["run_id"])


TEST_SET_COLUMNS = ["split", "n_samples", "manifest_sha256"]


def _mark_ties(frame: pd.DataFrame, sample_iou: Mapping[int, pd.Series | None]) -> pd.DataFrame:
    """Per test set: ``row_id`` (R1, R2, … in table order), ``best`` (highest mean mIoU), ``p_vs_best``
    (paired permutation test of per-sample IoUs against the best row) and ``tied`` (p ≥ TIE_ALPHA)."""
    frame = frame.copy()
    frame["row_id"], frame["best"], frame["p_vs_best"], frame["tied"] = "", False, math.nan, False
    for number, (_, part) in enumerate(frame.groupby(TEST_SET_COLUMNS, sort=True, dropna=False), start=1):
        order = list(part.index)
        prefix = "" if frame.groupby(TEST_SET_COLUMNS, dropna=False).ngroups == 1 else f"{number}."
        for position, index in enumerate(order, start=1):
            frame.at[index, "row_id"] = f"R{prefix}{position}"
        best = order[0]
        frame.at[best, "best"] = True
        p_values = tie_p_values(sample_iou.get(best), {i: sample_iou.get(i) for i in order[1:]})
        for index, p in p_values.items():
            frame.at[index, "p_vs_best"] = p
            frame.at[index, "tied"] = bool(not math.isnan(p) and p >= TIE_ALPHA)
    return frame


def build_leaderboard(records: Iterable[Mapping[str, Any]], *,
                      samples: dict[str, pd.DataFrame | None] | None = None) -> dict[str, pd.DataFrame]:
    """Per page (see :func:`page_name`), one row per (test set, method, strategy, weak setting, group hash),
    best mIoU first.

    Only complete records count, each run once. Each row has its test set (split, ``manifest_sha256``,
    ``n_samples``, ``published_split``), ``strategy``, ``accurate_ratio`` and ``weak_scheme`` (1.0 and
    "" without weak expressions) with their label ``weak``, n_runs, n_seeds, seeds,
    ``<metric> mean``/``<metric> std`` (sample std, NaN for one run), 95 % intervals of mIoU and oIoU
    (``ci method`` says which: t over seeds, or a bootstrap over test samples for one run), cost
    (params, GFLOPs and its input size, wall/train time, train img/s, latency, peak memory), hardware,
    code (git commit, ``-dirty`` marked), dates, a Setting, ``row_id``, ``best``, ``p_vs_best`` and
    ``tied`` (see :mod:`rrsis_bench.results.analysis`), the run ids and the record paths.
    ``samples`` (run id → per-sample frame) is filled in as the runs' files are read.
    """
    runs, _ = one_record_per_run(records)
    samples = {} if samples is None else samples
    for run in runs:
        if run["run_id"] not in samples:
            samples[run["run_id"]] = read_run_samples(run)
    groups: dict[_GroupKey, list[dict]] = defaultdict(list)
    for record in runs:
        groups[_group_key(record)].append(record)
    labels = _setting_labels(groups)
    rows, row_samples = [], []
    for key, group in groups.items():
        ordered = sorted(group, key=_run_order)
        frames = [samples[run["run_id"]] for run in ordered]
        rows.append(_aggregate(key, ordered, labels[key], frames))
        row_samples.append(mean_sample_iou(frames))
    for row, series in zip(rows, row_samples, strict=True):
        row["_samples"] = series
    frames_out = {}
    for page in sorted({row["page"] for row in rows}):
        frame = pd.DataFrame([row for row in rows if row["page"] == page])
        frame = frame.sort_values(
            ["split", "n_samples", "manifest_sha256", mean_column("mIoU"), "method", "strategy",
             "accurate_ratio", "weak_scheme", "group_hash"],
            ascending=[True, True, True, False, True, True, True, True, True],
            kind="mergesort",
        ).reset_index(drop=True)
        series = dict(enumerate(frame.pop("_samples")))
        frames_out[page] = _mark_ties(frame, series)
    return frames_out


# --------------------------------------------------------------------------- markdown


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


_NUMERIC_HEADERS = {*METRIC_KEYS, "Runs", "Wall time (mean)"}


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A GitHub-flavoured Markdown table; metric and time columns are right-aligned."""
    align = ["---:" if name in _NUMERIC_HEADERS else "---" for name in header]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _number(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.2f}"


def _mean_std_cell(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "–"
    spread = "" if pd.isna(std) else f" ± {std:.2f}"
    return f"{mean:.2f}{spread}"


def _count(value: Any) -> str:
    return "unknown" if value is None or pd.isna(value) else f"{int(value):,}"


def _test_set_heading(split: str, num_samples: Any, manifest: str, published: bool) -> str:
    size = f"the published split ({_count(num_samples)} samples)" if published else f"{_count(num_samples)} samples"
    return f"### {split}: {size}, manifest {manifest[:8] or 'unknown'}"


def test_set_parts(frame: pd.DataFrame):
    """(heading, rows) per test set of a page, in table order."""
    for (split, num_samples, manifest), part in frame.groupby(TEST_SET_COLUMNS, sort=True, dropna=False):
        yield _test_set_heading(split, num_samples, manifest, bool(part["published_split"].iloc[0])), part


def _table_id(page: str, part: pd.DataFrame) -> str:
    row = part.iloc[0]
    return re.sub(r"[^A-Za-z0-9-]", "-", f"{page}-{row['split']}-{str(row['manifest_sha256'])[:8] or 'unknown'}")


def _reproduced_section(frame: pd.DataFrame, samples: Mapping[str, pd.DataFrame | None],
                        links_from: Path | None) -> list[str]:
    lines = ["## Reproduced with rrsis-bench", ""]
    if frame.empty:
        return [*lines, "No complete runs for this dataset yet.", ""]
    lines += [
        "One table set per test set (split, sample count, manifest sha256): rows of different test sets are "
        "not comparable. Strategy: how the method was trained; Train expressions: the share of training "
        "expressions that were accurate (the others were class names) and how that subset was chosen; "
        "Setting: the experiment or recipe the run's config was composed from and every command-line "
        "override (seed and the columns above aside); [reconstructed] marks records that did not store "
        "their composition: the keys shown are those in which their config differs from today's defaults. Code: the git commit of the runs; a dirty tree is "
        "marked. Breakdowns and costs are keyed by the row number (#).",
        "",
    ]
    for heading, part in test_set_parts(frame):
        lines += [heading, ""]
        for table in test_set_tables(part, samples, _table_id(str(part["page"].iloc[0]), part), links_from):
            lines += markdown_table(table)
    return lines


def _reported_rows(frame: pd.DataFrame) -> list[list[str]]:
    return [
        [
            row["method"],
            row["venue"],
            row["strategy"],
            row["setting"],
            *(_number(row[m]) for m in METRIC_KEYS),
            row["source"],
            row["secondary_source"],
            row["note"],
        ]
        for _, row in frame.iterrows()
    ]


def _setting_order(setting: str) -> tuple[int, float, str]:
    """Standard training (blank) first, then settings by their leading number: 10% < 30% < 100%."""
    number = re.match(r"\d+(\.\d+)?", setting)
    return (setting != "", float(number.group()) if number else math.inf, setting)


def _sorted_reported(frame: pd.DataFrame) -> pd.DataFrame:
    """Split, then setting, then best mIoU first; ties by method name."""
    order = frame.assign(_setting=frame["setting"].map(_setting_order))
    order = order.sort_values(
        ["split", "_setting", "mIoU", "method"],
        ascending=[True, True, False, True],
        na_position="last",
        kind="mergesort",
    )
    return order.drop(columns="_setting")


def _reported_tables(frame: pd.DataFrame, heading: str) -> list[str]:
    header = ["Method", "Venue", "Strategy", "Setting", *METRIC_KEYS, "Source (primary paper, table)",
              "Taken from / primary not found", "Note"]
    lines: list[str] = []
    for split, part in _sorted_reported(frame).groupby("split", sort=True):
        lines += [f"{heading} {split}", "", *_markdown_table(header, _reported_rows(part)), ""]
    return lines


_REPORTED_CAVEAT = (
    "Numbers copied from publications for context: different code, hardware and seeds (usually one run), "
    "not produced by rrsis-bench. '–' means not reported. Strategy: how the model was trained, in the "
    "suite's names (only_accurate, naive_wrel, lrb_wrel run with `strategy=NAME`); Setting: the share of "
    "training expressions that were accurate (the others were class names), blank for full supervision."
)


_REPORTED_METRICS = (
    "The papers use the RRSIS metrics defined for the reproduced tables (oIoU = ΣI/ΣU, mIoU = mean IoU, "
    "Pr@X); some call oIoU 'gIoU' (e.g. DiCoR)."
)


def _reported_section(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return []
    return [
        "## Reported in publications (not reproduced here)",
        "",
        _REPORTED_CAVEAT,
        "",
        *_reported_tables(frame, "###"),
    ]


def _header(title: str, generated_from: str) -> list[str]:
    return [
        f"# {title}",
        "",
        f"Generated by `rrsis-bench leaderboard` from {generated_from}; do not edit by hand.",
        "",
    ]


def _published_sizes(dataset: str) -> str:
    sizes = PUBLISHED_SIZES.get(dataset, {})
    return ", ".join(f"{split} {count:,}" for split, count in sizes.items())


def render_markdown(page: str, frame: pd.DataFrame, reported_frame: pd.DataFrame, *,
                    samples: Mapping[str, pd.DataFrame | None] | None = None, links_from: Path | None = None) -> str:
    """The leaderboard page ``page`` (see :func:`page_name`): reproduced runs, one table per test set,
    then the published numbers for the splits on which rows were scored on the published split."""
    dataset = str(frame["dataset"].iloc[0]) if not frame.empty else page
    other = page != dataset
    title = f"RRSIS leaderboard: {dataset}" + (", other test sets" if other else "")
    lines = [*_header(title, "run records (`record.json`)"), f"Protocol: {PROTOCOL}", ""]
    if other:
        lines += [
            f"Rows scored on test sets named {dataset} that are not its published splits (published sizes: "
            f"{_published_sizes(dataset)} samples): they are not comparable with published numbers, which are "
            f"therefore not shown here (see `{dataset}.md` and `{REPORTED_NAME}.md`).",
            "",
        ]
    lines += _reproduced_section(frame, samples or {}, links_from)
    if other or frame.empty:
        return "\n".join(lines).rstrip("\n") + "\n"
    published_splits = set(frame.loc[frame["published_split"].astype(bool), "split"])
    reported = reported_frame[
        (reported_frame["dataset"] == dataset) & reported_frame["split"].isin(published_splits)
    ]
    lines += _reported_section(reported)
    if reported.empty and (reported_frame["dataset"] == dataset).any():
        lines += [
            f"Published numbers for {dataset} are in `{REPORTED_NAME}.md`, not beside these rows: none of them "
            "was scored on a split of the published size.",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def render_reported_markdown(reported_frame: pd.DataFrame) -> str:
    """All published numbers, one section per dataset."""
    lines = _header(
        "RRSIS results reported in publications (not reproduced here)", "`rrsis_bench/results/reported.csv`"
    )
    lines += [_REPORTED_CAVEAT, "", _REPORTED_METRICS, ""]
    for dataset, part in reported_frame.groupby("dataset", sort=True):
        lines += [f"## {dataset}", "", *_reported_tables(part, "###")]
    return "\n".join(lines).rstrip("\n") + "\n"


# --------------------------------------------------------------------------- files


def _csv_frame(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Frame ready for CSV: a leading ``kind`` column, list cells joined with ';'."""
    out = frame.copy()
    for column in _LIST_COLUMNS:
        if column in out:
            out[column] = out[column].map(lambda items: ";".join(str(item) for item in items))
    out.insert(0, "kind", kind)
    return out


def _write_csv(path: Path, frame: pd.DataFrame, float_format: str | None = None) -> Path:
    return atomic_write(
        path, lambda tmp: frame.to_csv(tmp, index=False, float_format=float_format, lineterminator="\n")
    )


def _check_dataset_name(dataset: str) -> None:
    if not _NAME_PATTERN.match(dataset) or dataset == REPORTED_NAME:
        raise ValueError(
            f"Dataset name {dataset!r} cannot be used as a leaderboard file name; "
            f"use letters, digits, '.', '_' or '-' (and not {REPORTED_NAME!r})."
        )


def runs_listed(csv_path: str | os.PathLike) -> set[str] | None:
    """The run ids of the rows of a leaderboard CSV; None when it has no ``run_ids`` column (older files)."""
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    if "run_ids" not in table:
        return None
    return {run_id for cell in table["run_ids"] for run_id in cell.split(";") if run_id}


def _check_pages_covered(pages: Iterable[str], run_ids: set[str], out_dir: Path) -> None:
    """Refuse to rewrite a page whose existing rows come from runs that are not among ``run_ids``."""
    for page in pages:
        csv_path = out_dir / f"{page}.csv"
        if not csv_path.is_file():
            continue
        listed = runs_listed(csv_path)
        if listed is None:
            raise LeaderboardOverwrite(
                f"{csv_path} lists no run ids (an older leaderboard), so its rows cannot be matched to the records "
                "given; pass replace=true to regenerate it from these records alone, or write to another out=DIR."
            )
        missing = sorted(listed - run_ids)
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise LeaderboardOverwrite(
                f"{csv_path} holds {len(missing)} run(s) not among the records given ({shown}); pass their records "
                "too (for the committed tables: records=leaderboards/records), pass replace=true to drop those rows, "
                "or write to another out=DIR."
            )


def write_leaderboards(
    records: Iterable[Mapping[str, Any]],
    out_dir: str | os.PathLike,
    *,
    reported: pd.DataFrame | None = None,
    replace: bool = False,
) -> list[Path]:
    """Write ``<page>.md``/``<page>.csv`` per page and ``reported.md``/``reported.csv``; return the paths.

    Page CSVs hold reproduced rows only (``kind=reproduced``); ``reported.csv`` holds every
    published row (``kind=reported``). ``reported`` defaults to :func:`load_reported`. A page that
    already exists in ``out_dir`` is rewritten only if every run it lists is among ``records``;
    otherwise :class:`LeaderboardOverwrite` is raised before anything is written, unless ``replace``.
    """
    from rrsis_bench.results.site import build_page, model_index_text
    from rrsis_bench.results.webpage import render_page

    out_dir = Path(out_dir)
    reported = load_reported() if reported is None else reported
    runs, _ = one_record_per_run(records)
    samples: dict[str, pd.DataFrame | None] = {}
    frames = build_leaderboard(runs, samples=samples)
    for page in frames:
        _check_dataset_name(page)
    if not replace:
        _check_pages_covered(frames, {run["run_id"] for run in runs}, out_dir)
    # Everything is rendered before the first file is written: an error leaves the folder as it was.
    texts: dict[str, str] = {}
    csvs: dict[str, tuple[pd.DataFrame, str | None]] = {}
    for page, frame in frames.items():
        texts[f"{page}.md"] = render_markdown(page, frame, reported, samples=samples, links_from=out_dir)
        csvs[f"{page}.csv"] = (_csv_frame(frame, "reproduced"), "%.4f")
    texts[f"{REPORTED_NAME}.md"] = render_reported_markdown(reported)
    csvs[f"{REPORTED_NAME}.csv"] = (_csv_frame(reported, "reported"), None)
    texts[MODEL_INDEX_NAME] = model_index_text(frames, runs, out_dir)
    texts[PAGE_NAME] = render_page(build_page(frames, samples, reported, out_dir))
    written = []
    for name, text in texts.items():
        if name.endswith(".md"):
            written.append(atomic_write_text(out_dir / name, text))
            csv_name = name[:-3] + ".csv"
            written.append(_write_csv(out_dir / csv_name, *csvs[csv_name]))
    written.append(atomic_write_text(out_dir / MODEL_INDEX_NAME, texts[MODEL_INDEX_NAME]))
    written.append(atomic_write_text(out_dir / PAGE_NAME, texts[PAGE_NAME]))
    return written


def regenerate_leaderboards(
    record_paths: Sequence[str | os.PathLike] = DEFAULT_RECORDS,
    out_dir: str | os.PathLike = DEFAULT_OUT,
    *,
    replace: bool = False,
) -> tuple[LoadedRecords, list[Path]]:
    """What `rrsis-bench leaderboard` does: load the records below ``record_paths`` (those that exist)
    and write the leaderboards into ``out_dir``; returns (records loaded and skipped, files written)."""
    sources = [Path(p) for p in record_paths if str(p)]
    existing = [p for p in sources if p.exists()]
    if not existing:
        raise FileNotFoundError(
            f"No record folder found among {', '.join(map(str, sources))}; pass records=DIR[,DIR...]."
        )
    loaded = load_records(existing)
    return loaded, write_leaderboards(loaded.records, out_dir, replace=replace)
