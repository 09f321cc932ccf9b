"""docs/performance.md's tables are generated from the measurements committed in docs/figures/.

A table sits between ``<!-- table NAME -->`` and ``<!-- /table -->``; NAME picks its renderer below,
which reads the figures file it names. After re-measuring (the commands are in docs/performance.md),
rewrite the tables with::

    python tests/test_performance_doc.py --write
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "performance.md"
FIGURES = REPO / "docs" / "figures"
BLOCK = re.compile(r"(<!-- table (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def _rows(header: list[str], rows: list[list[str]], align: str) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def step_breakdown() -> str:
    """Milliseconds per training step by phase, and per evaluated image (step-breakdown.jsonl)."""
    results = [json.loads(line) for line in (FIGURES / "step-breakdown.jsonl").read_text().splitlines() if line]
    rows = []
    for r in results:
        ms = r["step_ms"]
        setting = " ".join(r["overrides"]) or "(the default)"
        rows.append([f"`{r['code']}`", f"`{setting}`", r["method"], f"{ms['data']:.1f}", f"{ms['forward']:.1f}",
                     f"{ms['backward']:.1f}", f"{ms['optimizer']:.1f}", f"{ms['total']:.1f}",
                     f"{r['train_images_per_s']:.1f}", f"{r['eval_ms_per_image']:.2f}",
                     f"{r['eval_data_ms_per_image']:.2f}"])
    header = ["code", "overrides", "method", "data", "forward", "backward", "optimizer", "step", "train img/s",
              "eval ms/img", "of which data"]
    return _rows(header, rows, "lllrrrrrrrr")


def loader() -> str:
    """Samples/s of the 480² RRSIS-D-form loader by worker count, and the model's consumption."""
    data = json.loads((FIGURES / "loader-benchmark.json").read_text())
    rows = []
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if not bench["name"].startswith("test_bench_loader_480["):
            continue
        rows.append([str(info["workers"]), str(info["samples"]), f"{info['samples_per_s_best']:.1f}",
                     f"{info['samples_per_s_worst']:.1f}", f"{info['samples_per_s_per_worker_best']:.1f}"])
    header = ["workers", "samples per epoch", "samples/s (best epoch)", "samples/s (worst epoch)",
              "samples/s per worker (best)"]
    return _rows(header, rows, "rrrrr")


RENDERERS = {"step-breakdown": step_breakdown, "loader": loader}


def render(text: str) -> str:
    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise KeyError(f"docs/performance.md has a table {name!r} with no renderer; known: {sorted(RENDERERS)}")
        return match[1] + RENDERERS[name]() + match[4]

    return BLOCK.sub(fill, text)


def test_performance_tables_equal_the_committed_figures():
    text = DOC.read_text(encoding="utf-8")
    names = [m["name"] for m in BLOCK.finditer(text)]
    assert sorted(names) == sorted(RENDERERS), f"tables in docs/performance.md: {names}"
    assert render(text) == text, "docs/performance.md differs from docs/figures/; run python tests/test_performance_doc.py --write"


def test_a_table_edited_by_hand_is_caught():
    text = DOC.read_text(encoding="utf-8")
    match = next(BLOCK.finditer(text))
    edited = text[: match.start("body")] + match["body"].replace("|", "| 1", 1) + text[match.end("body"):]
    assert render(edited) != edited and render(edited) == text


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_performance_doc.py --write")
    before = DOC.read_text(encoding="utf-8")
    after = render(before)
    DOC.write_text(after, encoding="utf-8")
    print("docs/performance.md " + ("rewritten" if after != before else "unchanged"))
