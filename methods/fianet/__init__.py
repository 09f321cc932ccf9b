"""FIANet (see :mod:`rrsis_bench.methods.fianet.model`)."""

from rrsis_bench.methods.fianet.model import FIANet, create_fianet, create_fianet_lite, create_test_fianet

__all__ = ["FIANet", "create_fianet", "create_fianet_lite", "create_test_fianet"]
