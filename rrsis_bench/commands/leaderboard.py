"""`rrsis-bench leaderboard`: regenerate the leaderboard tables from run records."""

from __future__ import annotations

from rich.console import Console


def regenerate(records: list[str], out: str, console: Console, *, replace: bool = False) -> int:
    """Write the tables of the records found under ``records`` into ``out`` (see
    :func:`rrsis_bench.results.leaderboard.regenerate_leaderboards`)."""
    from rrsis_bench.results.leaderboard import regenerate_leaderboards

    loaded, written = regenerate_leaderboards([p for p in records if p], out, replace=replace)
    for path, reason in loaded.skipped:
        console.print(f"skipped {path}: {reason}", highlight=False)
    console.print(f"{len(loaded.records)} records → " + ", ".join(str(p) for p in written), highlight=False)
    return 0
