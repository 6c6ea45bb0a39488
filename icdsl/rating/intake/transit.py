"""Both sides of transit: one record carried between two partners, billed on each side.

A traffic file may name the partner a record came from (``from_partner``, read as its
``partner`` when the file has no ``partner`` column) and the partner it went to
(``to_partner``). A ``transit`` record that names both is rated twice, once per side:

==============  ===========  ===========  ====================================================
side            partner      direction    the agreement service that prices it
==============  ===========  ===========  ====================================================
origination     from_partner ``transit``  the originating partner's ``transit SERVICE``: we bill it
termination     to_partner   ``outbound`` the terminating partner's ``outbound SERVICE``: it bills us
==============  ===========  ===========  ====================================================

Both sides keep the record's ``id`` and every other column (``from_partner``, ``to_partner``),
so each side's rated record points to the same intake record. Which side a row is is written by
its partner: ``partner == from_partner`` the origination, ``partner == to_partner`` the
termination. A partner's cycle reads its own side only; counts reconcile per side: a batch's
records are its passed records plus one termination side per transit record
(:func:`sides`' second value).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

#: the direction of a transit record's termination side (the terminating partner bills us)
TERMINATION_DIRECTION = "outbound"


def termination_of(records: pa.Table) -> pa.Table:
    """The termination side of each transit record of ``records`` (normalized records): the
    rows whose direction is ``transit`` and whose ``to_partner`` is set, with ``partner`` the
    partner it went to and direction ``outbound``; empty when the records name no ``to_partner``."""
    if "to_partner" not in records.column_names or records.num_rows == 0:
        return records.slice(0, 0)
    to = pc.utf8_trim_whitespace(records.column("to_partner").cast(pa.string()))
    keep = pc.and_(pc.equal(records.column("direction"), "transit"), pc.not_equal(to, "")).fill_null(False)
    side = records.filter(keep)
    if side.num_rows == 0:
        return side
    to = to.filter(keep)
    i = side.schema.get_field_index("partner")
    side = side.set_column(i, side.schema.field(i), to.cast(side.schema.field(i).type))
    j = side.schema.get_field_index("direction")
    direction = pa.array([TERMINATION_DIRECTION] * side.num_rows, pa.string()).cast(side.schema.field(j).type)
    return side.set_column(j, side.schema.field(j), direction)


def sides(records: pa.Table) -> tuple[pa.Table, int]:
    """``records`` with the termination side of every transit record added after them, and how
    many were added (the origination side is the record as read)."""
    term = termination_of(records)
    if term.num_rows == 0:
        return records, 0
    return pa.concat_tables([records, term]), term.num_rows


def termination_mask(records: pa.Table) -> pa.Array | None:
    """Which rows of a written records file are termination sides (direction ``outbound``,
    partner its ``to_partner``); None when the file names no ``to_partner``. Readers that want
    a record as it was read (the earlier version of a duplicate) prefer the other rows."""
    if "to_partner" not in records.column_names:
        return None
    to = pc.utf8_trim_whitespace(records.column("to_partner").cast(pa.string()))
    partner = records.column("partner").cast(pa.string())
    return pc.and_(pc.equal(records.column("direction").cast(pa.string()), TERMINATION_DIRECTION),
                   pc.equal(partner, to)).fill_null(False)
