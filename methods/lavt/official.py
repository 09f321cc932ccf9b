"""LAVT in the official LAVT-RIS checkpoint layout: the shared LAVT-family table, nothing LAVT-only.

``to_official(model)`` / ``from_official(model, state)`` / ``load_official_checkpoint(model, path)``
(re-exported from :mod:`rrsis_bench.nn.official_lavt`) use this table for a :class:`LAVT`, whose
``official_layout()`` returns it.
"""

from __future__ import annotations

from rrsis_bench.nn.official_lavt import (
    Rule,
    from_official,
    lavt_family_rules,
    load_official_checkpoint,
    to_official,
)


def lavt_rules() -> list[Rule]:
    """Ours ``fusions.{i}`` (PWAM) and ``gates.{i}`` <-> official ``backbone.layers.{i}.fusion`` / ``.res_gate``."""
    return lavt_family_rules(fusion="fusions.{i}", fusion_official="backbone.layers.{i}.fusion",
                             gate="gates.{i}.gate", gate_official="backbone.layers.{i}.res_gate")


__all__ = ["from_official", "lavt_rules", "load_official_checkpoint", "to_official"]
