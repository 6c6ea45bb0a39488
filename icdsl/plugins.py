"""The plugin manager: made by a factory, never at import time, so each test can have its own."""

from __future__ import annotations

import pluggy

from icdsl import hookspecs

BUILTIN_PLUGINS = ("icdsl.charges.builtin",)


class PluginError(Exception):
    """A plugin could not be loaded or registers something that clashes."""


def make_plugin_manager(extra: tuple[object, ...] = (), *, entry_points: bool = False) -> pluggy.PluginManager:
    import importlib

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if entry_points:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    for plugin in extra:
        pm.register(plugin)
    pm.check_pending()
    return pm


def charge_types(pm: pluggy.PluginManager) -> dict[str, object]:
    """name -> charge type instance; a duplicate name raises PluginError naming both owners."""
    found: dict[str, object] = {}
    owners: dict[str, str] = {}
    for impl in reversed(pm.hook.icdsl_charge_types.get_hookimpls()):
        for cls in impl.function() or ():
            name = getattr(cls, "name", None)
            if not name:
                raise PluginError(f"plugin '{impl.plugin_name}' registers a charge type without a name")
            if name in found:
                raise PluginError(f"charge type '{name}' is registered twice: by '{owners[name]}' and by "
                                  f"'{impl.plugin_name}'")
            found[name] = cls()
            owners[name] = impl.plugin_name
    return found


_default = None


def default_plugin_manager() -> pluggy.PluginManager:
    global _default
    if _default is None:
        _default = make_plugin_manager()
    return _default
