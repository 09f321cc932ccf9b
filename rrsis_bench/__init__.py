"""rrsis-bench: a benchmark suite for referring remote-sensing image segmentation (RRSIS).

The public Python API is small and stable::

    import rrsis_bench
    rrsis_bench.list_methods()              # ['baseline', ...]
    model = rrsis_bench.create_method("baseline", pretrained=False)
    ds = rrsis_bench.create_dataset("synthetic", split="test")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from rrsis_bench.registry import create_dataset, create_method, list_datasets, list_methods

try:
    __version__ = version("rrsis-bench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "create_dataset", "create_method", "list_datasets", "list_methods"]
