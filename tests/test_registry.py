"""Registry and entry-point discovery: names, errors, collisions, broken plugins."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import rrsis_bench
from rrsis_bench import registry as R
from rrsis_bench.cli import main


def fake_ep(name: str, value: str, dist: str, version: str = "1.0"):
    return SimpleNamespace(name=name, value=value, dist=SimpleNamespace(name=dist, version=version))


@pytest.fixture
def fake_group(monkeypatch):
    """Replace the entry points of the methods group with a controlled list."""

    def install(eps):
        real = R.md.entry_points

        def entry_points(group=None, **kw):
            return list(eps) if group == R.METHODS_GROUP else real(group=group, **kw)

        monkeypatch.setattr(R.md, "entry_points", entry_points)
        R.METHODS.refresh()

    yield install
    R.METHODS.refresh()


def test_builtins_are_registered_through_entry_points():
    assert {"baseline", "test_baseline"} <= set(rrsis_bench.list_methods())
    assert {"rrsisd", "synthetic"} <= set(rrsis_bench.list_datasets())
    entry = R.METHODS.entry("baseline")
    assert entry.source_dist == "rrsis-bench"
    assert entry.target == "rrsis_bench.methods.baseline:create_baseline"
    assert rrsis_bench.list_methods("test_*") == ["test_alignformer", "test_baseline", "test_fianet", "test_lavt"]
    assert {"alignformer", "alignformer_lite", "fianet", "fianet_lite", "lavt"} <= set(rrsis_bench.list_methods())


def test_create_method_builds_a_module():
    model = rrsis_bench.create_method("test_baseline")
    assert model.method_name == "test_baseline"
    assert sum(p.numel() for p in model.parameters()) > 0


def test_unknown_name_lists_close_matches_and_plugins():
    with pytest.raises(R.RegistryError) as err:
        rrsis_bench.create_method("baselin")
    message = str(err.value)
    assert "Unknown method 'baselin'" in message
    assert "Did you mean: baseline" in message
    assert "rrsis-bench list methods" in message


def test_collision_names_both_distributions(fake_group):
    fake_group(
        [
            fake_ep("dup", "rrsis_bench.methods.baseline:create_test_baseline", "pkg-one", "1.2"),
            fake_ep("dup", "rrsis_bench.methods.baseline:create_test_baseline", "pkg-two", "0.3"),
        ]
    )
    with pytest.raises(
        R.RegistryError, match=r"claimed by several distributions: pkg-one 1.2 and pkg-two 0.3"
    ):
        rrsis_bench.create_method("dup")
    assert R.METHODS.entries()[0].status.startswith("conflict")


def test_same_distribution_seen_twice_is_not_a_collision(fake_group):
    ep = fake_ep("once", "rrsis_bench.methods.baseline:create_test_baseline", "pkg-one")
    fake_group([ep, ep])
    assert R.METHODS.entry("once").status == "ok"


def test_broken_plugin_is_reported_not_fatal(fake_group, capsys):
    fake_group(
        [
            fake_ep("broken", "no_such_module_xyz:factory", "broken-plugin"),
            fake_ep("fine", "rrsis_bench.methods.baseline:create_test_baseline", "fine-plugin"),
        ]
    )
    assert main(["list", "methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["broken"]["status"].startswith("failed: ModuleNotFoundError")
    assert rows["broken"]["source_dist"] == "broken-plugin"
    assert rows["fine"]["status"] == "ok"
    with pytest.raises(R.RegistryError, match=r"'broken' from distribution 'broken-plugin' failed to import"):
        rrsis_bench.create_method("broken")
    assert rrsis_bench.create_method("fine") is not None


def test_unknown_name_mentions_installed_plugins(fake_group):
    fake_group([fake_ep("fancy_net", "rrsis_bench.methods.baseline:create_test_baseline", "fancy-plugin")])
    with pytest.raises(R.RegistryError, match="Installed plugin distributions: fancy-plugin"):
        rrsis_bench.create_method("nope")


def test_disable_plugins_keeps_builtins_only(fake_group, monkeypatch):
    fake_group(
        [
            fake_ep("baseline", "rrsis_bench.methods.baseline:create_baseline", "rrsis-bench"),
            fake_ep("other", "rrsis_bench.methods.baseline:create_test_baseline", "other-plugin"),
        ]
    )
    monkeypatch.setenv(R.DISABLE_PLUGINS_ENV, "1")
    R.METHODS.refresh()
    assert R.METHODS.names() == ["baseline"]


def test_in_process_registration_and_conflict():
    R.METHODS.register("tmp_local", lambda **kw: None)
    try:
        assert "tmp_local" in rrsis_bench.list_methods()
        with pytest.raises(R.RegistryError, match="already registered"):
            R.METHODS.register("tmp_local", lambda **kw: None)
    finally:
        R.METHODS.unregister("tmp_local")
    assert "tmp_local" not in rrsis_bench.list_methods()


def test_list_json_and_table(capsys):
    assert main(["list", "datasets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == sorted(r["name"] for r in rows)
    assert all({"name", "source_dist", "description", "status"} <= set(r) for r in rows)
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and "rrsis-bench" in out
