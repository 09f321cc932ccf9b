"""Read a released LRB-WREL split pickle (``refs(unc)-90-all.p`` …) into weak and accurate sample ids.

LRB-WREL's ``mask_train_only.py`` copies RRSIS-D's ``refs(unc).p`` and, for each weak training ref,
overwrites the first sentence's ``raw``/``sent``/``tokens`` with the class name as ``instances.json``
spells it ("storagetank"). It writes three views per masked share (50, 70, 90 %):

- ``-all``: every ref, the weak ones with the replaced sentence;
- ``-mask``: the weak train refs (replaced) plus val and test;
- ``-no-mask``: the accurate train refs (unchanged), plus val and test.

Which view a file is follows from what it holds (:func:`read_split_file`), so any of the three gives
the same identities. Sentences are matched to the dataset's samples by ``{ref_id}_{sent_id}``, the
sample id of the RRSIS-D reader; the file is unpickled with a loader that builds only plain data
(lists, dicts, strings, numbers, numpy scalars), never arbitrary objects.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrsis_bench.errors import UserError

VIEWS = ("all", "mask", "no-mask")
_FIX = "point data.weak.split_file at a released LRB-WREL split of this dataset (e.g. rrsisd/refs(unc)-90-all.p)"
# Globals a refs pickle may name: numpy scalars (ids saved as numpy integers) and their dtypes.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"),
}


class SplitFileError(UserError, ValueError):
    """The split file cannot be read or does not belong to the dataset."""


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


@dataclass(frozen=True)
class SplitFileSelection:
    """The weak/accurate partition of the training samples that a split file encodes.

    ``weak_text`` maps each weak sample id to the text it gets: the file's sentence where the file
    holds it (the class name), the dataset's class name where the view leaves the ref out
    (``-no-mask``). ``view`` is the view detected (one of :data:`VIEWS`).
    """

    path: str
    sha256: str
    view: str
    accurate_ids: tuple[str, ...]
    weak_text: dict[str, str]

    @property
    def weak_ids(self) -> list[str]:
        return sorted(self.weak_text)

    @property
    def accurate_share(self) -> float:
        return len(self.accurate_ids) / max(1, len(self.accurate_ids) + len(self.weak_text))


def load_refs_list(path: str | os.PathLike) -> tuple[list[dict], str]:
    """The refs list of a split pickle and the sha256 of its bytes; refuses anything but a refs list."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SplitFileError(f"data.weak.split_file {file} does not exist; {_FIX}.")
    data = file.read_bytes()
    try:
        refs = _PlainDataUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise SplitFileError(
            f"data.weak.split_file {file} is not a plain refs pickle (it names {exc}, or is no pickle at all); {_FIX}."
        ) from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise SplitFileError(f"data.weak.split_file {file} cannot be unpickled ({exc}); {_FIX}.") from exc
    if not isinstance(refs, list) or not all(
        isinstance(ref, dict) and {"ref_id", "split", "sentences"} <= ref.keys() for ref in refs
    ):
        raise SplitFileError(
            f"data.weak.split_file {file} does not hold a list of ref dicts with ref_id, split and sentences; {_FIX}."
        )
    return refs, hashlib.sha256(data).hexdigest()


def _sentence_text(sentence: Any) -> str | None:
    if not isinstance(sentence, dict):
        return None
    text = sentence.get("raw", sentence.get("sent"))
    return text if isinstance(text, str) else None


def read_split_file(
    path: str | os.PathLike, train_metadata: Sequence[dict], *, skipped_ref_ids: Collection[str] = ()
) -> SplitFileSelection:
    """Weak and accurate ids of the training samples ``train_metadata`` under the split file ``path``.

    ``train_metadata`` holds the training samples without pixels (``sample_id``, ``ref_id``,
    ``sent_id``, ``text``, ``class_name``) of a dataset in RRSIS-D form (sample id
    ``{ref_id}_{sent_id}``). A sentence of a train ref is *replaced* when its text differs from the
    dataset's; a replaced sentence must read the sample's class name. The view follows:

    - some replaced sentences and every train ref present: ``-all``; weak = the replaced samples;
    - some replaced sentences, and every train sentence present is replaced: ``-mask``; the absent
      train refs are accurate;
    - no replaced sentence: ``-no-mask``; the absent train refs are weak (all of a file without
      replaced sentences that lacks no train ref: nothing is weak).

    A sample whose own expression already is its class name cannot show a replacement; it is taken
    as weak in a ``-mask`` view (the view holds only weak train refs) and as accurate otherwise.
    ``skipped_ref_ids`` (as strings) are train refs the dataset has but whose samples it dropped
    (``skip_missing``: RRSIS-D misses an image); the file's entries for them are ignored.
    """
    shown = os.fspath(path)
    refs, sha256 = load_refs_list(path)
    samples = _rrsisd_samples(train_metadata, shown)
    train_ref_ids = {ref_key for ref_key, _ in samples.values()}
    by_ref: dict[str, list[str]] = {}
    for sample_id, (ref_key, _) in samples.items():
        by_ref.setdefault(ref_key, []).append(sample_id)

    present: set[str] = set()  # train sample ids the file holds
    replaced: dict[str, str] = {}  # sample id → the file's text
    unreplaced_named: set[str] = set()  # present, unchanged, and the dataset's text is the class name
    for ref in refs:
        ref_key = str(ref["ref_id"])
        if ref["split"] != "train":
            if ref_key in train_ref_ids:
                raise SplitFileError(
                    f"Ref {ref_key} is in the training split of the dataset but marked {ref['split']!r} in "
                    f"data.weak.split_file {shown}; the split file does not belong to this dataset ({_FIX})."
                )
            continue
        if ref_key in skipped_ref_ids:
            continue
        if ref_key not in train_ref_ids:
            raise SplitFileError(
                f"Train ref {ref_key} of data.weak.split_file {shown} is not in the dataset's training split; "
                f"the split file does not belong to this dataset ({_FIX})."
            )
        for position, sentence in enumerate(ref["sentences"] or ()):
            text = _sentence_text(sentence)
            sent_id = sentence.get("sent_id", position) if isinstance(sentence, dict) else position
            sample_id = f"{ref_key}_{sent_id}"
            if sample_id not in samples or text is None:
                raise SplitFileError(
                    f"Sentence {sent_id} of ref {ref_key} in data.weak.split_file {shown} is not a sample of the "
                    f"dataset's training split (or has no raw/sent text); {_FIX}."
                )
            present.add(sample_id)
            original, class_name = samples[sample_id][1]["text"], samples[sample_id][1]["class_name"]
            if text == original:
                if original == class_name:
                    unreplaced_named.add(sample_id)
                continue
            if text != class_name:
                raise SplitFileError(
                    f"Sentence {sent_id} of ref {ref_key} in data.weak.split_file {shown} reads {text!r}, neither "
                    f"the dataset's expression nor the class name {class_name!r}; {_FIX}."
                )
            replaced[sample_id] = text

    if not present:
        raise SplitFileError(f"data.weak.split_file {shown} holds no training ref of the dataset; {_FIX}.")
    absent = [sample_id for sample_id in samples if sample_id not in present]
    unreplaced = present - replaced.keys() - unreplaced_named
    class_text = {sample_id: str(meta["class_name"]) for sample_id, (_, meta) in samples.items()}
    if replaced and not absent:
        view, weak_text = "all", dict(replaced)
    elif replaced and not unreplaced:
        view = "mask"
        weak_text = {**replaced, **{sample_id: class_text[sample_id] for sample_id in unreplaced_named}}
    elif not replaced:
        view = "no-mask" if absent else "all"
        weak_text = {sample_id: class_text[sample_id] for sample_id in absent}
    else:
        raise SplitFileError(
            f"data.weak.split_file {shown} holds {len(replaced)} replaced and {len(unreplaced)} unchanged train "
            f"sentences but lacks {len(absent)} others, which matches none of the views {', '.join(VIEWS)}; {_FIX}."
        )
    accurate = tuple(sorted(sample_id for sample_id in samples if sample_id not in weak_text))
    return SplitFileSelection(path=shown, sha256=sha256, view=view, accurate_ids=accurate, weak_text=weak_text)


def _rrsisd_samples(train_metadata: Sequence[dict], shown: str) -> dict[str, tuple[str, dict]]:
    """``{sample_id: (ref id as str, metadata)}``; refuses a dataset whose ids are not ``{ref_id}_{sent_id}``."""
    samples: dict[str, tuple[str, dict]] = {}
    for meta in train_metadata:
        sample_id = str(meta["sample_id"])
        ref_id, sent_id = meta.get("ref_id"), meta.get("sent_id")
        if ref_id is None or sent_id is None or sample_id != f"{ref_id}_{sent_id}":
            raise SplitFileError(
                f"data.weak.split_file {shown} needs a dataset in RRSIS-D form (sample ids {{ref_id}}_{{sent_id}}), "
                f"but sample {sample_id!r} is not; use data=rrsisd, or data.weak.accurate_ratio without a split file."
            )
        samples[sample_id] = (str(ref_id), meta)
    return samples
