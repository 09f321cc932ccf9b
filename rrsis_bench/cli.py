"""The `rrsis-bench` command: a thin dispatcher in front of Hydra apps and plain commands.

``run`` and ``eval`` are Hydra apps (overrides as ``key=value``, ``-m`` for multirun, Hydra's
``--cfg``/``--info``); ``score``, ``list``, ``leaderboard``, ``data``, ``profile`` and ``convert`` are
plain commands that also take ``key=value`` arguments. Under ``torchrun`` every process runs this same command; only rank 0
keeps a Hydra run folder and writes outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

HYDRA_COMMANDS = {"run": "run", "eval": "eval"}
USAGE = """\
rrsis-bench: a benchmark suite for referring remote-sensing image segmentation

usage: rrsis-bench <command> [key=value ...]

commands:
  run          train, select on val, evaluate on test, write record.json (Hydra; `-m` for sweeps)
  eval         evaluate a trained checkpoint on a split (Hydra)
  score        score saved PNG masks from any codebase: pred=DIR gt=DIR out=FILE.json
  list         list registered methods or datasets: list methods|datasets [--json] [PATTERN]
  leaderboard  regenerate leaderboards/<dataset>.md/.csv from run records
  data         check or describe a dataset on disk: data verify|stats data=NAME data.root=DIR
  profile      parameters, forward FLOPs, latency, peak memory: profile method=NAME [image_size=480]
  convert      import an official LAVT/FIANet checkpoint: convert method=NAME src=FILE.pth out=DIR

`rrsis-bench <command> --help` explains each command.
Multi-GPU: torchrun --nproc-per-node N -m rrsis_bench run [key=value ...]
"""


class UsageError(ValueError):
    """Bad command-line arguments (printed without a traceback)."""


# ---------------------------------------------------------------------------------------------
# key=value arguments of the plain commands
def parse_key_values(args: Sequence[str], allowed: dict[str, str | None], command: str) -> dict[str, str]:
    """Parse ``key=value`` words; ``allowed`` maps each key to its default (None = required)."""
    values: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise UsageError(f"`rrsis-bench {command}` takes key=value arguments; got '{arg}'.")
        if key not in allowed:
            raise UsageError(f"`rrsis-bench {command}` has no argument '{key}'; it takes {', '.join(allowed)}.")
        values[key] = value
    for key, default in allowed.items():
        if key not in values:
            if default is None:
                raise UsageError(f"`rrsis-bench {command}` needs {key}=...; see `rrsis-bench {command} --help`.")
            values[key] = default
    return values


# ---------------------------------------------------------------------------------------------
# plain commands
SCORE_HELP = """\
usage: rrsis-bench score pred=DIR gt=DIR [out=FILE.json]

Score binary masks saved by any codebase with the RRSIS protocol (oIoU = ΣI/ΣU, mIoU = mean
per-sample IoU with IoU 0 on an empty union, Pr@0.5..0.9 counting IoU >= X). Both folders hold PNG
files with the same names (nonzero = foreground) and the same sizes. Writes the metrics to
FILE.json (default score.json) and the per-sample table beside it; missing, extra or
size-mismatched files are reported together, by name.
"""


def cmd_score(args: Sequence[str], console: Console) -> int:
    if any(a in ("-h", "--help") for a in args):
        console.print(SCORE_HELP, markup=False, highlight=False)
        return 0
    from rrsis_bench.metrics import format_metrics_table
    from rrsis_bench.score import score_mask_dirs, write_score

    opts = parse_key_values(args, {"pred": None, "gt": None, "out": "score.json"}, "score")
    metrics, frame = score_mask_dirs(opts["pred"], opts["gt"])
    write_score(opts["out"], metrics, frame)
    console.print(format_metrics_table(metrics, f"{opts['pred']} vs {opts['gt']}"))
    console.print(f"Wrote {opts['out']}")
    return 0


LIST_HELP = """\
usage: rrsis-bench list methods|datasets [PATTERN] [--json]

List the registered methods or datasets (built-ins and installed plugins, found through the
entry-point groups rrsis_bench.methods / rrsis_bench.datasets): name, the distribution that
provides it, its status (ok, failed to import, or a name conflict) and a one-line description.
PATTERN filters names (fnmatch, e.g. 'test_*'). --json prints a JSON list of objects instead.
"""


def cmd_list(args: Sequence[str], console: Console) -> int:
    parser = argparse.ArgumentParser(prog="rrsis-bench list", add_help=False)
    parser.add_argument("kind", nargs="?", choices=["methods", "datasets"], default="methods")
    parser.add_argument("pattern", nargs="?")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-h", "--help", action="store_true")
    opts, unknown = parser.parse_known_args(list(args))
    if opts.help:
        console.print(LIST_HELP, markup=False, highlight=False)
        return 0
    if unknown:
        raise UsageError(f"Unexpected arguments {unknown}; see `rrsis-bench list --help`.")
    from rrsis_bench.registry import DATASETS, METHODS

    registry = METHODS if opts.kind == "methods" else DATASETS
    rows = [
        {"name": e.name, "source_dist": e.source_dist, "version": e.dist_version, "status": e.status,
         "description": e.description, "target": e.target}
        for e in registry.entries(opts.pattern)
    ]
    if opts.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"rrsis-bench {opts.kind}")
    for column in ("name", "source distribution", "status", "description"):
        table.add_column(column)
    for row in rows:
        status = row["status"] if row["status"] == "ok" else f"[red]{row['status']}[/red]"
        table.add_row(row["name"], f"{row['source_dist']} {row['version'] or ''}".strip(), status, row["description"])
    console.print(table)
    return 0


LEADERBOARD_HELP = """\
usage: rrsis-bench leaderboard [records=DIR[,DIR...]] [out=DIR]

Regenerate <out>/<dataset>.md and <dataset>.csv from the run records (record.json files, searched
recursively under each DIR; default records=outputs,multirun out=leaderboards). Runs that differ
only by seed are aggregated as mean ± std. Published numbers live in a separate section and in
<out>/reported.md/.csv, marked "reported", never mixed with rows reproduced here. Files are written
atomically; the same records always give the same files.
"""


def cmd_leaderboard(args: Sequence[str], console: Console) -> int:
    if any(a in ("-h", "--help") for a in args):
        console.print(LEADERBOARD_HELP, markup=False, highlight=False)
        return 0
    from rrsis_bench.results.leaderboard import write_leaderboards
    from rrsis_bench.results.record import load_records

    opts = parse_key_values(args, {"records": "outputs,multirun", "out": "leaderboards"}, "leaderboard")
    sources = [Path(p) for p in opts["records"].split(",") if p]
    existing = [p for p in sources if p.exists()]
    if not existing:
        raise UsageError(f"No record folder found among {', '.join(map(str, sources))}; pass records=DIR.")
    loaded = load_records(existing)
    records, skipped = (loaded.records, loaded.skipped) if hasattr(loaded, "records") else (loaded, [])
    for path, reason in skipped:
        console.print(f"skipped {path}: {reason}")
    written = write_leaderboards(records, opts["out"])
    console.print(f"{len(records)} records → " + ", ".join(str(p) for p in written))
    return 0


DATA_HELP = """\
usage: rrsis-bench data verify|stats data=NAME [data.root=DIR] [splits=train,val,test] [out=DIR]

verify  reads every sample of each split (image + mask), lists every problem found (missing or
        unreadable files, size mismatches, empty expressions, split sizes that differ from the
        published ones: RRSIS-D 12,181/1,740/3,481, RefSegRS 2,172/431/1,817) and writes one
        manifest per split (sorted sample ids + sha256) to out/<name>-<split>.manifest.json.
        Exit status 1 when any problem was found.
stats   prints per-split and per-category counts, object sizes (share of the image area) and
        expression lengths, saves out/<name>-stats.png and out/<name>-stats.json.
out defaults to ./manifests (verify) and ./stats (stats).
"""


def cmd_data(args: Sequence[str], console: Console) -> int:
    if not args or args[0] in ("-h", "--help") or any(a in ("-h", "--help") for a in args):
        console.print(DATA_HELP, markup=False, highlight=False)
        return 0
    action, rest = args[0], args[1:]
    if action not in ("verify", "stats"):
        raise UsageError(f"`rrsis-bench data` takes verify or stats, not '{action}'.")
    from rrsis_bench.data import inspect as I

    opts = parse_key_values(rest, {"data": None, "data.root": "", "splits": ",".join(I.SPLITS),
                                   "out": "manifests" if action == "verify" else "stats"}, f"data {action}")
    name, root = opts["data"], opts["data.root"] or None
    splits = [s for s in opts["splits"].split(",") if s]
    if action == "verify":
        reports = [I.verify_split(name, root, split) for split in splits]
        table = Table(title=f"rrsis-bench data verify: {name}")
        for column in ("split", "samples", "published", "skipped", "problems"):
            table.add_column(column)
        for r in reports:
            table.add_row(r.split, str(r.num_samples), str(r.published or "–"), str(r.num_skipped),
                          str(len(r.problems)))
        console.print(table)
        for r in reports:
            for problem in r.problems[:50]:
                console.print(f"  [{r.split}] {problem}", highlight=False, markup=False)
            if len(r.problems) > 50:
                console.print(f"  [{r.split}] … {len(r.problems) - 50} more", highlight=False, markup=False)
        for path in I.write_manifests(name, reports, opts["out"]):
            console.print(f"Wrote {path}")
        return 1 if any(r.problems for r in reports) else 0
    stats = {split: I.split_stats(I.open_split(name, root, split)) for split in splits}
    table = Table(title=f"rrsis-bench data stats: {name}")
    for column in ("split", "samples", "images", *[b for b, _ in I.SIZE_BUCKETS], "words (mean/min/max)"):
        table.add_column(column)
    for split, st in stats.items():
        words = st["expression_words"]
        table.add_row(split, str(st["num_samples"]), str(st["num_images"]),
                      *[str(st["object_size"][b]) for b, _ in I.SIZE_BUCKETS],
                      f"{words['mean']}/{words['min']}/{words['max']}")
    console.print(table)
    categories = Table(title="samples per category")
    categories.add_column("category")
    for split in stats:
        categories.add_column(split)
    for category in sorted({c for st in stats.values() for c in st["categories"]}):
        categories.add_row(category, *[str(stats[s]["categories"].get(category, 0)) for s in stats])
    console.print(categories)
    out = Path(opts["out"])
    figure = I.save_stats_figure(name, stats, out / f"{name}-stats.png")
    from rrsis_bench.io import atomic_write_json

    atomic_write_json(out / f"{name}-stats.json", stats)
    console.print(f"Wrote {figure} and {out / f'{name}-stats.json'}")
    return 0


PROFILE_HELP = """\
usage: rrsis-bench profile method=NAME [image_size=480] [batch_size=1] [max_tokens=20] [device=auto]
                           [repeats=5] [out=FILE.json] [method.KEY=VALUE ...]

Build a method (method.KEY=VALUE are keyword arguments of its factory, e.g. method.pretrained=false)
and measure it on a dummy batch: params (all parameters, text encoder included), trainable params,
forward FLOPs (torch.utils.flop_counter: 2 per multiply-add; gmacs = flops/2; methods with a
faithful path, such as fianet and lavt, are counted on it because fused attention kernels are
invisible to the counter), median latency of `repeats` forward passes after 2 warm-up passes, and
peak memory (CUDA max allocated, or process peak RSS on CPU) on the current device. Prints a
table; writes JSON to out= when given.

Example (the faithful FIANet without downloading weights):
  rrsis-bench profile method=fianet method.pretrained=false method.text_pretrained=false out=fianet.json
"""


def _yaml_value(text: str):
    import yaml

    return yaml.safe_load(text) if text != "" else ""


def cmd_profile(args: Sequence[str], console: Console) -> int:
    if any(a in ("-h", "--help") for a in args):
        console.print(PROFILE_HELP, markup=False, highlight=False)
        return 0
    from rrsis_bench.io import atomic_write_json
    from rrsis_bench.profile import profile_method

    method_kwargs = {a.partition("=")[0][len("method."):]: _yaml_value(a.partition("=")[2])
                     for a in args if a.startswith("method.")}
    opts = parse_key_values([a for a in args if not a.startswith("method.")],
                            {"method": None, "image_size": "480", "batch_size": "1", "max_tokens": "20",
                             "device": "auto", "repeats": "5", "out": ""}, "profile")
    result = profile_method(opts["method"], image_size=int(opts["image_size"]), batch_size=int(opts["batch_size"]),
                            max_tokens=int(opts["max_tokens"]), device=opts["device"], repeats=int(opts["repeats"]),
                            **method_kwargs)
    table = Table(title=f"rrsis-bench profile: {result['method']}")
    for column in ("params", "trainable", "GFLOPs", "GMACs", "latency (ms)", "peak memory (MB)", "device"):
        table.add_column(column)
    table.add_row(f"{result['params']:,}", f"{result['trainable_params']:,}", f"{result['gflops']:.2f}",
                  f"{result['gmacs']:.2f}", f"{result['latency_ms']['median']:.1f}", f"{result['peak_memory_mb']:.0f}",
                  result["device"])
    console.print(table)
    if opts["out"]:
        atomic_write_json(opts["out"], result)
        console.print(f"Wrote {opts['out']}")
    return 0


CONVERT_HELP = """\
usage: rrsis-bench convert method=NAME src=FILE.pth out=DIR [data=rrsisd] [data.root=DIR] [strict=true]
                           [KEY=VALUE ...]

Import a checkpoint of the official LAVT or FIANet code into method NAME (lavt, fianet or their
test_* sizes) and write a folder that `rrsis-bench eval checkpoint=DIR` scores:
  DIR/checkpoints/best/model.safetensors   the weights (meta.json beside them: source file, sha256)
  DIR/checkpoints/config.yaml              the run config of method=NAME data=NAME (with its recipe)
The method is built from that config with pretrained=false text_pretrained=false (nothing is
downloaded; every tensor comes from the file) and the options given as KEY=VALUE or method.KEY=VALUE
(values in YAML, e.g. num_tmem=3 or object_branch=false), which are saved in config.yaml too.
src may hold {'model': state_dict, 'args': ...}, a 'state_dict' or a bare state dict; DDP's module.
prefix and the two-model LAVT's separate 'bert_model' are accepted. Every tensor is checked: missing,
unexpected or mis-shaped tensors stop the import with their list and the fix; strict=false loads the
matching tensors and keeps the others at their random init (listed in meta.json). The official
2-logit head is folded into our single foreground logit (same probabilities). The names of FIANet's
own modules are provisional (rrsis_bench/methods/fianet/official.py). data.root (the dataset folder)
may be given here or at eval time (data.root=DIR). To hand weights back to the official code, use
rrsis_bench.nn.official_lavt.to_official(model) in Python.
"""

CONVERT_KEYS = {"method": None, "src": None, "out": None, "data": "rrsisd", "data.root": "", "strict": "true"}


def _split_convert_args(args: Sequence[str]) -> tuple[list[str], dict]:
    """(the command's own key=value words, method options)."""
    own, options = [], {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key.startswith("method."):
            options[key[len("method."):]] = _yaml_value(value)
        elif sep and key and key not in CONVERT_KEYS:
            options[key] = _yaml_value(value)
        else:
            own.append(arg)
    return own, options


def _run_config(method: str, data: str) -> dict:
    """The config `rrsis-bench run method=METHOD data=DATA` would use (method and data files, the
    published recipe for the pair if any, trainer defaults), composed without running anything."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from rrsis_bench.registry import config_search_paths

    _store_plugin_method_configs()
    overrides = [f"method={method}", f"data={data}"]
    paths = config_search_paths()
    if paths:
        overrides.append("hydra.searchpath=[" + ",".join(paths) + "]")
    try:
        with initialize_config_module("rrsis_bench.conf", version_base="1.3"):
            cfg = compose("run", overrides=overrides)
    except (HydraException, OSError) as exc:
        raise UsageError(f"Cannot compose the config of method={method} data={data}: {exc}") from exc
    return OmegaConf.to_container(cfg, resolve=True)


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_official(method: str, src: str | os.PathLike, out: str | os.PathLike, *, data: str = "rrsisd",
                     data_root: str = "", strict: bool = True, **options) -> Path:
    """Import the official checkpoint ``src`` into ``method`` and write the folder ``out`` (see
    CONVERT_HELP). Returns the checkpoint folder (``out/checkpoints/best``)."""
    from omegaconf import OmegaConf

    from rrsis_bench.engine import checkpoint as ckpt
    from rrsis_bench.engine.trainer import BEST
    from rrsis_bench.io import atomic_write_text
    from rrsis_bench.nn.official_lavt import load_official_checkpoint, official_rules
    from rrsis_bench.registry import create_method
    from rrsis_bench.tasks import CONFIG_FILE

    src = Path(src).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"No official checkpoint at {src}.")
    config = _run_config(method, data)
    if data_root:
        config["data"]["root"] = data_root
    method_cfg = {k: v for k, v in config["method"].items() if k != "name"}
    method_cfg.update({"pretrained": False, "text_pretrained": False, **options})
    try:
        model = create_method(method, **method_cfg)
    except TypeError as exc:
        raise UsageError(f"method {method} does not take these options ({exc}); see its factory.") from exc
    try:
        rules = official_rules(model)
    except TypeError as exc:  # no official layout for this method
        raise UsageError(str(exc)) from exc
    result = load_official_checkpoint(model, src, strict=strict, rules=rules)
    folder = Path(out).expanduser()
    meta = {"source": "official checkpoint", "file": str(src.resolve()), "sha256": _sha256(src),
            "method": method, "strict": strict, "missing": result.missing, "unexpected": result.unexpected}
    weights = ckpt.save_checkpoint(folder / "checkpoints" / BEST, model, meta=meta)
    config.update(task="convert", method={"name": method, **method_cfg},
                  source={"file": meta["file"], "sha256": meta["sha256"]})
    atomic_write_text(folder / "checkpoints" / CONFIG_FILE, OmegaConf.to_yaml(config))
    return weights


def cmd_convert(args: Sequence[str], console: Console) -> int:
    if any(a in ("-h", "--help") for a in args):
        console.print(CONVERT_HELP, markup=False, highlight=False)
        return 0
    own, options = _split_convert_args(args)
    opts = parse_key_values(own, CONVERT_KEYS, "convert")
    strict = _yaml_value(opts["strict"])
    if not isinstance(strict, bool):
        raise UsageError(f"strict takes true or false, not '{opts['strict']}'.")
    weights = convert_official(opts["method"], opts["src"], opts["out"], data=opts["data"],
                               data_root=opts["data.root"], strict=strict, **options)
    meta = json.loads((weights / "meta.json").read_text())
    for kind in ("missing", "unexpected"):
        if meta[kind]:
            console.print(f"[yellow]{len(meta[kind])} {kind} tensors[/yellow] (strict=false; listed in "
                          f"{weights / 'meta.json'})", highlight=False)
    console.print(f"Wrote {weights} and {weights.parent / 'config.yaml'}", highlight=False)
    root = "" if opts["data.root"] else " data.root=DIR"
    console.print(f"Score it: rrsis-bench eval checkpoint={opts['out']}{root}", highlight=False, markup=False)
    return 0


# ---------------------------------------------------------------------------------------------
# Hydra apps
def _store_plugin_method_configs() -> None:
    """Give every registered method without its own ``method/<name>.yaml`` a default config node,
    so ``method=<name>`` works for any installed plugin."""
    from hydra.core.config_store import ConfigStore

    from rrsis_bench.registry import CONFIGS_GROUP, list_methods

    shipped = {p.stem for p in resources.files("rrsis_bench.conf").joinpath("method").iterdir()}
    from importlib.metadata import entry_points

    for ep in entry_points(group=CONFIGS_GROUP):
        try:
            folder = resources.files(ep.value).joinpath("method")
            shipped |= {p.stem for p in folder.iterdir()} if folder.is_dir() else set()
        except (ModuleNotFoundError, FileNotFoundError):
            continue
    store = ConfigStore.instance()
    for name in list_methods():
        if name not in shipped:
            store.store(group="method", name=name, node={"name": name})


def _hydra_overrides(command: str) -> list[str]:
    from rrsis_bench.engine.distributed import world_info
    from rrsis_bench.registry import config_search_paths

    extra = []
    paths = config_search_paths()
    if paths:
        extra.append("hydra.searchpath=[" + ",".join(paths) + "]")
    rank, _, world = world_info()
    if world > 1 and rank != 0:
        # Only rank 0 keeps a run folder; the others get rank 0's path over the process group.
        extra += [f"hydra.run.dir={tempfile.mkdtemp(prefix=f'rrsis-rank{rank}-')}", "hydra.output_subdir=null",
                  "hydra/job_logging=none", "hydra/hydra_logging=none"]
    return extra


def run_hydra(command: str, args: Sequence[str]) -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from rrsis_bench import tasks

    task: Callable = {"run": tasks.run_task, "eval": tasks.eval_task}[command]
    _store_plugin_method_configs()

    @hydra.main(config_path="conf", config_name=HYDRA_COMMANDS[command], version_base="1.3")
    def app(cfg) -> None:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            task(cfg, run_dir)
        finally:
            from rrsis_bench.engine.distributed import cleanup

            cleanup()

    if command == "eval":
        # eval's data node starts empty (the run's own data config is the base), so data.KEY=VALUE
        # adds a key: spell it as Hydra's add-or-override for the user.
        args = [f"++{a}" if a.startswith("data.") else a for a in args]
    saved = sys.argv
    sys.argv = [f"rrsis-bench {command}", *args, *_hydra_overrides(command)]
    try:
        app()
    finally:
        sys.argv = saved
    return 0


# ---------------------------------------------------------------------------------------------
PLAIN_COMMANDS: dict[str, Callable[[Sequence[str], Console], int]] = {
    "score": cmd_score, "list": cmd_list, "leaderboard": cmd_leaderboard, "data": cmd_data,
    "profile": cmd_profile, "convert": cmd_convert,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    console = Console()
    if not argv or argv[0] in ("-h", "--help", "help"):
        console.print(USAGE, markup=False, highlight=False)
        return 0
    command, rest = argv[0], argv[1:]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub implicitly
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if command in HYDRA_COMMANDS:
            return run_hydra(command, rest)
        if command in PLAIN_COMMANDS:
            return PLAIN_COMMANDS[command](rest, console)
        raise UsageError(f"Unknown command '{command}'. Commands: {', '.join([*HYDRA_COMMANDS, *PLAIN_COMMANDS])}.")
    except UsageError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    except (FileNotFoundError, ValueError, LookupError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 1
