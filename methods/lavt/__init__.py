"""LAVT (see :mod:`rrsis_bench.methods.lavt.model`)."""

from rrsis_bench.methods.lavt.model import LAVT, create_lavt, create_test_lavt

__all__ = ["LAVT", "create_lavt", "create_test_lavt"]
