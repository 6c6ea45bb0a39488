"""What the switch CDR readers share: reading raw lines, mapping a CDR to an icdsl record,
the answered/unanswered rule, numbers, time zones, and building intake batches.

A CDR line becomes a record in four steps, each of which may reject it (the first problem wins):

1. **structure**: UTF-8, one CSV line (``"`` quoting), the format's number of fields, else
   ``malformed_row`` with the raw line kept (bad bytes shown as ``\\xff``);
2. **answered**: Asterisk's disposition must be one the ``answered`` option lists (default
   ANSWERED); a FreeSWITCH call must have an ``answer_stamp`` (and a hangup cause the
   ``answered`` option lists, if given); and ``billsec`` must be above 0; else ``unanswered`` (a
   reason this plugin adds). ``duration`` is never billed: it includes the ring time;
3. **normalization** by icdsl's own intake rules (:func:`icdsl.rating.intake.normalize_record`):
   ``missing_field``, ``bad_timestamp`` (also a local time that does not exist in the switch's
   time zone), ``bad_duration``, ``invalid_number``;
4. **duplicates**: an id already passed earlier in the file is ``duplicate_id``.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pyarrow as pa

from icdsl.plan.model import RecordLayout
from icdsl.rating.intake import (
    REJECTS_SCHEMA,
    IntakeBatch,
    IntakeCounts,
    IntakeError,
    RecordReader,
    normalize_record,
    record_schema,
)
from icdsl.rating.intake.times import TimestampError, parse_instant
from icdsl.readers import CLAIM_CONTENT, Reader

UNANSWERED = "unanswered"
REASONS = {
    UNANSWERED: (
        "the switch recorded the call as not answered (Asterisk disposition other than ANSWERED, "
        "FreeSWITCH no answer_stamp, or a disposition / hangup cause the reader's 'answered' option "
        "does not list) or with no billable second (billsec 0): there is nothing to rate"
    ),
}

#: extra columns every mediation record carries (text), for audit and conditions
EXTRAS = ("disposition", "accountcode", "context", "cdr_format")
TOTAL_COLUMN = "total_s"  # the switch's duration (ring time included), int64, never billed

CDR_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # how Asterisk and FreeSWITCH write their stamps
_INT = re.compile(r"\d+")
_CLID_NUMBER = re.compile(r"<([^<>]*)>\s*$")

COMMON_OPTIONS = {
    "partner": "the partner code of every call in the file (all calls of this switch go to one partner)",
    "partner_field": "the CDR field that holds the partner (e.g. accountcode); its value is the partner code",
    "partner_map": "VALUE=CODE pairs, comma-separated, turning partner_field values into partner codes",
    "direction": "inbound, outbound or transit (default: the layout's constant, else outbound)",
    "service": "the service of the calls (default voice)",
    "timezone": "the switch's time zone, e.g. Europe/Madrid (the CDR times are local to it); default: the layout's",
    "country": "ISO country of the switch, to turn national numbers into E.164 (default: the layout's)",
    "access_code": "the digit(s) users dial for an outside line (e.g. 0): removed when followed by 00",
    "answered": "comma-separated dispositions (Asterisk, default ANSWERED) / hangup causes (FreeSWITCH, "
                "default: any, with an answer_stamp) that are rated",
}


def split_line(text: str) -> list[str] | None:
    """One CDR line -> its fields, or None when it is not well-formed CSV."""
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def csv_problem(text: str) -> str:
    """Why :func:`split_line` refused a line, in words (unbalanced quotes, a field too long...)."""
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as exc:
        msg = str(exc)
        if "field larger than field limit" in msg:
            return f"a field longer than {csv.field_size_limit()} characters"
        return "unbalanced quotes" if "quote" in msg or "end of data" in msg or "expected" in msg else msg
    return f"{len(rows)} lines in one"


def whole(value: str) -> int | None:
    v = value.strip()
    return int(v) if _INT.fullmatch(v) else None


def clid_number(clid: str) -> str:
    """The number of an Asterisk caller id ``"Name" <1234>`` (or the text itself)."""
    m = _CLID_NUMBER.search(clid)
    return (m.group(1) if m else clid).strip()


class CdrReader(Reader):
    """A headerless switch CDR file, one call per line. Subclasses set the format's ``columns``,
    the accepted field counts, the default ``answered`` values and :meth:`fields`."""

    format_name: ClassVar[str] = ""
    #: how many fields a line has, as a sentence ("16 to 21")
    field_text: ClassVar[str] = ""
    #: icdsl field -> the CDR column it is read from (named in reject details)
    sources: ClassVar[dict[str, str]] = {}
    columns: ClassVar[tuple[str, ...]] = ()
    field_counts: ClassVar[tuple[int, ...]] = ()
    answered_default: ClassVar[tuple[str, ...]] = ()
    partner_fields: ClassVar[tuple[str, ...]] = ()
    options = COMMON_OPTIONS

    def __init__(self, path: Any, layout: RecordLayout | None = None, **kw: Any):
        super().__init__(path, layout, **kw)
        opt = self.option_values
        lay = layout
        tz = (opt.get("timezone") or (lay.timezone if lay is not None else "")).strip()
        if not tz:
            raise IntakeError(
                f"reader '{self.name}': the CDR times are local to the switch: give its time zone "
                f"(reader option timezone=Europe/Madrid, or a records layout with a timezone; "
                f"UTC if the switch writes UTC)"
            )
        constants = {f: v for f, v in (lay.constants if lay is not None else ())}
        self.partner = opt.get("partner", "").strip() or None
        self.partner_field = opt.get("partner_field", "").strip() or None
        if self.partner_field is not None and self.partner_field not in self.partner_fields:
            raise IntakeError(f"reader '{self.name}': partner_field must be one of "
                              f"{', '.join(self.partner_fields)}, not {self.partner_field!r}")
        if self.partner is None and self.partner_field is None and "partner" not in constants:
            raise IntakeError(
                f"reader '{self.name}': a switch CDR does not say which partner a call is for: set the "
                f"reader option partner=CODE, or partner_field=FIELD ({', '.join(self.partner_fields)}), "
                f"or a layout constant 'partner = CODE'"
            )
        if self.partner is None and self.partner_field is None:
            self.partner = str(constants["partner"]).strip()
        self.partner_map = _pairs(opt.get("partner_map", ""), self.name)
        self.direction = (opt.get("direction") or constants.get("direction") or "outbound").strip()
        self.service = (opt.get("service") or constants.get("service") or "voice").strip()
        self.access_code = opt.get("access_code", "").strip() or None
        if self.access_code is not None and not self.access_code.isdigit():
            raise IntakeError(f"reader '{self.name}': access_code must be digits, not {self.access_code!r}")
        answered = opt.get("answered")
        self.answered = (frozenset(a.strip().upper() for a in answered.split(",") if a.strip())
                         if answered else frozenset(self.answered_default))
        self.norm_layout = RecordLayout(
            name=f"{self.name} ({lay.name})" if lay is not None else self.name,
            columns=tuple(self.sources.items()),
            constants=tuple((f, v) for f, v in constants.items()
                            if f not in ("partner", "direction", "service")),
            timezone=tz,
            country=(opt.get("country") or (lay.country if lay is not None else None) or None),
        )
        # a bad time zone or country is a file-level error (IntakeError): find it now, not per row
        normalize_record({}, self.norm_layout, numbers=self.numbers)
        self.schema = record_schema().append(pa.field(TOTAL_COLUMN, pa.int64()))
        for name in EXTRAS:
            self.schema = self.schema.append(pa.field(name, pa.string()))
        for name, _ in self.norm_layout.constants:  # a layout's extra columns (route_class = premium)
            if name not in self.schema.names:
                self.schema = self.schema.append(pa.field(name, pa.string()))

    # ------------------------------------------------------------------ the format

    def fields(self, values: list[str]) -> dict[str, str]:
        """The CDR's fields by name (a subclass maps positions to its column names)."""
        return dict(zip(self.columns, values, strict=False))

    def record(self, f: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
        """(icdsl record fields before normalization, or None if unanswered; the detail)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared rules

    def is_answered(self, disposition: str, billsec: str) -> str | None:
        """None when the call is to be rated, else the detail of its ``unanswered`` reject."""
        d = disposition.strip().upper()
        if d not in self.answered:
            return f"{self.disposition_label} {disposition.strip() or '(empty)'}: the call was not answered"
        secs = whole(billsec)
        if secs == 0:
            return f"{self.disposition_label} {d} but billsec 0: no billable second"
        return None  # billsec > 0, or not a number: normalization reports it (bad_duration)

    disposition_label: ClassVar[str] = "disposition"

    def number(self, value: str) -> str:
        """A dialled number as the switch wrote it -> the text icdsl's number rules get.

        The outside-line access code (option ``access_code``) is removed when it stands before
        the international prefix: with access_code 0, ``00034...`` -> ``0034...`` -> ``34...``.
        Otherwise ``00034...`` is rejected (``invalid_number``), as icdsl never guesses an extra 0.
        """
        v = value.strip()
        ac = self.access_code
        if ac is not None and v.startswith(ac + "00"):
            v = v[len(ac):]
        return v

    def partner_of(self, f: dict[str, str]) -> str | None:
        if self.partner is not None:
            return self.partner
        if self.partner_field is None:
            return None  # the layout constant applies
        value = self.partner_value(f, self.partner_field).strip()
        return self.partner_map.get(value, value) or None

    def partner_value(self, f: dict[str, str], name: str) -> str:
        return f.get(name, "")

    # ------------------------------------------------------------------ reading

    @classmethod
    def sniff(cls, values: list[str]) -> bool:
        raise NotImplementedError

    @classmethod
    def claims(cls, path: str, head: bytes) -> int:
        if head[:2] == b"\x1f\x8b":
            with contextlib.suppress(OSError, EOFError):  # a head cut mid-stream: sniff what we have
                head = gzip.GzipFile(fileobj=io.BytesIO(head)).read(4096)
        for line in head.splitlines():
            if line.strip():
                values = split_line(line.decode("utf-8", "replace"))
                return CLAIM_CONTENT if values is not None and cls.sniff(values) else 0
        return 0

    def _open(self) -> Any:
        with open(self.path, "rb") as fh:
            magic = fh.read(2)
        return gzip.open(self.path, "rb") if magic == b"\x1f\x8b" else open(self.path, "rb")

    def batches(self) -> Iterator[IntakeBatch]:
        self.counts = IntakeCounts()
        seen: set[str] = set()
        batch = _Batch(1)
        try:
            fh = self._open()
        except OSError as exc:
            raise IntakeError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        with fh:
            for lineno, raw in enumerate(fh, 1):
                line = raw.rstrip(b"\r\n")
                if not line.strip():
                    continue
                if batch.read >= self.batch_rows:
                    yield self._finish(batch, seen)
                    batch = _Batch(lineno)
                batch.read += 1
                self._line(lineno, line, batch)
        if batch.read:
            yield self._finish(batch, seen)

    def _line(self, lineno: int, line: bytes, batch: _Batch) -> None:
        """Steps 1 and 2 (structure, answered); the line goes on to normalization, or is a reject."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            shown = line.decode("utf-8", "backslashreplace")
            batch.reject(lineno, None, "malformed_row", f"bytes that are not UTF-8 at column {exc.start + 1}", shown)
            return
        values = split_line(text)
        if values is None:
            batch.reject(lineno, None, "malformed_row", f"the line is not valid CSV ({csv_problem(text)})", text)
            return
        if len(values) not in self.field_counts:
            batch.reject(lineno, None, "malformed_row",
                         f"{len(values)} fields; a line of {self.format_name} has {self.field_text}", text)
            return
        f = self.fields(values)
        rec, unanswered = self.record(f)
        if rec is None:
            batch.reject(lineno, f.get("_id") or None, UNANSWERED, unanswered or "not answered", text)
            return
        rec["partner"] = self.partner_of(f)
        rec["direction"] = self.direction
        rec["service"] = self.service
        batch.add(lineno, text, f.get("_id") or None, [rec.get(k) for k in self._fields])

    _fields = ("id", "partner", "direction", "service", "a_number", "b_number", "start", "duration_s",
               "total_s", *EXTRAS)

    def _finish(self, b: _Batch, seen: set[str]) -> IntakeBatch:
        """Step 3 by icdsl's own (columnar) intake over the batch's answered calls, then step 4."""
        records = self.schema.empty_table()
        duplicates = None
        if b.lines:
            records = self._normalize(b)
        if self.dedupe and records.num_rows:
            keep, again = [], []
            for i, key in enumerate(records.column("id").to_pylist()):
                if key in seen:
                    pos = b.where[i]
                    b.reject(b.lines[pos][0], key, "duplicate_id", f"id '{key}' was already seen earlier in the file",
                             b.lines[pos][1])
                    b.duplicates += 1
                    again.append(i)
                else:
                    seen.add(key)
                    keep.append(i)
            if again:  # handed on with the batch: the billing intake tells a repeat from a conflict
                duplicates = records.take(pa.array(again, pa.int64()))
                records = records.take(pa.array(keep, pa.int64()))
        b.rejects.sort(key=lambda r: r[0])
        rejects = pa.table(
            {
                "row": pa.array([r[0] for r in b.rejects], pa.int64()),
                "id": pa.array([r[1] for r in b.rejects], pa.string()),
                "reason": pa.array([r[2] for r in b.rejects], pa.string()),
                "detail": pa.array([r[3] for r in b.rejects], pa.string()),
                "raw": pa.array([r[4] for r in b.rejects], pa.string()),
            },
            schema=REJECTS_SCHEMA,
        )
        counts = IntakeCounts(read=b.read, passed=records.num_rows, rejected=len(b.rejects) - b.duplicates,
                              duplicates=b.duplicates)
        for r in b.rejects:
            counts.by_reason[r[2]] = counts.by_reason.get(r[2], 0) + 1
        self.counts.add(counts)
        return IntakeBatch(records, rejects, b.first_row, counts, duplicates)

    def _normalize(self, b: _Batch) -> pa.Table:
        """The answered calls, written as a CSV with a header (the CDR's own column names, so
        that reject details name them), read by :class:`icdsl.rating.intake.RecordReader`:
        timestamps, numbers and durations follow exactly the rules of any icdsl traffic file."""
        header = [self.sources.get(k, k) for k in self._fields]
        with tempfile.NamedTemporaryFile("w", suffix=".csv", encoding="utf-8", newline="", delete=False) as tmp:
            w = csv.writer(tmp, lineterminator="\n")
            w.writerow(header)
            w.writerows([_clean(v) for v in row] for _, _, _, row in b.lines)
        try:
            reader = RecordReader(tmp.name, self.norm_layout, batch_rows=len(b.lines) + 1, dedupe=False,
                                  numbers=self.numbers)
            parts = list(reader.batches())
        finally:
            os.unlink(tmp.name)
        table = pa.concat_tables([p.records for p in parts]) if parts else None
        passed = set(range(len(b.lines)))
        for part in parts:
            for r in part.rejects.to_pylist():
                pos = r["row"] - 2  # the header is line 1 of the temporary file
                lineno, text, rid, _ = b.lines[pos]
                b.reject(lineno, rid, r["reason"], r["detail"], text)
                passed.discard(pos)
        b.where = sorted(passed)
        if table is None or table.num_rows == 0:
            return self.schema.empty_table()
        cols = {}
        for fld in self.schema:
            col = table.column(fld.name)
            if fld.name == TOTAL_COLUMN:
                col = pa.array([int(v) if v else None for v in col.to_pylist()], pa.int64())
            cols[fld.name] = col.cast(fld.type) if col.type != fld.type else col
        return pa.table(cols, schema=self.schema)


class _Batch:
    __slots__ = ("duplicates", "first_row", "lines", "read", "rejects", "where")

    def __init__(self, first_row: int):
        self.first_row = first_row
        self.read = 0
        self.duplicates = 0
        self.lines: list[tuple[int, str, str | None, list[Any]]] = []  # answered calls, to normalize
        self.where: list[int] = []  # index in lines of each normalized record
        self.rejects: list[tuple[int, str | None, str, str, str]] = []

    def add(self, lineno: int, text: str, rid: str | None, values: list[Any]) -> None:
        self.lines.append((lineno, text, rid, values))

    def reject(self, row: int, rid: str | None, reason: str, detail: str, raw: str) -> None:
        self.rejects.append((row, rid, reason, detail, raw))


def _clean(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return text.replace("\r", " ").replace("\n", " ") if ("\r" in text or "\n" in text) else text


def _pairs(text: str, reader: str) -> Mapping[str, str]:
    out = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise IntakeError(f"reader '{reader}': partner_map expects VALUE=CODE pairs, not {part.strip()!r}")
        out[key.strip()] = value.strip()
    return out


def is_timestamp(value: str) -> bool:
    """A switch's stamp (``YYYY-MM-DD HH:MM:SS``), read by icdsl's one timestamp parser."""
    try:
        parse_instant(value, "UTC", CDR_TIME_FORMAT)
    except TimestampError:
        return False
    return True
