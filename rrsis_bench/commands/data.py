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


def weak(
    name: str,
    data_overrides: list[str],
    accurate_ratio: float | None,
    scheme: str | None,
    seed: int | None,
    split_file: str | None,
    out: str,
    console: Console,
) -> int:
    """Write which training samples of ``name`` keep their expression and what the weak ones read.

    The data config is the one `rrsis-bench run data=NAME DATA_OVERRIDES` would compose; each
    argument left ``None`` takes its ``data.weak.*`` value from it. The JSON (``out``, default
    ``NAME-weak.json``) holds the weak manifest (scheme, ratio, seed, counts per class, split file and
    its sha256 when given) plus ``accurate_ids``, ``weak_ids`` and ``weak_text`` (sample id → the
    text the weak sample trains on).
    """
    from rrsis_bench.config import compose_run_config
    from rrsis_bench.data.manifest import sample_metadata
    from rrsis_bench.data.weak import build_weak_train_set
    from rrsis_bench.errors import UserError
    from rrsis_bench.io import atomic_write_json
    from rrsis_bench.tasks import load_split

    config = compose_run_config([f"data={name}", *data_overrides])
    data_cfg = config["data"]
    if data_cfg.get("root") == "???":
        raise UserError(f"data={name} needs its folder: pass data.root=DIR (see `rrsis-bench data --help`).")
    settings = data_cfg.get("weak") or {}
    ratio = float(settings.get("accurate_ratio", 1.0) if accurate_ratio is None else accurate_ratio)
    scheme = str(settings.get("scheme", "nested") if scheme is None else scheme)
    seed = int(settings.get("seed", 0) if seed is None else seed)
    split_file = settings.get("split_file") if split_file is None else split_file
    dataset, manifest = build_weak_train_set(
        load_split(data_cfg, "train"), accurate_ratio=ratio, seed=seed, scheme=scheme, split_file=split_file or None,
    )
    weak_text = {}
    for index in range(len(dataset)):
        meta = sample_metadata(dataset, index)
        if meta["weak"]:
            weak_text[str(meta["sample_id"])] = meta["text"]
    report = {"data": name, **manifest, "weak_ids": sorted(weak_text), "weak_text": dict(sorted(weak_text.items()))}
    path = atomic_write_json(out or f"{name}-weak.json", report)

    counts = manifest["counts"]
    view = f" ({manifest['split_file_view']} view)" if "split_file_view" in manifest else ""
    table = Table(title=f"rrsis-bench data weak: {name}, scheme {manifest['scheme']}{view}, "
                        f"accurate share {manifest['ratio']:.4f}")
    for column in ("class", "samples", "accurate", "weak"):
        table.add_column(column)
    for class_name, row in counts.get("per_class", {}).items():
        table.add_row(class_name, str(row["accurate"] + row["weak"]), str(row["accurate"]), str(row["weak"]))
    table.add_row("total", str(counts["total"]), str(counts["accurate"]), str(counts["weak"]))
    console.print(table)
    console.print(f"Wrote {path}", highlight=False)
    return 0
