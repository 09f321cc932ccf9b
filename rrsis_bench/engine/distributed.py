"""Process-group helpers. Launchers (torchrun, srun) set the environment; we only read it."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def local_rank() -> int:
    """This process's index on its node: torchrun's ``LOCAL_RANK``, else SLURM's ``SLURM_LOCALID``
    (``srun``), else 0. The one place that decides it (the device and the process group agree)."""
    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        if os.environ.get(name, "") != "":
            return int(os.environ[name])
    return 0


def cuda_device_index(visible: int | None = None) -> int:
    """The CUDA device of this process among the ``visible`` ones (default: all of them).

    The local rank modulo the visible devices: under ``srun --gpus-per-task=1`` every task sees only
    its own GPU (index 0), while torchrun and plain ``srun`` show each process all of the node's GPUs.
    """
    visible = torch.cuda.device_count() if visible is None else visible
    return local_rank() % max(1, visible)


def world_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's or SLURM's environment; (0, 0, 1) otherwise."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ["RANK"]), local_rank(), int(os.environ["WORLD_SIZE"])
    if "SLURM_NTASKS" in os.environ and int(os.environ["SLURM_NTASKS"]) > 1 and "MASTER_ADDR" in os.environ:
        return int(os.environ["SLURM_PROCID"]), local_rank(), int(os.environ["SLURM_NTASKS"])
    return 0, 0, 1


def init_distributed(device_kind: str) -> tuple[int, int, int]:
    """Join the process group when several processes were launched (gloo on CPU, nccl on CUDA)."""
    rank, local_rank, world = world_info()
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(cuda_device_index())
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return rank, local_rank, world


def find_unused_parameters(model: torch.nn.Module, requested: bool = False) -> bool:
    """Whether DDP must search the graph for unused parameters after every forward: when the run asks
    for it (``trainer.find_unused_parameters``) or the method declares that some of its trainable
    parameters may get no gradient in a step (``find_unused_parameters = True``, see
    :mod:`rrsis_bench.method`). Otherwise DDP takes the fast path."""
    return bool(requested or getattr(model, "find_unused_parameters", False))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(values: list[int], device: torch.device | str = "cpu") -> list[int]:
    """Element-wise integer sum across ranks (exact: int64)."""
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [int(v) for v in tensor.tolist()]


def all_gather_objects(obj: Any) -> list[Any]:
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
