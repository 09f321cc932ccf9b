"""AlignFormer-style re-implementation (see :mod:`rrsis_bench.methods.alignformer.model`)."""

from rrsis_bench.methods.alignformer.model import (
    AlignFormer,
    create_alignformer,
    create_alignformer_lite,
    create_test_alignformer,
)

__all__ = ["AlignFormer", "create_alignformer", "create_alignformer_lite", "create_test_alignformer"]
