"""What FIANet's two extra text branches receive on a dataset (docs/claims.md).

    python tests/benchmarks/text_branches.py [key=value ...] [--json OUT]

Composes `rrsis-bench run KEY=VALUE ...` (default: experiment=synthetic_s method=fianet_lite) and
counts, per split, the word pieces under the ground-object mask and under the spatial-position mask
of every expression, as `rrsis-bench data text` shows them. An object mask of exactly one word piece
("vehicle", "tank") makes every pixel attend to the same word, so OPAB's object attention returns the
same vector everywhere and its instance norm returns 0: the branch adds nothing for that sample
(docs/methods/fianet-lavt.md, "Facts of the official design"). A position mask equal to the whole
expression means no spatial phrase was found. ``--json`` writes the counts (docs/figures/text-branches.json).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from rrsis_bench.config import compose_run_config
from rrsis_bench.data.text_export import expression_rows, method_tokenizer
from rrsis_bench.io import atomic_write_json

DEFAULT = ["experiment=synthetic_s", "method=fianet_lite"]


def counts(overrides: list[str]) -> dict:
    cfg = compose_run_config(overrides)
    tokenizer = method_tokenizer(cfg["method"])
    out = {"overrides": overrides, "data": cfg["data"]["name"], "object_mask": cfg["data"]["object_mask"],
           "tokenizer": tokenizer, "splits": {}}
    for split in ("train", "val", "test"):
        rows = expression_rows(cfg["data"], split, tokenizer)
        objects = Counter(row["object_tokens"].count("1") for row in rows)
        whole = sum(1 for row in rows if set(row["position_tokens"]) == {"1"})
        out["splits"][split] = {
            "samples": len(rows),
            "object_pieces": {str(k): v for k, v in sorted(objects.items())},
            "single_piece_object": objects.get(1, 0),
            "no_object_word": objects.get(0, 0),
            "position_is_whole_expression": whole,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", default=DEFAULT)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = counts(list(args.overrides))
    print(json.dumps(result, indent=1))
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
