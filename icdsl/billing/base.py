"""What the billing store's parts share, below the store itself: the clock, the crash points,
JSON values and the hashes that identify what was loaded.

The store (:mod:`icdsl.billing.store`) opens the database and is what cycles' results are
written to; its parts (intake, cycles, corrections, inventory, ...) import these from here, never
the store back (the store re-exports them for its callers). Tests replace :func:`checkpoint` to
simulate a crash at a named point.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from icdsl.plan.model import Partner, Plan


def checkpoint(stage: str) -> None:
    """Called at the points where a crash would matter (tests replace it to simulate one):
    ``ingest:files_written``, ``ingest:before_commit``, ``cycle:rated``, ``cycle:files_written``,
    ``cycle:files_committed``, ``cycle:before_commit``, ``cycle:locked``,
    ``finalize:before_commit``, ``rerate:files_committed``, ``rerate:before_commit``."""


def actor() -> str:
    """Who did it (audit entries, corrections): ``ICDSL_ACTOR`` or the user's login name."""
    try:
        return os.environ.get("ICDSL_ACTOR") or getpass.getuser()
    except Exception:  # pragma: no cover - no user name available
        return "unknown"


def now() -> datetime:
    return datetime.now(UTC)


def jsonable(v: Any) -> Any:
    """Plan values (Decimal, date, Money, tuples) as JSON values (exact: decimals as text)."""
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, tuple | list):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, float):
        return repr(v)
    return str(v)


def canonical_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def partner_decl(p: Partner) -> dict[str, Any]:
    """What the store records of a partner's declaration (JSON values)."""
    return {
        "name": p.name, "kind": p.kind, "currency": p.currency, "timezone": p.timezone,
        "billing": p.billing, "due_days": p.due_days, "tax_kind": p.tax.kind,
        "tax_rate": str(p.tax.rate), "country": p.country,
        "attributes": {k: jsonable(v) for k, v in p.attributes},
        # legal details only when declared: a partner without them keeps the hash it always had
        **({"party": p.party.as_json()} if getattr(p, "party", None) is not None else {}),
    }


def partner_decl_hash(p: Partner) -> str:
    return canonical_hash(partner_decl(p))


def plan_hash(plan: Plan) -> str:
    return canonical_hash(sorted(plan.sources))
