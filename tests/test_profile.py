"""`rrsis-bench profile`: the JSON fields, parameter count and FLOPs of a tiny method."""

from __future__ import annotations

import json

import pytest
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
    # profile builds the method as `run method=test_baseline` does: its YAML, then the override
    assert result["method_kwargs"]["fusion_dim"] == 8 and result["weights"] == "random init"
    model = rrsis_bench.create_method("test_baseline", **result["method_kwargs"])
    assert result["params"] == sum(p.numel() for p in model.parameters())
    assert result["flops"] > 0 and result["output_shape"] == [1, 1, 64, 64]
    assert "rrsis-bench profile: test_baseline" in capsys.readouterr().out


def test_profile_of_an_interleaved_method_counts_flops_on_the_faithful_path(tmp_path):
    """Fused attention is invisible to the counter on CPU: the faithful path counts it, then the
    method goes back to its configured (fast) path for the latency measurement."""
    out = tmp_path / "p.json"
    assert main(["profile", "method=test_fianet", "image_size=64", "repeats=1", f"out={out}"]) == 0
    result = json.loads(out.read_text())
    assert result["flops_counted_on"].startswith("faithful")
    assert {"params", "flops", "gmacs", "latency_ms", "peak_memory_mb", "flop_convention"} <= set(result)
    fast = rrsis_bench.create_method("test_fianet")
    assert fast.faithful is False
    assert result["params"] == sum(p.numel() for p in fast.parameters())


@pytest.mark.parametrize("name", rrsis_bench.list_methods("test_*"))
def test_profile_runs_for_every_test_method(name, tmp_path):
    """Every method profiles, whether its forward returns bare logits or a MethodOutput."""
    out = tmp_path / "p.json"
    assert main(["profile", f"method={name}", "image_size=64", "repeats=1", f"out={out}"]) == 0
    result = json.loads(out.read_text())
    assert result["output_shape"] == [1, 1, 64, 64] and result["flops"] > 0


@pytest.mark.slow
def test_faithful_models_match_the_official_flops_at_480():
    """Forward FLOPs at 480x480, batch 1, 20 tokens, counted from the official models: LAVT
    397.98 G, FIANet 421.55 G (num_tmem 1) / 422.87 G (num_tmem 3). Ours lack the background
    logit of the 2-logit head (a 512-channel 1x1 conv at 120x120: 14.7 MFLOPs)."""
    from rrsis_bench.profile import profile_method

    kwargs = dict(image_size=480, repeats=1, warmup=0, pretrained=False, text_pretrained=False)
    lavt = profile_method("lavt", **kwargs)
    fianet = profile_method("fianet", num_tmem=1, **kwargs)
    assert lavt["params"] == 227_739_514 - 513 and fianet["params"] == 251_918_706 - 513
    head = 2 * 512 * 120 * 120
    assert abs(lavt["flops"] + head - 397.98e9) < 0.05e9
    assert abs(fianet["flops"] + head - 421.55e9) < 0.05e9
    # The published GFLOPs (multiply-adds, third-party, RefSegRS model): 210.44 / 198.82.
    assert abs(fianet["flops"] / lavt["flops"] - 210.44 / 198.82) < 0.002


@pytest.mark.parametrize("pretrained", [False, True])
def test_profile_builds_with_random_init_unless_asked(pretrained, monkeypatch, tmp_path):
    """Counts and FLOPs do not depend on weights: the default build loads none (nothing to download)."""
    import rrsis_bench.profile as P

    built = {}

    def fake_create(name, **kwargs):
        built.update(kwargs)
        return OneConv()

    monkeypatch.setattr(P, "create_method", fake_create)
    args = ["profile", "method=baseline", "image_size=8", "repeats=1", "method.fusion_dim=8", f"out={tmp_path / 'p.json'}"]
    assert main([*args, f"pretrained={str(pretrained).lower()}"]) == 0
    assert built["pretrained"] is pretrained and built["text_pretrained"] is pretrained
    assert built["fusion_dim"] == 8 and built["frozen_stages"] == 2  # the rest is baseline.yaml's
    result = json.loads((tmp_path / "p.json").read_text())
    assert result["weights"] == ("pretrained" if pretrained else "random init")
