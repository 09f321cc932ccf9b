"""`python -m rrsis_bench …` (and `torchrun … -m rrsis_bench run …`) is the `rrsis-bench` command."""

import sys

from rrsis_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
