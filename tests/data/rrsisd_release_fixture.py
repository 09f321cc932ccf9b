"""A full-size tree in the RELEASED RRSIS-D form, with LRB-WREL's split pickles beside it.

17,402 refs (12,181 train / 1,740 val / 3,481 test), one sentence per ref and one image per ref, as
released: ``rrsisd/refs(unc).p``, ``rrsisd/instances.json`` (annotation class under
``categories_id``, category ids 0..19, the released glued names) and
``images/rrsisd/JPEGImages/*.jpg``. To stay fast, every image is a hard link to one 8×8 JPEG and
every mask is one small polygon box.

Beside the refs file it writes what LRB-WREL's ``mask_train_only.py`` writes (see
reference/alignformer-lrbwrel-sota.md §B.3), for 50, 70 and 90 % masked:
``rrsisd/refs(unc)-{50,70,90}-{all,mask,no-mask}.p``. The weak train refs are drawn as that script
draws them, with Python's ``random`` seeded 42 (our reading: seeded once per ratio, ``random.sample``
per category over the category's train annotations in file order, categories largest first), which
is a DIFFERENT draw from rrsis_bench's ``scheme=lrbwrel`` (numpy, sorted ids): a test can tell
whether identities come from the file or from our rule.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import time
from pathlib import Path

import pytest
from data.rrsisd_fixture import RELEASED_NAMES
from PIL import Image

# A CONSTRUCTED per-class distribution of the 12,181 train refs, NOT the real one (the real per-class
# train counts are not known to us). It was found once by a small deterministic search (hill climbing
# from a plausible DIOR-like shape, random.Random(0)) so that LRB-WREL's rule, evaluated with Python
# floats exactly as rrsis_bench does (r = round(1.0 - accurate_ratio, 12); per class
# max(1, int(r * n_c)), largest class first), gives the released weak totals 6,085 / 8,518 / 10,954.
# The sizes are distinct, so "largest first" needs no tie rule.
TRAIN_COUNTS = {
    "vehicle": 1563, "ship": 1079, "storagetank": 953, "airplane": 875, "tenniscourt": 823, "harbor": 686,
    "bridge": 658, "baseballfield": 625, "groundtrackfield": 618, "windmill": 578, "chimney": 455,
    "overpass": 446, "Expressway-Service-area": 423, "basketballcourt": 398, "golffield": 388, "dam": 368,
    "stadium": 341, "airport": 323, "trainstation": 297, "Expressway-toll-station": 284,
}
# Val and test: the train shape scaled to the released split sizes (largest remainders); also constructed.
VAL_COUNTS = {
    "vehicle": 223, "ship": 154, "storagetank": 136, "airplane": 125, "tenniscourt": 118, "harbor": 98,
    "bridge": 94, "baseballfield": 89, "groundtrackfield": 88, "windmill": 83, "chimney": 65, "overpass": 64,
    "Expressway-Service-area": 60, "basketballcourt": 57, "golffield": 55, "dam": 53, "stadium": 49,
    "airport": 46, "trainstation": 42, "Expressway-toll-station": 41,
}
TEST_COUNTS = {
    "vehicle": 447, "ship": 308, "storagetank": 272, "airplane": 250, "tenniscourt": 235, "harbor": 196,
    "bridge": 188, "baseballfield": 179, "groundtrackfield": 177, "windmill": 165, "chimney": 130,
    "overpass": 128, "Expressway-Service-area": 121, "basketballcourt": 114, "golffield": 111, "dam": 105,
    "stadium": 97, "airport": 92, "trainstation": 85, "Expressway-toll-station": 81,
}
SPLIT_COUNTS = {"train": TRAIN_COUNTS, "val": VAL_COUNTS, "test": TEST_COUNTS}
SPLIT_SIZES = {"train": 12181, "val": 1740, "test": 3481}
# Released weak (masked) train refs per masked percent, and the accurate_ratio that asks for it.
RELEASED_WEAK = {50: 6085, 70: 8518, 90: 10954}
ACCURATE_RATIO = {50: 0.5, 70: 0.3, 90: 0.1}
VIEWS = ("all", "mask", "no-mask")

_SPACED = {"Expressway-Service-area": "expressway service area", "Expressway-toll-station": "expressway toll station",
           "baseballfield": "baseball field", "basketballcourt": "basketball court", "golffield": "golf field",
           "groundtrackfield": "ground track field", "storagetank": "storage tank", "tenniscourt": "tennis court",
           "trainstation": "train station"}
_PLACES = ("on the left", "on the right", "at the top", "at the bottom", "in the middle", "next to the road")


def split_file(root: Path, masked_percent: int, view: str) -> Path:
    """Where the released script's view lies: ``rrsisd/refs(unc)-{percent}-{view}.p``."""
    return Path(root) / "rrsisd" / f"refs(unc)-{masked_percent}-{view}.p"


def _refs_and_instances() -> tuple[list[dict], dict]:
    """17,402 refs in a shuffled split/class order; ids differ (ref, ann, image, sent) so a mix-up shows."""
    slots = [(split, name) for split, counts in SPLIT_COUNTS.items() for name, n in counts.items() for _ in range(n)]
    random.Random(7).shuffle(slots)
    cat_id = {name: i for i, name in enumerate(RELEASED_NAMES)}
    refs, images, annotations = [], [], []
    for ref_id, (split, name) in enumerate(slots):
        image_id, ann_id, sent_id = 30000 + ref_id, 60000 + ref_id, 90000 + ref_id
        text = f"the {_SPACED.get(name, name)} {_PLACES[ref_id % len(_PLACES)]}"
        refs.append({
            "ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "category_id": cat_id[name], "split": split,
            "file_name": f"{image_id:05d}.jpg", "sent_ids": [sent_id],
            "sentences": [{"raw": text, "sent": text, "tokens": text.split(), "sent_id": sent_id}],
        })
        images.append({"id": image_id, "file_name": f"{image_id:05d}.jpg", "height": 8, "width": 8})
        annotations.append({"id": ann_id, "image_id": image_id, "categories_id": cat_id[name],
                            "segmentation": [[1, 1, 6, 1, 6, 5, 1, 5]], "bbox": [1, 1, 5, 4], "area": 20})
    categories = [{"id": i, "name": name} for i, name in enumerate(RELEASED_NAMES)]
    return refs, {"images": images, "annotations": annotations, "categories": categories}


def released_weak_ref_ids(refs: list[dict], instances: dict, ratio: float) -> set:
    """The weak train refs as LRB-WREL's script picks them (our reading of §B.3; see the module doc)."""
    train_anns = {ref["ann_id"] for ref in refs if ref["split"] == "train"}
    by_category: dict[int, list[dict]] = {}
    for ann in instances["annotations"]:
        if ann["id"] in train_anns:
            by_category.setdefault(ann["categories_id"], []).append(ann)
    budget = int(ratio * len(train_anns))
    random.seed(42)
    chosen: list[dict] = []
    for category in sorted(by_category, key=lambda c: len(by_category[c]), reverse=True):
        if len(chosen) >= budget:
            break
        anns = by_category[category]
        take = min(max(1, int(ratio * len(anns))), budget - len(chosen))
        chosen.extend(random.sample(anns, take))
    ref_of_ann = {ref["ann_id"]: ref["ref_id"] for ref in refs}
    return {ref_of_ann[ann["id"]] for ann in chosen}


def _write_split_views(root: Path, refs: list[dict], names: dict[int, str], weak: set, percent: int) -> None:
    replaced = []
    for ref in refs:
        if ref["ref_id"] in weak:
            name = names[ref["category_id"]]
            first = {**ref["sentences"][0], "raw": name, "sent": name, "tokens": [name]}
            ref = {**ref, "sentences": [first, *ref["sentences"][1:]]}
        replaced.append(ref)
    not_train = [ref for ref in replaced if ref["split"] != "train"]
    views = {
        "all": replaced,
        "mask": [ref for ref in replaced if ref["ref_id"] in weak] + not_train,
        # §B.3 says only "accurate samples" for -no-mask and is silent on val/test; we keep them, as in
        # -mask, because the official loader reads val from the same refs file stage 1 trains on.
        "no-mask": [ref for ref in replaced if ref["split"] == "train" and ref["ref_id"] not in weak] + not_train,
    }
    for view, content in views.items():
        with open(split_file(root, percent, view), "wb") as f:
            pickle.dump(content, f)


def write_rrsisd_release(root: Path) -> dict:
    """Write the tree and the split pickles under ``root``; returns the facts tests assert on.

    ``weak_sample_ids`` (masked percent → sorted ``{ref_id}_{sent_id}`` of the file's weak train
    refs), ``weak_text`` (sample id → the class name its replaced sentence reads), ``seconds``
    (generation time).
    """
    start = time.perf_counter()
    root = Path(root)
    image_dir = root / "images" / "rrsisd" / "JPEGImages"
    image_dir.mkdir(parents=True, exist_ok=True)
    (root / "rrsisd").mkdir(parents=True, exist_ok=True)
    refs, instances = _refs_and_instances()
    source = root / "one.jpg"
    Image.new("RGB", (8, 8), (90, 120, 60)).save(source, quality=90)
    for image in instances["images"]:
        os.link(source, image_dir / image["file_name"])
    (root / "rrsisd" / "instances.json").write_text(json.dumps(instances), encoding="utf-8")
    with open(root / "rrsisd" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f)
    names = dict(enumerate(RELEASED_NAMES))
    sample_of = {ref["ref_id"]: f"{ref['ref_id']}_{ref['sentences'][0]['sent_id']}" for ref in refs}
    weak_sample_ids, weak_text = {}, {}
    for percent in RELEASED_WEAK:
        weak = released_weak_ref_ids(refs, instances, percent / 100)
        _write_split_views(root, refs, names, weak, percent)
        weak_sample_ids[percent] = sorted(sample_of[ref_id] for ref_id in weak)
        weak_text.update({sample_of[r["ref_id"]]: names[r["category_id"]] for r in refs if r["ref_id"] in weak})
    return {"root": root, "weak_sample_ids": weak_sample_ids, "weak_text": weak_text,
            "seconds": time.perf_counter() - start}


@pytest.fixture(scope="session")
def rrsisd_release(tmp_path_factory) -> dict:
    """The released-form tree of :func:`write_rrsisd_release`, generated once per test session."""
    return write_rrsisd_release(tmp_path_factory.mktemp("rrsisd_release"))
