"""The plugin manager: builtins, then installed entry points, each registering components by name.

`get_plugin_manager()` builds a fresh manager every time (no global state, so tests and runs never leak plugins
into each other). `Registry` asks every registration hook for its components, remembers which plugin and
package provided each name, and answers typed lookups with did-you-mean errors.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from . import __version__, hookspecs
from .errors import PluginError, RecipeError, did_you_mean, known

ENTRY_POINT_GROUP = "loraforge"
#: comma-separated entry-point names to load; unset loads all, "" loads none
PLUGINS_ENV = "LORAFORGE_PLUGINS"

BUILTIN_MODULES = (
    "loraforge.builtin.models",
    "loraforge.builtin.tasks.ner",
    "loraforge.builtin.tasks.classification",
    "loraforge.builtin.tasks.style",
    "loraforge.builtin.adapters",
    "loraforge.builtin.quantization",
    "loraforge.builtin.metrics",
    "loraforge.builtin.exporters",
    "loraforge.builtin.sections",
)

#: kind of component -> registration hook
KINDS: dict[str, str] = {
    "model loader": "register_model_loaders",
    "task": "register_tasks",
    "adapter": "register_adapters",
    "quantizer": "register_quantizers",
    "metric": "register_metrics",
    "exporter": "register_exporters",
    "recipe section": "register_recipe_sections",
    "recipe": "register_recipes",
}


def get_plugin_manager(extra: Iterable[object] = (), *, entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh manager: builtins, then entry points (filtered by LORAFORGE_PLUGINS), then `extra` objects."""
    pm = pluggy.PluginManager("loraforge")
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_MODULES:
        pm.register(importlib.import_module(name), name=name)
    if entry_points:
        _load_entry_points(pm)
    for plugin in extra:
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginError(f"plugin '{name}' implements a hook loraforge does not define: {exc}",
                          hint="Check the hook's name against loraforge/hookspecs.py (docs/hooks.md).") from None
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    wanted = os.environ.get(PLUGINS_ENV)
    names = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if names is not None and ep.name not in names:
            continue
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=ep.name)
        except Exception as exc:  # a broken third-party package must not look like a loraforge bug
            dist = ep.dist.name if ep.dist else "?"
            raise PluginError(f"plugin '{ep.name}' from package '{dist}' failed to import: {exc}",
                              hint=f"Reinstall or uninstall '{dist}', or exclude it with {PLUGINS_ENV}.") from None


@dataclass(frozen=True)
class Registration:
    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    package: str

    @property
    def options(self) -> type:
        return getattr(self.factory, "Options", type(None))


class Registry:
    """Every registered component by kind and name, with the plugin and package that provided it."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._by_kind: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        packages = {id(plugin): f"{dist.project_name} {dist.version}" for plugin, dist in pm.list_plugin_distinfo()}
        for kind, hook_name in KINDS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                package = packages.get(id(impl.plugin), f"loraforge {__version__}")
                impl.function(register=self._register_fn(kind, impl.plugin_name, package))

    def _register_fn(self, kind: str, plugin: str, package: str) -> Callable[[str, Callable[..., Any]], None]:
        def register(name: str, factory: Callable[..., Any]) -> None:
            table = self._by_kind[kind]
            if name in table:
                first = table[name]
                raise PluginError(f"{kind} '{name}' is registered twice: by plugin '{first.plugin}' "
                                  f"({first.package}) and by plugin '{plugin}' ({package})",
                                  hint=f"Uninstall one of them or exclude one with {PLUGINS_ENV}.")
            table[name] = Registration(kind, name, factory, plugin, package)

        return register

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def all(self) -> list[Registration]:
        return [reg for kind in KINDS for _, reg in sorted(self._by_kind[kind].items())]

    def find(self, kind: str, name: str) -> Registration | None:
        return self._by_kind[kind].get(name)

    def get(self, kind: str, name: str, *, key: str | None = None, file: object = None) -> Registration:
        """The registration, or a RecipeError naming the key, a did-you-mean and the installed choices."""
        found = self._by_kind[kind].get(name)
        if found is None:
            choices = self._by_kind[kind]
            raise RecipeError(
                f"{kind} '{name}' is provided by no installed plugin{did_you_mean(name, choices)} "
                f"(known: {known(choices)})",
                key=key, file=file,
                hint="If it comes from a plugin package, install it (pip install PACKAGE) and check "
                     "`loraforge plugins`; the recipe's `requires` can name the package.")
        return found
