"""Weak referring expressions for weak-label ratio studies (the WREL setting of LRB-WREL).

A share ``r`` of the TRAINING samples keeps its accurate expression; the other ``1 - r`` get their
expression replaced by their class name ("vehicle", "storage tank"). Validation and test samples are
never touched. Two ways to choose who keeps the accurate expression:

- ``"nested"`` (ours, the default): stratified by class, nested across ratios (the accurate set at
  r = 0.1 is inside the one at r = 0.3, …, inside r = 1.0 for one seed), so a ratio sweep changes
  one thing only. See :func:`nested_accurate_ids` for the rounding rule.
- ``"lrbwrel"``: the selection rule of LRB-WREL's ``mask_train_only.py`` (see
  :func:`lrbwrel_weak_ids`); the rule behind the released splits' counts, not their random draw.
- a released LRB-WREL split file (``split_file``, see :mod:`rrsis_bench.data.lrbwrel_split`): the
  paper's exact sample identities; the manifest's scheme is then ``"split_file"``.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from rrsis_bench.data.lrbwrel_split import SplitFileError, read_split_file
from rrsis_bench.data.manifest import sample_metadata
from rrsis_bench.data.wrappers import SampleView

SCHEMES = ("nested", "lrbwrel")
SPLIT_FILE_SCHEME = "split_file"  # the manifest's scheme when the partition comes from a split file
# How far a requested accurate_ratio may be from a split file's own accurate share (LRB-WREL's
# per-class int() makes the released 10 % split 10.07 % accurate).
SPLIT_FILE_RATIO_TOLERANCE = 0.01


def _check_ratio(ratio: float, name: str = "ratio") -> float:
    ratio = float(ratio)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1] (got {ratio}); it is a share of the training samples.")
    return ratio


def _round_half_up(x: float) -> int:
    # Python's round() rounds halves to even; a share of samples should round 0.5 up. The epsilon
    # absorbs float error such as 0.35 * 10 = 3.4999999999999996.
    return math.floor(x + 0.5 + 1e-9)


def _group_by_class(metadata: Sequence[dict]) -> dict[str, list[str]]:
    """``{class_name: sorted sample ids}``; ids must be unique."""
    groups: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for meta in metadata:
        sample_id = str(meta["sample_id"])
        if sample_id in seen:
            raise ValueError(f"Sample id {sample_id!r} appears more than once; sample ids must be unique.")
        seen.add(sample_id)
        groups[str(meta.get("class_name") or "")].append(sample_id)
    return {name: sorted(ids) for name, ids in groups.items()}


def _class_seed(seed: int, class_name: str) -> list[int]:
    # Each class gets its own stream, so one class's order does not depend on which other classes exist.
    digest = hashlib.sha256(class_name.encode("utf-8")).digest()
    return [int(seed), int.from_bytes(digest[:8], "little")]


def quota_counts(sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """Split ``total`` picks over classes of the given sizes, house-monotone and within quota.

    This is Balinski & Young's quota method (1975): picks are handed out one at a time; pick
    ``k + 1`` goes to the class with the largest ``n_c / (a_c + 1)`` (``a_c`` = picks it has) among
    the classes for which one more pick stays within the upper quota ``ceil((k + 1) * n_c / N)``;
    ties go to the larger class, then to the class name in sorted order. It guarantees that

    - every class gets ``floor(total * n_c / N)`` or ``ceil(total * n_c / N)`` picks (the closest
      integers to its exact share), and the counts sum to ``total``;
    - counts never decrease when ``total`` grows (plain largest-remainder rounding does not promise
      that: the Alabama paradox), which is what makes the accurate sets nested across ratios.
    """
    names = sorted(sizes)
    n = [int(sizes[name]) for name in names]
    num = sum(n)
    if not 0 <= total <= num:
        raise ValueError(f"Cannot pick {total} of {num} samples.")
    picks = [0] * len(n)
    for k in range(total):
        best = -1
        for c, n_c in enumerate(n):
            # Upper quota at k + 1 picks: a_c + 1 <= ceil((k + 1) n_c / N), in integers.
            if picks[c] >= n_c or (picks[c] + 1) * num > (k + 1) * n_c + num - 1:
                continue
            if best < 0:
                best = c
                continue
            # n_c / (a_c + 1) vs n_b / (a_b + 1), cross-multiplied to stay in integers.
            lhs, rhs = n_c * (picks[best] + 1), n[best] * (picks[c] + 1)
            if lhs > rhs or (lhs == rhs and n_c > n[best]):
                best = c
        picks[best] += 1
    return dict(zip(names, picks, strict=True))


def nested_accurate_ids(metadata: Sequence[dict], ratio: float, *, seed: int = 0) -> list[str]:
    """Sorted ids of the samples that KEEP their accurate expression at accurate share ``ratio``.

    ``metadata`` holds the training samples' ``sample_id`` and ``class_name`` (pixels not needed).
    Within each class the ids are sorted, then put in one random order drawn from
    ``numpy.random.default_rng([seed, hash(class_name)])``; that order does not depend on the ratio
    or on the input order. The accurate set is the first ``a_c`` ids of each class, where the total
    ``sum(a_c) = round_half_up(ratio * N)`` is split over classes by :func:`quota_counts`: each
    class gets ``floor`` or ``ceil`` of ``total * n_c / N`` and counts only grow with the ratio.
    Hence the sets are nested: accurate(0.1) ⊂ accurate(0.3) ⊂ … ⊂ accurate(1.0) for one seed.

    Example: classes of 10, 7 and 3 samples at ratio 0.3 → total round(0.3 * 20) = 6, exact shares
    3, 2.1 and 0.9 → counts 3, 2 and 1.
    """
    ratio = _check_ratio(ratio)
    groups = _group_by_class(metadata)
    num = sum(len(ids) for ids in groups.values())
    counts = quota_counts({name: len(ids) for name, ids in groups.items()}, _round_half_up(ratio * num))
    accurate: list[str] = []
    for name, ids in groups.items():
        order = np.random.default_rng(_class_seed(seed, name)).permutation(len(ids))
        accurate.extend(ids[i] for i in order[: counts[name]])
    return sorted(accurate)


def lrbwrel_weak_ids(metadata: Sequence[dict], ratio_masked: float, *, seed: int = 42) -> list[str]:
    """Sorted ids of the WEAK samples chosen by LRB-WREL's rule; ``ratio_masked`` is the WEAK share.

    The rule of ``mask_train_only.py``: group the training samples by class; visit the classes from
    largest to smallest (equal sizes: by class name, an assumption); from each class draw
    ``max(1, int(ratio_masked * n_c))`` samples without replacement, but never more than what is left
    of the global budget ``int(ratio_masked * N)``; stop once the budget is used up. So the total may
    fall short of the budget (the per-class ``int`` truncates) and small classes late in the order
    may get no weak sample.

    The draw uses one ``numpy.random.default_rng(seed)`` over the sorted ids of each class in turn.
    The original draws with Python's ``random`` module, so the selected ids here are NOT the ones of
    the released LRB-WREL files, only the same rule with the same seed value.
    """
    ratio_masked = _check_ratio(ratio_masked, "ratio_masked")
    groups = _group_by_class(metadata)
    num = sum(len(ids) for ids in groups.values())
    budget = int(ratio_masked * num)
    rng = np.random.default_rng(seed)
    weak: list[str] = []
    for name in sorted(groups, key=lambda name: (-len(groups[name]), name)):
        left = budget - len(weak)
        if left <= 0:
            break
        ids = groups[name]
        take = min(max(1, int(ratio_masked * len(ids))), left, len(ids))
        weak.extend(ids[i] for i in rng.choice(len(ids), size=take, replace=False))
    return sorted(weak)


class WeakExpressions(SampleView):
    """Training samples where every id outside ``accurate_ids`` reads its class name as expression.

    Every sample gains ``weak`` (bool) and ``original_text`` (the accurate expression), so batches
    have the same keys whether or not they mix weak and accurate samples. ``weak_text`` (sample id →
    text) gives a weak sample another text than its class name (a split file's sentence). Only the
    training split may be weakened: any other ``split`` (or a wrapped dataset whose ``split``
    attribute is not ``"train"``) is refused.
    """

    def __init__(
        self,
        samples: Sequence[dict],
        accurate_ids: Iterable[str],
        *,
        split: str,
        weak_text: Mapping[str, str] | None = None,
    ) -> None:
        wrapped_split = getattr(samples, "split", None)
        if split != "train" or (wrapped_split is not None and wrapped_split != "train"):
            actual = split if split != "train" else wrapped_split
            raise ValueError(
                f"Weak expressions apply to the training split only (got split {actual!r}); "
                "evaluate val/test with their accurate expressions."
            )
        self.samples = samples
        self.split = split
        self.accurate_ids = frozenset(str(i) for i in accurate_ids)
        self.weak_text = {str(k): str(v) for k, v in (weak_text or {}).items()}

    def _weaken(self, sample: dict[str, Any]) -> dict[str, Any]:
        sample_id = str(sample["sample_id"])
        out = dict(sample)
        out["original_text"] = sample["text"]
        if sample_id in self.accurate_ids:
            out["weak"] = False
            return out
        class_name = self.weak_text.get(sample_id) or str(sample.get("class_name") or "").strip()
        if not class_name:
            raise ValueError(
                f"Sample {sample_id!r} has no class_name, so it cannot get a weak (class-name) expression; "
                "fix the dataset's class names or keep this sample in the accurate set."
            )
        out["text"] = class_name
        out["weak"] = True
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        return self._weaken(self.samples[index])

    def metadata(self, index: int) -> dict[str, Any]:
        """Sample ``index`` without pixels (the wrapped dataset's ``metadata`` when it has one)."""
        return self._weaken(sample_metadata(self.samples, index))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.samples!r}, accurate={len(self.accurate_ids)}/{len(self)})"


def weak_manifest(
    accurate_ids: Iterable[str],
    all_ids: Iterable[str],
    *,
    ratio: float,
    seed: int,
    scheme: str,
    class_of: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Which training samples kept their accurate expression, for the run record.

    ``ratio`` is the requested ACCURATE share (also for ``scheme="lrbwrel"``, whose own parameter is
    the weak share ``1 - ratio``). ``class_of`` (sample id → class name) adds per-class counts.
    ``sha256`` is the hex digest of the sorted accurate ids joined by ``"\\n"`` (UTF-8).
    """
    all_set = {str(i) for i in all_ids}
    accurate = sorted({str(i) for i in accurate_ids})
    unknown = [i for i in accurate if i not in all_set]
    if unknown:
        raise ValueError(f"Accurate id {unknown[0]!r} is not among the training ids ({len(unknown)} unknown).")
    manifest: dict[str, Any] = {
        "scheme": scheme,
        "ratio": float(ratio),
        "seed": int(seed),
        "counts": {"total": len(all_set), "accurate": len(accurate), "weak": len(all_set) - len(accurate)},
        "accurate_ids": accurate,
        "sha256": hashlib.sha256("\n".join(accurate).encode("utf-8")).hexdigest(),
    }
    if class_of is not None:
        accurate_set = set(accurate)
        per_class: dict[str, dict[str, int]] = {}
        totals = Counter(str(class_of[i]) for i in all_set)
        kept = Counter(str(class_of[i]) for i in accurate_set)
        for name in sorted(totals):
            per_class[name] = {"accurate": kept[name], "weak": totals[name] - kept[name]}
        manifest["counts"]["per_class"] = per_class
    return manifest


def build_weak_train_set(
    samples: Sequence[dict],
    *,
    accurate_ratio: float,
    seed: int = 0,
    scheme: str = "nested",
    split: str = "train",
    split_file: str | os.PathLike | None = None,
) -> tuple[WeakExpressions, dict[str, Any]]:
    """Wrap a training set so that a ``1 - accurate_ratio`` share reads class names; returns (dataset, manifest).

    ``scheme="nested"`` uses :func:`nested_accurate_ids` with ``seed``; ``scheme="lrbwrel"`` uses
    :func:`lrbwrel_weak_ids` with weak share ``1 - accurate_ratio`` (pass ``seed=42`` for LRB-WREL's
    seed). Every weak sample must have a class name; this is checked here, before training starts.

    ``split_file`` (a released LRB-WREL split pickle, any view) overrides both: the weak samples are
    the file's (:func:`~rrsis_bench.data.lrbwrel_split.read_split_file`), with the file's text, and
    the manifest records ``scheme: "split_file"``, the file's accurate share as ``ratio``, the path
    as given, its sha256 and the view. ``accurate_ratio=1.0`` means "take the share from the file";
    any other value must agree with the file's share within 0.01.
    """
    accurate_ratio = _check_ratio(accurate_ratio, "accurate_ratio")
    if split_file is None and scheme not in SCHEMES:
        raise ValueError(f"Unknown weak-expression scheme {scheme!r}; choose one of {', '.join(SCHEMES)}.")
    metadata = [sample_metadata(samples, i) for i in range(len(samples))]
    all_ids = [str(meta["sample_id"]) for meta in metadata]
    weak_text: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if split_file is not None:
        # A reader's `refs` (ref id → ref, the RRSIS-D reader has it) names train refs whose samples were
        # skipped (missing images); the file may list them.
        declared = getattr(samples, "refs", None)
        skipped: set[str] = set()
        if isinstance(declared, Mapping):
            skipped = {str(ref_id) for ref_id in declared} - {str(meta.get("ref_id")) for meta in metadata}
        selection = read_split_file(split_file, metadata, skipped_ref_ids=skipped)
        share = selection.accurate_share
        if accurate_ratio != 1.0 and abs(accurate_ratio - share) > SPLIT_FILE_RATIO_TOLERANCE:
            raise SplitFileError(
                f"data.weak.accurate_ratio={accurate_ratio} disagrees with data.weak.split_file {split_file}, whose "
                f"accurate share is {share:.4f}; leave accurate_ratio at 1.0 (the file decides) or pick the matching file."
            )
        accurate, weak_text = list(selection.accurate_ids), selection.weak_text
        accurate_ratio, scheme = share, SPLIT_FILE_SCHEME
        extra = {"split_file": selection.path, "split_file_sha256": selection.sha256, "split_file_view": selection.view}
    elif scheme == "nested":
        accurate = nested_accurate_ids(metadata, accurate_ratio, seed=seed)
    else:
        # Rounded so that 1 - 0.9 reads as 0.1, not 0.0999…, before LRB-WREL's int() truncation.
        weak = set(lrbwrel_weak_ids(metadata, round(1.0 - accurate_ratio, 12), seed=seed))
        accurate = sorted(i for i in all_ids if i not in weak)
    dataset = WeakExpressions(samples, accurate, split=split, weak_text=weak_text)
    accurate_set = set(accurate)
    for meta in metadata:
        if str(meta["sample_id"]) not in accurate_set and not str(meta.get("class_name") or "").strip():
            raise ValueError(
                f"Sample {meta['sample_id']!r} has no class_name, so it cannot get a weak (class-name) "
                "expression; fix the dataset's class names before a weak-label study."
            )
    class_of = {str(meta["sample_id"]): str(meta.get("class_name") or "") for meta in metadata}
    manifest = weak_manifest(accurate, all_ids, ratio=accurate_ratio, seed=seed, scheme=scheme, class_of=class_of)
    return dataset, manifest | extra
