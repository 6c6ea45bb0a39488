"""Plain data for the terminal's tests: a reconciliation of LUMFR's March invoice (lines and
records, as icdsl.recon.model describes them), open disputes and assurance findings, built by
hand so that the screens are tested without the engines that compute them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pyarrow as pa

from icdsl.recon import model as R
from icdsl.tui.feeds import DisputeRow, FindingRow


def _us(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1_000_000)


def reconciliation() -> R.Reconciliation:
    lines = [
        R.LineComparison("voice", "Arcadia fixed", "peak", R.LINE_MATCHED, (1,), ("11",), 120, 120,
                         D("240.5"), D("240.5"), D("1203.75"), D("1203.75"), "EUR"),
        R.LineComparison("voice", "Arcadia mobile", "peak", R.LINE_DIFFERS, (2,), ("12",), 52, 50,
                         D("101.0"), D("98.0"), D("1234.56"), D("1197.30"), "EUR"),
        R.LineComparison("voice", "Boreal fixed", None, R.LINE_ONLY_THEIRS, (3,), (), 4, 0,
                         D("10.0"), D(0), D("12.40"), D("0.00"), "EUR"),
        R.LineComparison("sms", "Arcadia", None, R.LINE_ONLY_OURS, (), ("13",), 0, 9,
                         D(0), D(9), D("0.00"), D("0.09"), "EUR"),
    ]
    inv = R.PartnerInvoice("LUMFR", "LUM-2026-0042", date(2026, 4, 3), date(2026, 3, 1), date(2026, 3, 31), "EUR",
                           D("2450.71"), tuple(R.PartnerInvoiceLine(i, "voice", amount=a, currency="EUR")
                                               for i, a in ((1, D("1203.75")), (2, D("1234.56")), (3, D("12.40")))))
    dec = pa.decimal128(18, 6)
    rows = [
        # class, their_id, our_id, a, b, their start, our start, their dur, our dur, their amount, our amount, line
        (R.MATCHED, "T1", "O1", "33140000001", "33612000001", "2026-03-04 09:15:00", "2026-03-04 09:15:00",
         61, 61, D("0.5"), D("0.5"), "12"),
        (R.DIFFERS_DURATION, "T2", "O2", "33140000002", "33612000002", "2026-03-04 10:00:01", "2026-03-04 10:00:00",
         125, 118, D("1.25"), D("1.18"), "12"),
        (R.DIFFERS_RATE, "T3", "O3", "33140000003", "33612000003", "2026-03-05 11:00:00", "2026-03-05 11:00:00",
         60, 60, D("0.9"), D("0.6"), "12"),
        (R.ONLY_THEIRS, "T4", None, "33140000004", "33612000004", "2026-03-06 12:00:00", None,
         300, None, D("3.0"), None, "12"),
        (R.ONLY_OURS, None, "O5", "33140000005", "33612000005", None, "2026-03-07 13:00:00",
         None, 42, None, D("0.42"), "12"),
        (R.MATCHED, "T6", "O6", "33140000006", "33140000106", "2026-03-08 09:00:00", "2026-03-08 09:00:00",
         600, 600, D("6.0"), D("6.0"), "11"),
        (R.ONLY_THEIRS, "T7", None, "33140000007", "35840000007", "2026-03-09 09:00:00", None,
         200, None, D("2.0"), None, None),
    ]
    cols = list(zip(*rows, strict=True))
    table = pa.table({
        "class": pa.array(cols[0], pa.string()), "their_id": pa.array(cols[1], pa.string()),
        "our_id": pa.array(cols[2], pa.string()), "a_number": pa.array(cols[3], pa.string()),
        "b_number": pa.array(cols[4], pa.string()),
        "their_start_us": pa.array([None if t is None else _us(t) for t in cols[5]], pa.int64()),
        "our_start_us": pa.array([None if t is None else _us(t) for t in cols[6]], pa.int64()),
        "their_duration": pa.array(cols[7], pa.int64()), "our_duration": pa.array(cols[8], pa.int64()),
        "their_amount": pa.array(cols[9], dec), "our_amount": pa.array(cols[10], dec),
        "line": pa.array(cols[11], pa.string()),
    })
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[0]] = counts.get(r[0], 0) + 1
    return R.Reconciliation("LUMFR", date(2026, 3, 1), date(2026, 3, 31), inv,
                            R.Tolerances(D("0.5"), D("1.00"), 2, 1), lines, table, counts,
                            their_total=D("2450.71"), our_total=D("2401.14"), currency="EUR")


def disputes() -> list:
    return [DisputeRow("DSP-2026-000001", "LUMFR", "open", D("37.26"), "EUR", "2026-03", "LUM-2026-0042",
                       date(2026, 4, 5)),
            {"number": "DSP-2026-000002", "partner": "BRKGB", "status": "partially_accepted",
             "disputed_amount": "120.00", "currency": "GBP", "accepted_amount": "80.00", "period": "2026-02"}]


def findings() -> list:
    return [FindingRow("warning", "commitment_expiring", "BRKGB", "the 2026 volume commitment expires in 12 days",
                       "renew or renegotiate it before 2026-04-15"),
            {"severity": "error", "kind": "unbilled_item", "partner": "LUMFR",
             "message": "inventory item E1-LYS-001 (e1_port) is billed by no charge",
             "what_to_do": "add a recurring fee for e1_port to the agreement", "amount": "150.00",
             "currency": "EUR"}]


def billed_store(folder, workdir, records: int = 2000, url: str | None = None):
    """A real store (SQLite under ``workdir``) with the folder's rules, inventory and generated
    March traffic: LUMFR's February cycle finalized (fees only: no traffic in February),
    LUMFR's and BRKGB's March cycles invoiced as drafts. Returns (store, plan)."""
    from icdsl.billing.store import open_store
    from icdsl.tui.project import Project
    from icdsl.tui.simulate import build_plan
    from icdsl.tui.traffic_source import TrafficSource, prepare_traffic

    project = Project(folder)
    plan, program, why = build_plan(project, None)
    assert plan is not None, why
    store = open_store(url or f"sqlite:///{workdir / 'billing.db'}", data_dir=workdir / "data")
    store.load_plan(plan, program)
    for f in project.files().inventory:
        store.import_inventory(f)
    for f in prepare_traffic(project, plan, TrafficSource(records=records), ["LUMFR", "BRKGB"], workdir):
        store.ingest(f, None, plan)
    store.run_cycle("LUMFR", "2026-02", plan)
    store.finalize_cycle("LUMFR", "2026-02")
    store.run_cycle("LUMFR", "2026-03", plan)
    store.run_cycle("BRKGB", "2026-03", plan)
    return store, plan
