"""methods/ and datasets/ are installed as rrsis_bench.methods / rrsis_bench.datasets, in editable
and wheel installs alike."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import rrsis_bench.datasets
import rrsis_bench.methods

REPO = Path(__file__).resolve().parents[1]


def test_namespace_mapping_in_this_install(tmp_path):
    """Outside the source tree, the installed package exposes the mapped namespaces and no
    top-level `methods`/`datasets` module (which would shadow Hugging Face's `datasets`)."""
    code = (
        "import importlib.util, rrsis_bench.methods.baseline, rrsis_bench.datasets.rrsisd;"
        "print(importlib.util.find_spec('methods') is None, importlib.util.find_spec('rrsis_bench.datasets.synthetic') is not None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["True", "True"]
    assert rrsis_bench.methods.__name__ == "rrsis_bench.methods"
    assert rrsis_bench.datasets.__name__ == "rrsis_bench.datasets"


def test_every_package_folder_is_declared():
    """A new method folder that pyproject does not list would be missing from wheels."""
    from setuptools.config.pyprojecttoml import read_configuration

    config = read_configuration(REPO / "pyproject.toml")
    declared = set(config["tool"]["setuptools"]["packages"])
    mapping = config["tool"]["setuptools"]["package-dir"]
    found = set()
    for package, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((package, *rel)))
    assert found == declared


@pytest.mark.slow
def test_wheel_install_imports_methods_and_datasets(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(REPO),
        ],
        check=True,
    )
    wheel = next(wheels.glob("rrsis_bench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "rrsis_bench/methods/baseline/model.py",
        "rrsis_bench/datasets/rrsisd.py",
        "rrsis_bench/conf/run.yaml",
        "rrsis_bench/conf/method/baseline.yaml",
        "rrsis_bench/conf/recipe/fianet_lite_synthetic.yaml",
        "rrsis_bench/conf/smoke/debug.yaml",
        "rrsis_bench/results/reported.csv",
    ):
        assert expected in names
    assert not any(n.startswith(("methods/", "datasets/")) for n in names)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
    )
    code = "\n".join([
        "import rrsis_bench, rrsis_bench.methods.baseline, rrsis_bench.datasets.synthetic",
        "from hydra import compose, initialize_config_module",
        "print(rrsis_bench.methods.baseline.__file__)",
        "with initialize_config_module(config_module='rrsis_bench.conf', version_base='1.3'):",
        "    c = compose(config_name='run')",
        "print(c.method.name, c.trainer.epochs)",
    ])
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    first, second = out.strip().splitlines()
    assert first.startswith(str(target))
    assert second == "baseline 12"  # the embedded default and its recipe ship in the wheel
