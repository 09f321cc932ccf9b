"""Example rrsis-bench plugin: one method, ``example_film``."""
