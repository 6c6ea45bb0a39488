"""Record intake: traffic files (CSV or Parquet) to normalized record batches and rejects.

:class:`RecordReader` streams a file in batches of at most ``batch_rows`` source rows (memory
stays bounded whatever the file size), normalizes every row to the record schema below and
sets aside the rows it cannot use, each with a reason code and its original content. A bad row
never stops the run and no row is dropped silently::

    counts.read == counts.passed + counts.rejected + counts.duplicates

Problems with the *file* (unreadable, neither CSV nor Parquet, a required column missing, a
layout that cannot apply) raise :class:`IntakeError` before any record is produced.

The package, in the order data flows through it:

==============  ==========================================================================
``reader``      :class:`RecordReader`, :func:`read_records`: a file to batches
``csvfile``     CSV files read in blocks (pyarrow, a thread ahead), malformed lines
``parquetfile`` Parquet files read a row group at a time
``pieces``      source rows between a file reader and the normalization
``layout``      a ``records`` layout compiled for intake (:func:`layout_rules`)
``binding``     which column or key each field is read from; the record schema
``fields``      the field rules, on columns (:func:`fields.normalize`)
``numbers``     phone numbers to E.164 (a column; irregular spellings one by one)
``times``       the one timestamp parser (:func:`parse_instant`, :func:`times.instants`)
``duplicates``  ids seen in a run
``record``      one record as a mapping (:func:`normalize_record`): the same column rules
``columns``     column helpers and the problems of a batch's rows
``counts``      :class:`IntakeBatch`, :class:`IntakeCounts`, :class:`IntakeError`, the fields
``transit``     both sides of a transit record (``from_partner``, ``to_partner``)
==============  ==========================================================================

Normalized schema (pyarrow)
---------------------------
===========  ==========================================================================
id           int64 if the source id column is integer-typed (Parquet), else string
             (CSV columns carry no type: a CSV id is always a string)
partner      string (an integer partner column is written in decimal)
direction    string, trimmed and lower-cased (inbound, outbound, transit)
service      string, trimmed and lower-cased (voice, sms, data, ...)
a_number     string or null: E.164 digits when the value is a number, else the value as
             given (``anonymous``); never a reason to reject
b_number     string, E.164 digits without ``+`` (see :mod:`icdsl.rating.intake.numbers`; a
             national number without the layout's country is kept as written, 0...);
             null only for services other than voice and sms
start        timestamp[us, tz=UTC]
duration_s   int64 seconds (0 when a non-voice record has none)
volume       int64 bytes or null
units        int64 or null
...          every other column of the source, unchanged (CSV: strings), under its own
             name (or ``<name>_source`` if that name is one of the fields above)
===========  ==========================================================================

Columns: see :func:`.binding.bind`. Required: id, partner, direction, service, start, plus
b_number unless ``service`` is a constant other than voice/sms and duration_s unless it is a
constant other than voice. The field rules (text, numbers, whole numbers, what a row must have)
are in :mod:`.fields`; timestamps in :mod:`.times`. ``numbers="e164"`` takes digit strings as
they are (files that are E.164 already, such as the benchmark's).

*Duplicates*: by id over the whole run (all batches); among the rows that are otherwise
valid, the first occurrence wins; the later ones go to the rejects table with reason
``duplicate_id`` and are counted in ``duplicates``, not in ``rejected``. A row rejected for
another reason does not claim its id. Integer ids cost 8 bytes each (sorted numpy runs);
string ids that are canonical integers too, other string ids two 64-bit hashes.

Rejects table: ``row`` (CSV: the 1-based physical line number, the header being line 1;
Parquet: the 1-based row number), ``id`` (as a string, null if missing), ``reason``, ``detail``,
``raw`` (CSV: the original line(s); Parquet: the row as JSON). Each rejected row appears once,
with its first problem in the order id, partner, direction, service, b_number, start,
duration_s, volume, units.

Batches: a batch holds at most ``batch_rows`` source rows, in file order; ``first_row`` is the
number of its first source row. Its ``records`` table may have several chunks (one per CSV
block; a few rejected rows are cut out by slicing rather than copying).
"""

from icdsl.rating.intake.binding import record_schema
from icdsl.rating.intake.counts import FIELDS, IntakeBatch, IntakeCounts, IntakeError
from icdsl.rating.intake.layout import NUMBER_MODES, layout_rules
from icdsl.rating.intake.reader import RecordReader, read_records
from icdsl.rating.intake.record import normalize_record, records_table
from icdsl.rating.intake.times import TimestampError, parse_instant
from icdsl.rating.rejects import INTAKE_REASONS, REJECT_REASONS, REJECTS_SCHEMA, Reject

__all__ = [
    "FIELDS",
    "NUMBER_MODES",
    "REJECTS_SCHEMA",
    "REJECT_REASONS",
    "IntakeBatch",
    "IntakeCounts",
    "IntakeError",
    "RecordReader",
    "Reject",
    "TimestampError",
    "layout_rules",
    "normalize_record",
    "parse_instant",
    "read_records",
    "record_schema",
    "records_table",
]

assert set(INTAKE_REASONS) <= set(REJECT_REASONS)
