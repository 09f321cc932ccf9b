"""Data pipeline: raw samples → tensors (transforms, tokenization, collate)."""
