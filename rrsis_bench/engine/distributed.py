"""Process-group helpers. Launchers (torchrun, srun, submitit) set the environment and we read it; only in
a submitit job do we fill in torch's variables, from submitit's own description of the job.

Three ways in, one process per GPU each:
- torchrun: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``.
- ``srun`` (one task per GPU): ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``; the user exports
  ``MASTER_ADDR`` and ``MASTER_PORT`` (their presence is the opt-in: a plain multi-task allocation
  is not a process group by itself).
- a submitit job of several tasks (``hydra/launcher=submitit_slurm`` or ``submitit_local`` with
  ``tasks_per_node > 1``): submitit starts one process per task; torch's variables are taken from
  submitit's job environment (:func:`adopt_submitit_environment`), and from then on it is the
  torchrun case.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def adopt_submitit_environment() -> None:
    """In a submitit job of several tasks, export torch's ``env://`` variables (``MASTER_ADDR``: the
    job's first node; ``MASTER_PORT``: derived from the job id, the same in every task; ``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``) from submitit's own
    ``TorchDistributedEnvironment``. Variables already set win (``MASTER_PORT`` from the job's setup
    lines, or torchrun's when a job runs torchrun); ``CUDA_VISIBLE_DEVICES`` is left alone
    (:func:`cuda_device_index` picks the GPU). No-op outside submitit, in one-task jobs and once done."""
    if os.environ.get("SUBMITIT_EXECUTOR", "") == "" or ("RANK" in os.environ and "WORLD_SIZE" in os.environ):
        return
    from submitit.helpers import TorchDistributedEnvironment  # present: submitit started this process

    job = TorchDistributedEnvironment()
    if job.world_size <= 1:
        return
    exported = {"MASTER_ADDR": job.master_addr, "MASTER_PORT": job.master_port, "RANK": job.rank,
                "WORLD_SIZE": job.world_size, "LOCAL_RANK": job.local_rank, "LOCAL_WORLD_SIZE": job.local_world_size}
    for name, value in exported.items():
        os.environ.setdefault(name, str(value))


def local_rank() -> int:
    """This process's index on its node: torchrun's ``LOCAL_RANK``, else SLURM's ``SLURM_LOCALID``
    (``srun``), else 0. The one place that decides it (the device and the process group agree)."""
    adopt_submitit_environment()
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
    """(rank, local_rank, world_size) from torchrun's, submitit's or SLURM's environment; (0, 0, 1) otherwise."""
    adopt_submitit_environment()
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


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank ``src``'s parameters and buffers, in place: for weights only ``src`` could read
    (the run folder may sit on a disk of rank 0's node alone, a multi-node job without a shared
    filesystem)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):
            if tensor.is_contiguous():
                dist.broadcast(tensor.data, src=src)
            else:  # channels-last weights: collectives take contiguous tensors only
                buffer = tensor.data.contiguous()
                dist.broadcast(buffer, src=src)
                tensor.data.copy_(buffer)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
