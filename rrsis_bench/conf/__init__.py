"""Hydra configuration tree of rrsis-bench (``pkg://rrsis_bench.conf``)."""
