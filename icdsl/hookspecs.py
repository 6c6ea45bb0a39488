"""The icdsl hook API (pluggy). Built-in features are plugins of these same hooks.

A plugin is a module or object with functions marked ``@icdsl.hookimpl``; it declares the hook
API version it targets with a module attribute ``ICDSL_HOOK_API = 1``.

Hook API versions:

- 1: ``icdsl_charge_types``.
"""

from __future__ import annotations

import pluggy

HOOK_API_VERSION = 1
PROJECT = "icdsl"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def icdsl_charge_types() -> list[type]:
    """Return charge type classes (see ``icdsl.charges.base.ChargeType``).

    Each class has a unique ``name`` (the word used after ``charge`` in rule files, or the
    built-in statement it implements), a one-line ``description``, and methods ``check(node,
    ctx)`` (report mistakes through ``ctx``) and ``compile(node, ctx)`` (return the plan
    parameters as a tuple of (key, value) pairs). All implementations are called; the results
    are concatenated. A name registered twice is a startup error naming both plugins.

    .. versionadded:: 1
    """
