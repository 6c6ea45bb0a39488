"""The plugin manager: made by a factory, never at import time, so each test can have its own.

Loading (:func:`load_plugins`): the ``icdsl`` entry point group of the installed distributions,
then modules named with ``--plugin MODULE`` (a dotted module name, or a ``.py`` file, for local
development). Built-ins (``BUILTIN_PLUGINS``) are registered first and so win any name clash.

A broken plugin never takes the core down: a plugin that raises on import, targets another hook
API version, implements a hook that does not exist, raises in a hook, or registers a name that
is already taken is recorded as a :class:`PluginProblem` (``pm.problems``, also logged on the
``icdsl.plugins`` logger) naming the plugin, and the rest works without it (or without the
part of it that failed).

What is imported when: listing the *installed* plugins (:func:`installed_plugins`) reads
distribution metadata only. Registering a plugin imports its module (pluggy must see its
hook functions), so the default plugin manager is made lazily, the first time a command needs
a charge type, a reader, ... (``icdsl fmt`` never does). ``ICDSL_DISABLE_PLUGIN_AUTOLOAD=1``
skips the entry points (only ``--plugin`` modules load); ``ICDSL_TRACE_HOOKS=1`` traces every
hook call on stderr (pluggy's tracing).

Registries (one function per hook, cached per plugin manager): :func:`charge_types`,
:func:`rounding_modes`, :func:`record_readers`, :func:`reject_reasons`, :func:`exporters`,
:func:`invoice_validators`, :func:`condition_functions`; :func:`owner` says which plugin
registered a name; :func:`all_problems` consults every hook and returns every problem;
:func:`describe_plugins` is the text of ``icdsl plugins``.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import importlib.util
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points as _entry_points
from pathlib import Path
from typing import Any

import pluggy

from icdsl import __version__, hookspecs
from icdsl.errors import ChargeError
from icdsl.hookspecs import HOOK_API_VERSION, HOOKS, PROJECT
from icdsl.reasons import REJECT_REASONS

BUILTIN_PLUGINS = (
    "icdsl.charges.builtin",
    "icdsl.rounding",
    "icdsl.readers",
    "icdsl.exporters",
    "icdsl.validators",
    "icdsl.functions",
)
ENTRY_POINT_GROUP = PROJECT
ENV_TRACE = "ICDSL_TRACE_HOOKS"
ENV_NO_AUTOLOAD = "ICDSL_DISABLE_PLUGIN_AUTOLOAD"
_NAME = re.compile(r"[a-z][a-z0-9_]*")

log = logging.getLogger("icdsl.plugins")


class PluginError(Exception):
    """A plugin failed while doing its work (the message names it), or a strict load found problems."""


@dataclass(frozen=True, slots=True)
class PluginProblem:
    """Why a plugin (or part of it) is not in use."""

    plugin: str
    message: str

    def __str__(self) -> str:
        return f"plugin '{self.plugin}': {self.message}"


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """Where a registered plugin comes from: ``source`` is ``built-in``, ``entry point``,
    ``module`` (``--plugin``) or ``object`` (registered by code, e.g. a test)."""

    name: str
    source: str
    module: str | None = None
    distribution: str | None = None
    version: str | None = None
    entry_point: str | None = None  # "name = value" as declared

    @property
    def version_text(self) -> str:
        if self.source == "built-in":
            return __version__
        return self.version or "?"


@dataclass(frozen=True, slots=True)
class InstalledPlugin:
    """An entry point of the ``icdsl`` group, read from metadata without importing anything."""

    name: str
    value: str
    distribution: str | None
    version: str | None


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with icdsl's hook specs, the problems found while loading, where each
    plugin comes from, and the registries' cache (cleared whenever a plugin comes or goes)."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(hookspecs)
        self.problems: list[PluginProblem] = []
        self.infos: dict[str, PluginInfo] = {}
        self._order: list[str] = []
        self._cache: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        got = super().register(plugin, name)
        if got is not None:
            self._order.append(got)
            self.infos.setdefault(got, PluginInfo(got, "object", getattr(plugin, "__name__", None)))
        self._cache.clear()
        return got

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        if name is None and plugin is not None:
            name = self.get_name(plugin)
        got = super().unregister(plugin, name)
        if name in self._order:
            self._order.remove(name)
        self.infos.pop(name, None)
        self._cache.clear()
        return got

    def problem(self, plugin: str, message: str) -> PluginProblem:
        p = PluginProblem(plugin, message)
        if p not in self.problems:
            self.problems.append(p)
            log.warning("%s", p)
        return p

    def order_of(self, name: str) -> int:
        try:
            return self._order.index(name)
        except ValueError:
            return len(self._order)


# --------------------------------------------------------------------------- loading


def _where(exc: BaseException) -> str:
    """' (at file.py:12)' for the innermost frame of an exception, or the SyntaxError's place."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" (at {os.path.basename(exc.filename)}:{exc.lineno})"
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return ""
    frame = tb[-1]
    return f" (at {os.path.basename(frame.filename)}:{frame.lineno})"


def _describe_exc(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}{_where(exc)}"


def _unknown_hooks(pm: PluginManager, plugin: Any) -> list[str]:
    out = []
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name, None)
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        if any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()):
            out.append(name)
    return out


def register_plugin(pm: PluginManager, plugin: Any, name: str | None = None, *,
                    info: PluginInfo | None = None) -> bool:
    """Register one plugin object after checking its hook API version and its hook names;
    on a problem, record it and leave the plugin out. True when it is registered."""
    name = name or pm.get_canonical_name(plugin)
    if pm.is_registered(plugin):
        return True
    if pm.has_plugin(name) or pm.is_blocked(name):
        pm.problem(name, "a plugin of this name is already loaded; this one is ignored")
        return False
    where = f" ({info.distribution} {info.version or ''})".rstrip() if info and info.distribution else ""
    api = getattr(plugin, "ICDSL_HOOK_API", None)
    if api is None:
        pm.problem(name, f"declares no hook API version{where}: add 'ICDSL_HOOK_API = {HOOK_API_VERSION}' "
                         "to the module, naming the icdsl hook API it was written for; not loaded")
        return False
    if api != HOOK_API_VERSION:
        if isinstance(api, int) and api > HOOK_API_VERSION:
            advice = (f"upgrade icdsl, or install a release of the plugin written for hook API "
                      f"{HOOK_API_VERSION}")
        else:
            advice = f"install a release of the plugin written for hook API {HOOK_API_VERSION}"
        pm.problem(name, f"targets icdsl hook API {api!r}{where}, but icdsl {__version__} provides hook API "
                         f"{HOOK_API_VERSION}: {advice}; not loaded")
        return False
    try:
        pm.register(plugin, name)
    except Exception as exc:  # pluggy.PluginValidationError: a hookimpl that does not fit its spec
        pm.problem(name, f"cannot be registered: {exc}; not loaded")
        return False
    unknown = _unknown_hooks(pm, plugin)
    if unknown:
        pm.unregister(plugin)
        parts = []
        for hook in unknown:
            close = difflib.get_close_matches(hook, HOOKS, n=1)
            parts.append(f"'{hook}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        pm.problem(name, f"implements {', '.join(parts)}, which icdsl {__version__} does not know "
                         f"(hooks: {', '.join(HOOKS)}); not loaded")
        return False
    if info is not None:
        pm.infos[name] = info
    return True


def installed_plugins() -> list[InstalledPlugin]:
    """The ``icdsl`` entry points of the installed distributions, without importing them."""
    out = []
    for ep in _entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        out.append(InstalledPlugin(ep.name, ep.value, dist.metadata["Name"] if dist else None,
                                   dist.version if dist else None))
    return sorted(out, key=lambda p: p.name)


def _load_entry_points(pm: PluginManager) -> None:
    for ep in sorted(_entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist else None
        version = dist.version if dist else None
        info = PluginInfo(ep.name, "entry point", ep.module, dist_name, version, f"{ep.name} = {ep.value}")
        try:
            obj = ep.load()
        except Exception as exc:
            from_dist = f" (distribution {dist_name} {version})" if dist_name else ""
            pm.problem(ep.name, f"raised on import of '{ep.value}'{from_dist}: {_describe_exc(exc)}; not loaded")
            continue
        register_plugin(pm, obj, ep.name, info=info)


def _import_module(spec: str) -> Any:
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {spec}")
        name = path.stem
        if name in sys.modules:
            raise ImportError(f"a module named '{name}' is already imported; rename {path.name}")
        mod_spec = importlib.util.spec_from_file_location(name, path)
        if mod_spec is None or mod_spec.loader is None:
            raise ImportError(f"cannot import {spec}")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        try:
            mod_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    return importlib.import_module(spec)


def load_plugins(pm: PluginManager, modules: Iterable[str] = (), *, entry_points: bool = True) -> list[PluginProblem]:
    """Load the entry points (unless ``entry_points`` is false or ICDSL_DISABLE_PLUGIN_AUTOLOAD
    is set), then ``modules`` (dotted names or ``.py`` files). Returns the problems found by
    this call (all of them stay in ``pm.problems``)."""
    before = len(pm.problems)
    if entry_points and not os.environ.get(ENV_NO_AUTOLOAD):
        _load_entry_points(pm)
    for spec in modules:
        try:
            module = _import_module(spec)
        except Exception as exc:
            pm.problem(spec, f"raised on import: {_describe_exc(exc)}; not loaded")
            continue
        name = getattr(module, "__name__", spec)
        if pm.is_registered(module):
            continue
        register_plugin(pm, module, name, info=PluginInfo(name, "module", name, None,
                                                          getattr(module, "__version__", None)))
    return pm.problems[before:]


def _enable_tracing(pm: PluginManager) -> None:
    pm.trace.root.setwriter(sys.stderr.write)
    pm.enable_tracing()


def make_plugin_manager(extra: tuple[object, ...] = (), *, entry_points: bool = False,
                        modules: Iterable[str] = (), builtins: bool = True) -> PluginManager:
    """A fresh plugin manager: the built-ins, then the entry points (if asked), then ``modules``,
    then the ``extra`` plugin objects. Problems are in ``pm.problems``."""
    pm = PluginManager()
    if os.environ.get(ENV_TRACE, "").strip().lower() in ("1", "true", "yes", "on"):
        _enable_tracing(pm)
    if builtins:
        for name in BUILTIN_PLUGINS:
            register_plugin(pm, importlib.import_module(name), name,
                            info=PluginInfo(name, "built-in", name, "icdsl", __version__))
    load_plugins(pm, modules, entry_points=entry_points)
    for plugin in extra:
        name = getattr(plugin, "__name__", None) or pm.get_canonical_name(plugin)
        register_plugin(pm, plugin, name)
    return pm


_default: PluginManager | None = None
_default_modules: list[str] = []
_active: list[PluginManager] = []


def default_plugin_manager() -> PluginManager:
    """The process's plugin manager, made on first use: built-ins, entry points, and the
    modules given to :func:`add_default_modules` (the CLI's ``--plugin``)."""
    global _default
    if _default is None:
        _default = make_plugin_manager(entry_points=True, modules=_default_modules)
    return _default


def add_default_modules(modules: Iterable[str]) -> list[PluginProblem]:
    """Add ``--plugin`` modules to the default plugin manager (loading them now if it exists,
    else when it is made). Returns the problems found now."""
    modules = list(modules)
    _default_modules.extend(m for m in modules if m not in _default_modules)
    if _default is not None:
        return load_plugins(_default, modules, entry_points=False)
    return []


def reset_default_plugin_manager() -> None:
    """Forget the default plugin manager and the ``--plugin`` modules (tests)."""
    global _default
    _default = None
    _default_modules.clear()


def active_plugin_manager() -> PluginManager:
    """The manager the executors and billing consult: the innermost :func:`use_plugin_manager`,
    else the default one."""
    return _active[-1] if _active else default_plugin_manager()


@contextlib.contextmanager
def use_plugin_manager(pm: PluginManager) -> Iterator[PluginManager]:
    """Make ``pm`` the active plugin manager within the block (the test kit uses it). Process
    wide, not per thread: the batch executor's worker threads see it too."""
    _active.append(pm)
    try:
        yield pm
    finally:
        _active.remove(pm)


# --------------------------------------------------------------------------- registries

_METHODS = {
    "icdsl_charge_types": ("check", "compile"),
    "icdsl_rounding_modes": ("round_int", "round_array"),
    "icdsl_record_readers": ("claims", "batches"),
    "icdsl_exporters": ("write",),
    "icdsl_invoice_validators": ("validate",),
    "icdsl_condition_functions": ("call", "call_column"),
}
_CLASSES_ONLY = {"icdsl_record_readers"}  # instantiated per file, not once


def _call_one(pm: PluginManager, hook: str, impl: Any) -> Any:
    others = [p for p in pm.get_plugins() if p is not impl.plugin]
    results = pm.subset_hook_caller(hook, remove_plugins=others)()
    return results[0] if results else None


def _item(pm: PluginManager, hook: str, plugin: str, cls: Any) -> tuple[str, Any] | None:
    kind = HOOKS[hook]
    name = getattr(cls, "name", None)
    if not isinstance(cls, type):
        pm.problem(plugin, f"its {hook} hook returned {cls!r}, not a class; ignored")
        return None
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        pm.problem(plugin, f"{kind} class {cls.__name__} has no valid name ({name!r}): set a class attribute "
                           "'name' of lowercase letters, digits and '_'; ignored")
        return None
    missing = [m for m in _METHODS[hook] if not callable(getattr(cls, m, None))]
    if missing:
        pm.problem(plugin, f"{kind} '{name}' has no {', '.join(m + '()' for m in missing)}; ignored")
        return None
    if hook == "icdsl_condition_functions" and not (isinstance(cls.arity, int) and cls.arity >= 0):
        pm.problem(plugin, f"{kind} '{name}' has no valid arity ({cls.arity!r}); ignored")
        return None
    if hook in _CLASSES_ONLY:
        return name, cls
    try:
        obj = cls()
    except Exception as exc:
        pm.problem(plugin, f"{kind} '{name}' cannot be created: {_describe_exc(exc)}; ignored")
        return None
    info = pm.infos.get(plugin)
    if hook == "icdsl_charge_types" and (info is None or info.source != "built-in"):
        _guard_charge_type(obj, name, plugin)
    return name, obj


#: the methods of a plugin's charge type that run on the user's rules and data
_CHARGE_METHODS = ("check", "compile", "event_types", "evaluate", "evaluate_record", "evaluate_batch")
#: diagnostic of a charge type whose check() raised (the rule could not be checked)
PLUGIN_CHECK_FAILED = "E121"


def _guard_charge_type(obj: Any, name: str, plugin: str) -> None:
    """Make the exceptions escaping a plugin's charge type say which plugin failed, where (the
    rule's span) and what to do: ``check`` reports diagnostic E121 on the charge instead of
    raising; the other methods raise :class:`icdsl.errors.ChargeError` (what billing
    reports for a rule that cannot be evaluated). A ``ChargeError`` the type raises on purpose
    (bad data, with its own message) passes unchanged."""
    for meth in _CHARGE_METHODS:
        fn = getattr(obj, meth, None)
        if callable(fn) and not getattr(fn, "_icdsl_guarded", False):
            try:
                setattr(obj, meth, _guarded(fn, meth, name, plugin))
            except AttributeError:  # __slots__: leave it as it is
                return


def _guarded(fn: Any, meth: str, name: str, plugin: str) -> Any:
    @functools.wraps(fn)
    def call(*args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except (ChargeError, NotImplementedError):
            raise
        except Exception as exc:
            target = args[0] if args else None  # the AST node (check, compile) or the plan's Charge
            span = getattr(target, "span", None)
            what = f"charge type '{name}' of plugin '{plugin}' failed in {meth}(): {_describe_exc(exc)}"
            advice = "a bug of the plugin: report it to its authors with this message ('icdsl plugins' shows its version)"
            if meth == "check" and len(args) > 1 and callable(getattr(args[1], "error", None)):
                args[1].error(PLUGIN_CHECK_FAILED, f"{what}; this charge could not be checked", span, advice)
                return None
            log.error("%s", what, exc_info=exc)
            if span is None:
                raise ChargeError(f"{what}; {advice}") from exc
            raise ChargeError(f"{what}; {advice}", span) from exc

    call._icdsl_guarded = True  # type: ignore[attr-defined]
    return call


def _collect(pm: PluginManager, hook: str) -> tuple[dict[str, Any], dict[str, str]]:
    cached = pm._cache.get(hook)
    if cached is not None:
        return cached
    kind = HOOKS[hook]
    found: dict[str, Any] = {}
    owners: dict[str, str] = {}
    impls = sorted(getattr(pm.hook, hook).get_hookimpls(), key=lambda i: pm.order_of(i.plugin_name))
    for impl in impls:
        plugin = impl.plugin_name
        try:
            got = _call_one(pm, hook, impl)
        except Exception as exc:
            pm.problem(plugin, f"its {hook} hook raised {_describe_exc(exc)}; its {kind}s are not available")
            continue
        if got is None:
            continue
        if hook == "icdsl_reject_reasons":
            if not isinstance(got, dict):
                pm.problem(plugin, f"its {hook} hook returned {type(got).__name__}, not a dict; ignored")
                continue
            items = []
            for code, text in got.items():
                if not (isinstance(code, str) and _NAME.fullmatch(code) and isinstance(text, str) and text):
                    pm.problem(plugin, f"reject reason {code!r}: expected a snake_case code and its "
                                       "explanation; ignored")
                    continue
                items.append((code, text))
        else:
            if not isinstance(got, list | tuple):
                pm.problem(plugin, f"its {hook} hook returned {type(got).__name__}, not a list; ignored")
                continue
            items = [x for x in (_item(pm, hook, plugin, cls) for cls in got) if x is not None]
        for name, obj in items:
            if name in found:
                pm.problem(plugin, f"registers {kind} '{name}', which '{owners[name]}' already registers; "
                                   f"this one is ignored (give it another name)")
                continue
            found[name] = obj
            owners[name] = plugin
    pm._cache[hook] = (found, owners)
    return found, owners


def all_problems(pm: PluginManager) -> list[PluginProblem]:
    """Every problem, including those found only when a hook is consulted (a hook that raises,
    a taken name): consults all the registration hooks. Registries are built lazily, so that
    ``icdsl check`` does not import a reader plugin's dependencies; this builds them all."""
    for hook in HOOKS:
        _collect(pm, hook)
    reject_reasons(pm)
    return list(pm.problems)


def owner(pm: PluginManager, hook: str, name: str) -> str | None:
    """The plugin that registered ``name`` through ``hook``."""
    return _collect(pm, hook)[1].get(name)


def charge_types(pm: PluginManager) -> dict[str, Any]:
    """name -> charge type instance (:class:`icdsl.charges.base.ChargeType`)."""
    return dict(_collect(pm, "icdsl_charge_types")[0])


def rounding_modes(pm: PluginManager) -> dict[str, Any]:
    """name -> rounding mode instance (:class:`icdsl.rounding.RoundingMode`)."""
    return dict(_collect(pm, "icdsl_rounding_modes")[0])


def record_readers(pm: PluginManager) -> dict[str, type]:
    """name -> reader class (:class:`icdsl.readers.Reader`)."""
    return dict(_collect(pm, "icdsl_record_readers")[0])


def exporters(pm: PluginManager) -> dict[str, Any]:
    """format name -> exporter instance (:class:`icdsl.exporters.Exporter`)."""
    return dict(_collect(pm, "icdsl_exporters")[0])


def invoice_validators(pm: PluginManager) -> dict[str, Any]:
    """name -> validator instance (:class:`icdsl.validators.InvoiceValidator`)."""
    return dict(_collect(pm, "icdsl_invoice_validators")[0])


def condition_functions(pm: PluginManager) -> dict[str, Any]:
    """name -> function instance (:class:`icdsl.functions.ConditionFunction`)."""
    return dict(_collect(pm, "icdsl_condition_functions")[0])


def function_arities(pm: PluginManager) -> dict[str, int]:
    """name -> number of arguments, what the checker needs (``icdsl.lang.values.FUNCTIONS``)."""
    return {name: fn.arity for name, fn in condition_functions(pm).items()}


def reject_reasons(pm: PluginManager) -> dict[str, str]:
    """The core's reject reasons and the plugins' (a plugin cannot redefine a core code)."""
    out = dict(REJECT_REASONS)
    found, owners = _collect(pm, "icdsl_reject_reasons")
    for code, text in found.items():
        if code in out:
            pm.problem(owners[code], f"reject reason '{code}' is one of icdsl's own; the plugin's is ignored")
            continue
        out[code] = text
    return out


# --------------------------------------------------------------------------- describing


def _provides(pm: PluginManager) -> dict[str, list[tuple[str, list[str]]]]:
    by_plugin: dict[str, list[tuple[str, list[str]]]] = {}
    for hook in HOOKS:
        _, owners = _collect(pm, hook)
        names: dict[str, list[str]] = {}
        for item, plugin in owners.items():
            names.setdefault(plugin, []).append(item)
        for impl in getattr(pm.hook, hook).get_hookimpls():
            by_plugin.setdefault(impl.plugin_name, []).append((hook, names.get(impl.plugin_name, [])))
    return by_plugin


def describe_plugins(pm: PluginManager, *, installed: bool = True) -> str:
    """What ``icdsl plugins`` prints: every loaded plugin with where it comes from, its version
    and, per hook it implements, the names it registers; then installed entry points that are
    not loaded, then the problems."""
    provides = _provides(pm)
    all_problems(pm)
    names = sorted(provides.keys() | set(pm._order), key=pm.order_of)
    lines = [f"icdsl {__version__}, hook API {HOOK_API_VERSION}", f"loaded plugins ({len(names)}):"]
    for name in names:
        info = pm.infos.get(name) or PluginInfo(name, "object")
        origin = info.source
        if info.source == "entry point":
            origin = f"entry point '{info.entry_point}'"
            if info.distribution:
                origin += f", distribution {info.distribution} {info.version or '?'}"
        elif info.source == "module":
            origin = "--plugin module"
        lines.append(f"  {name} {info.version_text} ({origin})")
        for hook, items in provides.get(name, []):
            lines.append(f"      {hook}: {', '.join(items) if items else '(nothing)'}")
    if installed:
        loaded = set(names)
        idle = [p for p in installed_plugins() if p.name not in loaded]
        if idle:
            lines.append(f"installed but not loaded ({len(idle)}):")
            for p in idle:
                dist = f", distribution {p.distribution} {p.version or '?'}" if p.distribution else ""
                lines.append(f"  {p.name} ({p.value}{dist})")
    if pm.problems:
        lines.append(f"problems ({len(pm.problems)}):")
        lines.extend(f"  {p}" for p in pm.problems)
    return "\n".join(lines) + "\n"


def problems_text(pm: PluginManager) -> str:
    """The problems, one per line ('' when there is none): for the CLI to print as warnings."""
    return "".join(f"warning: {p}\n" for p in pm.problems)
