"""Weak expressions: nested stratified selection, LRB-WREL's rule, the train-only wrapper, the manifest."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import Counter

import pytest

from rrsis_bench.data.weak import (
    WeakExpressions,
    build_weak_train_set,
    lrbwrel_weak_ids,
    nested_accurate_ids,
    quota_counts,
    weak_manifest,
)

SIZES = {"vehicle": 10, "ship": 7, "dam": 3}


def make_metadata(sizes: dict[str, int] = SIZES) -> list[dict]:
    return [
        {"sample_id": f"{name}-{i}", "class_name": name, "text": f"the {name} number {i}"}
        for name, n in sizes.items()
        for i in range(n)
    ]


def per_class(ids: list[str], metadata: list[dict]) -> Counter:
    class_of = {m["sample_id"]: m["class_name"] for m in metadata}
    return Counter(class_of[i] for i in ids)


@pytest.mark.parametrize("seed", [0, 1, 7, 123])
def test_nested_across_ratios(seed):
    metadata = make_metadata({"a": 37, "b": 21, "c": 9, "d": 4, "e": 1})
    ratios = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
    sets = [set(nested_accurate_ids(metadata, r, seed=seed)) for r in ratios]
    for smaller, larger in itertools.pairwise(sets):
        assert smaller <= larger
    assert len(sets[-1]) == len(metadata)


def test_counts_per_class_hand_computed():
    # N = 20, total = round(0.3 * 20) = 6; exact shares 3, 2.1, 0.9 → 3, 2, 1.
    metadata = make_metadata()
    ids = nested_accurate_ids(metadata, 0.3, seed=0)
    assert len(ids) == 6
    assert per_class(ids, metadata) == Counter({"vehicle": 3, "ship": 2, "dam": 1})


def test_quota_counts_within_quota_and_monotone():
    rng = random.Random(0)
    for _ in range(100):
        sizes = {f"c{i}": rng.randint(1, 40) for i in range(rng.randint(1, 8))}
        num = sum(sizes.values())
        previous = dict.fromkeys(sizes, 0)
        for total in range(num + 1):
            counts = quota_counts(sizes, total)
            assert sum(counts.values()) == total
            for name, n in sizes.items():
                # floor(total * n / N) <= count <= ceil(total * n / N), in integers.
                assert total * n // num <= counts[name] <= -(-total * n // num)
                assert counts[name] >= previous[name]
            previous = counts


def test_deterministic_and_input_order_independent():
    metadata = make_metadata()
    shuffled = metadata[:]
    random.Random(3).shuffle(shuffled)
    a = nested_accurate_ids(metadata, 0.5, seed=5)
    assert a == nested_accurate_ids(metadata, 0.5, seed=5)
    assert a == nested_accurate_ids(shuffled, 0.5, seed=5)
    assert a == sorted(a)


def test_different_seed_different_set():
    metadata = make_metadata({"a": 50, "b": 30})
    assert nested_accurate_ids(metadata, 0.5, seed=0) != nested_accurate_ids(metadata, 0.5, seed=1)


def test_edge_ratios_and_validation():
    metadata = make_metadata()
    assert nested_accurate_ids(metadata, 0.0) == []
    assert nested_accurate_ids(metadata, 1.0) == sorted(m["sample_id"] for m in metadata)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            nested_accurate_ids(metadata, bad)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            lrbwrel_weak_ids(metadata, bad)
    with pytest.raises(ValueError, match="unique"):
        nested_accurate_ids(metadata + metadata[:1], 0.5)


@pytest.mark.parametrize("split", ["val", "test"])
def test_wrapper_refuses_val_and_test(split):
    with pytest.raises(ValueError, match="training split only"):
        WeakExpressions(make_metadata(), [], split=split)


def test_wrapper_refuses_a_dataset_of_another_split():
    class ValSet(list):
        split = "val"

    with pytest.raises(ValueError, match="training split only"):
        WeakExpressions(ValSet(make_metadata()), [], split="train")


def test_wrapper_replaces_text_only_for_weak_ids():
    samples = make_metadata()
    accurate = set(nested_accurate_ids(samples, 0.3, seed=0))
    weak = WeakExpressions(samples, accurate, split="train")
    assert len(weak) == len(samples)
    for i, original in enumerate(samples):
        item = weak[i]
        assert item["original_text"] == original["text"]
        if original["sample_id"] in accurate:
            assert item["text"] == original["text"] and item["weak"] is False
        else:
            assert item["text"] == original["class_name"] and item["weak"] is True
        assert weak.metadata(i) == item
    assert samples[0]["text"] == "the vehicle number 0"  # the wrapped samples are not modified


def test_wrapper_uses_dataset_metadata():
    class WithMetadata(list):
        split = "train"

        def metadata(self, index):
            return {k: v for k, v in self[index].items() if k != "image"}

    samples = WithMetadata({**m, "image": object()} for m in make_metadata())
    weak = WeakExpressions(samples, [], split="train")
    assert "image" not in weak.metadata(0) and weak.metadata(0)["text"] == "vehicle"
    assert weak.split == "train"


def test_sample_without_class_name_cannot_be_weakened():
    samples = make_metadata()
    samples[4] = {**samples[4], "class_name": ""}
    weak = WeakExpressions(samples, [], split="train")
    with pytest.raises(ValueError, match="vehicle-4"):
        weak[4]
    with pytest.raises(ValueError, match="vehicle-4"):
        build_weak_train_set(samples, accurate_ratio=0.0)
    # Kept accurate, it is fine.
    assert WeakExpressions(samples, ["vehicle-4"], split="train")[4]["weak"] is False


def test_manifest_hash_and_counts():
    metadata = make_metadata()
    accurate = nested_accurate_ids(metadata, 0.3, seed=2)
    all_ids = [m["sample_id"] for m in metadata]
    class_of = {m["sample_id"]: m["class_name"] for m in metadata}
    manifest = weak_manifest(accurate, all_ids, ratio=0.3, seed=2, scheme="nested", class_of=class_of)
    assert manifest["sha256"] == hashlib.sha256("\n".join(sorted(accurate)).encode("utf-8")).hexdigest()
    assert manifest["accurate_ids"] == sorted(accurate)
    assert manifest["counts"]["accurate"] == 6 and manifest["counts"]["weak"] == 14
    assert manifest["counts"]["per_class"]["dam"] == {"accurate": 1, "weak": 2}
    assert (manifest["scheme"], manifest["ratio"], manifest["seed"]) == ("nested", 0.3, 2)
    with pytest.raises(ValueError, match="not among"):
        weak_manifest(["nope"], all_ids, ratio=0.3, seed=2, scheme="nested")


def test_lrbwrel_budget_rule_hand_computed():
    # Classes 10/7/3, weak share 0.5: per class max(1, int(0.5 n)) = 5, 3, 1 (largest first);
    # global budget int(0.5 * 20) = 10 is not reached: 9 weak samples.
    metadata = make_metadata()
    weak = lrbwrel_weak_ids(metadata, 0.5)
    assert per_class(weak, metadata) == Counter({"vehicle": 5, "ship": 3, "dam": 1})
    assert len(weak) == 9 <= int(0.5 * 20)


def test_lrbwrel_budget_stops_small_classes():
    # Weak share 0.1 of 20: budget 2; vehicle takes int(1.0) = 1, ship takes max(1, 0) = 1, dam nothing.
    metadata = make_metadata()
    assert per_class(lrbwrel_weak_ids(metadata, 0.1), metadata) == Counter({"vehicle": 1, "ship": 1})
    assert lrbwrel_weak_ids(metadata, 0.0) == []
    assert len(lrbwrel_weak_ids(metadata, 1.0)) == 20


def test_lrbwrel_seed_42_deterministic():
    metadata = make_metadata({"a": 40, "b": 25, "c": 5})
    shuffled = metadata[::-1]
    assert lrbwrel_weak_ids(metadata, 0.5) == lrbwrel_weak_ids(shuffled, 0.5, seed=42)
    assert lrbwrel_weak_ids(metadata, 0.5) != lrbwrel_weak_ids(metadata, 0.5, seed=0)


@pytest.mark.parametrize("scheme", ["nested", "lrbwrel"])
def test_build_weak_train_set(scheme):
    samples = make_metadata()
    dataset, manifest = build_weak_train_set(samples, accurate_ratio=0.5, seed=42, scheme=scheme)
    weak_count = sum(dataset[i]["weak"] for i in range(len(dataset)))
    assert weak_count == manifest["counts"]["weak"]
    assert manifest["scheme"] == scheme and manifest["ratio"] == 0.5
    if scheme == "lrbwrel":
        assert weak_count == 9  # the hand-computed LRB-WREL example above
    else:
        assert weak_count == 10


def test_build_weak_train_set_lrbwrel_float_complement():
    # 1 - 0.9 is 0.0999…; the weak share must still read as 0.1 (budget int(0.1 * 20) = 2).
    _, manifest = build_weak_train_set(make_metadata(), accurate_ratio=0.9, scheme="lrbwrel", seed=42)
    assert manifest["counts"]["weak"] == 2


def test_build_weak_train_set_unknown_scheme():
    with pytest.raises(ValueError, match="nested, lrbwrel"):
        build_weak_train_set(make_metadata(), accurate_ratio=0.5, scheme="random")


def test_wrapper_weak_text_overrides_the_class_name():
    samples = make_metadata()
    weak = WeakExpressions(samples, [], split="train", weak_text={"vehicle-1": "Vehicle from the file"})
    assert weak[1]["text"] == "Vehicle from the file" and weak[1]["weak"] is True
    assert weak[0]["text"] == "vehicle"  # no entry: the class name
