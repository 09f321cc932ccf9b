"""What every registered method owes the engine: one source of defaults (factory == YAML), and a
gradient for every trainable parameter in every step (DDP runs without find_unused_parameters)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

import rrsis_bench
from rrsis_bench.engine.distributed import find_unused_parameters
from rrsis_bench.registry import METHODS, factory_defaults, method_defaults

METHOD_CONFIGS = Path(rrsis_bench.__file__).parent / "conf" / "method"
BUILT_IN = sorted(e.name for e in METHODS.entries() if e.source_dist == "rrsis-bench")
LENGTH = 10


def _plain(value):
    """YAML lists/dicts and the factories' tuples/read-only mappings compare as plain lists/dicts."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _composed_method_config(name: str) -> dict:
    """``cfg.method`` of ``rrsis-bench run method=NAME`` (the YAML as the CLI composes it)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module("rrsis_bench.conf", version_base="1.3"):
        cfg = compose("run", overrides=[f"method={name}"])
    return OmegaConf.to_container(cfg.method, resolve=True)


def test_every_built_in_method_has_a_config_file():
    assert sorted(p.stem for p in METHOD_CONFIGS.glob("*.yaml")) == BUILT_IN


@pytest.mark.parametrize("name", BUILT_IN)
def test_method_yaml_equals_the_factory_defaults(name):
    """`rrsis-bench run method=NAME` and `create_method(NAME)` build the same model: every YAML key
    is a factory keyword whose default is the YAML value."""
    config = _composed_method_config(name)
    assert config.pop("name") == name
    defaults = method_defaults(name)
    unknown = sorted(set(config) - set(defaults))
    assert unknown == [], f"conf/method/{name}.yaml has keys the factory does not take: {unknown}"
    differ = {k: (v, defaults[k]) for k, v in config.items() if _plain(v) != _plain(defaults[k])}
    assert differ == {}, f"conf/method/{name}.yaml (value, factory default): {differ}"


class _Base(torch.nn.Module):
    def __init__(self, *, width: int = 8, depth: int = 2) -> None:
        super().__init__()


class _Child(_Base):
    def __init__(self, *, heads: int = 1, **options) -> None:
        super().__init__(**options)


def _create_small(*, width: int = 4, **options) -> _Child:
    return _Child(width=width, **options)


def _create_closed(*, width: int = 3) -> _Child:
    return _Child(width=width)


def test_factory_defaults_follow_kwargs_into_the_built_class():
    assert factory_defaults(_create_small) == {"width": 4, "heads": 1, "depth": 2}
    assert factory_defaults(_Child) == {"heads": 1, "width": 8, "depth": 2}
    assert factory_defaults(_create_closed) == {"width": 3}  # no **kwargs: nothing else reaches the class


def test_baseline_factory_builds_the_measured_configuration():
    """The leaderboard's baseline runs were made with the YAML values (fusion 64, decoder 32, stem and
    2 block groups frozen); the factory used to build 96 / 64 / 1."""
    tiny_text = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    model = rrsis_bench.create_method("baseline", pretrained=False, text_pretrained=False, text_config=tiny_text)
    assert model.fusions[0].query.out_channels == 64
    assert model.decoder.head[1].in_channels == 32
    frozen_blocks = {n.split(".")[1] for n, p in model.backbone.named_parameters()
                     if n.startswith("blocks.") and not p.requires_grad}
    assert frozen_blocks == {"0", "1"}


def _batch(batch_size: int = 2, size: int = 64) -> dict:
    g = torch.Generator().manual_seed(0)
    full = torch.ones(batch_size, LENGTH, dtype=torch.long)
    full[1, 7:] = 0
    obj = torch.zeros_like(full)
    obj[:, 2:4] = 1
    pos = torch.zeros_like(full)
    pos[:, 4:6] = 1
    return {"image": torch.randn(batch_size, 3, size, size, generator=g),
            "input_ids": torch.randint(1000, 2000, (batch_size, LENGTH), generator=g), "attention_mask": full,
            "object_mask": obj, "position_mask": pos,
            "mask": (torch.rand(batch_size, size, size, generator=g) > 0.7).float()}


def _settings(name: str) -> list[dict]:
    """The fast and the faithful path where a method has both, else its one path."""
    return [{"faithful": False}, {"faithful": True}] if "faithful" in method_defaults(name) else [{}]


TEST_METHODS = rrsis_bench.list_methods("test_*")


@pytest.mark.parametrize("name,options", [(n, o) for n in TEST_METHODS for o in _settings(n)],
                         ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()))
def test_every_trainable_parameter_gets_a_gradient(name, options):
    """DDP without find_unused_parameters needs a gradient for every trainable parameter in every
    step; parameters that can never get one are frozen by the method instead."""
    torch.manual_seed(0)
    model = rrsis_bench.create_method(name, **options)
    batch = _batch()
    model.loss(model(batch), batch)["loss"].backward()
    no_grad = sorted(n for n, p in model.named_parameters() if p.requires_grad and p.grad is None)
    assert no_grad == []
    assert not find_unused_parameters(model)  # so the trainer takes DDP's fast path


def test_find_unused_parameters_is_asked_by_the_run_or_declared_by_the_method():
    model = rrsis_bench.create_method("test_baseline")
    assert find_unused_parameters(model) is False
    assert find_unused_parameters(model, requested=True) is True
    model.find_unused_parameters = True  # a method whose parameters may go unused in a step
    assert find_unused_parameters(model) is True
