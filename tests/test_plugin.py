"""The example third-party plugin (examples/plugin) shows up in `list` and trains with `run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--target",
            str(target),
            str(REPO / "examples" / "plugin"),
        ],
        check=True,
    )
    return target


def cli(args, site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "rrsis_bench", *args], env=env, cwd=cwd, capture_output=True, text=True
    )


def test_plugin_is_listed_with_its_distribution(plugin_site, tmp_path):
    result = cli(["list", "methods", "--json"], plugin_site, tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["example_film"]["source_dist"] == "rrsis-bench-example-plugin"
    assert rows["example_film"]["status"] == "ok"
    assert "baseline" in rows


def test_plugin_trains_with_run(plugin_site, tmp_path, data_overrides):
    run_dir = tmp_path / "run"
    result = cli(
        # the whole (small) test split is scored, so the record is complete rather than partial
        ["run", "method=example_film", "trainer=debug", "trainer.max_eval_samples=null", *data_overrides,
         f"hydra.run.dir={run_dir}"],
        plugin_site,
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "complete"
    assert record["method"]["name"] == "example_film"
    assert record["method"]["source_dist"] == "rrsis-bench-example-plugin"
    assert record["config"]["method"]["width"] == 16  # the plugin's own Hydra defaults were used
    assert set(record["metrics"]) >= {"oIoU", "mIoU", "Pr@0.5", "Pr@0.9"}


@pytest.mark.parametrize("order", ["flag_last", "flag_first"])
def test_print_config_of_a_plugin_method(plugin_site, tmp_path, order):
    """`run method=X --cfg job` with a plugin config package installed: the CLI's own search-path
    override must not end up after Hydra's flag (argparse refused it)."""
    args = ["method=example_film", "--cfg", "job"] if order == "flag_last" else ["--cfg", "job", "method=example_film"]
    result = cli(["run", *args], plugin_site, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "name: example_film" in result.stdout and "width: 16" in result.stdout  # the plugin's own yaml


def test_run_help_lists_plugin_methods(plugin_site, tmp_path):
    result = cli(["run", "--help"], plugin_site, tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("example_film"))
    assert "rrsis-bench-example-plugin" in line
    assert any(line.strip().startswith("fianet_lite") for line in result.stdout.splitlines())


def test_plugin_passes_the_conformance_check(plugin_site, tmp_path):
    """rrsis_bench.testing.check_method runs every check on the installed plugin (its encode_text reads
    inputs_embeds), and the plugin's own one-line test (what the plugin README tells authors to write)
    passes against the installed plugin."""
    env = {**os.environ, "PYTHONPATH": str(plugin_site)}
    report = subprocess.run(
        [sys.executable, "-c", "import json; from rrsis_bench.testing import check_method; "
         "r = check_method('example_film'); print(json.dumps([r.passed, r.skipped, r.notes]))"],
        env=env, cwd=tmp_path, capture_output=True, text=True,
    )
    assert report.returncode == 0, report.stdout + report.stderr
    passed, skipped, notes = json.loads(report.stdout.splitlines()[-1])
    assert passed == ["builds", "forward", "loss", "gradients", "param_groups", "text_interface", "state_dict",
                      "lrb_wrel"]
    assert skipped == [] and notes == []
    own_test = REPO / "examples" / "plugin" / "tests" / "test_conformance.py"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(own_test)],
                            env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
