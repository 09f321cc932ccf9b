"""Language-conditioned FPN baseline (see :mod:`rrsis_bench.methods.baseline.model`)."""

from rrsis_bench.methods.baseline.model import LanguageFPNBaseline, create_baseline, create_test_baseline

__all__ = ["LanguageFPNBaseline", "create_baseline", "create_test_baseline"]
