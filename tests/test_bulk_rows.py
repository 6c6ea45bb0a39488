# ruff: noqa: F811 - tests take the imported fixtures as parameters
"""Rows written in bulk (:mod:`icdsl.billing.rows`: an executemany on SQLite, a COPY on
PostgreSQL) read back exactly as the same rows written by SQLAlchemy's own INSERT: exact rates
at their scale, aware instants, dates, JSON documents and JSON null, texts with the characters
COPY's text format escapes (tab, newline, backslash, ``\\N``), and NULLs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import sqlalchemy as sa
from test_billing_store import db_url, store  # noqa: F401 - the fixtures

from icdsl.billing import models as M
from icdsl.billing import rows as bulk

TRICKY = ["plain", "tab\there", "new\nline", "back\\slash", "\\N", "quote ' and \"", "Zürich €", "", "a,b;c|d"]


def _fx_rows(source: str) -> list[dict]:
    t = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    return [dict(source=source, base="EUR", quote=q, rate=r, effective_from=date(2026, 3, 1) + timedelta(days=i),
                 origin=TRICKY[i % len(TRICKY)], loaded_at=t + timedelta(microseconds=i))
            for i, (q, r) in enumerate([("USD", Decimal("1.0825")), ("GBP", Decimal("0.850000000001")),
                                        ("CHF", Decimal("-0.5")), ("JPY", Decimal("162")), ("SEK", Decimal("0")),
                                        ("NOK", Decimal("11.5")), ("DKK", Decimal("7.46")), ("PLN", Decimal("4.3")),
                                        ("CZK", Decimal("25.1"))])]


def _audit_rows(action: str) -> list[dict]:
    t = datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)
    details = [None, {"a": 1, "b": [1, "x\ty"], "c": None}, {"text": "back\\slash \\N"}, {}, {"é": "ü"}]
    return [dict(at=t + timedelta(seconds=i), actor="tester", action=action, entity="thing",
                 entity_id=None if i % 2 else i, message=TRICKY[i % len(TRICKY)], details=details[i % len(details)])
            for i in range(12)]


def _read(store, table: sa.Table, where) -> list[tuple]:
    cols = [c for c in table.c if c.key != "id"]
    with store.engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.select(*cols).where(where).order_by(table.c.id))]


def test_bulk_rows_read_back_as_an_insert_writes_them(store):
    fx, audit = M.FxRate.__table__, M.AuditEntry.__table__
    assert len(_fx_rows("x")) >= bulk.COPY_ROWS and len(_audit_rows("x")) >= bulk.COPY_ROWS  # COPY on PostgreSQL
    with store.session() as s:
        conn = s.connection()
        conn.execute(fx.insert(), _fx_rows("insert"))
        bulk.insert(conn, fx, _fx_rows("bulk"))
        conn.execute(audit.insert(), _audit_rows("insert"))
        bulk.insert(conn, audit, _audit_rows("bulk"))
        keys = ("at", "actor", "action", "entity", "entity_id", "message", "details")
        bulk.insert_tuples(conn, audit, keys, [tuple(r[k] for k in keys) for r in _audit_rows("tuples")])
        bulk.insert(conn, audit, _audit_rows("few")[:2])  # below COPY_ROWS: the executemany
        s.commit()

    def strip(rows: list[tuple], i: int) -> list[tuple]:  # without the column told apart (source, action)
        return [r[:i] + r[i + 1:] for r in rows]

    by_insert = _read(store, fx, fx.c.source == "insert")
    assert len(by_insert) == 9
    assert strip(_read(store, fx, fx.c.source == "bulk"), 0) == strip(by_insert, 0)
    assert {r[3] for r in by_insert} >= {Decimal("0.850000000001"), Decimal("-0.5")}
    audited = _read(store, audit, audit.c.action == "insert")
    assert len(audited) == 12
    for action in ("bulk", "tuples"):
        assert strip(_read(store, audit, audit.c.action == action), 2) == strip(audited, 2)
    assert strip(_read(store, audit, audit.c.action == "few"), 2) == strip(audited[:2], 2)
    assert audited[0][0] == datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC)
    # the rows went by COPY on PostgreSQL (by the INSERT's executemany on SQLite)
    plan = bulk._plan(audit, tuple(_audit_rows("x")[0]), store.engine.dialect)
    assert (plan[4] is not None) == (store.engine.dialect.name == "postgresql")


def test_no_rows_write_nothing(store):
    with store.session() as s:
        bulk.insert(s.connection(), M.AuditEntry.__table__, [])
        bulk.insert_tuples(s.connection(), M.AuditEntry.__table__, ("actor",), [])
        s.commit()
    with store.engine.connect() as c:
        assert c.scalar(sa.select(sa.func.count()).select_from(M.AuditEntry.__table__)) == 0
