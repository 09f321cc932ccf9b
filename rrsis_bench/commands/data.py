"""`rrsis-bench data verify|stats|text`: check, describe and inspect a dataset on disk."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table


def verify(name: str, root: str | None, splits: list[str], out: str, console: Console) -> int:
    """Read every sample of each split, print every problem, write one manifest per split.
    Returns the exit status: 1 when any problem was found."""
    from rrsis_bench.data import inspect as I

    reports = [I.verify_split(name, root, split) for split in splits]
    table = Table(title=f"rrsis-bench data verify: {name}")
    for column in ("split", "samples", "published", "skipped", "problems"):
        table.add_column(column)
    for r in reports:
        table.add_row(r.split, str(r.num_samples), str(r.published or "–"), str(r.num_skipped), str(len(r.problems)))
    console.print(table)
    for r in reports:
        for problem in r.problems[:50]:
            console.print(f"  [{r.split}] {problem}", highlight=False, markup=False)
        if len(r.problems) > 50:
            console.print(f"  [{r.split}] … {len(r.problems) - 50} more", highlight=False, markup=False)
    for path in I.write_manifests(name, reports, out):
        console.print(f"Wrote {path}")
    return 1 if any(r.problems for r in reports) else 0


def stats(name: str, root: str | None, splits: list[str], out: str, console: Console) -> int:
    """Counts per split and category, object sizes, expression lengths; a figure and a JSON file."""
    from rrsis_bench.data import inspect as I
    from rrsis_bench.io import atomic_write_json

    per_split = {split: I.split_stats(I.open_split(name, root, split)) for split in splits}
    table = Table(title=f"rrsis-bench data stats: {name}")
    for column in ("split", "samples", "images", *[b for b, _ in I.SIZE_BUCKETS], "words (mean/min/max)"):
        table.add_column(column)
    for split, st in per_split.items():
        words = st["expression_words"]
        table.add_row(split, str(st["num_samples"]), str(st["num_images"]),
                      *[str(st["object_size"][b]) for b, _ in I.SIZE_BUCKETS],
                      f"{words['mean']}/{words['min']}/{words['max']}")
    console.print(table)
    categories = Table(title="samples per category")
    categories.add_column("category")
    for split in per_split:
        categories.add_column(split)
    for category in sorted({c for st in per_split.values() for c in st["categories"]}):
        categories.add_row(category, *[str(per_split[s]["categories"].get(category, 0)) for s in per_split])
    console.print(categories)
    folder = Path(out)
    figure = I.save_stats_figure(name, per_split, folder / f"{name}-stats.png")
    atomic_write_json(folder / f"{name}-stats.json", per_split)
    console.print(f"Wrote {figure} and {folder / f'{name}-stats.json'}")
    return 0


def text(name: str, data_overrides: list[str], split: str, method: str, out: str, console: Console) -> int:
    """Write what method ``method``'s text side sees for every sample of ``split`` (see
    :mod:`rrsis_bench.data.text_export`), with the data config `rrsis-bench run` would compose."""
    from rrsis_bench.config import compose_run_config
    from rrsis_bench.data.text_export import expression_rows, method_tokenizer, write_expression_csv
    from rrsis_bench.errors import UserError

    config = compose_run_config([f"method={method}", f"data={name}", *data_overrides])
    if config["data"].get("root") == "???":
        raise UserError(f"data={name} needs its folder: pass data.root=DIR (see `rrsis-bench data --help`).")
    # method_tokenizer builds the method without its visual weights; the text encoder's name decides
    # the tokenizer, so it stays as configured.
    rows = expression_rows(config["data"], split, method_tokenizer(config["method"]))
    path = write_expression_csv(rows, out or f"{name}-{split}-text.csv")
    with_object = sum(1 for row in rows if row["object_phrase"])
    with_position = sum(1 for row in rows if row["position_phrases"])
    console.print(f"{len(rows)} expressions of {name}/{split}: {with_object} with a ground-object phrase, "
                  f"{with_position} with a spatial phrase (object mask rule: "
                  f"{config['data'].get('object_mask', 'default')}).", highlight=False)
    console.print(f"Wrote {path}", highlight=False)
    return 0
