"""FIANet in the official checkpoint layout: the LAVT-family table plus FIANet's own modules.

The names are those of the official repository (github.com/Shaosifan/FIANet): its
``lib/backbone.py`` (the per-stage ``MMBasicLayer`` with the channel modulation ``fc1``/``fc2``,
``context_pixel_attn``, ``context_tanh_gate`` and ``object_position_align_blk``, whose
``go_cross_attn``, ``go_tanh_gating``, never-called ``go_embedding``, ``sp_cross_attn`` and ``conv1``
are listed below) and its ``lib/text_aware_multiscale_enhancement.py`` (the ``TMEM`` module under
``backbone.tmem``). Every tensor of the official model maps to one of ours and back. The shared parts
(Swin, stage norms, decoder, ``text_encoder``) are LAVT's; the context PWAM and gate are also accepted
under LAVT's spelling (``fusion``, ``res_gate``) on import.

With these names the parameter shapes agree with the official model's count exactly
(``go_embedding`` without bias, the scale-aware gates' 1x1 convs with bias).
"""

from __future__ import annotations

from rrsis_bench.nn.official_lavt import (
    Rule,
    attention_rules,
    from_official,
    lavt_family_rules,
    load_official_checkpoint,
    pwam_rules,
    to_official,
)

LAYER = "backbone.layers.{i}"
OPAB = f"{LAYER}.object_position_align_blk"
TMEM = "backbone.tmem"


# ---- the FIANet-only table (ours <-> official; see the module docstring) ------------------------
FIANET_ONLY_RULES: list[Rule] = [
    # FIAM channel modulation (SE-style): Linear C -> C/8 -> C
    Rule("fusions.{i}.channel_gate.mlp.0.{rest}", f"{LAYER}.fc1.{{rest}}"),
    Rule("fusions.{i}.channel_gate.mlp.2.{rest}", f"{LAYER}.fc2.{{rest}}"),
    # OPAB ground-object branch: cross-attention + tanh gate (+ the declared, never-called go_embedding)
    *attention_rules("fusions.{i}.object_position.object_attention", f"{OPAB}.go_cross_attn"),
    Rule("fusions.{i}.object_position.object_gate.gate.{rest}", f"{OPAB}.go_tanh_gating.{{rest}}"),
    Rule("fusions.{i}.object_position.unused_embedding.weight", f"{OPAB}.go_embedding.weight"),
    # OPAB spatial-position branch: cross-attention + CBAM-style 3x3 conv on [mean, max]
    *attention_rules("fusions.{i}.object_position.position_attention", f"{OPAB}.sp_cross_attn"),
    Rule("fusions.{i}.object_position.spatial.{rest}", f"{OPAB}.conv1.{{rest}}"),
    # TMEM: reduce, blocks (LN, text attention, LN, MLP), BN + expand, per-scale gates
    Rule("tmem.reduce.{rest}", f"{TMEM}.down_channel.{{rest}}"),
    Rule("tmem.blocks.{k}.norm1.{rest}", f"{TMEM}.block.{{k}}.norm1.{{rest}}"),
    *attention_rules("tmem.blocks.{k}.attention", f"{TMEM}.block.{{k}}.tma"),
    Rule("tmem.blocks.{k}.norm2.{rest}", f"{TMEM}.block.{{k}}.norm2.{{rest}}"),
    Rule("tmem.blocks.{k}.mlp.0.{rest}", f"{TMEM}.block.{{k}}.ff.net.0.{{rest}}"),
    Rule("tmem.blocks.{k}.mlp.2.{rest}", f"{TMEM}.block.{{k}}.ff.net.3.{{rest}}"),
    Rule("tmem.expand.0.{rest}", f"{TMEM}.bn.{{rest}}"),
    Rule("tmem.expand.1.{rest}", f"{TMEM}.up_channel.{{rest}}"),
    *(rule
      for ours, conv, bn in (("local_embedding", "local_embedding", "bn1"),
                             ("global_embedding", "global_embedding", "bn2"),
                             ("global_act", "global_act", "bn3"))
      for rule in (
          Rule(f"tmem.gates.{{i}}.{ours}.0.{{rest}}", f"{TMEM}.fusion.{{i}}.{conv}.{{rest}}"),
          Rule(f"tmem.gates.{{i}}.{ours}.1.{{rest}}", f"{TMEM}.fusion.{{i}}.{bn}.{{rest}}"),
      )),
]


def fianet_rules() -> list[Rule]:
    """The full FIANet table: LAVT-family parts under FIANet's names, LAVT's spelling as import
    aliases, then :data:`FIANET_ONLY_RULES`."""
    return [
        *lavt_family_rules(fusion="fusions.{i}.context", fusion_official=f"{LAYER}.context_pixel_attn",
                           gate="fusions.{i}.context_gate.gate", gate_official=f"{LAYER}.context_tanh_gate"),
        *pwam_rules("fusions.{i}.context", f"{LAYER}.fusion", alias=True),
        Rule("fusions.{i}.context_gate.gate.{rest}", f"{LAYER}.res_gate.{{rest}}", alias=True),
        *FIANET_ONLY_RULES,
    ]


__all__ = ["FIANET_ONLY_RULES", "fianet_rules", "from_official", "load_official_checkpoint", "to_official"]
