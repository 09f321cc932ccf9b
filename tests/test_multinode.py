"""Multi-node DDP through torchrun's c10d rendezvous, as 2 "nodes" on this machine: two torchrun agents
of one process each, each in its own working folder, both given the same run folder. One record (rank
0's); the run is bit-identical to the same run as `--standalone --nproc-per-node 2` (metrics, history,
per-sample rows, checkpoint weights), and its test metrics equal a single-process `eval`.

One method, not every `test_*` one: a 2-node run, its standalone twin and the evaluation take 65-75 s
on 2 busy cores, so four methods would take about 4.5 minutes; test_ddp.py already trains every test_*
method under DDP, and c10d changes only how the processes meet, not what they compute. test_fianet
because at this budget (2 steps, lr 1e-5, near-initial weights) it predicts non-empty masks, so the
metrics compared are not all zero (test_baseline's are)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from test_ddp import LAUNCH_VARS, odd_split

from rrsis_bench.cli import main

METHOD = "test_fianet"
AGENT_TIMEOUT_S = 300  # a hung rendezvous or exit barrier fails the test after this, with the agents' output
JOIN_TIMEOUT_S = 60  # an agent whose peer never shows up gives up on its own after this
# Variables a launcher (torchrun, srun, a torchrun-launched pytest) may have left in this environment:
# a worker that inherits them would join the wrong group.
STRIPPED = (*LAUNCH_VARS, "MASTER_PORT", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
            "ROLE_WORLD_SIZE", "ROLE_NAME")


@dataclass
class Agent:
    """One torchrun agent: its launcher arguments, working folder, temporary folder and log."""

    launcher: list[str]
    folder: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def cwd(self) -> Path:
        return self.folder / "cwd"

    @property
    def log(self) -> Path:
        return self.folder / "agent.log"

    def start(self, args: list[str]) -> None:
        self.cwd.mkdir(parents=True)
        (self.folder / "tmp").mkdir()
        env = {name: value for name, value in os.environ.items()
               if name not in STRIPPED and not name.startswith("TORCHELASTIC_")}
        # Each "node" has its own temporary folder too (torchelastic's logs, rank 1's throw-away Hydra folder).
        # LOGLEVEL=INFO: the agents log the rendezvous, which is what a hang needs to be diagnosed.
        env.update(OMP_NUM_THREADS="1", TMPDIR=str(self.folder / "tmp"), LOGLEVEL="INFO")
        command = [sys.executable, "-m", "torch.distributed.run", *self.launcher, "-m", "rrsis_bench", *args]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.folder.name} (exit {self.process.returncode if self.process else None}) ---\n{text[-4000:]}"

    def stop(self) -> None:
        """SIGTERM (the agent forwards it to its workers), then SIGKILL for the agent and its workers."""
        if self.process is None or self.process.poll() is not None:
            return
        workers = children(self.process.pid)
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (torchrun starts its workers in their own sessions, so a
    signal to the agent's process group would miss them)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_agents(agents: list[Agent], args: list[str], timeout: float = AGENT_TIMEOUT_S) -> None:
    """Start every agent and wait for all of them. On a timeout or a failed agent, stop the others
    (a peer would wait for the failed node until its own timeouts) and fail with everyone's output."""
    for agent in agents:
        agent.start(args)
    deadline, timed_out = time.monotonic() + timeout, False
    try:
        while any(agent.process.poll() is None for agent in agents):
            if any(agent.process.returncode not in (None, 0) for agent in agents):
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.2)
    finally:
        for agent in agents:
            agent.stop()
    outputs = "\n".join(agent.output() for agent in agents)
    assert not timed_out, f"torchrun agents still running after {timeout} s, stopped:\n{outputs}"
    assert all(agent.process.returncode == 0 for agent in agents), outputs


def two_node_agents(work: Path) -> list[Agent]:
    """Two agents of a 2-node job meeting at a c10d store on this machine (both could host it: the
    first to bind the port does, the other joins as a client)."""
    launcher = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", f"rrsis-{uuid.uuid4().hex}",
                "--rdzv-conf", f"join_timeout={JOIN_TIMEOUT_S}"]
    return [Agent(launcher, work / f"node{i}") for i in range(2)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_overrides, synthetic_root) -> dict:
    """The same training run as 2 nodes of 1 process (c10d) and as 1 node of 2 processes (standalone)."""
    split = odd_split(synthetic_root)  # the sampler pads one duplicate on 2 ranks: the metrics must drop it
    work = tmp_path_factory.mktemp("multinode")
    args = ["run", f"method={METHOD}", "trainer=debug", "trainer.batch_size=2", "trainer.epochs=1",
            "trainer.lr=1e-5", "trainer.max_eval_samples=null", "trainer.channels_last=false",
            "trainer.progress=false", "data.image_size=64", f"eval_split={split}", *data_overrides]
    nodes = two_node_agents(work)
    run_agents(nodes, [*args, f"hydra.run.dir={work / 'run'}"])
    standalone = Agent(["--standalone", "--nproc-per-node", "2"], work / "standalone")
    run_agents([standalone], [*args, f"hydra.run.dir={work / 'standalone-run'}"])
    return {"split": split, "nodes": nodes, "run": work / "run", "standalone": work / "standalone-run"}


def record(run: Path) -> dict:
    return json.loads((run / "record.json").read_text())


def per_sample(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "per_sample.csv").sort_values("sample_id").reset_index(drop=True)


@pytest.mark.dist
def test_two_nodes_write_one_record_from_rank_0(runs):
    two = record(runs["run"])
    assert two["status"] == "complete" and two["method"]["name"] == METHOD
    assert two["hardware"]["world_size"] == 2
    assert two["timing"]["steps"] >= 2  # DDP fails on the second step when a parameter gets no gradient
    assert (runs["run"] / "checkpoints" / "best" / "model.safetensors").is_file()
    for node in runs["nodes"]:
        assert list(node.cwd.iterdir()) == []  # no outputs/ (or anything else) in either node's folder
        # neither node wrote run files anywhere else (rank 1's throw-away Hydra folder stays empty)
        for pattern in ("record.json", "per_sample.csv", "*.safetensors", ".hydra"):
            assert list(node.folder.rglob(pattern)) == [], (node.folder, pattern)


@pytest.mark.dist
def test_two_nodes_are_bit_identical_to_one_node_of_two_processes(runs):
    two, standalone = record(runs["run"]), record(runs["standalone"])
    assert standalone["hardware"]["world_size"] == 2
    assert two["config_hash"] == standalone["config_hash"]
    assert two["metrics"] == standalone["metrics"]
    assert two["history"] == standalone["history"]  # train loss and validation metrics per epoch
    pd.testing.assert_frame_equal(per_sample(runs["run"]), per_sample(runs["standalone"]))
    for checkpoint in ("best", "last"):
        ours = load_file(runs["run"] / "checkpoints" / checkpoint / "model.safetensors")
        theirs = load_file(runs["standalone"] / "checkpoints" / checkpoint / "model.safetensors")
        assert ours and ours.keys() == theirs.keys()
        different = [name for name in ours if not torch.equal(ours[name], theirs[name])]
        assert different == [], f"{checkpoint}: {different[:5]}"


@pytest.mark.dist
def test_two_node_metrics_equal_single_process_eval(runs, tmp_path, monkeypatch):
    for name in STRIPPED:  # one process: launcher variables left in this environment would make it wait for peers
        monkeypatch.delenv(name, raising=False)
    single = tmp_path / "single"
    assert main(["eval", f"checkpoint={runs['run']}", f"split={runs['split']}", f"hydra.run.dir={single}"]) == 0
    one, two = record(single), record(runs["run"])
    assert (per_sample(runs["run"])["intersection"] > 0).any()  # not a comparison of empty predictions
    assert two["metrics"]["num_samples"] == one["metrics"]["num_samples"]
    assert two["metrics"] == one["metrics"]
    pd.testing.assert_frame_equal(per_sample(single), per_sample(runs["run"]))
