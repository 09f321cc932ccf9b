"""Built-in methods, one folder each; they are registered through the ``rrsis_bench.methods``
entry-point group in pyproject.toml, like any third-party plugin."""
