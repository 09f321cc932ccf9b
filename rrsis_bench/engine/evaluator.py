"""Evaluation with exact RRSIS metrics, on one process or many.

Under DDP each rank scores its shard of a ``DistributedSampler`` (no shuffling). The sampler pads
the last shard by repeating samples; those padding positions are excluded from the intersection /
union sums before they are all-reduced, and the per-sample rows gathered on every rank are
de-duplicated by sample id, so the metrics equal a single-process evaluation exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from rrsis_bench.engine import distributed as D
from rrsis_bench.method import logits_of
from rrsis_bench.metrics import RRSISMetric


class EvalShardSampler(DistributedSampler):
    """``DistributedSampler`` without shuffling that can tell which of its positions are padding."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.dataset_size = len(dataset)

    def padding_flags(self) -> list[bool]:
        """For each index this rank yields, whether it is a repeat added to even out the shards."""
        return [self.rank + i * self.num_replicas >= self.dataset_size for i in range(self.num_samples)]


def build_eval_loader(dataset: Dataset, batch_size: int, num_workers: int, collate_fn) -> DataLoader:
    sampler = EvalShardSampler(dataset, num_replicas=D.world_size(), rank=D.rank())
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_fn,
        persistent_workers=False,
    )


def to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and key != "index":
            value = value.to(device, non_blocking=True)
            if key == "image" and channels_last:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def autocast(device: torch.device, amp: bool):
    """bf16 autocast when ``amp`` is on (CUDA, or CPU on request), else a no-op context."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def binarize_at(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Upsample (1, h, w) logits bilinearly to ``size`` and threshold at probability 0.5."""
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    return logits[0] > 0


def iter_predictions(model, loader: DataLoader, device: torch.device, *, amp: bool = False,
                     channels_last: bool = False, limit: int | None = None) -> Iterator[tuple[dict, list]]:
    """Yield (batch, [predicted bool mask at each sample's GT size]) in loader order."""
    seen = 0
    for batch in loader:
        if limit is not None and seen >= limit:
            break
        batch = to_device(batch, device, channels_last)
        with torch.no_grad(), autocast(device, amp):
            logits = logits_of(model(batch))
        preds = [binarize_at(logits[i], gt.shape[-2:]) for i, gt in enumerate(batch["gt_mask"])]
        seen += len(preds)
        yield batch, preds


@torch.no_grad()
def evaluate(model, loader: DataLoader, device: torch.device, *, amp: bool = False, channels_last: bool = False,
             limit: int | None = None, progress=None) -> tuple[dict, RRSISMetric]:
    """Score ``model`` on ``loader``'s dataset; returns (metrics, metric object with per-sample rows).

    ``limit`` caps the samples each rank scores (debug runs). ``progress`` is an optional callable
    ``(n_samples_done) -> None``.
    """
    was_training = model.training
    model.eval()
    sampler = loader.sampler
    flags = sampler.padding_flags() if isinstance(sampler, EvalShardSampler) else None
    local = RRSISMetric()
    position = 0
    for batch, preds in iter_predictions(model, loader, device, amp=amp, channels_last=channels_last, limit=limit):
        triples = zip(batch["sample_id"], preds, batch["gt_mask"], strict=True)
        kept = [t for i, t in enumerate(triples) if flags is None or not flags[position + i]]
        position += len(preds)
        if kept:
            ids, kept_preds, gts = zip(*kept, strict=True)
            local.update(list(ids), list(kept_preds), [gt.to(p.device) for gt, p in zip(gts, kept_preds, strict=True)])
            # The target's share of the image, for breakdowns by object size (at the scoring resolution).
            areas = torch.stack([gt.reshape(-1).count_nonzero() for gt in gts]).tolist()
            for sample_id, gt, area in zip(ids, gts, areas, strict=True):
                local.annotate(sample_id, target_pixels=int(area), pixels=int(gt.numel()))
        if progress is not None:
            progress(len(preds))
    model.train(was_training)

    frame = local.to_frame()
    sums = [int(frame["intersection"].sum()), int(frame["union"].sum())] if len(local) else [0, 0]
    total_i, total_u = D.all_reduce_sum(sums, device=device)
    merged = RRSISMetric()
    for rows in D.all_gather_objects(local.rows()):
        merged.merge(rows, drop_duplicates=True)
    frame = merged.to_frame()
    # The oIoU sums reduced across ranks must equal those of the gathered, de-duplicated rows.
    if (int(frame["intersection"].sum()), int(frame["union"].sum())) != (total_i, total_u):
        raise RuntimeError("Distributed evaluation is inconsistent: gathered rows and reduced sums differ.")
    if limit is None and len(merged) != len(loader.dataset):
        raise RuntimeError(
            f"Evaluation scored {len(merged)} samples but the dataset has {len(loader.dataset)}; "
            "sample ids must be unique."
        )
    metrics = merged.compute()
    return metrics, merged
