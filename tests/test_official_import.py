"""Official LAVT/FIANet checkpoints <-> our models: layout, head fold, errors, the convert command.

Tiny random-init models on the CPU; a second model with another seed receives the weights.
"""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F
from rrsis_bench.methods.fianet import create_test_fianet
from rrsis_bench.methods.lavt import create_test_lavt

from rrsis_bench.cli import main
from rrsis_bench.nn.official_lavt import from_official, load_official_checkpoint, to_official

FACTORIES = {"lavt": create_test_lavt, "fianet": create_test_fianet}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread is fastest and spins no idle cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(method: str, seed: int):
    torch.manual_seed(seed)
    model = FACTORIES[method]().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the buffers matter too
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1] * 6 + [0] * 2, [1] * 4 + [0] * 4])
    object_mask = mask.clone()
    object_mask[:, 3:] = 0
    position_mask = mask.clone()
    position_mask[:, :2] = 0
    return {"image": torch.randn(2, 3, 64, 64, generator=g), "input_ids": torch.randint(100, 2000, (2, 8), generator=g),
            "attention_mask": mask, "object_mask": object_mask, "position_mask": position_mask}


@pytest.fixture(scope="module", params=["lavt", "fianet"])
def source(request):
    """(method, model, its official state dict)."""
    model = build(request.param, 0)
    return request.param, model, to_official(model)


def _outputs(model, batch):
    with torch.no_grad():
        return model(batch)


def test_round_trip_reproduces_outputs_exactly(source, batch):
    method, model, official = source
    fresh = build(method, 1)
    assert not torch.equal(_outputs(fresh, batch), _outputs(model, batch))
    result = from_official(fresh, official)
    assert result.missing == [] and result.unexpected == []
    assert torch.equal(_outputs(fresh, batch), _outputs(model, batch))
    loaded = fresh.state_dict()
    differ = [k for k, v in model.state_dict().items() if not torch.equal(v, loaded[k])]
    assert differ == []


def test_export_uses_official_names_and_shapes(source):
    method, model, official = source
    hidden = model.decoder.classifier.in_channels
    assert official["classifier.conv1_1.weight"].shape == (2, hidden, 1, 1)
    assert torch.equal(official["classifier.conv1_1.weight"][0], torch.zeros(hidden, 1, 1))
    assert official["classifier.conv1_1.bias"].shape == (2,)
    assert official["classifier.conv1_4.weight"].shape == model.decoder.levels[0][0][0].weight.shape
    pwam = "fusion" if method == "lavt" else "context_pixel_attn"
    gate = "res_gate" if method == "lavt" else "context_tanh_gate"
    for name in ("vis_project.0", "image_lang_att.f_query.0", "image_lang_att.f_key.0",
                 "image_lang_att.f_value.0", "image_lang_att.W.0", "project_mm.0"):
        assert official[f"backbone.layers.2.{pwam}.{name}.weight"].dim() == 3, name
    assert official[f"backbone.layers.2.{pwam}.image_lang_att.f_key.0.weight"].shape == (64, 32, 1)
    assert official[f"backbone.layers.1.{gate}.0.weight"].shape == (32, 32)
    assert official["backbone.layers.0.downsample.reduction.weight"].shape == (32, 64)
    assert "backbone.layers.3.downsample.reduction.weight" not in official
    assert official["backbone.layers.0.blocks.0.attn.relative_position_index"].dtype == torch.long
    assert official["backbone.norm3.weight"].shape == (128,)
    assert "text_encoder.encoder.layer.1.output.dense.weight" in official
    assert not [k for k in official if k.startswith(("backbone.stages", "decoder.", "text.", "stage_norms", "fusions"))]
    if method == "fianet":
        assert official["backbone.layers.0.object_position_align_blk.go_cross_attn.f_query.0.weight"].dim() == 3
        assert "backbone.layers.0.object_position_align_blk.go_embedding.bias" not in official
        assert official["backbone.tmem.fusion.0.local_embedding.bias"].shape == (16,)
        assert official["backbone.tmem.block.0.tma.f_key.0.weight"].shape == (60, 32, 1)


def test_two_logit_head_is_folded_into_the_foreground_logit(source):
    method, _, official = source
    hidden = official["classifier.conv1_1.weight"].shape[1]
    g = torch.Generator().manual_seed(3)
    state = dict(official)
    state["classifier.conv1_1.weight"] = torch.randn(2, hidden, 1, 1, generator=g)  # background row non-zero
    state["classifier.conv1_1.bias"] = torch.tensor([0.7, -0.2])
    model = build(method, 1)
    from_official(model, state)
    x = torch.randn(1, hidden, 2, 3, generator=g)
    two = F.conv2d(x, state["classifier.conv1_1.weight"], state["classifier.conv1_1.bias"])
    with torch.no_grad():
        ours = torch.sigmoid(model.decoder.classifier(x))[:, 0]
    assert torch.allclose(ours, two.softmax(dim=1)[:, 1], atol=1e-6)


def test_missing_and_unexpected_keys_give_one_clear_error():
    model = build("lavt", 0)
    state = to_official(model)
    del state["backbone.layers.1.fusion.project_mm.0.weight"]
    state["backbone.layers.1.mystery.weight"] = torch.zeros(3)
    fresh = build("lavt", 1)
    with pytest.raises(ValueError) as info:
        from_official(fresh, {"model": state}, source="lavt_best.pth")
    message = str(info.value)
    assert "lavt_best.pth" in message and "1 tensors of the model are missing" in message
    assert "backbone.layers.1.fusion.project_mm.0.weight" in message and "fusions.1.out.0.weight" in message
    assert "backbone.layers.1.mystery.weight" in message and "strict=False" in message
    result = from_official(fresh, state, strict=False)
    assert result.missing == ["fusions.1.out.0.weight"] and result.unexpected == ["backbone.layers.1.mystery.weight"]
    assert torch.equal(fresh.fusions[0].out[0].weight, model.fusions[0].out[0].weight)
    assert not torch.equal(fresh.fusions[1].out[0].weight, model.fusions[1].out[0].weight)  # kept its own


def test_wrong_shape_and_wrong_method_are_reported():
    lavt = build("lavt", 0)
    state = to_official(lavt)
    state["backbone.norm2.weight"] = torch.zeros(5)
    with pytest.raises(ValueError, match=r"1 have the wrong shape(.|\n)*backbone\.norm2\.weight \(5,\) -> ours stage_norms.2.weight: \(64,\)"):
        from_official(build("lavt", 1), state)
    with pytest.raises(ValueError, match="LAVT checkpoint for method=fianet") as info:
        from_official(build("fianet", 1), to_official(lavt))  # LAVT's PWAM names are accepted, the rest is missing
    assert "fusions.*.channel_gate" in str(info.value) and "object_position_align_blk" in str(info.value)
    with pytest.raises(ValueError, match="method=lavt vs method=fianet") as info:
        from_official(build("lavt", 1), to_official(build("fianet", 0)))
    assert "(e.g. backbone.layers.0.fc1.weight)" in str(info.value)
    fianet_state = to_official(build("fianet", 0))
    with pytest.raises(ValueError, match="num_tmem=1"):
        from_official(create_test_fianet(num_tmem=2), fianet_state)


def test_wrappers_prefix_and_separate_bert_are_accepted(tmp_path, batch):
    model = build("lavt", 0)
    state = to_official(model)
    ddp = {"model": {f"module.{k}": v for k, v in state.items()}, "args": argparse.Namespace(lr=5e-5, swin_type="base"),
           "epoch": 39}
    path = tmp_path / "checkpoint_best.pth"
    torch.save(ddp, path)
    fresh = build("lavt", 1)
    load_official_checkpoint(fresh, path)
    assert torch.equal(_outputs(fresh, batch), _outputs(model, batch))
    text = "text_encoder."
    two_models = {"model": {k: v for k, v in state.items() if not k.startswith(text)},
                  "bert_model": {f"module.{k[len(text):]}": v for k, v in state.items() if k.startswith(text)},
                  "state_dict_unused": 1}
    fresh = build("lavt", 2)
    from_official(fresh, two_models)
    assert torch.equal(_outputs(fresh, batch), _outputs(model, batch))
    bare = {**state, "text_encoder.embeddings.position_ids": torch.arange(512)[None]}
    fresh = build("lavt", 3)
    from_official(fresh, {"state_dict": bare})
    assert torch.equal(_outputs(fresh, batch), _outputs(model, batch))


def test_convert_command_writes_a_folder_that_loads_back(tmp_path, batch):
    from omegaconf import OmegaConf

    from rrsis_bench.engine.checkpoint import load_weights, read_meta
    from rrsis_bench.tasks import build_method, resolve_checkpoint

    model = build("lavt", 0)
    src = tmp_path / "lavt_official.pth"
    torch.save({"model": to_official(model), "args": argparse.Namespace(model="lavt")}, src)
    out = tmp_path / "converted"
    assert main(["convert", "method=test_lavt", f"src={src}", f"out={out}", "data=synthetic", "decoder_hidden=16"]) == 0
    weights, config_file = resolve_checkpoint(out)
    config = OmegaConf.to_container(OmegaConf.load(config_file))
    assert config["method"]["name"] == "test_lavt" and config["method"]["pretrained"] is False
    assert config["method"]["text_pretrained"] is False and config["data"]["name"] == "synthetic"
    assert read_meta(weights)["sha256"] and read_meta(weights)["missing"] == []
    loaded = build_method(config["method"]).eval()
    load_weights(weights, loaded)
    assert torch.equal(_outputs(loaded, batch), _outputs(model, batch))


def test_convert_command_reports_a_mismatch(tmp_path, capsys):
    src = tmp_path / "lavt_official.pth"
    torch.save({"model": to_official(build("lavt", 0))}, src)
    assert main(["convert", "method=test_fianet", f"src={src}", f"out={tmp_path / 'x'}"]) == 1
    assert "missing" in capsys.readouterr().out
    assert not (tmp_path / "x").exists()
    assert main(["convert", "--help"]) == 0


def test_each_method_hands_its_layout_to_the_importer():
    """The importer in rrsis_bench.nn knows no method class: it asks the model (official_layout())."""
    import ast
    from pathlib import Path

    from rrsis_bench.methods.fianet.official import fianet_rules
    from rrsis_bench.methods.lavt.official import lavt_rules

    import rrsis_bench.nn
    from rrsis_bench.nn.official_lavt import Rule, official_rules

    for path in Path(rrsis_bench.nn.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if m.startswith("rrsis_bench.methods")], path.name
    rules = lambda model: [(r.ours.text, r.official.text if r.official else None) for r in official_rules(model)]  # noqa: E731
    table = lambda rs: [(r.ours.text, r.official.text if r.official else None) for r in rs]  # noqa: E731
    assert rules(build("lavt", 0)) == table(lavt_rules())
    assert rules(build("fianet", 0)) == table(fianet_rules())

    class Tiny(torch.nn.Module):  # any model with a layout of its own goes through the same importer
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(2, 3)

        def official_layout(self):
            return [Rule("proj.{rest}", "head.fc.{rest}")]

    source, target = Tiny(), Tiny()
    exported = to_official(source)
    assert sorted(exported) == ["head.fc.bias", "head.fc.weight"]
    from_official(target, exported)
    assert torch.equal(target.proj.weight, source.proj.weight)
    with pytest.raises(TypeError, match="official_layout"):
        official_rules(torch.nn.Linear(2, 3))


class _Opaque:
    """An object only full unpickling can restore (as a pickled optimizer or a planted payload)."""


def test_a_file_that_needs_full_unpickling_loads_only_when_trusted(tmp_path, batch):
    model = build("lavt", 0)
    path = tmp_path / "with_object.pth"
    torch.save({"model": to_official(model), "extra": _Opaque()}, path)
    fresh = build("lavt", 1)
    with pytest.raises(ValueError, match="trust=true"):
        load_official_checkpoint(fresh, path)
    assert not torch.equal(_outputs(fresh, batch), _outputs(model, batch))  # nothing was loaded
    load_official_checkpoint(fresh, path, trust=True)
    assert torch.equal(_outputs(fresh, batch), _outputs(model, batch))
