"""Hydra configs shipped by the example plugin (found through the rrsis_bench.configs entry point)."""
