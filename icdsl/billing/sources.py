"""Where an intake batch's records come from: any record reader, built-in or a plugin's.

``icdsl ingest FILE --reader NAME --reader-option KEY=VALUE`` reads switch files (Asterisk,
FreeSWITCH: the ``icdsl-mediation`` plugin) the way ``icdsl rate`` does, and the records go
through the same intake as CSV and Parquet (:mod:`icdsl.billing.intake`). Without ``--reader``
the reader is chosen as ``icdsl rate`` chooses it: by the file's content, the built-in ``table``
reader (CSV with a header, Parquet) when no other reader claims it.

A plugin's reader is outside code: what it hands on is checked here before it reaches the store
(the record fields and their types, the rejects' columns, counts that reconcile batch by batch),
and anything it raises becomes an :class:`~icdsl.billing.errors.IngestError` naming the plugin
and the file, never a traceback. Its own rejects (unparseable lines) are rejects like any
other: a reason, a detail and the line number (``row``) in the file, kept in the batch's
rejects file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from icdsl.billing.errors import IngestError
from icdsl.plan.model import RecordLayout
from icdsl.plugins import BUILTIN_PLUGINS, PluginError, active_plugin_manager, owner
from icdsl.rating.intake import FIELDS, IntakeBatch, IntakeError, record_schema
from icdsl.rating.readers import Reader, open_reader
from icdsl.rating.rejects import REJECTS_SCHEMA

#: the types the store needs of the record fields (the id: text or whole numbers)
_NEEDED = {f.name: f.type for f in record_schema()}


class Source:
    """A traffic file opened with a record reader, its output checked for the store."""

    def __init__(self, path: str | os.PathLike[str], layout: RecordLayout | None, *, reader: str | None = None,
                 options: Mapping[str, str] | None = None, batch_rows: int = 1_000_000, pm: Any = None):
        self.path = os.fspath(path)
        self.label = os.path.basename(self.path) or self.path
        pm = pm if pm is not None else active_plugin_manager()
        try:
            self.reader: Reader = open_reader(self.path, layout, reader=reader, options=options or {}, pm=pm,
                                              batch_rows=batch_rows)
        except (IntakeError, PluginError) as e:
            raise IngestError(f"{self.label}: {e}") from e
        self.name = type(self.reader).name
        self.plugin = owner(pm, "icdsl_record_readers", self.name) or "?"
        self.builtin = self.plugin in BUILTIN_PLUGINS
        self.schema: pa.Schema = self._checked_schema(self.reader.schema)

    @property
    def format(self) -> str:
        """What the batch row records as the file's format: ``csv``, ``parquet`` or the reader's name."""
        try:
            return str(self.reader.format)[:16]
        except Exception:  # a plugin's property: its name is format enough
            return self.name[:16]

    @property
    def counts(self) -> Any:
        return self.reader.counts

    def _who(self) -> str:
        return f"reader '{self.name}'" + ("" if self.builtin else f" of plugin '{self.plugin}'")

    def _checked_schema(self, schema: Any) -> pa.Schema:
        if not isinstance(schema, pa.Schema):
            raise IngestError(f"{self.label}: {self._who()} gives no record schema (a pyarrow.Schema)")
        for name, typ in _NEEDED.items():
            i = schema.get_field_index(name)
            if i < 0:
                raise IngestError(f"{self.label}: {self._who()} gives no '{name}' column; the intake needs "
                                  f"{', '.join(FIELDS)} (icdsl.rating.intake.record_schema())")
            got = schema.field(i).type
            if got != typ and not (name == "id" and got == pa.int64()):
                raise IngestError(f"{self.label}: {self._who()} gives '{name}' as {got}; the intake needs {typ}")
        return schema

    def batches(self) -> Iterator[IntakeBatch]:
        """The reader's batches, each checked; a failure of a plugin's reader is an IngestError."""
        it = self.reader.batches()
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except IntakeError as e:
                raise IngestError(f"{self.label}: {e}") from e
            except Exception as e:
                if self.builtin:
                    raise
                raise IngestError(f"{self.label}: {self._who()} failed: {type(e).__name__}: {e}") from e
            yield self._checked(batch)

    def _checked(self, batch: Any) -> IntakeBatch:
        if not isinstance(batch, IntakeBatch):
            raise IngestError(f"{self.label}: {self._who()} handed on a {type(batch).__name__}, not an IntakeBatch")
        if batch.records.schema != self.schema:
            try:
                batch.records = batch.records.select(self.schema.names).cast(self.schema)
            except (KeyError, ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise IngestError(f"{self.label}: {self._who()} handed on records that do not match its own "
                                  f"schema: {e}") from e
        if not batch.rejects.schema.equals(REJECTS_SCHEMA):
            raise IngestError(f"{self.label}: {self._who()} handed on rejects with the columns "
                              f"{batch.rejects.schema.names}; the intake needs {REJECTS_SCHEMA.names}")
        c = batch.counts
        if not c.reconciles() or c.passed != batch.records.num_rows \
                or c.rejected + c.duplicates != batch.rejects.num_rows:
            raise IngestError(f"{self.label}: {self._who()} handed on a batch whose counts do not reconcile "
                              f"({c}; {batch.records.num_rows} records, {batch.rejects.num_rows} rejects)")
        dups = batch.duplicates
        if dups is not None and (dups.num_rows != c.by_reason.get("duplicate_id", 0)
                                 or dups.schema.names != self.schema.names):
            batch.duplicates = None  # not usable for comparison: counted as plain repeats
        elif dups is not None and dups.schema != self.schema:
            batch.duplicates = dups.cast(self.schema)
        return batch
