"""Studies: grids of ordinary runs summarised in one place (`rrsis-bench study NAME`).

A study launches its cells as `rrsis-bench run` jobs through Hydra's launcher and reads back their
records; it computes nothing a run does not. :mod:`rrsis_bench.studies.weak_ratio` is the weak-label
ratio study; its tables and plot come from :mod:`rrsis_bench.results.study`.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console

from rrsis_bench.studies.weak_ratio import STUDY_HELP, StudyUsageError, weak_ratio

STUDIES = {"weak_ratio": weak_ratio}


def study(args: Sequence[str], console: Console) -> int:
    """`rrsis-bench study NAME [key=value ...]`."""
    if not args or args[0] in ("-h", "--help", "help"):
        console.print(STUDY_HELP, markup=False, highlight=False, soft_wrap=True)
        return 0
    name, rest = args[0], list(args[1:])
    if name not in STUDIES:
        raise StudyUsageError(f"Unknown study {name!r}; studies: {', '.join(STUDIES)}.")
    if any(a in ("-h", "--help") for a in rest):
        console.print(STUDY_HELP, markup=False, highlight=False, soft_wrap=True)
        return 0
    return STUDIES[name](rest, console)
