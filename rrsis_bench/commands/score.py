"""`rrsis-bench score`: score saved masks from any codebase with the RRSIS protocol."""

from __future__ import annotations

import warnings

from rich.console import Console


def score(pred: str, gt: str, out: str, threshold: float | None, console: Console) -> int:
    from rrsis_bench.metrics import format_metrics_table
    from rrsis_bench.score import AmbiguousMaskWarning, score_mask_dirs, write_score

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AmbiguousMaskWarning)
        metrics, frame = score_mask_dirs(pred, gt, threshold=threshold)
    for warning in caught:
        if issubclass(warning.category, AmbiguousMaskWarning):
            console.print(f"[yellow]warning:[/yellow] {warning.message}", highlight=False)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    json_path, csv_path = write_score(out, metrics, frame)
    title = f"{pred} vs {gt}" + (f" (foreground = value > {threshold:g})" if threshold is not None else "")
    console.print(format_metrics_table(metrics, title))
    console.print(f"Wrote {json_path} and {csv_path}", highlight=False)
    return 0
