"""Idempotency: every application of a charge has a key, so that it is billed once and only once.

An **application** is one thing a charge bills: a recurring fee for one inventory item (or the
agreement) and one charge period, an activation fee, the event fee of one event record, a
tier line of one measuring period... Its key is made of

``icdsl1 | agreement | version | charge label | subject | period``

- *agreement*: the agreement's name; *version* ``v3``, or ``*`` where the language says the
  charge is due once per agreement whatever its versions (``one_time ... on activation``);
- *charge label*: the charge's name (its invoice line's label);
- *subject*: what is billed: ``agreement``, ``item:KIND:ID``, ``event:ID``, ``activation``,
  ``completion``, ``termination``, ``invoice``, ``shortfall``, ``tiers``, ``party:P``...;
- *period*: the charge period or cycle it is for, ``2026-03-01..2026-03-31`` (both days
  included), or ``-`` for a one-off.

Parts are escaped (``%`` and ``|`` as ``%25`` and ``%7C``), so distinct parts never give the
same key. Keys are plain text and readable; :func:`key_hash` gives a fixed-length SHA-256 for a
unique index.

What the billing store does with them (see ``docs/charges.md``, "Idempotency"):

1. every :class:`~icdsl.charges.lines.ChargeLine` has a ``key``; store it with a **unique**
   constraint: re-running a cycle replaces its drafts and produces the same keys;
2. store each of the line's ``applications`` in a table with a **unique** constraint on the key
   (``key_hash``): an application billed on one cycle can never be billed again on another;
3. before evaluating a cycle, pass ``ChargeContext.billed``: for every application billed on
   *other* cycles, the amount billed so far (:func:`icdsl.charges.lines.billed_amounts` of
   their lines). Evaluation skips what is billed already, bills what is missing (an item added
   late), and writes a correction line (``corrects`` = the application) when an amount changed.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

KEY_VERSION = "icdsl1"
ANY_VERSION = None


def _part(text: object) -> str:
    return str(text).replace("%", "%25").replace("|", "%7C")


def period_label(start: date, end: date) -> str:
    """``start..last day`` for the local days ``[start, end)``."""
    return f"{start.isoformat()}..{(end - timedelta(days=1)).isoformat()}"


def application_key(agreement: str, version: int | None, charge: str, subject: str, period: str = "-") -> str:
    """The key of one application of a charge (see the module's documentation).

    ``version`` None: the application is the same for every version of the agreement."""
    v = "*" if version is None else f"v{version}"
    return "|".join((KEY_VERSION, _part(agreement), v, _part(charge), _part(subject), _part(period)))


def correction_key(application: str, cycle_label: str) -> str:
    """The key of the line that corrects ``application`` on the cycle ``cycle_label``."""
    return f"{application}|correction@{_part(cycle_label)}"


def line_key(agreement: str, version: int | None, charge: str, subject: str, period: str = "-") -> str:
    """The key of a line that gathers several applications (an event line of a cycle)."""
    return application_key(agreement, version, charge, subject, period)


def _unpart(text: str) -> str:
    return text.replace("%7C", "|").replace("%25", "%")


def parse_key(key: str) -> tuple[str, int | None, str, str, str] | None:
    """(agreement, version or None, charge, subject, period) of an application key; None for
    anything else (a correction's key, a key of another format)."""
    parts = key.split("|")
    if len(parts) != 6 or parts[0] != KEY_VERSION:
        return None
    v = parts[2]
    version = None if v == "*" else int(v[1:]) if v[:1] == "v" and v[1:].isdigit() else -1
    if version == -1:
        return None
    return _unpart(parts[1]), version, _unpart(parts[3]), _unpart(parts[4]), _unpart(parts[5])


def key_hash(key: str) -> str:
    """SHA-256 hex of a key: 64 characters, for a unique index whatever the key's length."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
