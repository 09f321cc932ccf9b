"""Built-in dataset readers, one module each; registered through the ``rrsis_bench.datasets``
entry-point group in pyproject.toml, like any third-party plugin."""
