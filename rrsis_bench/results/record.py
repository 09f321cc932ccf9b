"""The run record (``record.json``): one JSON document per run, the only source of leaderboards.

The trainer writes it on rank 0 with :func:`build_record` + :func:`write_record`; the leaderboard
reads records back with :func:`load_records`. Field layout (schema version 1)::

    schema_version, status ("complete" | "partial" | "failed" | "running"), task ("run" | "eval"),
    run_id, created (ISO-8601 UTC), config_hash, group_hash, config, method {name, source_dist,
    dist_version, description, num_params}, strategy {name, options, stages [{name, epochs, steps}]},
    data {name, split, num_samples, split_num_samples, manifest_sha256, weak}, selection {split,
    metric, best_epoch, metrics}, seed, code, environment, hardware, timing {wall_s, train_s, eval_s,
    epochs, steps, train_samples_per_s, peak_memory_mb, breakdown_s {data, forward, backward, optimizer,
    other, validation, test, efficiency, setup}},
    efficiency {params, flops, gflops, input {image_size, max_tokens, batch_size}, latency_ms {median,
    min, repeats, warmup}, latency_device, ...}, setting {experiment, recipe, overrides}, metrics {oIoU,
    mIoU, Pr@0.5 ... Pr@0.9}, artifacts {per_sample, checkpoint, train_log}

``timing.breakdown_s`` (where the wall time went: the training phases, validation, the test pass, the
cost measurement and setup; :func:`rrsis_bench.tasks.time_breakdown`) is in newer records only;
``efficiency`` (written by runs since the leaderboards show cost) and ``setting`` (how the config was
composed: Hydra's experiment/recipe choice and the command-line overrides; null outside a Hydra
command) are optional; older records have neither.

``strategy`` (how the method was trained) is optional: records written before training strategies
existed have none and mean ``standard`` (:func:`record_strategy`). When present it is validated:
``name`` a non-empty string, ``options`` a mapping, ``stages`` a list of ``{name, epochs, steps}``.
``data.weak`` is None (every training expression accurate) or the weak-expression subset: ``scheme``,
``ratio`` (the ACCURATE share), ``seed``, ``counts``, ``sha256``.

``status: partial`` marks a run whose test pass scored only part of the split (a capped smoke run:
``trainer.max_eval_samples``, ``trainer=debug``): ``data.num_samples`` is the number of samples
scored, ``data.split_num_samples`` the size of the split. Only ``complete`` records enter leaderboards.

Run identity: ``run_id`` is a unique id (:func:`new_run_id`) created when the run claims its folder
(:func:`claim_run_dir`, which writes ``run.json``) and kept when the run is resumed; it is not the
folder name. The default run folders are unique too (the ``run_stamp`` resolver in conf/run.yaml).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from omegaconf import OmegaConf

from rrsis_bench.errors import UserError
from rrsis_bench.io import atomic_write_json
from rrsis_bench.metrics import METRIC_KEYS
from rrsis_bench.results.provenance import code_version, environment, hardware

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"
#: The claim a run (or eval) writes into its folder before anything else: its run id, when, where.
RUN_CLAIM_FILE = "run.json"
#: Name of the OmegaConf resolver that makes the default run folders unique (conf/run.yaml, eval.yaml).
RUN_STAMP_RESOLVER = "run_stamp"
STATUSES = ("complete", "partial", "failed", "running")
TASKS = ("run", "eval")
SEED_KEY = "seed"
#: Key that :func:`load_records` adds to each record: the file it was read from (never written).
RECORD_PATH_KEY = "record_path"

#: Config keys (top-level or dotted) left out of the config hash, with the reason for each.
#: They say where or how a run executes, not what it computes, so two runs that differ only
#: here must land in the same leaderboard row.
VOLATILE_KEYS: dict[str, str] = {
    "hydra": "Hydra runtime settings (output folder, job name, launcher, sweep bookkeeping).",
    "paths": "machine-specific folders for data, outputs and caches.",
    "resume": "continuing an interrupted run must not change its identity.",
    "data.root": "where the dataset sits on disk; the data itself is pinned by data.manifest_sha256.",
    "trainer.device": "cpu/cuda choice; the record's hardware block says what actually ran.",
    "trainer.num_workers": "data-loader parallelism; it does not change which samples are drawn.",
    "trainer.progress": "progress-bar display only.",
    "checkpoint": "a checkpoint file path on this machine; the evaluated model is identified by its own record.",
}

_FIELD_ORDER = (
    "schema_version",
    "status",
    "task",
    "run_id",
    "created",
    "config_hash",
    "group_hash",
    "config",
    "method",
    "strategy",
    "data",
    "selection",
    "seed",
    "code",
    "environment",
    "hardware",
    "timing",
    "efficiency",
    "setting",
    "metrics",
    "artifacts",
)
_REQUIRED_FIELDS = (
    "schema_version",
    "status",
    "task",
    "run_id",
    "created",
    "config_hash",
    "group_hash",
    "config",
    "method",
    "data",
    "seed",
)
_REQUIRED_NESTED = {"method": ("name",), "data": ("name", "split")}
#: The strategy of a record without a ``strategy`` field (written before strategies existed).
DEFAULT_STRATEGY = "standard"


class SkippedRecord(NamedTuple):
    """A record file that :func:`load_records` read but did not return, and why."""

    path: Path
    reason: str


class LoadedRecords(NamedTuple):
    """Complete records (each with ``record_path`` added) and the files skipped, with reasons."""

    records: list[dict[str, Any]]
    skipped: list[SkippedRecord]


#: Config keys added after records existed, left out of the hash while they hold the value that does
#: what the runs before them did, so those runs and new ones of the same setting stay one group.
BACKWARD_DEFAULTS: dict[str, Any] = {
    "strategy": {"name": "standard"},  # training strategies (before: the plain loop)
    "data.weak.split_file": None,  # weak splits read from a released file (before: never)
}


def _lookup(config: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _without_key(config: Mapping[str, Any], dotted: str) -> dict[str, Any]:
    """A copy of ``config`` without the (possibly nested) key ``dotted``; absent keys are fine."""
    head, _, rest = dotted.partition(".")
    if head not in config:
        return dict(config)
    if not rest:
        return {key: value for key, value in config.items() if key != head}
    child = config[head]
    if not isinstance(child, Mapping):
        return dict(config)
    return {**config, head: _without_key(child, rest)}


def _canonical_json(obj: Any) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except TypeError as err:
        raise ValueError(
            f"The config is not plain JSON data ({err}); resolve it first, e.g. "
            "OmegaConf.to_container(cfg, resolve=True)."
        ) from err


def canonical_config(config: Mapping[str, Any], *, include_seed: bool = True) -> dict[str, Any]:
    """The part of ``config`` that identifies a run: a copy without :data:`VOLATILE_KEYS` (and the seed),
    and without the keys of :data:`BACKWARD_DEFAULTS` that hold their backward-compatible value."""
    if not isinstance(config, Mapping):
        raise ValueError(
            f"config must be a mapping, got {type(config).__name__}; pass the resolved config dict."
        )
    cleaned: dict[str, Any] = dict(config)
    for key in (*VOLATILE_KEYS, *(() if include_seed else (SEED_KEY,))):
        cleaned = _without_key(cleaned, key)
    for key, default in BACKWARD_DEFAULTS.items():
        present, value = _lookup(cleaned, key)
        if present and value == default:
            cleaned = _without_key(cleaned, key)
    return cleaned


def config_hash(config: Mapping[str, Any], *, include_seed: bool = True) -> str:
    """SHA-256 (hex) of the canonical JSON of ``config`` without :data:`VOLATILE_KEYS`.

    Canonical: sorted keys, no whitespace, lists and tuples alike. With ``include_seed=False``
    the top-level ``seed`` is dropped too, giving the group hash shared by runs that differ only by seed.
    """
    cleaned = canonical_config(config, include_seed=include_seed)
    return hashlib.sha256(_canonical_json(cleaned).encode("utf-8")).hexdigest()


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus 8 random hex digits, e.g. ``20250101-120000-1a2b3c4d``.

    Under DDP create it on rank 0 and broadcast it, so every rank names the same run.
    """
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def run_stamp() -> str:
    """A folder name unique per process call: local time plus 6 random hex digits.

    Hydra's ``${now:...}`` alone gave two runs started in the same second one folder.
    """
    return f"{datetime.now():%Y-%m-%d_%H-%M-%S}-{secrets.token_hex(3)}"


def register_run_stamp_resolver() -> None:
    """Register ``${run_stamp:}`` for the run/sweep folders of conf/run.yaml and conf/eval.yaml.

    Cached like Hydra's ``now``: one config resolves it once, and Hydra copies the cache into
    every job of a multirun, so the jobs of one sweep share the sweep folder (each has its subdir).
    """
    if not OmegaConf.has_resolver(RUN_STAMP_RESOLVER):
        OmegaConf.register_new_resolver(RUN_STAMP_RESOLVER, run_stamp, use_cache=True)


# The CLI imports this module (through rrsis_bench.tasks) before Hydra resolves the run folder.
register_run_stamp_resolver()


class RunFolderInUse(UserError, FileExistsError):
    """The run folder already belongs to another run."""


def read_run_claim(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The claim (``run.json``) of ``run_dir``, or None when the folder holds none."""
    path = Path(run_dir) / RUN_CLAIM_FILE
    try:
        claim = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"The run claim {path} is not readable JSON ({err}); delete it to reuse the folder.") from err
    if not isinstance(claim, dict) or not isinstance(claim.get("run_id"), str) or not claim["run_id"]:
        raise ValueError(f"The run claim {path} has no run_id; delete it to reuse the folder.")
    return claim


def _create_exclusively(path: Path, text: str) -> None:
    """Write ``text`` to a new file ``path``; FileExistsError if it exists, even under a race.

    The content is written to a temporary file first and hard-linked into place, so another process
    never sees the claim half-written; the link fails atomically when the name is taken.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: O_EXCL is atomic too
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    finally:
        tmp.unlink(missing_ok=True)


def claim_run_dir(run_dir: str | os.PathLike, *, task: str = "run", resume: bool = False) -> str:
    """Make ``run_dir`` this run's own folder and return the run id (call on rank 0 only).

    A new run creates ``run.json`` exclusively, so two processes can never share a folder: the
    second one stops with :class:`RunFolderInUse` before writing anything. ``resume=True`` continues
    the run that claimed the folder and returns its id (claiming a folder written before claims
    existed). Without resume, a folder that already holds a claim, a record or checkpoints is refused.
    """
    run_dir = Path(run_dir)
    claim = read_run_claim(run_dir)
    if claim is not None:
        if resume:
            return claim["run_id"]
        raise RunFolderInUse(_in_use_message(run_dir, f"run {claim['run_id']}"))
    if not resume:
        if (run_dir / RECORD_FILE).exists() or (run_dir / "checkpoints").exists():
            raise RunFolderInUse(_in_use_message(run_dir, f"an earlier run ({RECORD_FILE} or checkpoints/)"))
    run_id = new_run_id()
    text = json.dumps(
        {"run_id": run_id, "task": task, "claimed": _utc_now(), "host": socket.gethostname(), "pid": os.getpid()},
        indent=2,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        _create_exclusively(run_dir / RUN_CLAIM_FILE, text + "\n")
    except FileExistsError:
        other = read_run_claim(run_dir)
        raise RunFolderInUse(_in_use_message(run_dir, f"run {other['run_id'] if other else '(unknown)'}")) from None
    return run_id


def _in_use_message(run_dir: Path, holder: str) -> str:
    return (
        f"The run folder {run_dir} already holds {holder}; pass resume=true to continue that run, "
        "or give this run its own folder (leave hydra.run.dir at its default, or pick a new one)."
    )


def scoring_status(scored: int, split_size: int) -> str:
    """``complete`` when the test pass scored the whole split, ``partial`` when it was capped."""
    if scored > split_size:
        raise ValueError(f"{scored} samples scored on a split of {split_size}; sample ids must be unique.")
    return "complete" if scored == split_size else "partial"


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _problem(record: Any) -> str | None:
    """The first thing wrong with a record, as a sentence fragment, or None if it is valid."""
    if not isinstance(record, Mapping):
        return f"it is a {type(record).__name__}, not a JSON object"
    version = record.get("schema_version")
    missing = [key for key in _REQUIRED_FIELDS if key not in record]
    if missing:
        return f"required field {missing[0]!r} is missing"
    if version != SCHEMA_VERSION:
        return f"schema_version is {version!r}, expected {SCHEMA_VERSION}"
    if record["status"] not in STATUSES:
        return f"status is {record['status']!r}, expected one of {', '.join(STATUSES)}"
    if record["task"] not in TASKS:
        return f"task is {record['task']!r}, expected one of {', '.join(TASKS)}"
    if not isinstance(record["seed"], int) or isinstance(record["seed"], bool):
        return f"seed is {record['seed']!r}, expected an integer"
    for field, keys in _REQUIRED_NESTED.items():
        section = record[field]
        for key in keys:
            if not isinstance(section, Mapping) or not isinstance(section.get(key), str) or not section[key]:
                return f"required field '{field}.{key}' is missing or empty"
    if record.get("strategy") is not None:  # absent or null: a record from before strategies (standard)
        problem = _strategy_problem(record["strategy"])
        if problem:
            return problem
    if record["status"] == "complete":
        metrics = record.get("metrics")
        absent = [key for key in METRIC_KEYS if not isinstance(metrics, Mapping) or key not in metrics]
        if absent:
            return f"a complete record needs metrics {', '.join(absent)}"
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _strategy_problem(strategy: Any) -> str | None:
    """What is wrong with a record's ``strategy`` field, or None."""
    if not isinstance(strategy, Mapping):
        return f"strategy is a {type(strategy).__name__}, expected an object {{name, options, stages}}"
    if not isinstance(strategy.get("name"), str) or not strategy["name"]:
        return "required field 'strategy.name' is missing or empty"
    if not isinstance(strategy.get("options"), Mapping):
        return f"strategy.options is {strategy.get('options')!r}, expected an object"
    stages = strategy.get("stages")
    if not isinstance(stages, list):
        return f"strategy.stages is {stages!r}, expected a list of {{name, epochs, steps}}"
    for i, stage in enumerate(stages):
        if not isinstance(stage, Mapping) or not isinstance(stage.get("name"), str) or not stage["name"]:
            return f"strategy.stages[{i}] needs a non-empty 'name'"
        for key in ("epochs", "steps"):
            if not _is_count(stage.get(key)):
                return f"strategy.stages[{i}].{key} is {stage.get(key)!r}, expected a non-negative integer"
    return None


def record_strategy(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's ``strategy`` field; ``{"name": "standard", "options": {}, "stages": []}`` without one."""
    strategy = record.get("strategy")
    if strategy is None:
        return {"name": DEFAULT_STRATEGY, "options": {}, "stages": []}
    return dict(strategy)


def record_weak(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record's weak-expression setting (``data.weak``); None when all training expressions were accurate."""
    weak = (record.get("data") or {}).get("weak")
    return dict(weak) if isinstance(weak, Mapping) else None


def validate_record(record: Any, source: str | os.PathLike | None = None) -> None:
    """Raise ValueError naming the field (and the file, when given) if ``record`` breaks the schema."""
    where = f"Run record {source}" if source is not None else "Run record"
    version = record.get("schema_version") if isinstance(record, Mapping) else None
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ValueError(
            f"{where} has schema_version {version}, newer than this rrsis-bench reads ({SCHEMA_VERSION}); "
            "upgrade rrsis-bench."
        )
    problem = _problem(record)
    if problem:
        raise ValueError(f"{where} is invalid: {problem}; fix or rewrite it with build_record().")


def _ordered(record: Mapping[str, Any]) -> dict[str, Any]:
    """Schema fields in documentation order, then any extra fields in the order given."""
    head = {key: record[key] for key in _FIELD_ORDER if key in record}
    return {**head, **{key: value for key, value in record.items() if key not in head}}


def build_record(**fields: Any) -> dict[str, Any]:
    """Assemble and validate a run record from keyword fields (see the module docstring).

    Fills ``schema_version`` and ``created``; ``config_hash``/``group_hash`` from ``config``; and
    ``code``/``environment``/``hardware`` from :mod:`rrsis_bench.results.provenance` when not given.
    Raises ValueError naming the first missing or invalid field.
    """
    record: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "created": _utc_now(), **fields}
    config = record.get("config")
    if isinstance(config, Mapping):
        record.setdefault("config_hash", config_hash(config))
        record.setdefault("group_hash", config_hash(config, include_seed=False))
        if SEED_KEY in config and "seed" in record and config[SEED_KEY] != record["seed"]:
            raise ValueError(
                f"seed={record['seed']!r} differs from config['seed']={config[SEED_KEY]!r}; pass the seed the run used."
            )
    for name, collect in (("code", code_version), ("environment", environment), ("hardware", hardware)):
        if name not in record:
            record[name] = collect()
    validate_record(record)
    return _ordered(record)


def write_record(run_dir: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Validate ``record`` and write it atomically to ``run_dir/record.json``; return that path."""
    validate_record(record)
    stored = {key: value for key, value in record.items() if key != RECORD_PATH_KEY}
    return atomic_write_json(Path(run_dir) / RECORD_FILE, stored)


def _record_files(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[SkippedRecord]]:
    """Expand folders to the record.json files below them; folders without any are reported."""
    files: list[Path] = []
    empty: list[SkippedRecord] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(path.rglob(RECORD_FILE))
            files += found
            if not found:
                empty.append(SkippedRecord(path, f"no {RECORD_FILE} below this folder"))
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(
                f"Record path {path} does not exist; pass {RECORD_FILE} files or folders that contain them."
            )
    return files, empty


def _unique(files: list[Path]) -> list[Path]:
    """Drop files already listed under another spelling (a folder and a file inside it, say)."""
    seen: set[Path] = set()
    unique = []
    for path in files:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"Run record {path} is not readable JSON ({err}); delete it or re-run to rewrite it."
        ) from err
    validate_record(record, path)
    return record


def load_records(paths: Iterable[str | os.PathLike]) -> LoadedRecords:
    """Read records from ``record.json`` files and folders (searched recursively).

    Returns the complete records, each with ``record_path`` set, and every skipped file with its
    reason (status other than complete, folders without records, copies of a run already read; see
    :func:`one_record_per_run`). A malformed record, a missing path or two complete records of one
    run id with different metrics raise ValueError naming the file(s).
    """
    files, skipped = _record_files(paths)
    read = [{**_read_record(path), RECORD_PATH_KEY: str(path)} for path in _unique(files)]
    records, duplicates = one_record_per_run(read)
    for record, reason in duplicates:
        skipped.append(SkippedRecord(Path(record[RECORD_PATH_KEY]), reason))
    return LoadedRecords(records, skipped)


def one_record_per_run(
    records: Iterable[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """(the complete records, one per run id; the others, each with the reason it was left out).

    A run is counted once: records with the same ``run_id`` (a resumed run and a copy of its folder)
    are the same run, and the first complete one is kept. Two complete records with one ``run_id``
    but different metrics are different runs under one id: ValueError naming both files.
    """
    kept: dict[str, dict[str, Any]] = {}
    left_out: list[tuple[dict[str, Any], str]] = []
    others: list[dict[str, Any]] = []
    for record in records:
        record = dict(record)
        if record.get("status") != "complete":
            others.append(record)
            continue
        first = kept.get(record["run_id"])
        if first is None:
            kept[record["run_id"]] = record
        elif _scores(first) != _scores(record):
            raise ValueError(
                f"Records {_where(first)} and {_where(record)} both carry run_id {record['run_id']!r} but "
                "different metrics, so they are different runs under one id (records written before run ids "
                "were unique used the folder name); give one of them a unique run_id or leave it out."
            )
        else:
            left_out.append((record, f"the same run as {_where(first)} (run_id {record['run_id']!r})"))
    for record in others:
        reason = f"status is {record.get('status')!r}"
        if record.get("run_id") in kept:
            reason += f"; run {record['run_id']!r} is complete in {_where(kept[record['run_id']])}"
        left_out.append((record, reason))
    return list(kept.values()), left_out


def _where(record: Mapping[str, Any]) -> str:
    return str(record.get(RECORD_PATH_KEY) or f"the record of run {record.get('run_id')!r}")


def _scores(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """What two copies of one run must agree on: the metrics and the test set they were scored on."""
    data = record.get("data") or {}
    return (record.get("metrics"), data.get("name"), data.get("split"), data.get("manifest_sha256"))
