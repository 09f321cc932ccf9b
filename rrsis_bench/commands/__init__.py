"""What the plain `rrsis-bench` commands do, given their parsed arguments.

``rrsis_bench.cli`` only parses arguments, prints help and dispatches here (``run``/``eval`` go to
``rrsis_bench.tasks``). Each module is one command: ``convert``, ``data``, ``leaderboard``,
``profile``, ``score``, ``compare``.
"""
