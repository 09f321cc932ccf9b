"""Training engine: distributed helpers, trainer, evaluator, checkpoints."""
