"""Split manifests: which samples (ids, expressions, class names) a run saw, as one sha256.

A run record cites the manifest hash of the split it was scored on, so two records are comparable
only if they were scored on the same samples with the same expressions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any


def sample_metadata(samples: Sequence[dict], index: int) -> dict[str, Any]:
    """A sample's id/text/class without decoding pixels when the dataset offers ``metadata(i)``."""
    meta = getattr(samples, "metadata", None)
    return meta(index) if callable(meta) else samples[index]


def split_manifest(samples: Sequence[dict]) -> dict[str, Any]:
    """``{"num_samples", "sha256", "sample_ids"}`` over sorted ``sample_id \\t text \\t class_name`` lines."""
    rows = []
    for i in range(len(samples)):
        meta = sample_metadata(samples, i)
        rows.append((str(meta["sample_id"]), str(meta["text"]), str(meta.get("class_name", ""))))
    rows.sort()
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"Sample ids must be unique within a split; '{duplicate}' appears more than once.")
    digest = hashlib.sha256("\n".join("\t".join(r) for r in rows).encode("utf-8")).hexdigest()
    return {"num_samples": len(rows), "sha256": digest, "sample_ids": ids}
