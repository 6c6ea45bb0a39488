"""Run the ``example`` blocks of rule files: a contract carries its own acceptance tests.

Each example describes one record and what rating it must give. It is rated by the row
executor (the specification) and, so that both executors stay honest, by the batch executor
too; any difference between the two is a failure in itself.

``example cycle`` blocks are run in the cycle layer, through the engine's charge evaluation
(:mod:`icdsl.cycle.examples`); :func:`report` renders both kinds of result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from icdsl.lang.values import TIME_UNITS, VOLUME_UNITS
from icdsl.plan.model import Agreement, Example, Plan
from icdsl.rating.batch import rate_batch
from icdsl.rating.intake.times import TimestampError, parse_instant, to_datetime
from icdsl.rating.row import rate_record


@dataclass
class ExampleResult:
    example: Example
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (what, expected, actual)
    outcome: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and self.error is None

    @property
    def title(self) -> str:
        return f'example "{self.example.name}"'

    def explanation(self) -> list[str]:
        return list(getattr(self.outcome, "trace", None) or [])


def _agreements_for(plan: Plan, ex: Example) -> tuple[Agreement, ...]:
    if ex.agreement:
        return tuple(a for a in plan.agreements if a.name == ex.agreement)
    return plan.agreements


def example_record(plan: Plan, ex: Example) -> dict[str, Any]:
    """The record an example describes, normalized as intake would (start in UTC)."""
    fields = dict(ex.record)
    agreements = _agreements_for(plan, ex)
    if "partner" not in fields:
        partners = {a.partner for a in agreements if a.partner != "*"}
        if len(partners) == 1:
            fields["partner"] = partners.pop()
        elif len(plan.partners) == 1:
            fields["partner"] = plan.partners[0].code
        else:
            fields["partner"] = "*example*"
    tz_default = "UTC"
    for a in agreements:
        if a.partner in (fields["partner"], "*"):
            tz_default = a.timezone
            break
    local = fields.pop("start_local", None)
    if local is not None:
        day, clock, tz = local  # read as a traffic file's local time would be (a DST gap is refused)
        fields["start"] = to_datetime(parse_instant(f"{day} {clock}", tz or tz_default, label="at"))
    else:
        first = min((a.effective_from for a in agreements), default=None)
        fields["start"] = datetime(first.year, first.month, first.day, 12, tzinfo=ZoneInfo("UTC")) if first else None
    fields.setdefault("id", f"example:{ex.name}")
    fields.setdefault("duration_s", 0)
    fields.setdefault("a_number", None)
    fields.setdefault("volume", None)
    fields.setdefault("units", None)
    return fields


def _billed_expected(value: Decimal, unit: str) -> Decimal:
    if unit in TIME_UNITS:
        return value * TIME_UNITS[unit]
    if unit in VOLUME_UNITS:
        return value * VOLUME_UNITS[unit]
    return value


def run_example(plan: Plan, ex: Example, *, both_executors: bool = True) -> ExampleResult:
    res = ExampleResult(ex)
    sub = dataclasses.replace(plan, agreements=_agreements_for(plan, ex))
    try:
        record = example_record(plan, ex)
    except TimestampError as e:
        res.error = e.detail
        return res
    out = rate_record(sub, record, trace=True)
    res.outcome = out
    expect = dict(ex.expect)
    if "rejected" in expect:
        actual = "rated" if out.ok else out.reason
        if actual != expect["rejected"]:
            res.failures.append(("rejected", expect["rejected"], actual + ("" if out.ok else f" ({out.detail})")))
        return res
    if not out.ok:
        res.failures.append(("result", "a rated record", f"rejected {out.reason}: {out.detail}"))
        return res
    for key, want in ex.expect:
        if key == "billed":
            value, unit = want
            exp = _billed_expected(value, unit)
            if Decimal(out.billed_units) != exp:
                shown = f"{out.billed_units} s" if unit in TIME_UNITS else str(out.billed_units)
                res.failures.append(("billed", f"{value} {unit}", shown))
        elif key == "band":
            if out.band != want:
                res.failures.append(("band", want, out.band))
        elif key == "amount":
            if out.amount != want.amount or out.currency != want.currency:
                res.failures.append(("amount", f"{want.amount} {want.currency}", f"{out.amount} {out.currency}"))
        elif key == "rate":
            if Decimal(out.rate) != want.amount or out.currency != want.currency:
                res.failures.append(("rate", f"{want.amount} {want.currency}", f"{out.rate} {out.currency}"))
        elif key == "destination":
            if out.destination != want:
                res.failures.append(("destination", want, out.destination))
        elif key == "prefix":
            if out.prefix != str(want):
                res.failures.append(("prefix", str(want), out.prefix))
        elif key == "version" and out.agreement_version != want:
            res.failures.append(("version", f"v{want}", f"v{out.agreement_version}"))
    if both_executors:
        _compare_batch(sub, record, out, res)
    return res


def _compare_batch(plan: Plan, record: dict[str, Any], row_out, res: ExampleResult) -> None:
    table = records_table([record])
    rated, rejects = rate_batch(plan, table)
    if rated.num_rows != 1:
        res.failures.append(("batch executor", "rated like the row executor",
                             f"rejected {rejects.column('reason')[0].as_py() if rejects.num_rows else '?'}"))
        return
    row = rated.to_pylist()[0]
    for key in ("band", "billed_units", "prefix", "destination", "currency"):
        if row[key] != getattr(row_out, key):
            res.failures.append((f"batch executor {key}", str(getattr(row_out, key)), str(row[key])))
    if Decimal(row["amount"]) != row_out.amount:
        res.failures.append(("batch executor amount", str(row_out.amount), str(row["amount"])))


def records_table(records: list[dict[str, Any]]):
    """Normalized records (as ``normalize_record`` gives them) as a batch for the batch executor."""
    base = {
        "id": pa.string(), "partner": pa.string(), "direction": pa.string(), "service": pa.string(),
        "a_number": pa.string(), "b_number": pa.string(), "start": pa.timestamp("us", tz="UTC"),
        "duration_s": pa.int64(), "volume": pa.int64(), "units": pa.int64(),
    }
    extras = [k for r in records for k in r if k not in base]
    cols = {}
    for name, typ in base.items():
        vals = [r.get(name) for r in records]
        if name == "id":
            vals = [None if v is None else str(v) for v in vals]
        cols[name] = pa.array(vals, type=typ)
    for name in dict.fromkeys(extras):
        vals = [r.get(name) for r in records]
        cols[name] = pa.array([None if v is None else str(v) for v in vals], type=pa.string())
    return pa.table(cols)


def run_record_examples(plan: Plan) -> list[ExampleResult]:
    """Every record example of the plan (``example cycle`` blocks are run by the cycle layer:
    :func:`icdsl.cycle.examples.run_examples` runs both kinds)."""
    results: list[ExampleResult] = []
    for ex in plan.examples:
        try:
            results.append(run_example(plan, ex))
        except Exception as e:  # an example must never take the run down; report it at its location
            results.append(ExampleResult(ex, error=f"{type(e).__name__}: {e}"))
    return results


def report(results: Sequence[Any], *, verbose: bool = False) -> str:
    """The text ``icdsl test`` prints: every failure (and with ``verbose`` every pass) at its
    place, then the counts. ``results``: record and cycle example results alike."""
    lines = []
    for r in results:
        where = str(r.example.span)
        if r.ok:
            if verbose:
                lines.append(f"{where}: ok: {r.title}")
            continue
        lines.append(f"{where}: FAILED: {r.title}")
        if r.error:
            lines.append(f"    error: {r.error}")
        for what, exp, act in r.failures:
            lines.append(f"    {what}: expected {exp}, got {act}")
        steps = [] if r.error and not getattr(r, "lines", True) else r.explanation()
        if steps:
            lines.append("    explanation:")
            lines.extend(f"      {step}" for step in steps)
    passed = sum(r.ok for r in results)
    failed = len(results) - passed
    lines.append(f"{passed} passed, {failed} failed")
    return "\n".join(lines)
