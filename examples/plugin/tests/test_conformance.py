"""A plugin's own test of the method contract: rrsis-bench's conformance check, one line per method
(install the plugin first: pip install ./examples/plugin)."""

from rrsis_bench.testing import check_method


def test_example_film_follows_the_method_contract():
    check_method("example_film")
