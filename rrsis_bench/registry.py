"""Registries of methods and datasets, discovered through entry points.

Built-in methods and datasets are declared in rrsis-bench's own ``pyproject.toml`` under the
entry-point groups ``rrsis_bench.methods`` and ``rrsis_bench.datasets``, exactly as a third-party
plugin declares its own, so the plugin path is the one exercised every day.

Listing reads entry-point *names* only; a plugin module is imported when it is first used, and a
plugin that fails to import is reported (``rrsis-bench list``) without breaking the others.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata as md
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

METHODS_GROUP = "rrsis_bench.methods"
DATASETS_GROUP = "rrsis_bench.datasets"
CONFIGS_GROUP = "rrsis_bench.configs"
DISABLE_PLUGINS_ENV = "RRSIS_BENCH_DISABLE_PLUGINS"
_OWN_DIST = "rrsis-bench"


class RegistryError(LookupError):
    """A name that cannot be resolved: unknown, claimed twice, or its plugin failed to import."""


@dataclass
class Entry:
    """One registered name and where it comes from."""

    name: str
    kind: str
    source_dist: str
    dist_version: str | None
    target: str  # "module:attr" for entry points, "<in-process>" for register()
    _obj: Any = None
    _error: str | None = None
    claimants: list[str] = field(default_factory=list)  # distributions claiming the same name

    def load(self) -> Any:
        if self._obj is None and self._error is None:
            module_name, _, attr = self.target.partition(":")
            try:
                obj = importlib.import_module(module_name)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except Exception as exc:  # a broken plugin must not take the others down
                self._error = f"{type(exc).__name__}: {exc}"
            else:
                self._obj = obj
        if self._error is not None:
            raise RegistryError(
                f"The {self.kind} '{self.name}' from distribution '{self.source_dist}' failed to import "
                f"({self.target}): {self._error}. Fix or uninstall that package "
                f"(pip uninstall {self.source_dist})."
            )
        return self._obj

    @property
    def status(self) -> str:
        if len(self.claimants) > 1:
            return "conflict: " + ", ".join(self.claimants)
        try:
            self.load()
        except RegistryError:
            return f"failed: {self._error}"
        return "ok"

    @property
    def description(self) -> str:
        """First line of the factory's docstring ('' when it cannot be imported)."""
        try:
            obj = self.load()
        except RegistryError:
            return ""
        doc = inspect.getdoc(obj) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""



class Registry:
    """Name → factory, filled lazily from one entry-point group (plus in-process registrations)."""

    def __init__(self, kind: str, group: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.group = group
        self._entries: dict[str, Entry] | None = None
        self._local: dict[str, Entry] = {}

    # -- discovery ---------------------------------------------------------------------------
    def _discover(self) -> dict[str, Entry]:
        if self._entries is not None:
            return self._entries
        entries: dict[str, Entry] = {}
        seen: set[tuple[str, str, str]] = set()
        plugins_disabled = os.environ.get(DISABLE_PLUGINS_ENV, "") not in ("", "0")
        for ep in md.entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "<unknown>"
            if plugins_disabled and _normalize(dist) != _normalize(_OWN_DIST):
                continue
            key = (ep.name, ep.value, _normalize(dist))
            if key in seen:  # the same distribution seen twice on sys.path (e.g. stale egg-info)
                continue
            seen.add(key)
            version = ep.dist.version if ep.dist is not None else None
            entry = Entry(ep.name, self.kind, dist, version, ep.value, claimants=[f"{dist} {version}"])
            if ep.name in entries:
                entries[ep.name].claimants.append(f"{dist} {version}")
            else:
                entries[ep.name] = entry
        self._entries = entries
        return entries

    def refresh(self) -> None:
        """Forget discovered entry points (after installing a plugin in a running process)."""
        self._entries = None

    def _all(self) -> dict[str, Entry]:
        merged = dict(self._discover())
        for name, entry in self._local.items():
            if name in merged:
                merged[name] = Entry(
                    name, self.kind, entry.source_dist, None, entry.target,
                    claimants=merged[name].claimants + entry.claimants,
                )
            else:
                merged[name] = entry
        return merged

    # -- public API --------------------------------------------------------------------------
    def register(self, name: str, obj: Callable[..., Any], *, source: str = "<in-process>") -> None:
        """Register ``obj`` under ``name`` in this process (tests, notebooks)."""
        if name in self._local:
            raise RegistryError(f"The {self.kind} '{name}' is already registered in this process.")
        self._local[name] = Entry(name, self.kind, source, None, "<in-process>", _obj=obj, claimants=[source])

    def unregister(self, name: str) -> None:
        self._local.pop(name, None)

    def names(self, pattern: str | None = None) -> list[str]:
        names = sorted(self._all())
        if pattern:
            names = [n for n in names if fnmatch.fnmatch(n, pattern)]
        return names

    def entries(self, pattern: str | None = None) -> list[Entry]:
        everything = self._all()
        return [everything[n] for n in self.names(pattern)]

    def entry(self, name: str) -> Entry:
        everything = self._all()
        if name not in everything:
            raise RegistryError(self._unknown_message(name, everything))
        entry = everything[name]
        if len(entry.claimants) > 1:
            raise RegistryError(
                f"The {self.kind} name '{name}' is claimed by several distributions: "
                f"{' and '.join(entry.claimants)}. Uninstall one of them so the name is unambiguous."
            )
        return entry

    def get(self, name: str) -> Any:
        return self.entry(name).load()

    def _unknown_message(self, name: str, everything: dict[str, Entry]) -> str:
        close = difflib.get_close_matches(name, list(everything), n=3, cutoff=0.5)
        plugins = sorted({e.source_dist for e in everything.values()} - {_OWN_DIST})
        parts = [f"Unknown {self.kind} '{name}'."]
        if close:
            parts.append(f"Did you mean: {', '.join(close)}?")
        parts.append(f"Available: {', '.join(sorted(everything)) or 'none'}.")
        parts.append(
            f"Installed plugin distributions: {', '.join(plugins)}."
            if plugins
            else f"No plugin distributions are installed (group '{self.group}')."
        )
        parts.append(f"Run `rrsis-bench list {self.plural}` to see them all.")
        return " ".join(parts)


def _normalize(dist: str) -> str:
    return dist.lower().replace("_", "-")


METHODS = Registry("method", METHODS_GROUP)
DATASETS = Registry("dataset", DATASETS_GROUP)


def list_methods(pattern: str | None = None) -> list[str]:
    """Names of the registered methods, optionally filtered by an fnmatch ``pattern``."""
    return METHODS.names(pattern)


def create_method(name: str, **overrides: Any):
    """Build the method ``name`` (a ``torch.nn.Module``) with keyword ``overrides``."""
    factory = METHODS.get(name)
    model = factory(**overrides)
    model.method_name = name
    return model


def factory_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults a method factory builds with: ``create_method(name)`` with no overrides.

    The factory's own keyword defaults come first. When it also takes ``**kwargs``, they go to the
    class its return annotation names, whose ``__init__`` defaults fill in the rest, and so on up
    that class's bases while each ``__init__`` takes ``**kwargs`` (handed to ``super().__init__``).
    """
    defaults: dict[str, Any] = {}

    def collect(function: Callable[..., Any]) -> inspect.Signature:
        try:
            signature = inspect.signature(function, eval_str=True)
        except NameError:  # an annotation names something only a type checker sees: keep the strings
            signature = inspect.signature(function)
        for name, param in signature.parameters.items():
            if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD) and param.default is not param.empty:
                defaults.setdefault(name, param.default)
        return signature

    def takes_kwargs(signature: inspect.Signature) -> bool:
        return any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())

    signature = collect(factory)
    if inspect.isclass(factory):
        target = factory
    elif takes_kwargs(signature) and inspect.isclass(signature.return_annotation):
        target = signature.return_annotation
    else:
        return defaults
    for klass in target.__mro__:
        if "__init__" in vars(klass) and klass is not object:
            if not takes_kwargs(collect(vars(klass)["__init__"])):
                break
    return defaults


def method_defaults(name: str) -> dict[str, Any]:
    """The options ``create_method(name)`` builds with (see :func:`factory_defaults`)."""
    return factory_defaults(METHODS.get(name))


def list_datasets(pattern: str | None = None) -> list[str]:
    """Names of the registered dataset readers."""
    return DATASETS.names(pattern)


def create_dataset(name: str, root: str | os.PathLike | None = None, split: str = "train", **kw: Any):
    """Build the dataset ``name``: a sequence of raw samples (see DESIGN.md's raw-sample contract)."""
    factory = DATASETS.get(name)
    return factory(root=root, split=split, **kw)


def config_search_paths() -> list[str]:
    """``pkg://`` Hydra search paths that installed plugins declare under ``rrsis_bench.configs``."""
    if os.environ.get(DISABLE_PLUGINS_ENV, "") not in ("", "0"):
        return []
    return sorted({f"pkg://{ep.value}" for ep in md.entry_points(group=CONFIGS_GROUP)})
