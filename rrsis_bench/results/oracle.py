"""The class-only oracle: how far the class alone gets, without reading the expression.

It predicts, for each sample, the union of every instance of the referred class in the image (the
dataset's ``class_union_mask``). It gets every class right and never reads the expression, so a
method that does not clearly beat it is not using the text. Datasets only build the masks; scoring
lives here, on the results side, so that reading data never imports the metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

from rrsis_bench.metrics import RRSISMetric


def class_only_oracle(dataset: Sequence[dict]) -> dict[str, float]:
    """Score the class-only oracle on ``dataset`` at native resolution.

    ``dataset`` must offer ``sample_id(i)``, ``class_union_mask(i)`` and ``target_mask(i)`` (the
    RRSIS-D reader and the synthetic dataset do; RefSegRS has no instance annotations). Returns the
    RRSIS metrics of :mod:`rrsis_bench.metrics` (percentages ``oIoU``, ``mIoU``, ``Pr@0.5`` …
    ``Pr@0.9``, plus ``num_samples``).
    """
    missing = [name for name in ("sample_id", "class_union_mask", "target_mask") if not hasattr(dataset, name)]
    if missing:
        raise TypeError(
            f"{type(dataset).__name__} has no {', '.join(missing)}; the class-only oracle needs a dataset with "
            "instance annotations (rrsisd, synthetic)."
        )
    metric = RRSISMetric()
    for index in range(len(dataset)):
        metric.update([dataset.sample_id(index)], [dataset.class_union_mask(index)], [dataset.target_mask(index)])
    return metric.compute()
