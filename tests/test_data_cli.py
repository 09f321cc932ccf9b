"""`rrsis-bench data verify|stats` on an RRSIS-D-layout folder."""

from __future__ import annotations

import hashlib
import json
import shutil

from rrsis_bench.datasets.rrsisd import RRSISDDataset

from rrsis_bench.cli import main


def test_verify_lists_problems_and_writes_manifests(synthetic_root, tmp_path, capsys):
    out = tmp_path / "manifests"
    code = main(["data", "verify", "data=rrsisd", f"data.root={synthetic_root}", f"out={out}"])
    printed = capsys.readouterr().out
    # The small synthetic set is readable but is not the published RRSIS-D: sizes differ.
    assert code == 1
    test_split = RRSISDDataset(synthetic_root, "test")
    assert f"{len(test_split)} samples, but the published split has 3481" in printed
    manifest = json.loads((out / "rrsisd-test.manifest.json").read_text())
    assert manifest["num_samples"] == len(test_split)
    assert manifest["sample_ids"] == sorted(test_split.sample_id(i) for i in range(len(test_split)))
    rows = sorted((test_split.sample_id(i), test_split.metadata(i)["text"], test_split.metadata(i)["class_name"])
                  for i in range(len(test_split)))
    assert manifest["sha256"] == hashlib.sha256("\n".join("\t".join(r) for r in rows).encode()).hexdigest()


def test_verify_reports_a_missing_image(synthetic_root, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_root, copy)
    first = sorted((copy / "images" / "rrsisd" / "JPEGImages").iterdir())[0]
    first.unlink()
    code = main(["data", "verify", "data=rrsisd", f"data.root={copy}", f"out={tmp_path / 'm'}"])
    assert code == 1
    assert "skipped because their files are missing" in capsys.readouterr().out


def test_stats_prints_tables_and_saves_a_figure(synthetic_root, tmp_path, capsys):
    out = tmp_path / "stats"
    assert main(["data", "stats", "data=rrsisd", f"data.root={synthetic_root}", f"out={out}"]) == 0
    stats = json.loads((out / "rrsisd-stats.json").read_text())
    train = RRSISDDataset(synthetic_root, "train")
    assert stats["train"]["num_samples"] == len(train)
    assert sum(stats["train"]["categories"].values()) == len(train)
    assert sum(stats["train"]["object_size"].values()) == len(train)
    assert (out / "rrsisd-stats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "samples per category" in capsys.readouterr().out


def test_data_help_and_bad_action(capsys):
    assert main(["data", "--help"]) == 0
    assert "rrsis-bench data verify|stats" in capsys.readouterr().out
    assert main(["data", "frob"]) == 2
