"""The audit trail of an invoice line: invoice -> line -> agreement version -> rule -> records.

:func:`trace_line` gathers, for one line: its invoice, the agreement version that rated it
(name, version, content hash, where it is written), each rule (rate row or service) that priced
its records with the rule's source line (from the agreement's stored source text, or the stored
deck), the exact records behind it (the rated Parquet rows whose ``line`` is the line's
``line_key``) and the intake batches they came from; for an adjustment line, the correction
and the line it corrects. :func:`explain_record` rates one of those records again with the row
executor (the specification), step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl.billing import models as M
from icdsl.billing.amounts import plain_number, present
from icdsl.billing.errors import StoreError
from icdsl.plan.model import Plan
from icdsl.rating.row import rate_record

if TYPE_CHECKING:
    from icdsl.billing.store import Store


@dataclass
class RuleSource:
    rule: str  # file:line:col
    records: int
    text: str | None  # the source line, as loaded
    where: str  # "agreement source", "deck", or why it is not shown


@dataclass
class LineTrace:
    """An invoice line and everything behind it."""

    line: M.InvoiceLine
    invoice: M.Invoice
    agreement: M.AgreementVersion | None
    rule_source: str | None  # the line's rule's source line (when the line has one rule)
    data_file: M.DataFile | None
    records: pa.Table  # the records behind the line (the first ``limit`` when limited)
    batches: list[M.IntakeBatch]
    cycle: M.BillingCycle | None = None
    rules: list[RuleSource] = field(default_factory=list)
    record_total: int = 0
    adjustment: M.Adjustment | None = None
    correction: M.Correction | None = None
    corrects: M.InvoiceLine | None = None
    corrects_invoice: M.Invoice | None = None
    fx: M.FxRate | None = None
    charge: list[str] = field(default_factory=list)  # a charge's line: its rule, key and what is behind it

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def lines(self, records: int | None = None) -> list[str]:
        ln, inv = self.line, self.invoice
        number = inv.number or f"#{inv.id} (draft)"
        out = [f"invoice {number} ({inv.status}) {inv.partner_code} {inv.partner_name}"
               + (f", period {self.cycle.label}" if self.cycle else "") + f", stream {inv.stream}, {inv.currency}"]
        amount = present(ln.amount, ln.currency)
        out.append(f"  line {ln.id} (#{ln.line_no}, {ln.kind}): {ln.description}: {plain_number(ln.quantity)} {ln.unit}"
                   + (f" at {plain_number(ln.rate)} per {ln.rate_unit}" if ln.rate is not None else "")
                   + f" = {amount} {ln.currency}")
        if ln.source_amount is not None:
            how = f"{plain_number(ln.source_amount)} {ln.source_currency} " + (
                f"(exact sum of {ln.record_count} record(s))" if ln.kind in ("traffic", "adjustment")
                else "(the charge's line, rounded once)")
            if ln.fx_rate is not None:
                how += f" x {plain_number(ln.fx_rate)}"
                if self.fx is not None:
                    how += f" ({self.fx.source} {self.fx.base}/{self.fx.quote} {self.fx.rate} from {self.fx.effective_from})"
            out.append(f"    amount: {how}, rounded {ln.rounding or ''} -> {amount} {ln.currency}")
        if self.adjustment is not None:
            a = self.adjustment
            if a.charge_key:
                out.append(f"    adjustment #{a.id} of correction #{a.correction_id}: charge "
                           + (f"line {a.charge_line_id} " if a.charge_line_id else "")
                           + f"{a.charge_key}: {a.old_source} billed -> {a.new_source} {a.source_currency} due "
                           "in the corrected period")
            else:
                out.append(f"    adjustment #{a.id} of correction #{a.correction_id}: {a.old_count} record(s) "
                           f"{a.old_source} -> {a.new_count} record(s) {a.new_source} {a.source_currency}")
            if self.correction is not None:
                c = self.correction
                out.append(f"    correction #{c.id}: rerate of {c.partner_code} {c.local_from}..{c.local_to}"
                           + (f" destination {c.destination}" if c.destination else "")
                           + f" by {c.actor} on {c.created_at:%Y-%m-%d %H:%M}Z (rules {c.plan_hash[:12]}...)")
            if self.corrects is not None:
                ci = self.corrects_invoice
                out.append(f"    corrects line {self.corrects.id} (#{self.corrects.line_no} of "
                           f"{ci.number if ci else '?'}): {self.corrects.description} = "
                           f"{present(self.corrects.amount, self.corrects.currency)}")
        out += self.charge
        if self.agreement is not None:
            a = self.agreement
            out.append(f"  agreement \"{a.name}\" v{a.version} (revision {a.revision}, sha256 {a.content_hash}), "
                       f"{a.span}, effective {a.effective_from} .. {a.effective_to or ''}")
        for r in self.rules:
            out.append(f"  rule {r.rule} ({r.records} record(s))")
            if r.text is not None:
                out.append(f"    | {r.text.rstrip()}")
            else:
                out.append(f"    ({r.where})")
        if self.data_file is not None:
            out.append(f"  records: {self.record_total} in {self.data_file.path} (sha256 {self.data_file.sha256[:12]}..., "
                       f"line {ln.line_key})")
        for b in self.batches:
            out.append(f"  from intake batch #{b.id} {b.file_name} (sha256 {b.sha256[:12]}..., ingested "
                       f"{b.finished_at:%Y-%m-%d %H:%M}Z)")
        n = self.records.num_rows if records is None else min(records, self.records.num_rows)
        if n:
            cols = [c for c in ("id", "start", "direction", "service", "prefix", "destination", "band",
                                "billed_units", "rate", "amount", "currency", "rule", "batch_id")
                    if c in self.records.column_names]
            out.append(f"  first {n} record(s):")
            for row in self.records.select(cols).slice(0, n).to_pylist():
                start = row.get("start")
                out.append("    " + "  ".join(
                    f"{k}={v:%Y-%m-%dT%H:%M:%SZ}" if k == "start" and start is not None else f"{k}={v}"
                    for k, v in row.items()))
        return out


def _source_line(s: Session, rule: str, agreement: M.AgreementVersion | None) -> RuleSource:
    parts = rule.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return RuleSource(rule, 0, None, "not a source location")
    path, k = parts[0], int(parts[1])
    if agreement is not None and agreement.source_file == path:
        start = _span_line(agreement.span)
        lines = agreement.source_text.splitlines()
        if start and 0 <= k - start < len(lines):
            return RuleSource(rule, 0, lines[k - start], "agreement source")
    q = select(M.SourceFile).where(M.SourceFile.path == path)
    if agreement is not None and agreement.source_file == path:
        q = q.where(M.SourceFile.sha256 == agreement.source_file_hash)
    elif agreement is not None:
        deck_hash = next((h for p, h in (agreement.decks or []) if p == path), None)
        if deck_hash:
            q = q.where(M.SourceFile.sha256 == deck_hash)
    src = s.scalars(q.order_by(M.SourceFile.id.desc())).first()
    if src is None:
        return RuleSource(rule, 0, None, f"{path} is not stored with the agreement")
    lines = src.text.splitlines()
    if 0 < k <= len(lines):
        return RuleSource(rule, 0, lines[k - 1], "deck" if path.endswith(".csv") else "rule file")
    return RuleSource(rule, 0, None, f"{path} has no line {k}")


def _span_line(span: str) -> int | None:
    parts = span.rsplit(":", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def trace_line(store: Store, line_id: int, *, limit: int | None = None) -> LineTrace:
    """The chain behind invoice line ``line_id``; ``limit``: keep the first records only."""
    with store.reading() as s:
        line = s.get(M.InvoiceLine, line_id)
        if line is None:
            raise StoreError(f"no invoice line {line_id} (`icdsl invoice show NUMBER` lists a document's line ids)")
        invoice = s.get(M.Invoice, line.invoice_id)
        cycle = s.get(M.BillingCycle, invoice.cycle_id) if invoice.cycle_id else None
        agreement = s.get(M.AgreementVersion, line.agreement_version_id) if line.agreement_version_id else None
        data_file = s.get(M.DataFile, line.data_file_id) if line.data_file_id else None
        fx = s.get(M.FxRate, line.fx_rate_id) if line.fx_rate_id else None
        adjustment = s.get(M.Adjustment, line.adjustment_id) if line.adjustment_id else None
        correction = s.get(M.Correction, adjustment.correction_id) if adjustment else None
        corrects = s.get(M.InvoiceLine, line.corrects_line_id) if line.corrects_line_id else None
        corrects_invoice = s.get(M.Invoice, corrects.invoice_id) if corrects else None
        charge_row = s.scalars(select(M.ChargeLine).where(M.ChargeLine.invoice_line_id == line.id)).first() \
            if line.kind not in ("traffic", "adjustment") else None
        if charge_row is not None:
            records, charge_text = charge_behind(store, s, charge_row)
            if agreement is None:
                agreement = s.scalars(select(M.AgreementVersion).where(
                    M.AgreementVersion.content_hash == charge_row.agreement_hash)).first()
            rules = [_source_line(s, line.rule, agreement)] if line.rule else []
            total = records.num_rows
            batches = _batches(s, records)
            if limit is not None:
                records = records.slice(0, limit)
            return LineTrace(line, invoice, agreement, rules[0].text if rules else None, None, records, batches, cycle,
                             rules, total, fx=fx, charge=charge_text)
        records = pa.table({})
        path = sha = None
        key = line.line_key
        if data_file is not None and key is not None:
            path, sha = data_file.path, data_file.sha256
        elif correction is not None and correction.file_path and adjustment.line_key is not None:
            path, sha, key = correction.file_path, correction.file_sha256, adjustment.line_key
        if path is not None:
            store.data.verify(path, sha)
            records = pq.read_table(store.data.abs(path), filters=[("line", "=", key)])
            if "reason" in records.column_names:
                records = records.filter(pc.is_null(records.column("reason")))
        total = records.num_rows
        rules: list[RuleSource] = []
        if total and "rule" in records.column_names:
            vc = pc.value_counts(records.column("rule"))
            counts = sorted(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True),
                            key=lambda kv: (-kv[1], str(kv[0])))
            for rule, n in counts[:20]:
                rs = _source_line(s, rule, agreement)
                rs.records = n
                rules.append(rs)
        elif line.rule:
            rules.append(_source_line(s, line.rule, agreement))
        rule_source = rules[0].text if len(rules) == 1 else None
        batches: list[M.IntakeBatch] = []
        if total and "batch_id" in records.column_names:
            ids = sorted({b for b in records.column("batch_id").to_pylist() if b is not None})
            batches = list(s.scalars(select(M.IntakeBatch).where(M.IntakeBatch.id.in_(ids)).order_by(M.IntakeBatch.id)))
        if limit is not None:
            records = records.slice(0, limit)
        return LineTrace(line, invoice, agreement, rule_source, data_file, records, batches, cycle, rules, total,
                         adjustment, correction, corrects, corrects_invoice, fx)


@dataclass
class Explanation:
    record: dict[str, Any]
    result: Any  # RatedRecord | RejectedRecord
    billed_amount: Any  # what the line billed for it (None if unknown)
    same_agreement: bool

    def lines(self) -> list[str]:
        out = [f"record {self.record.get('id')}: " + ", ".join(
            f"{k}={v}" for k, v in self.record.items() if v is not None and k != "id")]
        out += [f"  {step}" for step in self.result.trace]
        if self.result.ok:
            out.append(f"  => {self.result.amount} {self.result.currency}")
        else:
            out.append(f"  => rejected: {self.result.reason}: {self.result.detail}")
        if self.billed_amount is not None and self.result.ok and self.result.amount != self.billed_amount:
            out.append(f"  (billed {self.billed_amount}: the rules given now differ from those that rated it)")
        if not self.same_agreement:
            out.append("  (the rules given rate it with another agreement version than the one billed)")
        return out


def explain_record(store: Store, trace: LineTrace, record_id: str, plan: Plan) -> Explanation:
    """Rate record ``record_id`` of the line again with the row executor, explained."""

    recs = trace.records if trace.records.num_rows == trace.record_total else None
    if recs is None:
        full = trace_line(store, trace.line.id)
        recs = full.records
    if not recs.num_rows:
        raise StoreError(f"line {trace.line.id} has no records to explain")
    hit = recs.filter(pc.equal(pc.cast(recs.column("id"), pa.string()), str(record_id)))
    if not hit.num_rows:
        shown = ", ".join(str(x) for x in recs.column("id").slice(0, 5).to_pylist())
        raise StoreError(f"record {record_id} is not behind line {trace.line.id} (its records: {shown}, ...)")
    row = hit.to_pylist()[0]
    with store.reading() as s:
        f = s.scalars(select(M.DataFile).where(M.DataFile.batch_id == row["batch_id"],
                                               M.DataFile.kind == "intake_records")).first()
    if f is None:
        raise StoreError(f"the intake records of batch #{row['batch_id']} are not in the store")
    store.data.verify(f.path, f.sha256)
    intake = pq.read_table(store.data.abs(f.path), filters=[("partner", "=", row["partner"])])
    found = intake.filter(pc.equal(pc.cast(intake.column("id"), pa.string()), str(record_id)))
    if not found.num_rows:
        raise StoreError(f"record {record_id} is not in intake batch #{row['batch_id']}")
    record = found.to_pylist()[0]
    result = rate_record(plan, record, trace=True)
    same = bool(result.ok and result.agreement_hash == row.get("agreement_hash"))
    return Explanation(record, result, row.get("amount"), same or not result.ok)


# --------------------------------------------------------------------------- charge lines


def _batches(s: Session, records: pa.Table) -> list[M.IntakeBatch]:
    if not records.num_rows or "batch_id" not in records.column_names:
        return []
    ids = sorted({b for b in records.column("batch_id").to_pylist() if b is not None})
    return list(s.scalars(select(M.IntakeBatch).where(M.IntakeBatch.id.in_(ids)).order_by(M.IntakeBatch.id)))


def _scoped(t: pa.Table, agreement_hash: str, scope: list) -> pa.Table:
    mask = pc.equal(t.column("agreement_hash"), agreement_hash)
    if scope:
        inside = None
        for d, sv in scope:
            m = pc.and_(pc.equal(t.column("direction"), d), pc.equal(t.column("service"), sv))
            inside = m if inside is None else pc.or_(inside, m)
        mask = pc.and_(mask, inside)
    return t.filter(mask)


def charge_behind(store: Store, s: Session, row: M.ChargeLine) -> tuple[pa.Table, list[str]]:
    """(the records behind a charge line, the lines describing it): the rule and version, the
    key and applications, the exact amount and how it was made, and what it stands on: the
    records (surcharges: those the surcharge applied to; tiers, discounts, commitments: the
    agreement version's records in scope), the inventory items and days (recurring fees), the
    event records (event fees)."""
    d = row.data
    det = d.get("details", {})
    out = [f"  charge {d['kind']} \"{d['charge_name']}\" (stage {d['stage']}), rule {':'.join(map(str, d['rule_span'][:3]))}",
           f"    agreement {d['agreement']} v{d['agreement_version']} (sha256 {d['agreement_hash']})",
           f"    key {d['key']}"]
    if d.get("corrects"):
        out.append(f"    corrects {d['corrects']} (billed before: {det.get('billed_before')}, now {det.get('now')})")
    apps = list(s.scalars(select(M.ChargeApplication.key).where(M.ChargeApplication.charge_line_id == row.id)
                          .order_by(M.ChargeApplication.id)))
    if apps:
        out.append(f"    billed for the first time: {len(apps)} application(s)"
                   + (f", e.g. {apps[0]}" if len(apps) > 1 else f": {apps[0]}"))
    out.append(f"    exact {d.get('exact') or det.get('exact')} {d['currency']} -> {d['amount']} {d['currency']} "
               f"({det.get('rounding', 'rounded once')})")
    for k, v in det.items():
        if k in ("exact", "rounding", "per_application"):
            continue
        out.append(f"    {k}: {v}")
    records = pa.table({})
    kind = d["kind"]
    if kind == "surcharge":
        f = s.scalars(select(M.RecordChargeFile).where(M.RecordChargeFile.cycle_id == row.cycle_id)).first()
        if f is not None and f.rows:
            store.data.verify(f.path, f.sha256)
            t = pq.read_table(store.data.abs(f.path))
            records = t.filter(pc.and_(pc.equal(t.column("charge"), d["charge_name"]),
                                       pc.equal(t.column("agreement_hash"), d["agreement_hash"])))
            out.append(f"    behind it: {records.num_rows} record(s) the surcharge applied to, in {f.path} "
                       f"(sha256 {f.sha256[:12]}...)")
    elif kind in ("tiered_price", "volume_discount", "usage_cap", "commitment", "revenue_share"):
        f = s.scalars(select(M.DataFile).where(M.DataFile.cycle_id == row.cycle_id, M.DataFile.kind == "rated")).first()
        if f is not None and f.rows:
            store.data.verify(f.path, f.sha256)
            records = _scoped(pq.read_table(store.data.abs(f.path)), d["agreement_hash"], d.get("scope") or [])
            out.append(f"    behind it: {records.num_rows} rated record(s) of this version in scope in this cycle "
                       f"({f.path})" + ("; earlier cycles of the period count too" if det.get("cycles", 1) != 1 else ""))
    elif kind in ("recurring", "one_time") and d.get("dimensions", {}).get("item"):
        item = d["dimensions"]["item"]
        rows = list(s.scalars(select(M.InventoryItem).where(M.InventoryItem.partner_id == row.partner_id,
                                                            M.InventoryItem.reference == item)
                              .order_by(M.InventoryItem.version)))
        for r in rows:
            out.append(f"    inventory item {r.reference} ({r.kind}) v{r.version}: quantity {r.quantity.normalize():f}, "
                       f"active {r.activation_date} .. {r.termination_date or ''} (termination day not billed)"
                       + (" [superseded]" if r.superseded_by_id else " [current]"))
        if det.get("days_active"):
            out.append(f"    days: {det.get('days_active')} active of {det.get('days_in_period')} in {det.get('period')} "
                       f"({det.get('day_count')}), factor {det.get('factor')}")
    elif kind == "event":
        ids = [a.rsplit("|", 2)[1].removeprefix("event:") for a in apps]
        out.append(f"    behind it: {len(ids)} event record(s): {', '.join(ids[:20])}" + (" ..." if len(ids) > 20 else ""))
    return records, out


def trace_charge(store: Store, charge_line_id: int, *, limit: int | None = None) -> list[str]:
    """The trail of any charge line, also those not on an invoice (payable lines of the
    settlement statement, revenue shares)."""
    with store.reading() as s:
        row = s.get(M.ChargeLine, charge_line_id)
        if row is None:
            raise StoreError(f"no charge line {charge_line_id}")
        cyc = s.get(M.BillingCycle, row.cycle_id)
        records, text = charge_behind(store, s, row)
        agreement = s.scalars(select(M.AgreementVersion).where(
            M.AgreementVersion.content_hash == row.agreement_hash)).first()
        where = {"invoice": f"invoice line {row.invoice_line_id}", "statement": "the settlement statement (payable)",
                 "share": "the revenue-share statements"}[row.placement]
        out = [f"charge line {row.id} of {cyc.partner_code} {cyc.label} ({cyc.status}), on {where}: "
               f"{row.data['description']} = {row.amount.normalize():f} {row.currency}", *text]
        span = row.data["rule_span"]
        src = _source_line(s, f"{span[0]}:{span[1]}:{span[2]}", agreement)
        if src.text is not None:
            out.append(f"    | {src.text.rstrip()}")
        n = records.num_rows if limit is None else min(limit, records.num_rows)
        if n:
            cols = [c for c in ("id", "start", "direction", "service", "destination", "charge", "amount", "currency",
                                "rule", "batch_id") if c in records.column_names]
            out.append(f"  first {n} record(s):")
            for r in records.select(cols).slice(0, n).to_pylist():
                out.append("    " + "  ".join(f"{k}={v}" for k, v in r.items()))
        return out
