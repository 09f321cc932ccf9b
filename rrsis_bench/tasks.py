"""What `rrsis-bench run` and `rrsis-bench eval` do, given a resolved config.

Everything method- or dataset-specific is reached through the registry; rank 0 alone writes.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import OmegaConf
from rich.console import Console

from rrsis_bench import __version__
from rrsis_bench.data.augment import AugmentedDataset, RandomBoxes
from rrsis_bench.data.inputs import check_inputs, declared_inputs
from rrsis_bench.data.manifest import sample_metadata, split_manifest
from rrsis_bench.data.pipeline import SampleTransform, TransformedDataset, build_encoder, collate
from rrsis_bench.data.text import ExpressionEncoder
from rrsis_bench.data.weak import build_weak_train_set
from rrsis_bench.engine import checkpoint as ckpt
from rrsis_bench.engine import distributed as D
from rrsis_bench.engine.evaluator import build_eval_loader, evaluate
from rrsis_bench.engine.trainer import BEST, Trainer, TrainerSettings, resolve_device, seed_everything
from rrsis_bench.errors import UserError
from rrsis_bench.io import atomic_write, atomic_write_json, atomic_write_text
from rrsis_bench.metrics import format_metrics_table
from rrsis_bench.nn.text import build_tokenizer
from rrsis_bench.profile import run_efficiency
from rrsis_bench.registry import DATASETS, METHODS, create_dataset, create_method
from rrsis_bench.results import provenance
from rrsis_bench.results.record import (
    RUN_CLAIM_FILE,
    VOLATILE_KEYS,
    RunFolderInUse,
    build_record,
    claim_run_dir,
    config_hash,
    new_run_id,
    scoring_status,
    write_record,
)
from rrsis_bench.strategies import build_strategy

CONFIG_FILE = "config.yaml"  # the resolved run config, saved beside the checkpoints for `eval`


def method_kwargs(method_cfg: dict) -> dict:
    return {k: v for k, v in method_cfg.items() if k != "name"}


def build_method(method_cfg: dict) -> torch.nn.Module:
    return create_method(method_cfg["name"], **method_kwargs(method_cfg))


def load_split(data_cfg: dict, split_key: str):
    """The raw samples of one split (``split_key`` is train/val/test, mapped by ``data.splits``)."""
    split = data_cfg.get("splits", {}).get(split_key, split_key)
    return create_dataset(data_cfg["name"], root=data_cfg.get("root"), split=split, **(data_cfg.get("options") or {}))


def prepare_train_split(samples, data_cfg: dict, seed: int):
    """Apply weak expressions (``data.weak``) and box augmentation (``data.augment``) to the train
    split; returns (samples, weak manifest or None)."""
    weak = data_cfg.get("weak") or {}
    manifest = None
    if float(weak.get("accurate_ratio", 1.0)) < 1.0 or weak.get("split_file"):
        samples, manifest = build_weak_train_set(
            samples, accurate_ratio=float(weak.get("accurate_ratio", 1.0)), seed=int(weak.get("seed", 0)),
            scheme=weak.get("scheme", "nested"), split_file=weak.get("split_file"),
        )
    if (data_cfg.get("augment") or {}).get("boxes"):
        samples = AugmentedDataset(samples, RandomBoxes(seed=seed))
    return samples, manifest


def weak_flags(samples) -> list[bool]:
    """Per training sample: does it read its class name instead of its expression (``data.weak``)?"""
    return [bool(sample_metadata(samples, i).get("weak", False)) for i in range(len(samples))]


def make_transform(model, data_cfg: dict, encode: ExpressionEncoder, *, with_gt: bool) -> SampleTransform:
    spec = model.spec
    return SampleTransform(
        encode, image_size=data_cfg["image_size"], mean=spec.mean, std=spec.std,
        eval_size=data_cfg.get("eval_size"), with_gt=with_gt, inputs=declared_inputs(model),
    )


def method_info(model, name: str) -> dict[str, Any]:
    entry = METHODS.entry(name)
    return {
        "name": name, "source_dist": entry.source_dist, "dist_version": entry.dist_version,
        "description": entry.description, "num_params": sum(p.numel() for p in model.parameters()),
        "num_trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def data_info(data_cfg: dict, split_key: str, samples, scored: int | None = None) -> dict[str, Any]:
    """The record's ``data`` block: ``num_samples`` is what was scored (``scored``, default the whole
    split), ``split_num_samples`` the split's size; the manifest identifies the split."""
    manifest = split_manifest(samples)
    return {
        "name": data_cfg["name"], "split": data_cfg.get("splits", {}).get(split_key, split_key),
        "num_samples": manifest["num_samples"] if scored is None else scored,
        "split_num_samples": manifest["num_samples"], "manifest_sha256": manifest["sha256"],
        "source_dist": DATASETS.entry(data_cfg["name"]).source_dist,
    }


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def time_breakdown(wall_s: float, fit, test_s: float, efficiency_s: float) -> dict[str, float]:
    """Where a run's wall time went: the training phases (data, forward, backward, optimizer, other:
    :class:`~rrsis_bench.engine.trainer.PhaseTimer`), validation after each epoch, the test pass, the
    cost measurement, and setup (imports, dataset generation or reading, model building, checkpoint
    writing: the rest of the wall time). Sums to ``wall_s`` up to rounding."""
    parts = {**fit.phases, "validation": round(fit.eval_s, 2), "test": round(test_s, 2),
             "efficiency": round(efficiency_s, 2)}
    accounted = fit.train_s + fit.eval_s + test_s + efficiency_s
    return {**parts, "setup": round(max(0.0, wall_s - accounted), 2)}


def config_source() -> dict[str, Any] | None:
    """How the config was composed, for a leaderboard's Setting column: the experiment and recipe files
    Hydra chose (None when none) and the command-line overrides; None outside a Hydra command."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    from hydra.core.global_hydra import GlobalHydra

    hydra_cfg = HydraConfig.get()
    choices = OmegaConf.to_container(hydra_cfg.runtime.choices)
    loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None

    def chosen(group: str) -> str | None:
        # An optional default (recipe: ${method}_${data}) is named in the choices even when no such
        # file exists: keep only options that are really there.
        name = choices.get(group)
        if name is None or loader is None:
            return name
        return name if name in loader.get_group_options(group) else None

    return {"experiment": chosen("experiment"), "recipe": chosen("recipe"),
            "overrides": [str(o) for o in hydra_cfg.overrides.task]}


#: Sample metadata copied into per_sample.csv beside the counts, for breakdowns (when the dataset has them).
PER_SAMPLE_METADATA = ("class_name", "expression_type")


def per_sample_frame(metric, samples) -> pd.DataFrame:
    """The scored samples' rows (counts, IoU, target/image pixels) joined with the split's metadata
    (:data:`PER_SAMPLE_METADATA`: the class, and the expression type where the dataset names one)."""
    frame = metric.to_frame()
    metadata = [sample_metadata(samples, i) for i in range(len(samples))]
    for key in PER_SAMPLE_METADATA:
        if any(key in meta for meta in metadata):
            by_id = {str(meta["sample_id"]): meta.get(key) for meta in metadata}
            frame[key] = frame["sample_id"].map(by_id)
    return frame


def write_outputs(run_dir: Path, record: dict, metric, samples) -> None:
    frame = per_sample_frame(metric, samples)
    atomic_write(run_dir / "per_sample.csv", lambda tmp: frame.to_csv(tmp, index=False))
    write_record(run_dir, record)


def run_task(cfg, run_dir: Path, console: Console | None = None) -> dict | None:
    """Train → select on val → evaluate on test → record. Returns the record on rank 0.

    A run that fails leaves no trace claiming success: before training starts, the run folder is
    removed when it holds nothing but Hydra's files; once training has started, the folder is kept
    (its checkpoints can be resumed) and record.json says ``status: failed`` with the error.
    """
    attempt = RunAttempt()
    try:
        return _run(cfg, run_dir, console, attempt)
    except BaseException as exc:
        _clean_up_failed_run(cfg, run_dir, attempt, exc, console or Console())
        raise


@dataclass
class RunAttempt:
    """How far :func:`_run` got, for the failure handling of :func:`run_task`."""

    started: float = field(default_factory=time.perf_counter)
    trainer: Trainer | None = None
    run_id: str | None = None  # set once this process has claimed the run folder (run.json)

    @property
    def training_started(self) -> bool:
        return self.trainer is not None and self.trainer.training_started


def _run(cfg, run_dir: Path, console: Console | None, attempt: RunAttempt) -> dict | None:
    console = console or Console()
    t_start = attempt.started
    require_values(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    settings = TrainerSettings.from_config(config["trainer"])
    device = resolve_device(settings.device)
    D.init_distributed(device.type)
    run_dir = Path(D.broadcast_object(str(run_dir)))
    resume, finished = resume_mode(config, run_dir)
    if finished is not None:
        console.print(f"{run_dir} already holds the finished record of this run (resume=auto): skipped.")
        return finished if D.is_main() else None
    # resume=auto in a folder whose attempt never reached a checkpoint: that attempt's claim is reused
    attempt.run_id = claim_on_main_rank(run_dir, task="run", resume=resume or config.get("resume") == "auto")
    if resume:  # before config.yaml is rewritten below
        ckpt.check_resume_config(run_dir / "checkpoints" / CONFIG_FILE, config, may_differ=VOLATILE_KEYS)
    seed_everything(int(config["seed"]) + D.rank(), settings.deterministic)

    strategy = build_strategy(config.get("strategy"))
    model = build_method(config["method"])
    raw = {key: load_split(config["data"], key) for key in ("train", "val", config["eval_split"])}
    raw["train"], weak_manifest = prepare_train_split(raw["train"], config["data"], int(config["seed"]))
    weak = weak_flags(raw["train"])
    strategy.check_data(weak)  # before anything is built or written
    for samples in raw.values():  # every split is fed the declared inputs: refuse now, not in epoch 1
        check_inputs(samples, declared_inputs(model), method=config["method"]["name"], dataset=config["data"]["name"])
    encode = build_encoder(build_tokenizer(model.spec.tokenizer), config["data"], raw["train"])
    train_set = TransformedDataset(raw["train"], make_transform(model, config["data"], encode, with_gt=False))
    val_set = TransformedDataset(raw["val"], make_transform(model, config["data"], encode, with_gt=True))
    test_set = TransformedDataset(raw[config["eval_split"]], make_transform(model, config["data"], encode, with_gt=True))

    trainer = Trainer(model, train_set, val_set, settings, run_dir=run_dir, seed=int(config["seed"]),
                      collate_fn=collate, console=console, strategy=strategy, weak=weak)
    attempt.trainer = trainer
    if D.is_main():  # the run's first own file: a failure before this point leaves only Hydra's files
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "checkpoints" / CONFIG_FILE, OmegaConf.to_yaml(config))
    fit = trainer.fit(resume=resume)

    if D.is_main():  # rank 0 wrote the checkpoint; the other nodes may not see its disk
        ckpt.load_weights(trainer.ckpt_dir / BEST, model, trainer.device)
    D.broadcast_module(model)
    t_eval = time.perf_counter()
    loader = build_eval_loader(test_set, settings.eval_batch_size, settings.num_workers, collate)
    metrics, metric = evaluate(model, loader, trainer.device, amp=settings.amp, channels_last=settings.channels_last,
                               limit=settings.max_eval_samples)
    test_s = time.perf_counter() - t_eval
    if not D.is_main():
        D.barrier()
        return None
    t_efficiency = time.perf_counter()
    try:
        efficiency = run_efficiency(model, config["method"], image_size=int(config["data"]["image_size"]),
                                    max_tokens=int(config["data"]["max_tokens"]), device=trainer.device,
                                    channels_last=settings.channels_last,
                                    build=lambda: build_method(config["method"]))
    except Exception as exc:  # a cost we cannot measure must not lose a trained run: the record says why
        efficiency = {"error": f"{type(exc).__name__}: {exc}"}
        console.print(f"[yellow]Efficiency not measured ({efficiency['error']}); the record says so.[/yellow]")
    efficiency_s = time.perf_counter() - t_efficiency

    # A capped test pass (trainer.max_eval_samples, trainer=debug) is partial: never a leaderboard row.
    status = scoring_status(len(metric), len(raw[config["eval_split"]]))
    record = build_record(
        status=status, task="run", run_id=attempt.run_id,
        config_hash=config_hash(config), group_hash=config_hash(config, include_seed=False), config=config,
        method=method_info(model, config["method"]["name"]),
        data={**data_info(config["data"], config["eval_split"], raw[config["eval_split"]], scored=len(metric)),
              "weak": _weak_summary(weak_manifest)},
        selection={"split": config["data"]["splits"]["val"], "metric": settings.select_metric,
                   "best_epoch": fit.best_epoch, "metrics": fit.best_metrics},
        strategy={**strategy.describe(), "stages": fit.stages},
        seed=int(config["seed"]), code=provenance.code_version(), environment=provenance.environment(),
        hardware={**provenance.hardware(), "device": str(trainer.device), "world_size": D.world_size()},
        timing={"wall_s": round(time.perf_counter() - t_start, 2), "train_s": round(fit.train_s, 2),
                "eval_s": round(fit.eval_s + test_s, 2), "epochs": sum(st["epochs"] for st in fit.stages),
                "steps": fit.steps,
                "train_samples_per_s": round(fit.samples / fit.train_s, 2) if fit.train_s else None,
                "peak_memory_mb": round(peak_memory_mb(trainer.device), 1),
                "breakdown_s": time_breakdown(time.perf_counter() - t_start, fit, test_s, efficiency_s)},
        efficiency=efficiency, setting=config_source(),
        metrics=metrics, history=fit.history,
        artifacts={"per_sample": "per_sample.csv", "checkpoint": "checkpoints/best",
                   "train_log": "train_log.csv", "config": f"checkpoints/{CONFIG_FILE}"},
        rrsis_bench_version=__version__,
    )
    if weak_manifest is not None:
        atomic_write_json(run_dir / "weak_manifest.json", weak_manifest)
    write_outputs(run_dir, record, metric, raw[config["eval_split"]])  # record.json last: it marks the run complete
    console.print(format_metrics_table(
        metrics, f"{config['method']['name']} on {config['data']['name']}/{record['data']['split']} "
                 f"(best val epoch {fit.best_epoch})"))
    if status == "partial":
        console.print(f"Partial test pass: {len(metric)} of {record['data']['split_num_samples']} samples scored "
                      "(trainer.max_eval_samples); the record says status: partial and stays out of leaderboards.")
    console.print(f"Run folder: {run_dir}  (record.json, per_sample.csv, train_log.csv, checkpoints/)")
    D.barrier()
    return record


RESUME_VALUES = (False, True, "auto")


def resume_mode(config: dict, run_dir: Path) -> tuple[bool, dict | None]:
    """(resume from checkpoints/last?, the folder's finished record to return instead of running).

    ``resume=auto`` (what a study's cells use, so that a second call picks up where the first stopped):
    a folder with a finished (complete or partial) record of the same config is done (that record is returned); one with a
    checkpoint is resumed; anything else starts from the beginning. A complete record of another
    config is refused: the folder belongs to another run."""
    value = config.get("resume", False)
    if value not in RESUME_VALUES:
        raise ResumeValueError(f"resume takes true, false or auto, not {value!r}.")
    if value != "auto":
        return bool(value), None
    record_path = run_dir / "record.json"
    if record_path.is_file():
        import json

        record = json.loads(record_path.read_text())
        if record.get("status") in ("complete", "partial"):  # partial: a capped test pass, finished as configured
            if record.get("config_hash") != config_hash(config):
                raise RunFolderInUse(
                    f"{run_dir} holds the complete record of another configuration (config_hash "
                    f"{str(record.get('config_hash'))[:12]}); give this run its own folder.")
            return False, record
    return (run_dir / "checkpoints" / "last" / ckpt.STATE_FILE).is_file(), None


class ResumeValueError(UserError, ValueError):
    """``resume`` is not true, false or auto."""


def claim_on_main_rank(run_dir: Path, *, task: str, resume: bool) -> str:
    """Rank 0 claims ``run_dir`` (:func:`claim_run_dir`); every rank gets the run id, or the refusal."""
    outcome: tuple[str, str] | None = None
    if D.is_main():
        try:
            outcome = ("claimed", claim_run_dir(run_dir, task=task, resume=resume))
        except (RunFolderInUse, ValueError, OSError) as err:
            if not D.is_distributed():
                raise
            outcome = ("refused", str(err))  # the other ranks must hear of it, not wait forever
    kind, value = D.broadcast_object(outcome)
    if kind == "refused":
        raise RunFolderInUse(value)
    return value


class MissingValueError(UserError, ValueError):
    """A config key that has no default (``???``) was not given."""


def require_values(cfg) -> None:
    """Raise :class:`MissingValueError` naming the first key left at ``???`` (e.g. ``data.root``) and how
    to pass it, before ``???`` leaks into a path or a lookup."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if not missing:
        return
    key = missing[0]
    group, _, leaf = key.rpartition(".")
    option = OmegaConf.select(cfg, f"{group}.name", default=None) if group else None
    # The file that declares the key: conf/<group>/<option>.yaml, or the command's primary config.
    declared_in = f"{group}/{_chosen_option(group) or option}.yaml" if group else f"{cfg.get('task')}.yaml"
    hint = _documented_meaning(declared_in, leaf)
    where = f" for {group}={option}" if option else ""
    value = "DIR" if leaf in ("root", "checkpoint") else "VALUE"
    raise MissingValueError(f"{key} is required{where}: pass {key}={value}" + (f" ({hint})." if hint else "."))


def _chosen_option(group: str) -> str | None:
    """The option Hydra chose for config group ``group`` (e.g. ``refsegrs`` for ``data``), if any."""
    from hydra.core.hydra_config import HydraConfig

    if not group or not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get(group)


def _documented_meaning(config_file: str, leaf: str) -> str | None:
    """The inline comment of ``leaf: ???`` in the shipped config file ``conf/<config_file>``: the config
    files document their mandatory keys there (``root: ???  # the folder holding …``)."""
    from importlib import resources

    try:
        text = resources.files("rrsis_bench.conf").joinpath(*config_file.split("/")).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None  # a plugin's config group: no hint
    found = re.search(rf"^{re.escape(leaf)}:[ \t]*\?\?\?[ \t]*#[ \t]*(.+?)[ \t]*$", text, flags=re.MULTILINE)
    return found.group(1) if found else None


def _clean_up_failed_run(cfg, run_dir: Path, attempt: RunAttempt, exc: BaseException, console: Console) -> None:
    """Leave nothing that claims success after ``exc`` stopped a run (see :func:`run_task`)."""
    if attempt.training_started:
        if D.world_info()[0] == 0:
            _write_failed_record(cfg, run_dir, attempt, exc, console)
    else:
        _remove_if_only_hydra_files(run_dir, own=(RUN_CLAIM_FILE,) if attempt.run_id else ())


def _remove_if_only_hydra_files(run_dir: Path, own: tuple[str, ...] = ()) -> None:
    """Delete Hydra's run folder ``run_dir`` if it holds nothing but the files Hydra wrote into it
    (``.hydra/`` and the job log): the run wrote nothing of its own, so there is nothing to keep."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or not run_dir.is_dir():
        return  # called from Python: the folder is the caller's, not Hydra's
    hydra_cfg = HydraConfig.get()
    if Path(hydra_cfg.runtime.output_dir).resolve() != run_dir.resolve():
        return
    hydra_files = {hydra_cfg.output_subdir, f"{hydra_cfg.job.name}.log", *own}  # own: this run's claim
    if all(entry.name in hydra_files for entry in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


def _write_failed_record(cfg, run_dir: Path, attempt: RunAttempt, exc: BaseException, console: Console) -> None:
    """record.json with ``status: failed``, the error and how far the run got; the leaderboard skips it."""
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
        last = run_dir / "checkpoints" / "last"
        artifacts = {"checkpoint": "checkpoints/last", "train_log": "train_log.csv",
                     "config": f"checkpoints/{CONFIG_FILE}"}
        record = build_record(
            status="failed", task="run", run_id=attempt.run_id or new_run_id(), config=config,
            method={"name": config["method"]["name"]},
            data={"name": config["data"]["name"],
                  "split": config["data"].get("splits", {}).get(config["eval_split"], config["eval_split"])},
            seed=int(config["seed"]),
            error={"type": type(exc).__name__, "message": str(exc) or type(exc).__name__},
            # epoch and step of checkpoints/last, from which resume=true continues (None: no epoch finished)
            last_checkpoint=ckpt.read_meta(last) if last.is_dir() else None,
            timing={"wall_s": round(time.perf_counter() - attempt.started, 2)},
            artifacts={k: v for k, v in artifacts.items() if (run_dir / v).exists()},
            rrsis_bench_version=__version__,
        )
        write_record(run_dir, record)
    except Exception as failure:  # never hide the run's own error behind this one
        console.print(f"[yellow]warning:[/yellow] could not write the failed-run record in {run_dir}: {failure}",
                      highlight=False)


def _weak_summary(manifest: dict | None) -> dict | None:
    """What the record keeps of the weak-expression subset (the full id list is weak_manifest.json)."""
    if manifest is None:
        return None
    return {k: v for k, v in manifest.items() if k != "accurate_ids"} | {"manifest": "weak_manifest.json"}


def resolve_checkpoint(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights folder, run config file) from a run folder or a checkpoint folder."""
    path = Path(path).expanduser()
    candidates = [path / "checkpoints" / BEST, path]
    weights = next((c for c in candidates if (c / ckpt.MODEL_FILE).is_file()), None)
    if weights is None:
        raise FileNotFoundError(
            f"No checkpoint under {path}: expected {path / 'checkpoints' / BEST / ckpt.MODEL_FILE} (a run folder) "
            f"or {path / ckpt.MODEL_FILE} (a checkpoint folder)."
        )
    config_file = weights.parent / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"The checkpoint {weights} has no {config_file} beside it; it was not written by "
                                "`rrsis-bench run`.")
    return weights, config_file


def eval_task(cfg, run_dir: Path, console: Console | None = None) -> dict | None:
    """Score a checkpoint on a split; writes record.json and per_sample.csv (rank 0). A failed
    evaluation removes the run folder when it holds nothing but Hydra's files."""
    try:
        return _evaluate(cfg, run_dir, console)
    except BaseException:
        _remove_if_only_hydra_files(run_dir)
        raise


def _evaluate(cfg, run_dir: Path, console: Console | None = None) -> dict | None:
    console = console or Console()
    t_start = time.perf_counter()
    require_values(cfg)
    weights, config_file = resolve_checkpoint(cfg.checkpoint)
    run_config = OmegaConf.load(config_file)
    overrides = OmegaConf.create({"data": OmegaConf.to_container(cfg.data, resolve=True) or {}})
    merged = OmegaConf.merge(run_config, overrides)
    config = OmegaConf.to_container(merged, resolve=True)
    trainer_cfg = TrainerSettings.check(OmegaConf.to_container(cfg.trainer, resolve=True))
    device = resolve_device(trainer_cfg["device"])
    D.init_distributed(device.type)
    run_dir = Path(D.broadcast_object(str(run_dir)))

    model = build_method(config["method"])
    ckpt.load_weights(weights, model, "cpu")
    model.to(device)
    if trainer_cfg["channels_last"]:
        model.to(memory_format=torch.channels_last)
    samples = load_split(config["data"], cfg.split)
    check_inputs(samples, declared_inputs(model), method=config["method"]["name"], dataset=config["data"]["name"])
    encode = build_encoder(build_tokenizer(model.spec.tokenizer), config["data"], samples)
    dataset = TransformedDataset(samples, make_transform(model, config["data"], encode, with_gt=True))
    loader = build_eval_loader(dataset, trainer_cfg["eval_batch_size"], trainer_cfg["num_workers"], collate)
    metrics, metric = evaluate(model, loader, device, amp=trainer_cfg["amp"], channels_last=trainer_cfg["channels_last"])
    if not D.is_main():
        D.barrier()
        return None
    eval_config = {**config, "task": "eval", "eval_split": cfg.split, "checkpoint": str(weights)}
    # Claimed only now (rank 0), so a failed evaluation leaves no claim behind.
    run_id = claim_run_dir(run_dir, task="eval")
    record = build_record(
        status="complete", task="eval", run_id=run_id,
        config_hash=config_hash(eval_config), group_hash=config_hash(eval_config, include_seed=False),
        config=eval_config, method=method_info(model, config["method"]["name"]),
        data=data_info(config["data"], cfg.split, samples),
        selection={**ckpt.read_meta(weights), "split": config["data"]["splits"]["val"]},
        seed=int(config.get("seed", 0)), code=provenance.code_version(), environment=provenance.environment(),
        hardware={**provenance.hardware(), "device": str(device), "world_size": D.world_size()},
        timing={"wall_s": round(time.perf_counter() - t_start, 2), "peak_memory_mb": round(peak_memory_mb(device), 1)},
        metrics=metrics, artifacts={"per_sample": "per_sample.csv", "checkpoint": str(weights)},
        rrsis_bench_version=__version__,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_outputs(run_dir, record, metric, samples)
    console.print(format_metrics_table(metrics, f"{config['method']['name']} on {config['data']['name']}/{cfg.split}"))
    console.print(f"Record: {run_dir / 'record.json'}")
    D.barrier()
    return record
