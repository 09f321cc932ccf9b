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
from rrsis_bench.results.provenance import hardware_summary
from rrsis_bench.results.record import (
    RECORD_PATH_KEY,
    LoadedRecords,
    canonical_config,
    load_records,
    one_record_per_run,
    record_strategy,
    record_weak,
)

REPORTED_TEXT_COLUMNS = (
    "dataset", "split", "method", "venue", "setting", "source", "note", "strategy", "secondary_source",
)
REPORTED_COLUMNS = (*REPORTED_TEXT_COLUMNS[:4], *METRIC_KEYS, *REPORTED_TEXT_COLUMNS[4:])
#: The training strategy of a reported row whose ``strategy`` cell is blank (ordinary full supervision).
REPORTED_DEFAULT_STRATEGY = "standard"
REPORTED_NAME = "reported"
#: Page suffix for rows of a dataset with published splits that were scored on another test set.
OTHER_SUFFIX = "-other"
#: `rrsis-bench leaderboard` defaults: runs under these folders, tables outside the committed leaderboards/.
DEFAULT_RECORDS = ("outputs", "multirun")
DEFAULT_OUT = "outputs/leaderboards"
_MAX_LABEL_KEYS = 4
_MAX_VALUE_CHARS = 24
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LIST_COLUMNS = ("seeds", "run_ids", "records")

LEADERBOARD_HELP = """\
usage: rrsis-bench leaderboard [records=DIR[,DIR...]] [out=DIR] [replace=false]

Generate <out>/<dataset>.md and <dataset>.csv from the complete run records (record.json files,
searched recursively under each DIR; default records=outputs,multirun out=outputs/leaderboards).
Runs that differ only by seed are aggregated as mean ± std; a run found twice (a resumed run and a
copy of its folder) counts once; runs of different training strategies or weak settings (share of
accurate training expressions) are always separate rows. Rows are grouped by test set (dataset name,
split, manifest sha256, sample count); for RRSIS-D and RefSegRS, rows scored on the published split
go to <dataset>.md beside the published numbers, rows scored on any other test set to
<dataset>-other.md. Partial (capped test pass), failed and running records are skipped. Published
numbers are also in <out>/reported.md/.csv, marked "reported", never mixed with rows reproduced here.
A page is rewritten only if the records given include every run it already lists; replace=true
drops the runs that are missing. The committed tables: records=leaderboards/records out=leaderboards.
Files are written atomically; the same records always give the same files.
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
    return (key.page, key.split, key.method, key.strategy, key.accurate_ratio, key.weak_scheme)


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


def _setting_labels(groups: Mapping[_GroupKey, list[dict]]) -> dict[_GroupKey, str]:
    """``<group_hash[:8]>`` plus the config keys in which groups of the same method differ."""
    flats = {
        key: _flatten(canonical_config(runs[0].get("config") or {}, include_seed=False))
        for key, runs in groups.items()
    }
    siblings: dict[tuple, list[_GroupKey]] = defaultdict(list)
    for key in groups:
        siblings[_siblings_key(key)].append(key)
    labels = {}
    for key in groups:
        others = [flats[k] for k in siblings[_siblings_key(key)]]
        differing = sorted(k for k in set().union(*others) if len({flat.get(k) for flat in others}) > 1)
        shown = [f"{k}={_short_value(flats[key].get(k))}" for k in differing[:_MAX_LABEL_KEYS]]
        more = [f"+{len(differing) - _MAX_LABEL_KEYS} more"] if len(differing) > _MAX_LABEL_KEYS else []
        labels[key] = " ".join([key.group_hash[:8], *shown, *more])
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


def _code_label(run: Mapping[str, Any]) -> str:
    """The short git commit a record's code came from, ``-dirty`` when the tree had uncommitted changes."""
    code = run.get("code") or {}
    sha = code.get("git_sha")
    label = sha[:7] if isinstance(sha, str) and sha else "unknown"
    return f"{label}-dirty" if code.get("git_dirty") else label


def _aggregate(key: _GroupKey, runs: list[dict], setting: str) -> dict[str, Any]:
    """One leaderboard row from the runs of one group."""
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
    row["wall_s mean"] = _mean_std([(run.get("timing") or {}).get("wall_s") for run in runs])[0]
    row["hardware"] = " / ".join(sorted({hardware_summary(run.get("hardware")) for run in runs}))
    row["code"] = ", ".join(sorted({_code_label(run) for run in runs}))
    row["run_ids"] = [run["run_id"] for run in runs]
    row["records"] = [str(run.get(RECORD_PATH_KEY, run["run_id"])) for run in runs]
    return row


def _run_order(run: Mapping[str, Any]) -> tuple[int, str]:
    return (run["seed"], run["run_id"])


def build_leaderboard(records: Iterable[Mapping[str, Any]]) -> dict[str, pd.DataFrame]:
    """Per page (see :func:`page_name`), one row per (test set, method, strategy, weak setting, group hash),
    best mIoU first.

    Only complete records count, each run once. Each row has its test set (split, ``manifest_sha256``,
    ``n_samples``, ``published_split``), ``strategy``, ``accurate_ratio`` and ``weak_scheme`` (1.0 and
    "" without weak expressions) with their label ``weak``, n_runs, n_seeds, seeds,
    ``<metric> mean``/``<metric> std`` (sample std, NaN for one run), ``wall_s mean``, hardware,
    code (git commit, ``-dirty`` marked), a setting label, the run ids and the record paths.
    """
    runs, _ = one_record_per_run(records)
    groups: dict[_GroupKey, list[dict]] = defaultdict(list)
    for record in runs:
        groups[_group_key(record)].append(record)
    labels = _setting_labels(groups)
    rows = [_aggregate(key, sorted(runs, key=_run_order), labels[key]) for key, runs in groups.items()]
    frames = {}
    for page in sorted({row["page"] for row in rows}):
        frame = pd.DataFrame([row for row in rows if row["page"] == page])
        frame = frame.sort_values(
            ["split", "n_samples", "manifest_sha256", mean_column("mIoU"), "method", "strategy",
             "accurate_ratio", "weak_scheme", "group_hash"],
            ascending=[True, True, True, False, True, True, True, True, True],
            kind="mergesort",
        )
        frames[page] = frame.reset_index(drop=True)
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


def duration_text(seconds: Any) -> str:
    """A wall time as leaderboards and studies show it: ``45s``, ``1m 37s``, ``2h 05m``; ``–`` when unknown."""
    if seconds is None or pd.isna(seconds):
        return "–"
    minutes, secs = divmod(round(float(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{secs}s")


def _reproduced_rows(frame: pd.DataFrame) -> list[list[str]]:
    rows = []
    for _, row in frame.iterrows():
        cells = [row["method"], row["strategy"], row["weak"], row["setting"]]
        cells += [_mean_std_cell(row[mean_column(m)], row[std_column(m)]) for m in METRIC_KEYS]
        cells += [
            str(row["n_runs"]),
            ", ".join(str(seed) for seed in row["seeds"]),
            duration_text(row["wall_s mean"]),
            row["hardware"],
            row["code"],
        ]
        rows.append(cells)
    return rows


def _count(value: Any) -> str:
    return "unknown" if value is None or pd.isna(value) else f"{int(value):,}"


def _test_set_heading(split: str, num_samples: Any, manifest: str, published: bool) -> str:
    size = f"the published split ({_count(num_samples)} samples)" if published else f"{_count(num_samples)} samples"
    return f"### {split}: {size}, manifest {manifest[:8] or 'unknown'}"


def _reproduced_section(frame: pd.DataFrame) -> list[str]:
    lines = ["## Reproduced with rrsis-bench", ""]
    if frame.empty:
        return [*lines, "No complete runs for this dataset yet.", ""]
    lines += [
        "Cells: mean ± sample std over the runs of a row (no std for a single run). One table per test "
        "set (split, sample count, manifest sha256): rows of different tables are not comparable. "
        "Strategy: how the method was trained; Train expressions: the share of training expressions that "
        "were accurate (the others were class names) and how that subset was chosen. "
        "Code: the git commit of the runs; -dirty marks runs from a working tree with uncommitted changes.",
        "",
    ]
    header = ["Method", "Strategy", "Train expressions", "Setting", *METRIC_KEYS, "Runs", "Seeds",
              "Wall time (mean)", "Hardware", "Code"]
    parts = frame.groupby(["split", "n_samples", "manifest_sha256"], sort=True, dropna=False)
    for (split, num_samples, manifest), part in parts:
        heading = _test_set_heading(split, num_samples, manifest, bool(part["published_split"].iloc[0]))
        lines += [heading, "", *_markdown_table(header, _reproduced_rows(part)), ""]
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
    header = ["Method", "Venue", "Strategy", "Setting", *METRIC_KEYS, "Source", "Note"]
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


def render_markdown(page: str, frame: pd.DataFrame, reported_frame: pd.DataFrame) -> str:
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
    lines += _reproduced_section(frame)
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
    out_dir = Path(out_dir)
    reported = load_reported() if reported is None else reported
    runs, _ = one_record_per_run(records)
    frames = build_leaderboard(runs)
    for page in frames:
        _check_dataset_name(page)
    if not replace:
        _check_pages_covered(frames, {run["run_id"] for run in runs}, out_dir)
    written = []
    for page, frame in frames.items():
        written.append(atomic_write_text(out_dir / f"{page}.md", render_markdown(page, frame, reported)))
        written.append(_write_csv(out_dir / f"{page}.csv", _csv_frame(frame, "reproduced"), "%.4f"))
    written.append(atomic_write_text(out_dir / f"{REPORTED_NAME}.md", render_reported_markdown(reported)))
    written.append(_write_csv(out_dir / f"{REPORTED_NAME}.csv", _csv_frame(reported, "reported")))
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
