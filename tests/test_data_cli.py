"""`rrsis-bench data verify|stats` on an RRSIS-D-layout folder, and the `data text` export."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from data.rrsisd_fixture import FIXTURE_WARNINGS, write_rrsisd_fixture
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from rrsis_bench.datasets.rrsisd import RRSISDDataset

from rrsis_bench.cli import main
from rrsis_bench.data.inspect import verify_split
from rrsis_bench.data.manifest import content_digests, split_manifest
from rrsis_bench.data.pipeline import TransformedDataset, build_encoder, collate
from rrsis_bench.data.text_export import COLUMNS, export_expression_text, method_tokenizer
from rrsis_bench.method import MethodSpec
from rrsis_bench.nn.text import build_tokenizer
from rrsis_bench.tasks import load_split, make_transform, prepare_train_split

pytestmark = FIXTURE_WARNINGS


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
    printed = capsys.readouterr().out
    assert "skipped because their files are missing" in printed
    assert f"missingfile:{first}" in "".join(printed.split())  # named, not only counted (rich wraps lines)


def test_verify_lists_size_mismatches_and_hashes_content(tmp_path):
    write_rrsisd_fixture(tmp_path)
    report = verify_split("rrsisd", str(tmp_path), "test")
    mismatches = [p for p in report.problems if p.startswith("size mismatch:")]
    assert len(mismatches) == 1 and "fixture_002.jpg is 80x80 but its annotation says 40x40" in mismatches[0]
    dataset = RRSISDDataset(tmp_path, "test")
    assert report.manifest["sha256"] == split_manifest(dataset)["sha256"]  # the hash records cite
    assert report.manifest["content_sha256"] == split_manifest(dataset, content_digests(dataset))["content_sha256"]
    # Same ids, texts and classes, other image bytes: only the content hash changes.
    image = tmp_path / "images" / "rrsisd" / "JPEGImages" / "fixture_003.jpg"
    image.write_bytes(image.read_bytes() + b"\0")
    changed = verify_split("rrsisd", str(tmp_path), "test")
    assert changed.manifest["sha256"] == report.manifest["sha256"]
    assert changed.manifest["content_sha256"] != report.manifest["content_sha256"]


def test_verify_names_a_truncated_image(tmp_path):
    files = write_rrsisd_fixture(tmp_path)["image_files"]
    files[3].write_bytes(files[3].read_bytes()[:200])
    report = verify_split("rrsisd", str(tmp_path), "test")
    assert any(str(files[3]) in p and "6_107" in p for p in report.problems)
    assert "content_sha256" not in report.manifest  # not every sample could be hashed


def _composed_data(*overrides: str) -> dict:
    with initialize_config_module(config_module="rrsis_bench.conf", version_base="1.3"):
        cfg = compose(config_name="run", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def _training_batch(data_cfg: dict, split: str, tokenizer: str) -> dict:
    """The batch the training pipeline builds for ``split`` (tasks.run_task's steps, one batch)."""
    samples = load_split(data_cfg, split)
    if split == "train":
        samples, _ = prepare_train_split(samples, data_cfg, seed=0)
    encode = build_encoder(build_tokenizer(tokenizer), data_cfg, samples)
    model = SimpleNamespace(spec=MethodSpec(tokenizer=tokenizer, inputs=("object_mask", "position_mask")))
    dataset = TransformedDataset(samples, make_transform(model, {**data_cfg, "image_size": 16}, encode, with_gt=False))
    return collate([dataset[i] for i in range(len(dataset))])


@pytest.mark.parametrize(
    "overrides, split",
    [
        (["experiment=fianet_rrsisd"], "test"),  # official object mask, overlap=official
        (["data=rrsisd"], "val"),  # clean object mask
        (["data=rrsisd", "data.weak.accurate_ratio=0.5"], "train"),  # weak expressions
    ],
)
def test_text_export_is_what_training_feeds(tmp_path, overrides, split):
    expected = write_rrsisd_fixture(tmp_path / "data")
    config = _composed_data(*overrides, f"data.root={tmp_path / 'data'}")
    tokenizer = "minilm"  # fianet's BERT is not on this machine; the tokenizer does not change the masks' meaning
    out = export_expression_text(config["data"], split, tmp_path / "text.csv", tokenizer)
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    batch = _training_batch(config["data"], split, tokenizer)
    assert [row["sample_id"] for row in rows] == batch["sample_id"]
    for k, row in enumerate(rows):
        length = int(batch["attention_mask"][k].sum())
        for column, key in (("object_tokens", "object_mask"), ("position_tokens", "position_mask")):
            assert torch.equal(torch.tensor([int(c) for c in row[column]]), batch[key][k, :length])
            assert not batch[key][k, length:].any()
        assert row["text"] == batch["text"][k]
        assert len(row["tokens"].split()) == length and row["tokens"].split()[0] == "[CLS]"
        facts = expected["samples"][row["sample_id"]]
        if not batch["weak"][k]:  # every expression naming a class gets its phrase
            phrases = facts["class_phrases"] if config["data"]["object_mask"] == "official" else (
                () if facts["object_phrase"] is None else (facts["object_phrase"],))
            assert row["object_phrase"] == "|".join(phrases)
            assert ("1" in row["object_tokens"]) == bool(phrases)


def test_text_export_tokenizer_is_the_methods():
    assert method_tokenizer(_composed_data()["method"]) == "minilm"  # the embedded default, baseline
    # The backbone's weights are not needed to learn the tokenizer (pretrained=true would fail offline here).
    swin_lite = {**_composed_data("method=fianet_lite")["method"], "backbone": "swin_tiny_patch4_window7_224",
                 "out_indices": None, "pretrained": True, "text_encoder": "minilm"}
    assert method_tokenizer(swin_lite) == "minilm"


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
