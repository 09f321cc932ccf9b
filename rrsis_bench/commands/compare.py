"""`rrsis-bench compare RUN_A RUN_B`: paired statistics of two runs scored on the same test samples."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console

from rrsis_bench.errors import UserError

COMPARE_HELP = """\
usage: rrsis-bench compare RUN_A RUN_B [out=FILE.json] [resamples=9999] [seed=0] [confidence=0.95]

Compare two runs on the same test samples, sample by sample. RUN_A and RUN_B are run folders (the
folder holding record.json and per_sample.csv) or their record.json files; both runs must be complete
and scored on the same dataset, split and test manifest (data.manifest_sha256), with the same sample
ids, and each per_sample.csv must reproduce its record's oIoU and mIoU; anything else is refused.
Prints A's and B's mIoU and oIoU, the differences Δ = A − B with paired bootstrap intervals (BCa,
samples resampled jointly for both runs), the p-values of two-sided paired permutation tests of ΔmIoU
and ΔoIoU and of the Wilcoxon signed-rank test on per-sample IoU differences (zero differences
dropped), how many samples each run wins, and a verdict at α = 1 − confidence.
  resamples   bootstrap resamples and permutations (default 9999; the smallest permutation p-value
              is about 2/(resamples+1); the test is exact when 2^samples <= resamples)
  seed        seed of the random generator of each resampling procedure (same inputs, same output)
  confidence  level of the intervals (default 0.95); the verdict uses α = 1 − confidence
  out         also write the comparison as JSON to FILE.json
See docs/statistics.md.
"""

#: The key=value options and their defaults.
COMPARE_OPTIONS = {"out": "", "resamples": "9999", "seed": "0", "confidence": "0.95"}


class CompareUsageError(UserError, ValueError):
    """Bad arguments to `rrsis-bench compare`."""


def parse_compare_args(args: Sequence[str]) -> tuple[str, str, dict[str, str]]:
    """(RUN_A, RUN_B, options): two positional paths first, then key=value options."""
    args = list(args)
    paths = []
    while args and len(paths) < 2 and args[0].partition("=")[0] not in COMPARE_OPTIONS:
        paths.append(args.pop(0))
    if len(paths) < 2:
        raise CompareUsageError(
            f"`rrsis-bench compare` needs two run folders before any key=value option, got {len(paths)}; "
            "usage: rrsis-bench compare RUN_A RUN_B [out=FILE.json] [resamples=N] [seed=S] [confidence=C]."
        )
    options = dict(COMPARE_OPTIONS)
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise CompareUsageError(
                f"`rrsis-bench compare` takes two run folders, then key=value options; got the extra argument "
                f"'{arg}' (options: {', '.join(COMPARE_OPTIONS)})."
            )
        if key not in COMPARE_OPTIONS:
            raise CompareUsageError(
                f"`rrsis-bench compare` has no option '{key}'; it takes {', '.join(COMPARE_OPTIONS)}."
            )
        options[key] = value
    return paths[0], paths[1], options


def _whole_number(options: dict[str, str], key: str, minimum: int) -> int:
    try:
        value = int(options[key])
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise CompareUsageError(f"{key} takes a whole number >= {minimum}, not '{options[key]}'.")
    return value


def _confidence(options: dict[str, str]) -> float:
    try:
        value = float(options["confidence"])
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:  # NaN fails too
        raise CompareUsageError(f"confidence takes a number between 0 and 1 (e.g. 0.95), not '{options['confidence']}'.")
    return value


def compare_command(args: Sequence[str], console: Console) -> int:
    """Run `rrsis-bench compare` with its command-line words; prints the comparison, returns 0."""
    if any(arg in ("-h", "--help") for arg in args):
        console.print(COMPARE_HELP, markup=False, highlight=False, soft_wrap=True)
        return 0
    from rrsis_bench.io import atomic_write_json
    from rrsis_bench.results.stats import compare_runs, comparison_json, render_comparison

    run_a, run_b, options = parse_compare_args(args)
    report = compare_runs(run_a, run_b, n_resamples=_whole_number(options, "resamples", 1),
                          seed=_whole_number(options, "seed", 0), confidence=_confidence(options))
    console.print(render_comparison(report), markup=False, highlight=False, soft_wrap=True)
    if options["out"]:
        path = atomic_write_json(options["out"], comparison_json(report))
        console.print(f"Wrote {path}", markup=False, highlight=False, soft_wrap=True)
    return 0
