"""Composing rrsis-bench's Hydra configs outside a Hydra app (convert, profile, data text) and making
plugin methods selectable as ``method=<name>``.

``rrsis-bench run`` and the plain commands must see the same configuration for a method: its
``method/<name>.yaml`` (built in, or shipped by a plugin's ``rrsis_bench.configs`` package), the
published recipe for the method+dataset pair, the trainer defaults. Everything here goes through
Hydra's compose API with the same search path as the CLI, so there is one source of truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from importlib.metadata import entry_points
from typing import Any


class ConfigError(ValueError):
    """A config could not be composed (unknown group option, bad override)."""


def plugin_config_search_paths() -> list[str]:
    """``pkg://`` search paths of the installed plugin config packages."""
    from rrsis_bench.registry import config_search_paths

    return list(config_search_paths())


def store_plugin_method_configs() -> None:
    """Give every registered method without its own ``method/<name>.yaml`` a default config node
    ``{name: <name>}``, so ``method=<name>`` works for any installed plugin."""
    from hydra.core.config_store import ConfigStore

    from rrsis_bench.registry import CONFIGS_GROUP, list_methods

    shipped = {p.stem for p in resources.files("rrsis_bench.conf").joinpath("method").iterdir()}
    for ep in entry_points(group=CONFIGS_GROUP):
        try:
            folder = resources.files(ep.value).joinpath("method")
            shipped |= {p.stem for p in folder.iterdir()} if folder.is_dir() else set()
        except (ModuleNotFoundError, FileNotFoundError):
            continue
    store = ConfigStore.instance()
    for name in list_methods():
        if name not in shipped:
            store.store(group="method", name=name, node={"name": name})


def compose_run_config(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The resolved config ``rrsis-bench run OVERRIDES`` would use (method and data files, the
    published recipe for the pair if any, trainer defaults), composed without running anything.

    Mandatory values that are still missing (``data.root: ???``) are kept as ``"???"``.
    """
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    store_plugin_method_configs()
    overrides = list(overrides)
    paths = plugin_config_search_paths()
    if paths:
        overrides.append("hydra.searchpath=[" + ",".join(paths) + "]")
    try:
        with initialize_config_module("rrsis_bench.conf", version_base="1.3"):
            cfg = compose("run", overrides=overrides)
    except (HydraException, OSError) as exc:
        raise ConfigError(f"Cannot compose the config {' '.join(overrides)}: {exc}") from exc
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


def method_config(name: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The ``method`` node ``rrsis-bench run method=NAME OVERRIDES`` would build."""
    return compose_run_config([f"method={name}", *overrides])["method"]
