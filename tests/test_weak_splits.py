"""Weak splits on a tree of the released RRSIS-D form: LRB-WREL's exact counts, the released split
pickles (``data.weak.split_file``), their error cases, and `rrsis-bench data weak`."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections import Counter

import pytest
import torch
from data.rrsisd_fixture import FIXTURE_WARNINGS, REFS, write_rrsisd_fixture
from data.rrsisd_release_fixture import (
    ACCURATE_RATIO,
    RELEASED_WEAK,
    SPLIT_SIZES,
    TRAIN_COUNTS,
    VIEWS,
    rrsisd_release,  # noqa: F401  (a pytest fixture)
    split_file,
)
from rich.console import Console
from rrsis_bench.datasets.rrsisd import RRSISDDataset

from rrsis_bench.commands.data import weak as data_weak
from rrsis_bench.data.lrbwrel_split import SplitFileError, read_split_file
from rrsis_bench.data.weak import build_weak_train_set, lrbwrel_weak_ids
from rrsis_bench.tasks import prepare_train_split

pytestmark = FIXTURE_WARNINGS


@pytest.fixture(scope="module")
def release_train(rrsisd_release) -> RRSISDDataset:  # noqa: F811
    return RRSISDDataset(rrsisd_release["root"], "train")


def _class_counts(dataset, ids) -> Counter:
    class_of = {dataset.sample_id(i): dataset.metadata(i)["class_name"] for i in range(len(dataset))}
    return Counter(class_of[i] for i in ids)


# --- 1. scheme=lrbwrel: the released counts -------------------------------------------------------


@pytest.mark.parametrize("percent", sorted(RELEASED_WEAK))
def test_constructed_class_counts_give_the_released_totals(percent):
    metadata = [{"sample_id": f"{name}-{i}", "class_name": name} for name, n in TRAIN_COUNTS.items() for i in range(n)]
    assert len(metadata) == SPLIT_SIZES["train"] == 12181
    ratio_masked = round(1.0 - ACCURATE_RATIO[percent], 12)
    weak = lrbwrel_weak_ids(metadata, ratio_masked, seed=42)
    assert len(weak) == RELEASED_WEAK[percent]
    # The global budget never binds: every class gets its own max(1, int(r * n_c)).
    assert len(weak) < int(ratio_masked * 12181)
    per_class = Counter(i.rsplit("-", 1)[0] for i in weak)
    assert per_class == {name: max(1, int(ratio_masked * n)) for name, n in TRAIN_COUNTS.items()}


def test_release_tree_has_the_released_split_sizes(rrsisd_release, release_train):  # noqa: F811
    sizes = {split: len(RRSISDDataset(rrsisd_release["root"], split)) for split in ("val", "test")}
    assert {"train": len(release_train), **sizes} == SPLIT_SIZES
    assert sum(SPLIT_SIZES.values()) == 17402
    assert _class_counts(release_train, [release_train.sample_id(i) for i in range(len(release_train))]) == TRAIN_COUNTS


@pytest.mark.parametrize("percent", sorted(RELEASED_WEAK))
def test_lrbwrel_scheme_gives_the_released_counts_through_the_reader(release_train, percent):
    dataset, manifest = build_weak_train_set(
        release_train, accurate_ratio=ACCURATE_RATIO[percent], scheme="lrbwrel", seed=42
    )
    weak = RELEASED_WEAK[percent]
    assert manifest["counts"]["weak"] == weak and manifest["counts"]["accurate"] == 12181 - weak
    assert sum(dataset.metadata(i)["weak"] for i in range(len(dataset))) == weak


# --- 2./3. split_file: the file's identities, any view ---------------------------------------------


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("percent", sorted(RELEASED_WEAK))
def test_split_file_reproduces_the_files_identities(rrsisd_release, release_train, percent, view):  # noqa: F811
    path = split_file(rrsisd_release["root"], percent, view)
    dataset, manifest = build_weak_train_set(release_train, accurate_ratio=1.0, split_file=str(path))
    expected_weak = rrsisd_release["weak_sample_ids"][percent]
    assert len(expected_weak) == RELEASED_WEAK[percent]
    items = [dataset.metadata(i) for i in range(len(dataset))]
    weak_ids = sorted(item["sample_id"] for item in items if item["weak"])
    assert weak_ids == expected_weak
    assert manifest["accurate_ids"] == sorted(item["sample_id"] for item in items if not item["weak"])
    assert manifest["counts"]["weak"] == RELEASED_WEAK[percent]
    assert manifest["ratio"] == (12181 - RELEASED_WEAK[percent]) / 12181
    assert manifest["scheme"] == "split_file" and manifest["split_file_view"] == view
    assert manifest["split_file"] == str(path)
    assert manifest["split_file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    for item in items:
        if item["weak"]:
            assert item["text"] == rrsisd_release["weak_text"][item["sample_id"]] == item["class_name"]
        else:
            assert item["text"] == item["original_text"] != item["class_name"]


@pytest.mark.parametrize("percent", sorted(RELEASED_WEAK))
def test_split_file_is_another_draw_than_our_rule_with_the_same_counts(rrsisd_release, release_train, percent):  # noqa: F811
    ours = set(build_weak_train_set(
        release_train, accurate_ratio=ACCURATE_RATIO[percent], scheme="lrbwrel", seed=42
    )[1]["accurate_ids"])
    selection = read_split_file(split_file(rrsisd_release["root"], percent, "all"), [
        release_train.metadata(i) for i in range(len(release_train))
    ])
    assert set(selection.accurate_ids) != ours
    assert len(selection.accurate_ids) == len(ours)
    assert _class_counts(release_train, selection.weak_ids) == _class_counts(
        release_train, [release_train.sample_id(i) for i in range(len(release_train)) if release_train.sample_id(i)
                        not in ours]
    )


def test_split_file_with_a_matching_ratio_and_a_refused_one(rrsisd_release, release_train):  # noqa: F811
    path = split_file(rrsisd_release["root"], 90, "mask")
    _, manifest = build_weak_train_set(release_train, accurate_ratio=0.1, split_file=path)
    assert manifest["counts"]["weak"] == 10954 and manifest["ratio"] == 1227 / 12181
    with pytest.raises(SplitFileError, match=r"accurate_ratio=0.5 disagrees .*refs\(unc\)-90-mask.p.* 0.1007"):
        build_weak_train_set(release_train, accurate_ratio=0.5, split_file=path)


def test_prepare_train_split_passes_the_split_file(rrsisd_release, release_train):  # noqa: F811
    path = str(split_file(rrsisd_release["root"], 50, "no-mask"))
    data_cfg = {"weak": {"accurate_ratio": 1.0, "scheme": "nested", "seed": 0, "split_file": path}}
    samples, manifest = prepare_train_split(release_train, data_cfg, seed=0)
    assert manifest["scheme"] == "split_file" and manifest["counts"]["weak"] == 6085
    assert sum(samples.metadata(i)["weak"] for i in range(len(samples))) == 6085


# --- error cases, on the small hand-written RRSIS-D fixture (train refs 1 and 2, both vehicles) ----------


@pytest.fixture
def small_train(tmp_path) -> RRSISDDataset:
    write_rrsisd_fixture(tmp_path)
    return RRSISDDataset(tmp_path, "train")


def _dump(tmp_path, content, name="split.p"):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(content))
    return path


def _replaced(ref: dict, text: str) -> dict:
    return {**ref, "sentences": [{**ref["sentences"][0], "raw": text, "sent": text, "tokens": [text]}]}


def _metadata(dataset) -> list[dict]:
    return [dataset.metadata(i) for i in range(len(dataset))]


def test_small_split_file_views_by_hand(tmp_path, small_train):
    # Ref 1 (sample 1_101) is weak: "vehicle" in -all and -mask; absent from -no-mask.
    others = [ref for ref in REFS if ref["split"] != "train"]
    weak_ref, accurate_ref = _replaced(REFS[0], "vehicle"), REFS[1]
    views = {
        "all": [weak_ref, accurate_ref, *others],
        "mask": [weak_ref, *others],
        "no-mask": [accurate_ref, *others],
    }
    for view, content in views.items():
        selection = read_split_file(_dump(tmp_path, content, f"{view}.p"), _metadata(small_train))
        assert (selection.view, selection.weak_ids, selection.accurate_ids) == (view, ["1_101"], ("2_103",))
        assert selection.weak_text == {"1_101": "vehicle"} and selection.accurate_share == 0.5


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"refs": []}, "does not hold a list of ref dicts"),
        ([{"ref_id": 1, "split": "train"}], "does not hold a list of ref dicts"),
        ([{**REFS[0], "ref_id": 999}], "Train ref 999 .* is not in the dataset's training split"),
        ([{**REFS[2], "split": "train"}], "Train ref 3 .* is not in the dataset's training split"),
        ([{**REFS[0], "split": "val"}], "Ref 1 is in the training split of the dataset but marked 'val'"),
        ([_replaced(REFS[0], "Vehicle")], "reads 'Vehicle', neither the dataset's expression nor the class name 'vehicle'"),
        ([r for r in REFS if r["split"] != "train"], "holds no training ref"),
    ],
)
def test_split_file_refusals(tmp_path, small_train, content, match):
    path = _dump(tmp_path, content)
    with pytest.raises(SplitFileError, match=match) as info:
        read_split_file(path, _metadata(small_train))
    assert str(path) in str(info.value) and "data.weak.split_file" in str(info.value)


def test_split_file_refuses_a_mix_of_views(tmp_path, small_train):
    # A third train sentence added to the dataset: replaced + unchanged + absent is no released view.
    extra = {**small_train.metadata(0), "sample_id": "9_9", "ref_id": 9, "sent_id": 9}
    path = _dump(tmp_path, [_replaced(REFS[0], "vehicle"), REFS[1]])
    with pytest.raises(SplitFileError, match="1 replaced and 1 unchanged .* lacks 1 others"):
        read_split_file(path, [*_metadata(small_train), extra])


def test_split_file_refuses_objects_without_building_them(tmp_path, small_train):
    class Boom:
        def __reduce__(self):
            return (print, ("unpickled!",))

    path = _dump(tmp_path, [Boom()])
    with pytest.raises(SplitFileError, match=r"not a plain refs pickle \(it names builtins.print"):
        read_split_file(path, _metadata(small_train))
    with pytest.raises(SplitFileError, match="does not exist"):
        read_split_file(tmp_path / "nope.p", _metadata(small_train))
    (tmp_path / "text.p").write_text("not a pickle")
    with pytest.raises(SplitFileError, match="cannot be unpickled|not a plain refs pickle"):
        read_split_file(tmp_path / "text.p", _metadata(small_train))


def test_split_file_ignores_train_refs_whose_image_the_reader_skipped(tmp_path):
    # Ref 6 moved to train, its image (fixture_003.jpg) deleted and skipped: the file still lists it.
    write_rrsisd_fixture(tmp_path)
    refs = [{**ref, "split": "train"} if ref["ref_id"] == 6 else ref for ref in REFS]
    (tmp_path / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps(refs))
    (tmp_path / "images" / "rrsisd" / "JPEGImages" / "fixture_003.jpg").unlink()
    train = RRSISDDataset(tmp_path, "train", skip_missing=True)
    assert train.num_skipped == 1 and len(train) == 2
    path = _dump(tmp_path, [_replaced(REFS[0], "vehicle"), REFS[1], _replaced(refs[5], "storagetank")])
    _, manifest = build_weak_train_set(train, accurate_ratio=1.0, split_file=path)
    assert manifest["accurate_ids"] == ["2_103"] and manifest["counts"]["weak"] == 1
    assert manifest["split_file_view"] == "all"


def test_split_file_needs_rrsisd_sample_ids(tmp_path):
    samples = [{"sample_id": "vehicle-0", "class_name": "vehicle", "text": "the car"}]
    with pytest.raises(SplitFileError, match=r"RRSIS-D form \(sample ids \{ref_id\}_\{sent_id\}\).*'vehicle-0'"):
        build_weak_train_set(samples, accurate_ratio=1.0, split_file=_dump(tmp_path, REFS))


# --- 4. `rrsis-bench data weak` -------------------------------------------------------------------


def test_data_weak_json_round_trip(rrsisd_release, release_train, tmp_path):  # noqa: F811
    root = rrsisd_release["root"]
    console = Console(record=True, width=200)
    out = tmp_path / "weak.json"
    assert data_weak("rrsisd", [f"data.root={root}"], 0.1, "lrbwrel", 42, None, str(out), console) == 0
    report = json.loads(out.read_text())
    assert (report["scheme"], report["ratio"], report["seed"]) == ("lrbwrel", 0.1, 42)
    assert report["counts"]["weak"] == len(report["weak_ids"]) == 10954
    assert report["counts"]["accurate"] == len(report["accurate_ids"]) == 12181 - 10954
    assert set(report["weak_ids"]).isdisjoint(report["accurate_ids"])
    assert len(set(report["weak_ids"]) | set(report["accurate_ids"])) == 12181
    class_of = {release_train.sample_id(i): release_train.metadata(i)["class_name"] for i in range(12181)}
    assert report["weak_text"] == {i: class_of[i] for i in report["weak_ids"]}
    assert report["counts"]["per_class"]["vehicle"] == {"accurate": 1563 - int(0.9 * 1563), "weak": int(0.9 * 1563)}
    printed = console.export_text()
    assert "vehicle" in printed and "10954" in printed and str(out) in printed

    # With a split file: the file's identities, and the manifest names the file.
    path = split_file(root, 70, "all")
    out2 = tmp_path / "split.json"
    data_weak("rrsisd", [f"data.root={root}"], None, None, None, str(path), str(out2), console)
    report = json.loads(out2.read_text())
    assert report["weak_ids"] == rrsisd_release["weak_sample_ids"][70]
    assert (report["scheme"], report["split_file"], report["split_file_view"]) == ("split_file", str(path), "all")
    assert report["counts"]["weak"] == 8518


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_a_run_trains_lrb_wrel_on_the_released_split_file(rrsisd_release, tmp_path):  # noqa: F811
    """End to end: `rrsis-bench run` reads the released 90 %-masked pickle, gives lrb_wrel one bank row per
    weak sample of the file, and records the file's split."""
    from conftest import exit_code

    path = split_file(rrsisd_release["root"], 90, "all")
    run_dir = tmp_path / "run"
    assert exit_code(["run", "method=test_baseline", "data=rrsisd", f"data.root={rrsisd_release['root']}",
                      "trainer=debug", "trainer.progress=false", "data.image_size=32", "strategy=lrb_wrel",
                      "strategy.warmup_epochs=1", "strategy.bank_epochs=1", "trainer.epochs=1",
                      f"data.weak.split_file=\"{path}\"", f"hydra.run.dir={run_dir}"]) == 0
    record = json.loads((run_dir / "record.json").read_text())
    weak = record["data"]["weak"]
    assert weak["scheme"] == "split_file" and weak["counts"]["weak"] == RELEASED_WEAK[90]
    assert [(s["name"], s["samples"]) for s in record["strategy"]["stages"]] == [
        ("warmup", SPLIT_SIZES["train"] - RELEASED_WEAK[90]), ("bank", RELEASED_WEAK[90]), ("joint", SPLIT_SIZES["train"])]
    manifest = json.loads((run_dir / "weak_manifest.json").read_text())
    all_train = {f"{i}" for i in manifest["accurate_ids"]}
    assert len(all_train) == SPLIT_SIZES["train"] - RELEASED_WEAK[90]
    assert not all_train & set(rrsisd_release["weak_sample_ids"][90])  # the file's weak samples, not ours
    bank = torch.load(run_dir / "checkpoints" / "last" / "state.pt", weights_only=True)["strategy"]["state"]["bank"]
    assert bank.shape[0] == RELEASED_WEAK[90]
