"""DDP through torchrun with 2 CPU processes on gloo: metrics equal a single-process evaluation,
and a distributed training run writes one record from rank 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import SMALL_SYNTHETIC
from rrsis_bench.datasets.synthetic import SyntheticDataset

from rrsis_bench.cli import main

pytestmark = pytest.mark.dist


def torchrun(args, cwd) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "rrsis_bench", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, data_overrides):
    work = tmp_path_factory.mktemp("ddp")
    result = torchrun(["run", "method=test_baseline", "trainer=debug", "trainer.batch_size=2", *data_overrides,
                       f"hydra.run.dir={work / 'run'}"], work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work


def test_distributed_run_writes_one_record(ddp_run):
    record = json.loads((ddp_run / "run" / "record.json").read_text())
    assert record["status"] == "complete"
    assert record["hardware"]["world_size"] == 2
    assert not (ddp_run / "outputs").exists()  # rank 1 kept no run folder of its own


def test_distributed_eval_equals_single_process(ddp_run, synthetic_root, tmp_path):
    split = next(s for s in ("val", "test", "train")
                 if len(SyntheticDataset(root=synthetic_root, split=s, num_images=SMALL_SYNTHETIC)) % 2 == 1)
    single = tmp_path / "single"
    assert main(["eval", f"checkpoint={ddp_run / 'run'}", f"split={split}", f"hydra.run.dir={single}"]) == 0
    result = torchrun(["eval", f"checkpoint={ddp_run / 'run'}", f"split={split}", "trainer.eval_batch_size=3",
                       f"hydra.run.dir={tmp_path / 'ddp'}"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    one = json.loads((single / "record.json").read_text())
    two = json.loads((tmp_path / "ddp" / "record.json").read_text())
    assert two["hardware"]["world_size"] == 2
    # An odd number of samples over 2 ranks: the sampler pads one duplicate, which must be dropped.
    assert two["metrics"]["num_samples"] == one["metrics"]["num_samples"]
    assert two["metrics"] == one["metrics"]
    rows_one = pd.read_csv(single / "per_sample.csv").sort_values("sample_id").reset_index(drop=True)
    rows_two = pd.read_csv(tmp_path / "ddp" / "per_sample.csv").sort_values("sample_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(rows_one, rows_two)
