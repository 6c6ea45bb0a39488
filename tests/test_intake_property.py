"""One record and a file agree (property tests): ``normalize_record`` (the path of ``icdsl
explain``, record examples and the plugin author's kit) and a file read by ``RecordReader`` give
every row the same normalized values, or the same reject (reason and detail), for random field
values, valid and invalid, written as text (CSV) or typed (Parquet)."""

from __future__ import annotations

import csv
import io
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icdsl.plan.model import RecordLayout
from icdsl.rating.intake import Reject, normalize_record, parse_instant, read_records
from icdsl.rating.intake.times import TimestampError, to_datetime

LAYOUTS = [
    None,
    RecordLayout(name="paris", timezone="Europe/Paris"),
    RecordLayout(name="fr", timezone="Europe/Paris", country="FR"),
    RecordLayout(name="ny", timezone="America/New_York", country="US"),
    RecordLayout(name="mapped", columns=(("b_number", "dst"), ("start", "when"), ("duration_s", "secs")),
                 constants=(("direction", "outbound"),), timezone="Europe/London"),
    RecordLayout(name="epoch", timezone="UTC", timestamp_format="epoch_ms"),
    RecordLayout(name="strptime", timezone="Europe/Paris", timestamp_format="%d/%m/%Y %H:%M"),
]

TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
PAD = st.sampled_from(["", " ", "  "])


def _padded(s: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, v, b: a + v + b, PAD, s, PAD)


def _iso() -> st.SearchStrategy[str]:
    """ISO 8601 spellings, in and out of range (month 13, 30 February, hour 24, DST gaps)."""
    def build(y, mo, d, h, mi, sec, frac, sep, off):
        text = f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}"
        if mi is not None:
            text += f":{mi:02d}"
            if sec is not None:
                text += f":{sec:02d}" + frac
        return text + off
    return st.builds(
        build, st.sampled_from([1969, 2026, 2027]), st.integers(0, 13), st.integers(0, 32), st.integers(0, 24),
        st.none() | st.integers(0, 60), st.none() | st.integers(0, 60),
        st.sampled_from(["", ".5", ".123456", ".123456789", ",25"]), st.sampled_from(["T", " ", "t"]),
        st.sampled_from(["", "Z", "z", "+01:00", "+0100", "-05", " +02:00", "+25:00", "-03:30"]))


def _dst() -> st.SearchStrategy[str]:
    """Local times around the 2026 DST changes of Paris, London and New York."""
    days = [datetime(2026, 3, 29), datetime(2026, 10, 25), datetime(2026, 3, 8), datetime(2026, 11, 1)]
    return st.builds(lambda d, m: (d + timedelta(minutes=m)).strftime("%Y-%m-%d %H:%M:%S"),
                     st.sampled_from(days), st.integers(0, 5 * 60))


STARTS = st.one_of(_iso(), _dst(), _padded(_iso()), TEXT, st.sampled_from(["", "1772615700123", "-5", "1e3",
                   "04/03/2026 09:15", "31/02/2026 09:15", "29/03/2026 02:30", "2026-03-04"]))
NUMBERS = st.one_of(
    st.sampled_from(["33612345678", "+33 6 12 34 56 78", "0612345678", "0033612345678", "00033612345678",
                     "tel:+44-20-7946-0958", "sip:+12125551234@example.com", "2125551234", "1", "", "anonymous"]),
    st.text("0123456789+ -()x", max_size=18))
WHOLES = st.one_of(st.integers(-10, 10**6).map(str), st.integers(0, 2**64).map(str), TEXT,
                   st.sampled_from(["61", "61.0", "61.", "1.5", " 7 ", "-0", "+3", "", "x", "9" * 20, "1e3"]))
SERVICES = _padded(st.sampled_from(["voice", "VOICE", "sms", "data", "content", "", "Voice"]))
DIRECTIONS = _padded(st.sampled_from(["outbound", "INBOUND", "transit", ""]))
PARTNERS = st.one_of(_padded(st.sampled_from(["FR01", "P", ""])), TEXT)

FIELDS = ("partner", "direction", "service", "a_number", "b_number", "start", "duration_s", "volume", "units")
ROW = st.fixed_dictionaries({
    "partner": PARTNERS, "direction": DIRECTIONS, "service": SERVICES, "a_number": NUMBERS,
    "b_number": NUMBERS, "start": STARTS, "duration_s": WHOLES, "volume": WHOLES | st.just(""),
    "units": WHOLES | st.just(""),
})


def _names(layout: RecordLayout | None) -> dict[str, str]:
    """Field -> the column the layout reads it from."""
    mapping = dict(layout.columns) if layout is not None else {}
    return {f: mapping.get(f, f) for f in ("id", *FIELDS)}


def _same(one, got, why, rid: str, values) -> None:
    if isinstance(one, Reject):
        assert rid not in got, (values, one)
        assert why[rid] == one, values
    else:
        assert rid not in why, (values, one, why.get(rid))
        assert got[rid] == one, values


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROW, min_size=1, max_size=12), layout=st.sampled_from(LAYOUTS),
       mode=st.sampled_from(["normalize", "e164"]))
def test_a_record_and_a_csv_row_agree(rows, layout, mode):
    names = _names(layout)
    if layout is not None and "direction" in dict(layout.constants):
        names.pop("direction")
    header = list(names.values())
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    records = []
    for i, r in enumerate(rows):
        values = {names["id"]: str(i), **{names[f]: v for f, v in r.items() if f in names}}
        records.append(values)
        w.writerow([values[h] for h in header])
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "t.csv"
        p.write_text(out.getvalue(), encoding="utf-8")
        rec, rej, counts = read_records(p, layout, dedupe=False, numbers=mode)
    assert counts.reconciles() and counts.read == len(rows)
    got = {r["id"]: r for r in rec.to_pylist()}
    why = {r["id"]: Reject(r["reason"], r["detail"]) for r in rej.to_pylist()}
    for values in records:
        one = normalize_record(values, layout, numbers=mode)
        _same(one, got, _relabel(why, layout), values[names["id"]], values)


def _relabel(why: dict[str, Reject], layout: RecordLayout | None) -> dict[str, Reject]:
    """A file names a mapped column ``when (start)``, a record names it by its key ``when``."""
    if layout is None or not layout.columns:
        return why
    out = {}
    for k, r in why.items():
        detail = r.detail
        for f, c in layout.columns:
            detail = detail.replace(f"{c} ({f})", c)
        out[k] = Reject(r.reason, detail)
    return out


NAIVE = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31)) | _dst().map(
    datetime.fromisoformat)
AWARE = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(1, 10), layout=st.sampled_from(LAYOUTS[:4]))
def test_a_record_and_a_parquet_row_agree(data, n, layout):
    """Typed values: integer ids and durations (negative too), float durations (fractional
    too), timestamps with a zone or naive (local times, DST gaps included), integer partners."""
    aware = data.draw(st.booleans())
    starts = data.draw(st.lists(AWARE if aware else NAIVE, min_size=n, max_size=n))
    floats = data.draw(st.booleans())
    durations = data.draw(st.lists(
        st.floats(-3, 1e6) | st.sampled_from([float("nan"), float("inf"), 1.5, 2.0**63]) if floats else st.integers(-3, 2**62) | st.none(),
        min_size=n, max_size=n))
    partners = data.draw(st.lists(st.integers(0, 999), min_size=n, max_size=n))
    t = pa.table({
        "id": pa.array(range(n), pa.int64()), "partner": pa.array(partners, pa.int64()),
        "direction": ["outbound"] * n,
        "service": data.draw(st.lists(st.sampled_from(["voice", "data"]), min_size=n, max_size=n)),
        "b_number": data.draw(st.lists(NUMBERS, min_size=n, max_size=n)),
        "start": pa.array(starts, pa.timestamp("us", tz="UTC") if aware else pa.timestamp("us")),
        "duration_s": pa.array(durations, pa.float64() if floats else pa.int64()),
    })
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "t.parquet"
        pq.write_table(t, p)
        rec, rej, counts = read_records(p, layout, dedupe=False)
    assert counts.reconciles() and counts.read == n
    got = {r["id"]: r for r in rec.to_pylist()}
    why = {r["id"]: Reject(r["reason"], r["detail"]) for r in rej.to_pylist()}
    why = {int(k): v for k, v in why.items()}
    for values in t.to_pylist():
        _same(normalize_record(values, layout), got, why, values["id"], values)


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(_iso(), _dst(), TEXT), zone=st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]))
def test_the_one_parser_is_the_files_rule(text, zone):
    """``parse_instant`` (record examples, the demo, CDR readers) gives what a file's start
    column gets, or refuses it with the file's reject detail."""
    layout = RecordLayout(name="z", timezone=zone)
    one = normalize_record({"partner": "P", "direction": "outbound", "service": "data", "start": text}, layout)
    try:
        got = to_datetime(parse_instant(text, zone, label="start"))
    except TimestampError as e:
        assert isinstance(one, Reject) and one.detail == e.detail
    else:
        assert not isinstance(one, Reject) and one["start"] == got
