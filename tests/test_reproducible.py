"""The same run in two fresh processes gives bit-identical numbers (on the same threads and CPU kernels).

What decides bit-equality on one machine, measured: the torch thread count and the CPU kernels
(ATen's CPU capability, e.g. AVX2 vs default) change the numbers already after a few steps; the
Python hash seed and the process do not. Records store all of it (environment.numerics,
hardware.cpu_isa), so two records that differ can be told apart by their fields.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
from safetensors.torch import load_file

RUN = ["run", "method=test_fianet", "trainer=debug", "trainer.epochs=1", "trainer.max_eval_samples=null",
       "data.image_size=64", "trainer.progress=false"]


def test_two_fresh_processes_train_the_same_run_bit_identically(tmp_path, data_overrides):
    processes = []
    for hash_seed in ("0", "1"):  # a different Python hash seed too: set/dict order must not matter
        run_dir = tmp_path / f"hash{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        command = [sys.executable, "-m", "rrsis_bench", *RUN, *data_overrides, f"hydra.run.dir={run_dir}"]
        processes.append((run_dir, subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                                    stderr=subprocess.STDOUT, text=True)))
    runs = []
    for run_dir, process in processes:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output
        record = json.loads((run_dir / "record.json").read_text())
        assert record["status"] == "complete"
        runs.append((run_dir, record))

    (dir_a, a), (dir_b, b) = runs
    assert a["run_id"] != b["run_id"]
    assert a["metrics"] == b["metrics"]
    assert a["history"] == b["history"] and a["selection"] == b["selection"]
    assert (dir_a / "per_sample.csv").read_bytes() == (dir_b / "per_sample.csv").read_bytes()
    assert pd.read_csv(dir_a / "train_log.csv")["loss"].tolist() == pd.read_csv(dir_b / "train_log.csv")["loss"].tolist()
    weights_a = load_file(dir_a / "checkpoints" / "best" / "model.safetensors")
    weights_b = load_file(dir_b / "checkpoints" / "best" / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(weights_a[key].equal(weights_b[key]) for key in weights_a)
    # what decides bit-equality is in both records, and equal here
    numerics_a = {k: v for k, v in a["environment"]["numerics"].items() if k != "env"}
    numerics_b = {k: v for k, v in b["environment"]["numerics"].items() if k != "env"}
    assert numerics_a == numerics_b and numerics_a["torch_threads"] >= 1 and numerics_a["cpu_capability"]
    assert a["environment"]["numerics"]["env"]["PYTHONHASHSEED"] == "0"
    assert numerics_a["deterministic_algorithms"] is True  # trainer.deterministic (the default) was in force
    assert a["hardware"]["cpu_isa"] == b["hardware"]["cpu_isa"]
