"""The `rrsis-bench` command: parses arguments, prints help, and dispatches.

``run`` and ``eval`` are Hydra apps (overrides as ``key=value``, ``-m`` for multirun, Hydra's
``--cfg``/``--info``) whose work is in :mod:`rrsis_bench.tasks`; ``score``, ``list``, ``leaderboard``,
``data``, ``profile`` and ``convert`` are plain commands that also take ``key=value`` arguments and do
their work in :mod:`rrsis_bench.commands`. Under ``torchrun`` every process runs this same command;
only rank 0 keeps a Hydra run folder and writes outputs.

Errors are printed as one line (``error: …``) with exit status 1 (2 for bad arguments); ``--debug``
anywhere on the command line, or ``HYDRA_FULL_ERROR=1``, shows the traceback instead.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rrsis_bench.errors import UserError

HYDRA_COMMANDS = {"run": "run", "eval": "eval"}
USAGE = """\
rrsis-bench: a benchmark suite for referring remote-sensing image segmentation

usage: rrsis-bench <command> [key=value ...]

commands:
  run          train, select on val, evaluate on test, write record.json (Hydra; `-m` for sweeps)
  eval         evaluate a trained checkpoint on a split (Hydra)
  score        score saved PNG masks from any codebase: pred=DIR gt=DIR out=FILE.json
  list         list registered methods, datasets or strategies: list methods|datasets|strategies [--json]
  leaderboard  tables from run records (default out: outputs/leaderboards/)
  data         check, describe or inspect a dataset on disk: data verify|stats|text data=NAME data.root=DIR
  profile      parameters, forward FLOPs, latency, peak memory: profile method=NAME [image_size=480]
  convert      import an official LAVT/FIANet checkpoint: convert method=NAME src=FILE.pth out=DIR
  study        a grid of runs summarised: study weak_ratio method=M data=D ratios=[..] strategies=[..] seeds=[..]
  compare      paired statistics of two runs on the same test samples: compare RUN_A RUN_B [out=FILE.json]
  claims       the papers' claims measured: regenerate docs/claims.md from run records [records=DIR] [check=true]

`rrsis-bench <command> --help` explains each command. Errors are one line; add --debug (or set
HYDRA_FULL_ERROR=1) for the traceback.
Multi-GPU: torchrun --nproc-per-node N -m rrsis_bench run [key=value ...]
"""


class UsageError(UserError, ValueError):
    """Bad command-line arguments (printed without a traceback, exit status 2)."""


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
def _wants_help(args: Sequence[str]) -> bool:
    return any(a in ("-h", "--help") for a in args)


def _yaml_value(text: str):
    import yaml

    return yaml.safe_load(text) if text != "" else ""


def _bool_option(opts: dict[str, str], key: str) -> bool:
    value = _yaml_value(opts[key])
    if not isinstance(value, bool):
        raise UsageError(f"{key} takes true or false, not '{opts[key]}'.")
    return value


SCORE_HELP = """\
usage: rrsis-bench score pred=DIR gt=DIR [out=FILE.json] [threshold=T]

Score binary masks saved by any codebase with the RRSIS protocol (oIoU = ΣI/ΣU, mIoU = mean
per-sample IoU with IoU 0 on an empty union, Pr@0.5..0.9 counting IoU >= X). Both folders hold PNG
files with the same names and the same sizes. Foreground is a nonzero value (masks saved as 0/1 or
0/255); masks holding other values (grey levels, probability maps) are reported with a warning, and
threshold=T reads value > T as foreground instead (e.g. threshold=127). Writes the metrics to
FILE.json (default score.json) and the per-sample table beside it; missing, extra or
size-mismatched files are reported together, by name.
"""


def cmd_score(args: Sequence[str], console: Console) -> int:
    if _wants_help(args):
        console.print(SCORE_HELP, markup=False, highlight=False, soft_wrap=True)
        return 0
    from rrsis_bench.commands.score import score

    opts = parse_key_values(args, {"pred": None, "gt": None, "out": "score.json", "threshold": ""}, "score")
    threshold = _yaml_value(opts["threshold"])
    if threshold == "":
        threshold = None
    elif isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise UsageError(f"threshold takes a number (foreground = value > threshold), not '{opts['threshold']}'.")
    return score(opts["pred"], opts["gt"], opts["out"], threshold, console)


LIST_HELP = """\
usage: rrsis-bench list methods|datasets [PATTERN] [--json]

List the registered methods or datasets (built-ins and installed plugins, found through the
entry-point groups rrsis_bench.methods / rrsis_bench.datasets): name, the distribution that
provides it, its status (ok, failed to import, or a name conflict) and a one-line description.
PATTERN filters names (fnmatch, e.g. 'test_*'). --json prints a JSON list of objects instead.
"""


def cmd_list(args: Sequence[str], console: Console) -> int:
    parser = argparse.ArgumentParser(prog="rrsis-bench list", add_help=False)
    parser.add_argument("kind", nargs="?", choices=["methods", "datasets", "strategies"], default="methods")
    parser.add_argument("pattern", nargs="?")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-h", "--help", action="store_true")
    opts, unknown = parser.parse_known_args(list(args))
    if opts.help:
        console.print(LIST_HELP, markup=False, highlight=False, soft_wrap=True)
        return 0
    if unknown:
        raise UsageError(f"Unexpected arguments {unknown}; see `rrsis-bench list --help`.")
    from rrsis_bench.registry import DATASETS, METHODS
    from rrsis_bench.strategies import STRATEGIES

    registry = {"methods": METHODS, "datasets": DATASETS, "strategies": STRATEGIES}[opts.kind]
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


def cmd_leaderboard(args: Sequence[str], console: Console) -> int:
    from rrsis_bench.results.leaderboard import DEFAULT_OUT, DEFAULT_RECORDS, LEADERBOARD_HELP

    if _wants_help(args):
        console.print(LEADERBOARD_HELP, markup=False, highlight=False, soft_wrap=True)
        return 0
    from rrsis_bench.commands.leaderboard import regenerate

    opts = parse_key_values(args, {"records": ",".join(DEFAULT_RECORDS), "out": DEFAULT_OUT, "replace": "false"},
                            "leaderboard")
    return regenerate(opts["records"].split(","), opts["out"], console, replace=_bool_option(opts, "replace"))


DATA_HELP = """\
usage: rrsis-bench data verify|stats data=NAME [data.root=DIR] [splits=train,val,test] [out=DIR]
       rrsis-bench data text data=NAME [data.root=DIR] [split=test] [method=NAME] [out=FILE.csv]
       rrsis-bench data weak data=NAME [data.root=DIR] [accurate_ratio=R] [scheme=nested|lrbwrel] [seed=N]
                             [split_file=FILE.p] [out=FILE.json]

verify  reads every sample of each split (image + mask), lists every problem found (missing or
        unreadable files, size mismatches, empty expressions, split sizes that differ from the
        published ones: RRSIS-D 12,181/1,740/3,481, RefSegRS 2,172/431/1,817) and writes one
        manifest per split (sorted sample ids + sha256) to out/<name>-<split>.manifest.json.
        Exit status 1 when any problem was found.
stats   prints per-split and per-category counts, object sizes (share of the image area) and
        expression lengths, saves out/<name>-stats.png and out/<name>-stats.json.
text    writes what a method's text side sees for each sample of a split, one CSV row per sample:
        sample_id, text, tokens (WordPieces), object_phrase, position_phrases (|-separated),
        object_tokens and position_tokens (0/1 over the token sequence: FIANet's ground-object and
        spatial-position masks). It uses the encoder that `rrsis-bench run method=NAME data=NAME`
        builds (tokenizer of method=, default fianet_lite; data.KEY=VALUE as in run, e.g.
        data.object_mask=official), so it shows exactly what training feeds the model.
weak    writes which TRAINING samples keep their expression and which read their class name, as
        `rrsis-bench run data=NAME data.weak.*` would train on them: scheme, ratio, seed, counts
        (total/accurate/weak, per class), accurate_ids, weak_ids and weak_text (sample id -> the text
        the weak sample gets), and prints the per-class table. Arguments left out take their
        data.weak.* value. split_file= reads a released LRB-WREL split pickle (refs(unc)-90-all.p,
        -mask.p or -no-mask.p; RRSIS-D only), which then decides the split and the ratio.
out defaults to ./manifests (verify), ./stats (stats), ./<name>-<split>-text.csv (text) and
./<name>-weak.json (weak).
"""


def cmd_data(args: Sequence[str], console: Console) -> int:
    if not args or _wants_help(args):
        console.print(DATA_HELP, markup=False, highlight=False, soft_wrap=True)
        return 0
    action, rest = args[0], args[1:]
    if action not in ("verify", "stats", "text", "weak"):
        raise UsageError(f"`rrsis-bench data` takes verify, stats, text or weak, not '{action}'.")
    from rrsis_bench.commands import data as commands

    if action == "weak":
        data_keys = [a for a in rest if a.lstrip("+~").startswith("data.")]  # Hydra overrides (data.root=...)
        opts = parse_key_values([a for a in rest if a not in data_keys],
                                {"data": None, "accurate_ratio": "", "scheme": "", "seed": "", "split_file": "",
                                 "out": ""}, "data weak")
        try:
            ratio = float(opts["accurate_ratio"]) if opts["accurate_ratio"] else None
            seed = int(opts["seed"]) if opts["seed"] else None
        except ValueError as exc:
            raise UsageError(f"accurate_ratio takes a number in [0, 1] and seed a whole number ({exc}).") from exc
        return commands.weak(opts["data"], data_keys, ratio, opts["scheme"] or None, seed,
                             opts["split_file"] or None, opts["out"], console)

    if action == "text":
        data_keys = [a for a in rest if a.lstrip("+~").startswith("data.")]  # Hydra overrides, as in run
        opts = parse_key_values([a for a in rest if a not in data_keys],
                                {"data": None, "split": "test", "method": "fianet_lite", "out": ""}, "data text")
        return commands.text(opts["data"], data_keys, opts["split"], opts["method"], opts["out"], console)
    from rrsis_bench.data.inspect import SPLITS

    opts = parse_key_values(rest, {"data": None, "data.root": "", "splits": ",".join(SPLITS),
                                   "out": "manifests" if action == "verify" else "stats"}, f"data {action}")
    splits = [s for s in opts["splits"].split(",") if s]
    run = commands.verify if action == "verify" else commands.stats
    return run(opts["data"], opts["data.root"] or None, splits, opts["out"], console)


PROFILE_HELP = """\
usage: rrsis-bench profile method=NAME [image_size=480] [batch_size=1] [max_tokens=20] [device=auto]
                           [repeats=5] [pretrained=false] [out=FILE.json] [method.KEY=VALUE ...]

Build a method as `rrsis-bench run method=NAME` configures it (method.KEY=VALUE override its keys,
e.g. method.num_tmem=1) and measure it on a dummy batch: params (all parameters, text encoder
included), trainable params, forward FLOPs (torch.utils.flop_counter: 2 per multiply-add;
gmacs = flops/2; methods with a faithful path, such as fianet and lavt, are counted on it because
fused attention kernels are invisible to the counter), median latency of `repeats` forward passes
after 2 warm-up passes, and peak memory (CUDA max allocated, or process peak RSS on CPU) on the
current device. Counts, FLOPs and latency do not depend on the weights, so the method is built with
random init (its pretrained/text_pretrained keys set to false: nothing to download);
pretrained=true loads the weights as `run` would. Prints a table; writes JSON to out= when given.

Example (full-size FIANet, no weights needed):
  rrsis-bench profile method=fianet out=fianet.json
"""


def cmd_profile(args: Sequence[str], console: Console) -> int:
    if _wants_help(args):
        console.print(PROFILE_HELP, markup=False, highlight=False, soft_wrap=True)
        return 0
    from rrsis_bench.commands.profile import profile

    overrides = {a.partition("=")[0][len("method."):]: _yaml_value(a.partition("=")[2])
                 for a in args if a.startswith("method.")}
    opts = parse_key_values([a for a in args if not a.startswith("method.")],
                            {"method": None, "image_size": "480", "batch_size": "1", "max_tokens": "20",
                             "device": "auto", "repeats": "5", "pretrained": "false", "out": ""}, "profile")
    try:
        sizes = {key: int(opts[key]) for key in ("image_size", "batch_size", "max_tokens", "repeats")}
    except ValueError as exc:
        raise UsageError(f"image_size, batch_size, max_tokens and repeats take whole numbers ({exc}).") from exc
    profile(opts["method"], overrides, pretrained=_bool_option(opts, "pretrained"), device=opts["device"],
            out=opts["out"], console=console, **sizes)
    return 0


CONVERT_HELP = """\
usage: rrsis-bench convert method=NAME src=FILE.pth out=DIR [data=rrsisd] [data.root=DIR] [strict=true]
                           [trust=false] [KEY=VALUE ...]

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
2-logit head is folded into our single foreground logit (same probabilities). Every official module
name, FIANet's FIAM/TMEM included, maps onto ours (each method's table is in
rrsis_bench/methods/<name>/official.py).
data.root (the dataset folder) may be given here or at eval time (data.root=DIR). To hand weights
back to the official code, use rrsis_bench.nn.official_lavt.to_official(model) in Python.

Safety: src is read with torch.load(weights_only=True), which restores tensors and plain containers
only (and the argparse arguments official checkpoints carry). A file that also pickles other objects (optimizer or scheduler objects, custom classes) is
refused; trust=true reads it with full unpickling, which RUNS ANY CODE STORED IN THE FILE: use it only
for a file from a source you trust (or re-save its state dict as a plain dict first).
"""

CONVERT_KEYS = {"method": None, "src": None, "out": None, "data": "rrsisd", "data.root": "", "strict": "true",
                "trust": "false"}


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


def cmd_convert(args: Sequence[str], console: Console) -> int:
    if _wants_help(args):
        console.print(CONVERT_HELP, markup=False, highlight=False, soft_wrap=True)
        return 0
    from rrsis_bench.commands.convert import convert_official

    own, options = _split_convert_args(args)
    opts = parse_key_values(own, CONVERT_KEYS, "convert")
    weights = convert_official(opts["method"], opts["src"], opts["out"], data=opts["data"],
                               data_root=opts["data.root"], strict=_bool_option(opts, "strict"),
                               trust=_bool_option(opts, "trust"), **options)
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
# Hydra's flags that take a value (argparse cannot take overrides both before and after them).
_HYDRA_VALUE_FLAGS = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
                      "-cd", "--config-dir", "--experimental-rerun", "-sc", "--shell-completion"}
_HYDRA_INFO_CHOICES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def _order_hydra_args(args: Sequence[str], extra_overrides: Sequence[str]) -> list[str]:
    """Overrides first (the user's, then ours), flags and their values last: Hydra's argparse parser
    refuses overrides that come after a flag when others came before it."""
    overrides, flags = [], []
    args = list(args)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):  # overrides never start with "-" (they are key=value, +key, ~key)
            flags.append(arg)
            takes_value = arg in _HYDRA_VALUE_FLAGS or (arg in ("-i", "--info") and i + 1 < len(args)
                                                         and args[i + 1] in _HYDRA_INFO_CHOICES)
            if takes_value and i + 1 < len(args):
                flags.append(args[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return [*overrides, *extra_overrides, *flags]


def _hydra_overrides(command: str) -> list[str]:
    from rrsis_bench.config import plugin_config_search_paths
    from rrsis_bench.engine.distributed import world_info

    extra = []
    paths = plugin_config_search_paths()
    if paths:
        extra.append("hydra.searchpath=[" + ",".join(paths) + "]")
    rank, _, world = world_info()
    if world > 1 and rank != 0:
        # Only rank 0 keeps a run folder; the others get rank 0's path over the process group.
        scratch = tempfile.mkdtemp(prefix=f"rrsis-rank{rank}-")
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # nothing of a helper rank stays behind
        extra += [f"hydra.run.dir={scratch}", "hydra.output_subdir=null",
                  "hydra/job_logging=none", "hydra/hydra_logging=none"]
    return extra


def _methods_for_help() -> str:
    """The registered methods (built-ins and plugins) for `run --help`."""
    from rrsis_bench.registry import METHODS

    lines = []
    for entry in METHODS.entries():
        status = "" if entry.status == "ok" else f" [{entry.status}]"
        lines.append(f"  {entry.name:<16} {entry.source_dist}{status}: {entry.description}")
    return "\n".join(lines)


def run_hydra(command: str, args: Sequence[str], *, debug: bool = False) -> int:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from rrsis_bench import tasks
    from rrsis_bench.config import store_plugin_method_configs

    task: Callable = {"run": tasks.run_task, "eval": tasks.eval_task}[command]
    store_plugin_method_configs()
    if not OmegaConf.has_resolver("rrsis_bench_methods"):
        OmegaConf.register_new_resolver("rrsis_bench_methods", _methods_for_help)
    failures: list[BaseException] = []
    launching_pid = os.getpid()

    @hydra.main(config_path="conf", config_name=HYDRA_COMMANDS[command], version_base="1.3")
    def app(cfg) -> None:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            task(cfg, run_dir)
        except Exception as exc:
            if debug:
                raise  # Hydra prints the full traceback
            if os.getpid() != launching_pid:
                # A launcher ran this job in another process (submitit): `failures` is not the caller's
                # list there, so the failure goes back in Hydra's job return; Hydra then prints this
                # line and exits with status 1 once every job of the sweep has ended.
                from hydra.errors import CompactHydraException

                hydra_cfg = HydraConfig.get()
                raise CompactHydraException(
                    f"error: job #{hydra_cfg.job.num} failed: {_describe(exc)} (other jobs may have failed too: "
                    f"see their run folders and the launcher's logs under {hydra_cfg.sweep.dir})") from None
            failures.append(exc)
        finally:
            from rrsis_bench.engine.distributed import cleanup

            cleanup()

    if command == "eval":
        # eval's data node starts empty (the run's own data config is the base), so data.KEY=VALUE
        # adds a key: spell it as Hydra's add-or-override for the user.
        args = [f"++{a}" if a.startswith("data.") else a for a in args]
    saved_argv, saved_full_error = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    if debug:
        os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then re-raises the task's exception with its traceback
    sys.argv = [f"rrsis-bench {command}", *_order_hydra_args(args, _hydra_overrides(command))]
    try:
        app()
    finally:
        sys.argv = saved_argv
        if saved_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full_error
    if failures:
        if len(failures) > 1:  # a multirun: every failed job was reported by its own run folder
            raise JobsFailed(failures)
        raise failures[0]
    return 0


class JobsFailed(Exception):
    """Several jobs of a multirun failed."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        super().__init__(f"{len(failures)} jobs failed; the first: {_describe(failures[0])}")


# ---------------------------------------------------------------------------------------------
def _describe(exc: BaseException) -> str:
    """One line for an error: the message of a user error; type and message of anything else."""
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    if _is_user_error(exc):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text} (unexpected; rerun with --debug for the traceback and report it)"


def _is_user_error(exc: BaseException) -> bool:
    from omegaconf.errors import OmegaConfBaseException

    from rrsis_bench.config import ConfigError

    if isinstance(exc, JobsFailed):
        return all(_is_user_error(e) for e in exc.failures)
    return isinstance(exc, UserError | ConfigError | OmegaConfBaseException | FileNotFoundError | ValueError
                      | LookupError | OSError | NotImplementedError)


def cmd_claims(args: Sequence[str], console: Console) -> int:
    from rrsis_bench.commands.claims import CLAIMS_HELP, claims_command
    from rrsis_bench.results.claims import DEFAULT_DOC, DEFAULT_EARLIER, DEFAULT_RECORDS

    if _wants_help(args):
        console.print(CLAIMS_HELP, markup=False, highlight=False, soft_wrap=True)
        return 0
    opts = parse_key_values(args, {"records": ",".join(DEFAULT_RECORDS), "earlier": DEFAULT_EARLIER,
                                   "out": DEFAULT_DOC, "figures": "docs/figures", "check": "false"}, "claims")
    return claims_command(opts["records"].split(","), opts["out"], opts["figures"], console, earlier=opts["earlier"],
                          check=_bool_option(opts, "check"))


def cmd_study(args: Sequence[str], console: Console) -> int:
    from rrsis_bench.studies import study

    return study(args, console)


def cmd_compare(args: Sequence[str], console: Console) -> int:
    from rrsis_bench.commands.compare import CompareUsageError, compare_command

    try:
        return compare_command(args, console)  # prints its own --help
    except CompareUsageError as exc:
        raise UsageError(str(exc)) from exc


PLAIN_COMMANDS: dict[str, Callable[[Sequence[str], Console], int]] = {
    "score": cmd_score, "list": cmd_list, "leaderboard": cmd_leaderboard, "data": cmd_data,
    "profile": cmd_profile, "convert": cmd_convert, "study": cmd_study, "compare": cmd_compare,
    "claims": cmd_claims,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("HYDRA_FULL_ERROR") == "1"
    argv = [a for a in argv if a != "--debug"]
    console = Console()
    if not argv or argv[0] in ("-h", "--help", "help"):
        console.print(USAGE, markup=False, highlight=False)
        return 0
    command, rest = argv[0], argv[1:]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub implicitly
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if command in HYDRA_COMMANDS:
            return run_hydra(command, rest, debug=debug)
        if command in PLAIN_COMMANDS:
            return PLAIN_COMMANDS[command](rest, console)
        raise UsageError(f"Unknown command '{command}'. Commands: {', '.join([*HYDRA_COMMANDS, *PLAIN_COMMANDS])}.")
    except UsageError as exc:
        console.print(f"[red]error:[/red] {_escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except Exception as exc:
        if debug:
            raise
        console.print(f"[red]error:[/red] {_escape(_describe(exc))}", highlight=False, soft_wrap=True)
        return 1


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
