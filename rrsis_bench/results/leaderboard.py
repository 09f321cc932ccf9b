"""Leaderboards derived from run records, with published numbers kept in a separate section.

Reproduced rows aggregate complete records per (dataset, split, method, group hash), i.e. over
runs that differ only by seed. Published numbers come from the packaged ``reported.csv`` and are
never mixed into the reproduced tables. Output is deterministic: the same records give
byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from rrsis_bench.io import atomic_write, atomic_write_text
from rrsis_bench.metrics import METRIC_KEYS
from rrsis_bench.results.provenance import hardware_summary
from rrsis_bench.results.record import RECORD_PATH_KEY, canonical_config

REPORTED_TEXT_COLUMNS = ("dataset", "split", "method", "venue", "setting", "source", "note")
REPORTED_COLUMNS = (*REPORTED_TEXT_COLUMNS[:4], *METRIC_KEYS, *REPORTED_TEXT_COLUMNS[4:])
REPORTED_NAME = "reported"
_MAX_LABEL_KEYS = 4
_MAX_VALUE_CHARS = 24
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

PROTOCOL = (
    "oIoU = ΣI/ΣU over the split; mIoU = mean per-sample IoU, with IoU = 0 when the union is empty; "
    "Pr@X = % of samples with IoU ≥ X; the checkpoint is selected on val and scored on test."
)


def mean_column(metric: str) -> str:
    return f"{metric} mean"


def std_column(metric: str) -> str:
    return f"{metric} std"


def load_reported() -> pd.DataFrame:
    """The published numbers shipped with the package (``rrsis_bench/results/reported.csv``)."""
    source = resources.files("rrsis_bench.results").joinpath("reported.csv")
    with source.open("r", encoding="utf-8") as f:
        frame = pd.read_csv(
            f,
            dtype={col: str for col in REPORTED_TEXT_COLUMNS},
            keep_default_na=False,
            na_values={m: [""] for m in METRIC_KEYS},
        )
    return frame[list(REPORTED_COLUMNS)]


# --------------------------------------------------------------------------- aggregation


def _group_key(record: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (record["data"]["name"], record["data"]["split"], record["method"]["name"], record["group_hash"])


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


def _short_value(text: str | None) -> str:
    if text is None:
        return "unset"
    value = text[1:-1] if text.startswith('"') else text
    return value if len(value) <= _MAX_VALUE_CHARS else value[: _MAX_VALUE_CHARS - 1] + "…"


def _setting_labels(groups: Mapping[tuple[str, str, str, str], list[dict]]) -> dict[tuple, str]:
    """``<group_hash[:8]>`` plus the config keys in which groups of the same method differ."""
    flats = {
        key: _flatten(canonical_config(runs[0].get("config") or {}, include_seed=False))
        for key, runs in groups.items()
    }
    siblings: dict[tuple[str, str, str], list[tuple]] = defaultdict(list)
    for key in groups:
        siblings[key[:3]].append(key)
    labels = {}
    for key in groups:
        others = [flats[k] for k in siblings[key[:3]]]
        differing = sorted(k for k in set().union(*others) if len({flat.get(k) for flat in others}) > 1)
        shown = [f"{k}={_short_value(flats[key].get(k))}" for k in differing[:_MAX_LABEL_KEYS]]
        more = [f"+{len(differing) - _MAX_LABEL_KEYS} more"] if len(differing) > _MAX_LABEL_KEYS else []
        labels[key] = " ".join([key[3][:8], *shown, *more])
    return labels


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for fewer than two values)."""
    clean = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not clean:
        return math.nan, math.nan
    mean = math.fsum(clean) / len(clean)
    if len(clean) < 2:
        return mean, math.nan
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in clean) / (len(clean) - 1))


def _aggregate(key: tuple[str, str, str, str], runs: list[dict], setting: str) -> dict[str, Any]:
    """One leaderboard row from the runs of one group."""
    dataset, split, method, group_hash = key
    row: dict[str, Any] = {
        "dataset": dataset,
        "split": split,
        "method": method,
        "setting": setting,
        "group_hash": group_hash,
        "n_runs": len(runs),
        "n_seeds": len({run["seed"] for run in runs}),
        "seeds": [run["seed"] for run in runs],
    }
    for metric in METRIC_KEYS:
        row[mean_column(metric)], row[std_column(metric)] = _mean_std(
            [run["metrics"][metric] for run in runs]
        )
    row["wall_s mean"] = _mean_std([(run.get("timing") or {}).get("wall_s") for run in runs])[0]
    row["hardware"] = " / ".join(sorted({hardware_summary(run.get("hardware")) for run in runs}))
    row["records"] = [str(run.get(RECORD_PATH_KEY, run["run_id"])) for run in runs]
    return row


def _run_order(run: Mapping[str, Any]) -> tuple[int, str]:
    return (run["seed"], run["run_id"])


def build_leaderboard(records: Iterable[Mapping[str, Any]]) -> dict[str, pd.DataFrame]:
    """Per dataset, one row per (split, method, group hash) over complete records, best mIoU first.

    Each row has n_runs, n_seeds, seeds, ``<metric> mean``/``<metric> std`` (sample std, NaN for
    one run), ``wall_s mean``, hardware, a setting label and the record paths.
    """
    groups: dict[tuple[str, str, str, str], list[dict]] = defaultdict(list)
    for record in records:
        if record.get("status") == "complete":
            groups[_group_key(record)].append(dict(record))
    labels = _setting_labels(groups)
    rows = [_aggregate(key, sorted(runs, key=_run_order), labels[key]) for key, runs in groups.items()]
    frames = {}
    for dataset in sorted({row["dataset"] for row in rows}):
        frame = pd.DataFrame([row for row in rows if row["dataset"] == dataset])
        frame = frame.sort_values(
            ["split", mean_column("mIoU"), "method", "group_hash"],
            ascending=[True, False, True, True],
            kind="mergesort",
        )
        frames[dataset] = frame.reset_index(drop=True)
    return frames


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


def _duration(seconds: Any) -> str:
    if seconds is None or pd.isna(seconds):
        return "–"
    minutes, secs = divmod(round(float(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{secs}s")


def _reproduced_rows(frame: pd.DataFrame) -> list[list[str]]:
    rows = []
    for _, row in frame.iterrows():
        cells = [row["method"], row["setting"]]
        cells += [_mean_std_cell(row[mean_column(m)], row[std_column(m)]) for m in METRIC_KEYS]
        cells += [
            str(row["n_runs"]),
            ", ".join(str(seed) for seed in row["seeds"]),
            _duration(row["wall_s mean"]),
            row["hardware"],
        ]
        rows.append(cells)
    return rows


def _reproduced_section(frame: pd.DataFrame) -> list[str]:
    lines = ["## Reproduced with rrsis-bench", ""]
    if frame.empty:
        return [*lines, "No complete runs for this dataset yet.", ""]
    lines += ["Cells: mean ± sample std over the runs of a row (no std for a single run).", ""]
    header = ["Method", "Setting", *METRIC_KEYS, "Runs", "Seeds", "Wall time (mean)", "Hardware"]
    for split, part in frame.groupby("split", sort=True):
        lines += [f"### {split}", "", *_markdown_table(header, _reproduced_rows(part)), ""]
    return lines


def _reported_rows(frame: pd.DataFrame) -> list[list[str]]:
    return [
        [
            row["method"],
            row["venue"],
            row["setting"],
            *(_number(row[m]) for m in METRIC_KEYS),
            row["source"],
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
    header = ["Method", "Venue", "Setting", *METRIC_KEYS, "Source", "Note"]
    lines: list[str] = []
    for split, part in _sorted_reported(frame).groupby("split", sort=True):
        lines += [f"{heading} {split}", "", *_markdown_table(header, _reported_rows(part)), ""]
    return lines


_REPORTED_CAVEAT = (
    "Numbers copied from publications for context: different code, hardware and seeds (usually one run), "
    "not produced by rrsis-bench. '–' means not reported. Setting is blank for standard full-supervision training."
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


def render_markdown(dataset: str, frame: pd.DataFrame, reported_frame: pd.DataFrame) -> str:
    """The leaderboard page of one dataset: reproduced runs, then that dataset's published numbers."""
    reported = reported_frame[reported_frame["dataset"] == dataset]
    lines = [
        *_header(f"RRSIS leaderboard: {dataset}", "run records (`record.json`)"),
        f"Protocol: {PROTOCOL}",
        "",
        *_reproduced_section(frame),
        *_reported_section(reported),
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
    for column in ("seeds", "records"):
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


def write_leaderboards(
    records: Iterable[Mapping[str, Any]], out_dir: str | os.PathLike, *, reported: pd.DataFrame | None = None
) -> list[Path]:
    """Write ``<dataset>.md``/``<dataset>.csv`` per dataset and ``reported.md``/``reported.csv``; return the paths.

    Dataset CSVs hold reproduced rows only (``kind=reproduced``); ``reported.csv`` holds every
    published row (``kind=reported``). ``reported`` defaults to :func:`load_reported`.
    """
    out_dir = Path(out_dir)
    reported = load_reported() if reported is None else reported
    frames = build_leaderboard(records)
    for dataset in frames:
        _check_dataset_name(dataset)
    written = []
    for dataset, frame in frames.items():
        written.append(
            atomic_write_text(out_dir / f"{dataset}.md", render_markdown(dataset, frame, reported))
        )
        written.append(_write_csv(out_dir / f"{dataset}.csv", _csv_frame(frame, "reproduced"), "%.4f"))
    written.append(atomic_write_text(out_dir / f"{REPORTED_NAME}.md", render_reported_markdown(reported)))
    written.append(_write_csv(out_dir / f"{REPORTED_NAME}.csv", _csv_frame(reported, "reported")))
    return written
