"""`rrsis-bench profile`: the JSON fields, parameter count and FLOPs of a tiny method."""

from __future__ import annotations

import json

from torch import nn

import rrsis_bench
from rrsis_bench import registry as R
from rrsis_bench.cli import main
from rrsis_bench.method import MethodSpec, RRSISMethod


class OneConv(RRSISMethod):
    """A 1x1 convolution from RGB to one logit: FLOPs are easy to count by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1, bias=False)
        self.spec = MethodSpec(tokenizer="minilm")

    def forward(self, batch):
        return self.conv(batch["image"])


def test_profile_counts_flops_by_hand(tmp_path):
    R.METHODS.register("one_conv", lambda **kw: OneConv())
    try:
        out = tmp_path / "p.json"
        assert main(["profile", "method=one_conv", "image_size=8", "batch_size=2", "repeats=2", f"out={out}"]) == 0
    finally:
        R.METHODS.unregister("one_conv")
    result = json.loads(out.read_text())
    assert result["params"] == 3 and result["trainable_params"] == 3
    assert result["flops"] == 2 * (2 * 8 * 8) * 3  # 2 FLOPs per multiply-add; 3 per output pixel; 128 pixels
    assert result["gmacs"] == round(result["flops"] / 2e9, 3)
    assert result["output_shape"] == [2, 1, 8, 8]
    assert "2 per multiply-add" in result["flop_convention"]
    assert result["latency_ms"]["repeats"] == 2 and result["latency_ms"]["median"] > 0
    assert result["peak_memory_mb"] > 0


def test_profile_a_registered_method_with_kwargs(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["profile", "method=test_baseline", "image_size=64", "repeats=1", "method.fusion_dim=8",
                 f"out={out}"]) == 0
    result = json.loads(out.read_text())
    model = rrsis_bench.create_method("test_baseline", fusion_dim=8)
    assert result["params"] == sum(p.numel() for p in model.parameters())
    assert result["method_kwargs"] == {"fusion_dim": 8}
    assert result["flops"] > 0 and result["output_shape"] == [1, 1, 64, 64]
    assert "rrsis-bench profile: test_baseline" in capsys.readouterr().out
