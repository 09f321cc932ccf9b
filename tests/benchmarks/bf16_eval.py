"""Test metrics of one trained checkpoint in fp32 and under bf16 autocast, and how many samples moved.

    python tests/benchmarks/bf16_eval.py RUN_DIR OUT.json [split]

Scores RUN_DIR's best checkpoint twice with `rrsis-bench eval checkpoint=RUN_DIR split=SPLIT`
(default test), once with trainer.amp=false and once with trainer.amp=true, and writes OUT.json:
each pass's metrics, the number of samples whose IoU changed, and the largest change. The figures
docs/performance.md quotes (docs/figures/bf16-eval.json) come from the embedded default's run.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

from rrsis_bench.cli import main as cli


def score(run: Path, split: str, amp: bool, out: Path) -> tuple[dict, pd.DataFrame]:
    code = cli(["eval", f"checkpoint={run}", f"split={split}", f"trainer.amp={str(amp).lower()}",
                "trainer.progress=false", f"hydra.run.dir={out}"])
    if code != 0:
        raise SystemExit(f"rrsis-bench eval failed for trainer.amp={amp} (exit {code})")
    return json.loads((out / "record.json").read_text())["metrics"], pd.read_csv(out / "per_sample.csv")


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    run, target = Path(argv[0]), Path(argv[1])
    split = argv[2] if len(argv) == 3 else "test"
    with tempfile.TemporaryDirectory() as scratch:
        fp32, rows32 = score(run, split, False, Path(scratch) / "fp32")
        bf16, rows16 = score(run, split, True, Path(scratch) / "bf16")
    joined = rows32.merge(rows16, on="sample_id", suffixes=("_fp32", "_bf16"), validate="one_to_one")
    change = (joined["iou_bf16"] - joined["iou_fp32"]).abs()
    result = {"checkpoint": run.name, "split": split, "fp32": {"metrics": fp32}, "bf16": {"metrics": bf16},
              "samples": len(joined), "changed_samples": int((change > 0).sum()),
              "max_abs_iou_change": float(change.max())}
    target.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
