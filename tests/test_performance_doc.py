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


def train_step() -> str:
    """Seconds per full-size training step and peak RSS, fast/checkpointing against faithful
    (train-step-benchmark.json, pytest-benchmark with each case's figures in extra_info)."""
    data = json.loads((FIGURES / "train-step-benchmark.json").read_text())
    cases = {(b["extra_info"]["method"], b["params"]["path"]): b["extra_info"] for b in data["benchmarks"]}
    rows = []
    for (method, path), info in sorted(cases.items(), key=lambda kv: (kv[0][0], kv[0][1] != "faithful", kv[0][1])):
        faithful = cases.get((method, "faithful"))
        speed = f"{faithful['best_s'] / info['best_s']:.2f}×" if faithful else "—"
        memory = f"{info['peak_rss_gib'] / faithful['peak_rss_gib']:.2f}×" if faithful else "—"
        steps = info["step_s"]
        rows.append([f"`{method}`", path.replace("_", " + "), f"{info['best_s']:.2f}",
                     f"{min(steps):.2f}–{max(steps):.2f}", f"{info['peak_rss_gib']:.2f}",
                     f"{info['rss_after_build_gib']:.2f}", speed, memory])
    header = ["method", "path", "s/step (best)", "s/step (range)", "peak RSS GiB", "RSS after build GiB",
              "speed vs faithful", "memory vs faithful"]
    return _rows(header, rows, "llrrrrrr")


def bf16() -> str:
    """Logit deviation of bf16 autocast from fp32 (bf16-deviation.jsonl)."""
    results = [json.loads(line) for line in (FIGURES / "bf16-deviation.jsonl").read_text().splitlines() if line]
    rows = [[f"`{r['method']}`", f"{r['image_size']}² × {r['batch_size']}", r["init"], f"{r['max_abs']:.4f}",
             f"{r['mean_abs']:.4f}", f"{r['mean_abs_fp32_logit']:.4f}", f"{100 * r['sign_flip_share']:.2f} %",
             f"{r['forward_s']['fp32']:.2f}", f"{r['forward_s']['bf16']:.2f}"] for r in results]
    header = ["method", "input", "weights", "max abs Δ", "mean abs Δ", "mean abs fp32 logit", "pixels flipped",
              "forward s fp32", "forward s bf16"]
    return _rows(header, rows, "lllrrrrrr")


def bf16_eval() -> str:
    """Test metrics of one trained checkpoint in fp32 and under bf16 autocast (bf16-eval.json)."""
    data = json.loads((FIGURES / "bf16-eval.json").read_text())
    keys = ["mIoU", "oIoU", "Pr@0.5", "Pr@0.7", "Pr@0.9"]
    rows = [[name, *(f"{data[name]['metrics'][k]:.2f}" for k in keys)] for name in ("fp32", "bf16")]
    rows.append(["bf16 − fp32", *(f"{data['bf16']['metrics'][k] - data['fp32']['metrics'][k]:+.3f}" for k in keys)])
    rows.append(["samples whose IoU changed", f"{data['changed_samples']} of {data['samples']}",
                 f"max abs ΔIoU {data['max_abs_iou_change']:.4f}", "", "", ""][:6])
    return _rows([f"`{data['checkpoint']}`", *keys], rows, "lrrrrr")


RENDERERS = {"step-breakdown": step_breakdown, "loader": loader, "train-step": train_step, "bf16": bf16,
             "bf16-eval": bf16_eval}


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
