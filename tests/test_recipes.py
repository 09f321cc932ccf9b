"""Paper recipes: applied by method + data, by experiment name, and overridable."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module


def _compose(*overrides: str):
    with initialize_config_module(config_module="rrsis_bench.conf", version_base="1.3"):
        return compose(config_name="run", overrides=list(overrides))


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["method=fianet", "data=refsegrs"],
         {"lr": 5e-5, "epochs": 60, "num_tmem": 1, "max_tokens": 20, "boxes": False, "name": "fianet"}),
        (["experiment=fianet_refsegrs"],
         {"lr": 5e-5, "epochs": 60, "num_tmem": 1, "max_tokens": 20, "boxes": False, "name": "fianet"}),
        (["experiment=fianet_rrsisd"],
         {"lr": 3e-5, "epochs": 40, "num_tmem": 3, "max_tokens": 22, "boxes": True, "name": "fianet"}),
        (["method=lavt", "data=rrsisd"],
         {"lr": 3e-5, "epochs": 40, "num_tmem": None, "max_tokens": 20, "boxes": True, "name": "lavt"}),
        (["experiment=lavt_refsegrs"],
         {"lr": 5e-5, "epochs": 60, "num_tmem": None, "max_tokens": 20, "boxes": False, "name": "lavt"}),
    ],
)
def test_recipe_is_applied(overrides, expected):
    cfg = _compose(*overrides)
    got = {"lr": cfg.trainer.lr, "epochs": cfg.trainer.epochs, "num_tmem": cfg.method.get("num_tmem"),
           "max_tokens": cfg.data.max_tokens, "boxes": cfg.data.augment.boxes, "name": cfg.method.name}
    assert got == expected
    # Common to every recipe: batch 8, wd 0.01, poly 0.9, no clipping, 480 px scored at 480, val oIoU.
    assert (cfg.trainer.batch_size, cfg.trainer.weight_decay, cfg.trainer.poly_power) == (8, 0.01, 0.9)
    assert cfg.trainer.grad_clip is None and cfg.trainer.select_metric == "oIoU"
    assert (cfg.data.image_size, cfg.data.eval_size) == (480, 480)


def test_embedded_default_is_the_baseline_with_its_synthetic_recipe():
    default = _compose()
    assert (default.method.name, default.data.name) == ("baseline", "synthetic")
    assert (default.trainer.epochs, default.trainer.lr, default.data.image_size) == (12, 1e-3, 128)
    assert default.trainer.max_steps_per_epoch is None
    # fianet_lite and alignformer_lite have synthetic recipes equal to the default's trainer (12 epochs); a
    # method with no synthetic recipe gets the trainer defaults (4 epochs).
    assert _compose("method=fianet_lite").trainer == default.trainer
    assert _compose("method=alignformer_lite").trainer == default.trainer
    assert _compose("method=test_baseline").trainer.epochs == 4


@pytest.mark.parametrize("overrides", [[], ["experiment=fianet_refsegrs"], ["method=lavt", "data=rrsisd"]])
def test_debug_trainer_wins_over_a_recipe(overrides):
    cfg = _compose(*overrides, "trainer=debug")
    t = cfg.trainer
    assert (t.epochs, t.batch_size, t.max_steps_per_epoch, t.max_eval_samples) == (2, 4, 2, 8)
    plain = _compose(*overrides)
    assert cfg.data == plain.data and cfg.method == plain.method  # the recipe's data/method settings stay
    assert _compose(*overrides, "trainer=debug", "trainer.epochs=3").trainer.epochs == 3  # the command line wins


def test_no_recipe_without_a_published_one_and_overrides_win():
    synthetic = _compose("method=fianet", "data=synthetic")
    assert synthetic.trainer.lr == 1e-3 and synthetic.method.num_tmem == 3  # no fianet_synthetic recipe
    tuned = _compose("experiment=fianet_refsegrs", "trainer.lr=1e-4", "method.num_tmem=2")
    assert tuned.trainer.lr == 1e-4 and tuned.method.num_tmem == 2


@pytest.mark.parametrize("method", ["baseline", "fianet_lite", "alignformer_lite", "test_fianet"])
def test_the_shared_setting_s_is_16_epochs_on_the_synthetic_data_for_every_method(method):
    """experiment=synthetic_s (docs/claims.md) wins over a method's synthetic recipe and changes nothing else:
    its config is the method's with trainer.epochs=16 (so its runs and those spelled so are one cell)."""
    s = _compose("experiment=synthetic_s", f"method={method}")
    assert (s.data.name, s.trainer.epochs, s.trainer.lr, s.data.image_size) == ("synthetic", 16, 1e-3, 128)
    assert s == _compose(f"method={method}", "trainer.epochs=16")
