# ruff: noqa: F811 - tests take the imported fixtures as parameters
"""Finalization and the write path of a cycle run, as they are written for a month of hundreds of
cycles (few statements each): numbers gap-free and taken one transaction at a time, the report
of a finalization the same as the one read back, a refused finalization taking no number, a
run's events in the order they happened, its drafts written as the engine drafted them."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest
from test_billing_store import (  # noqa: F401 - the fixtures (used as test parameters)
    ACCEPT,
    db_url,
    load_and_ingest,
    store,
)

from icdsl.billing.cycles import next_numbers
from icdsl.billing.errors import CycleStateError
from icdsl.hookspecs import hookimpl
from icdsl.plugins import make_plugin_manager, use_plugin_manager
from icdsl.validators import Finding, InvoiceValidator


def test_finalize_reports_what_it_wrote_and_numbers_each_year_without_gaps(store, tmp_path):
    plan, _ = load_and_ingest(store, tmp_path)
    rep = store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
    fin = store.finalize_cycle("ORFR", "2026-03", issue_date=date(2026, 4, 2))
    # the report made from what finalization wrote is the one read back from the store
    again = store.finalize_cycle("ORFR", "2026-03")
    assert again.already and not fin.already
    assert fin.invoices == again.invoices and fin.statement == again.statement
    assert (fin.rated_file, fin.rated_sha256, fin.batches, fin.charge_lines) == (
        again.rated_file, again.rated_sha256, again.batches, again.charge_lines)
    (inv,) = fin.invoices
    assert (inv.number, inv.status, inv.lines) == ("INV-2026-000001", "finalized", rep.invoices[0].lines)
    assert [ln.line_no for ln in store.invoice_lines(inv.id)] == list(range(1, inv.lines + 1))
    # April issued in 2027: that year's counter starts at 1
    store.run_cycle("ORFR", "2026-04", plan, accept=ACCEPT)
    assert store.finalize_cycle("ORFR", "2026-04", issue_date=date(2027, 1, 4)).invoices[0].number == "INV-2027-000001"
    with store.session() as s:
        assert next_numbers(store, s, "invoice-2026", 3) == [2, 3, 4]
        assert next_numbers(store, s, "invoice-2026", 0) == []
        s.rollback()  # numbers taken in a transaction rolled back are given back
    with store.session() as s:
        assert next_numbers(store, s, "invoice-2026", 1) == [2]
        s.rollback()


class _Refuse(InvoiceValidator):
    name = "refuse_all"
    description = "refuses every draft (test)"

    def validate(self, documents, context):
        for i, doc in enumerate(documents):
            assert doc["lines"] and doc["number"] is None  # the drafts as stored, lines and all
            yield Finding("error", "refused", "not this one", f"#{i + 1}")


class _RefusePlugin:
    ICDSL_HOOK_API = 1

    @hookimpl
    def icdsl_invoice_validators(self):
        return [_Refuse]


def test_a_refused_finalization_takes_no_number_and_changes_nothing(store, tmp_path):
    plan, _ = load_and_ingest(store, tmp_path)
    rep = store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
    pm = make_plugin_manager((_RefusePlugin(),))
    with use_plugin_manager(pm), pytest.raises(CycleStateError, match=r"cannot be finalized: .*refused.*not this one"):
        store.finalize_cycle("ORFR", "2026-03")
    (inv,) = store.invoices(rep.cycle_id)
    assert (inv.status, inv.number) == ("draft", None)
    assert store.cycle("ORFR", "2026-03").status == "invoiced"
    assert store.finalize_cycle("ORFR", "2026-03").invoices[0].number == "INV-2026-000001"


def test_numbers_are_taken_one_transaction_at_a_time(store, tmp_path):
    """A second finalizer waits for the first to commit (PostgreSQL: the counter's row lock;
    SQLite: the write lock), then continues after its numbers."""
    with store.session() as s:
        assert next_numbers(store, s, "test-seq", 2) == [1, 2]
    got: list[list[int]] = []
    holding = threading.Event()

    def first() -> None:
        with store.session() as s:
            got.append(next_numbers(store, s, "test-seq", 3))
            holding.set()
            time.sleep(0.5)  # the second asks meanwhile

    def second() -> None:
        holding.wait()
        with store.session() as s:
            got.append(next_numbers(store, s, "test-seq", 1))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [[3, 4, 5], [6]]


def test_a_run_writes_its_events_in_the_order_they_happened(store, tmp_path):
    plan, _ = load_and_ingest(store, tmp_path)
    rep = store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
    store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT, rerate=True)
    store.finalize_cycle("ORFR", "2026-03")
    events = store.cycle_events(rep.cycle_id)
    assert [e.id for e in events] == sorted(e.id for e in events)
    steps = [(e.kind, e.from_state, e.to_state) if e.kind == "state" else (e.kind, e.message.split(" ")[0])
             for e in events]
    run = [("progress", "rating"), ("state", "open", "rated"), ("state", "rated", "validated"),
           ("state", "validated", "invoiced")]
    assert steps == ([("state", None, "open")] + run + [("state", "invoiced", "open")] + run
                     + [("state", "invoiced", "finalized")])
