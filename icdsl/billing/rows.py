"""Rows written in bulk: one statement per table for the rows a cycle writes (its invoice lines,
daily traffic, events, findings), with no ORM objects and little SQLAlchemy work per row.

The values are converted column by column by the columns' own types (exact money, UTC
instants, JSON), each distinct value once, then handed to the driver: on SQLite an executemany
of the INSERT; on PostgreSQL a ``COPY ... FROM STDIN`` (psycopg sends an executemany as one
execution per row; a COPY is one stream whatever the number of rows), or the executemany for a
few rows or another driver. Either way the rows are in the caller's transaction, the table's
triggers and constraints apply as to an INSERT, and nothing is returned (rows whose ids are
needed are inserted one by one by the caller).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

#: a PostgreSQL table gets its rows by COPY from this many rows on (below, the INSERT's
#: executemany costs no more than starting a COPY)
COPY_ROWS = 4


def insert(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """``rows`` (dicts with the same keys, column keys of ``table``) into ``table``, on ``conn``
    (not flushed first: the caller flushes what the rows depend on)."""
    if not rows:
        return
    keys = tuple(rows[0])
    insert_columns(conn, table, keys, [[r[k] for r in rows] for k in keys])


def insert_tuples(conn: sa.Connection, table: sa.Table, keys: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Rows given as tuples of the values of ``keys`` (as :func:`insert`)."""
    if rows:
        insert_columns(conn, table, tuple(keys), [list(c) for c in zip(*rows, strict=True)])


def insert_columns(conn: sa.Connection, table: sa.Table, keys: tuple[str, ...], values: list[list[Any]]) -> None:
    """Rows given as columns: ``values[i]`` the values of ``keys[i]``, one per row (as :func:`insert`)."""
    n = len(values[0]) if values else 0
    if not n:
        return
    plan = _plan(table, keys, conn.dialect)
    if plan is None:
        conn.execute(table.insert(), [dict(zip(keys, row, strict=True)) for row in zip(*values, strict=True)])
        return
    sql, names, processors, positional, copy = plan
    by_key = dict(zip(keys, values, strict=True))
    columns = []
    for name in names:
        proc = processors.get(name)
        columns.append(_converted(proc, by_key[name]) if proc is not None else by_key[name])
    if copy is not None and n >= COPY_ROWS:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(copy) as out:
            for row in zip(*columns, strict=True):
                out.write_row(row)
        return
    params: list[Any] = (list(zip(*columns, strict=True)) if positional
                         else [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)])
    conn.exec_driver_sql(sql, params)


def _converted(proc: Callable[[Any], Any], values: list[Any]) -> list[Any]:
    """``values`` converted by ``proc``, each distinct value once (a column often repeats one:
    the time of writing, a rate, None)."""
    memo: dict[tuple[type, Any], Any] = {}
    out = []
    for v in values:
        try:
            key = (type(v), v)
            got = memo.get(key, memo)
        except TypeError:  # not hashable (a JSON document)
            out.append(proc(v))
            continue
        if got is memo:
            got = memo[key] = proc(v)
        out.append(got)
    return out


#: (table, keys, dialect) -> the INSERT's SQL, its parameters in order, their converters,
#: positional?, the COPY statement (PostgreSQL with psycopg) or None
_PLANS: dict[tuple[str, tuple[str, ...], str, str, str], Any] = {}


def _plan(table: sa.Table, keys: tuple[str, ...], dialect: sa.Dialect) -> Any:
    """How :func:`insert` writes rows with ``keys`` into ``table`` on ``dialect``: the statement
    compiled once, with the bind processors of its columns; None when SQLAlchemy must execute it
    (a column default to compute, keys that are not columns)."""
    key = (table.name, keys, dialect.name, dialect.driver, str(dialect.paramstyle))
    if key in _PLANS:
        return _PLANS[key]
    plan = None
    if all(k in table.c for k in keys):
        compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
        names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        if sorted(names) == sorted(keys) and not compiled.insert_prefetch and not compiled.postfetch:
            processors = {k: table.c[k].type._cached_bind_processor(dialect) for k in keys}
            copy = None
            if dialect.name == "postgresql" and dialect.driver == "psycopg":
                q = dialect.identifier_preparer
                copy = (f"COPY {q.format_table(table)} ({', '.join(q.quote(table.c[k].name) for k in names)}) "
                        "FROM STDIN")
            plan = (compiled.string, names, {k: p for k, p in processors.items() if p is not None},
                    compiled.positional, copy)
    _PLANS[key] = plan
    return plan
