"""The row executor: one record at a time, in Decimal, with an optional explanation.

This module *is* the specification of rating; the batch executor must agree with it to the last
digit (tests/test_rating_property.py checks that on random agreements and records).

Checks, in order (the first failure is the reject reason):

1. ``missing_field``: partner, direction, service, start or duration_s is null;
   ``negative_duration``: duration_s < 0.
2. Agreement selection (see ``icdsl.rating.select``): ``unknown_partner``, ``no_agreement``,
   ``outside_agreement_period``.
3. What the chosen service needs: volume services ``missing_field`` (null volume) or
   ``bad_volume`` (negative); count services ``bad_units`` (negative; null units means 1);
   services with a rate table ``missing_field`` (null b_number).
4. ``no_rate``: the service has no price at all; no rate row in force matches b_number (longest
   prefix, see ``select``; with a fallback table, its longest prefix when no row of the price
   table matches); the matched row (or flat price) has no price for the record's band,
   or, for a split call, for one of its parts' bands. With slots the slots give the price and the
   row's band prices are not consulted.
   ``refiled``: the service says ``refile origin ZONE reject`` and a_number is empty or starts
   with none of ZONE's prefixes (checked before the price).
5. ``zero_duration``: a 0-second call under the ``reject`` policy.
6. ``amount_overflow``: the rounded amount does not fit decimal(18, P).

Band: ``icdsl.rating.calendar`` (no calendar: band ``"all"``). Price: ``row.price_for(band)``
(band-specific, else ``"*"``), or the flat price; a record is never rated at a silent zero.

Billable seconds (time units: second, minute, hour; see ``select``) = duration_s, answer to
hang-up, never ring time. A
0-second call follows ``zero_duration``: ``connect_fee`` (billed 0, amount = connect fee),
``free`` (amount 0), ``reject``. Otherwise d < minimum_s becomes minimum_s, then increments
(the row's, else the service's): d <= initial -> initial; else
initial + ceil((d - initial)/subsequent) * subsequent.

Quantity and amount: minute: price x billed_s / 60 (hour: / 3600); second: price x billed_s; count units:
price x units; volume: bytes = max(volume, minimum_bytes) rounded up to a multiple of
rounding_bytes, price x bytes / unit_bytes. ``billed_units`` is seconds, the count or the bytes.
A service priced ``from field NAME`` (``ServicePlan.price_field``): the record's own price, the
field's decimal number read exactly (``select.field_price``), plus the connect fee; its units
are counted, not priced; a missing field is ``missing_field``, a field that is no number
``no_rate``; the rate column shows the record's price.

Slots (time units): the seconds of [0, billed) from the call's start in [previous until_s,
until_s) are priced at the slot's price (last until_s None: the rest). The rate row still gives
destination, connect fee and increments. Slot sets (``slots NAME { ... }``, ``rules.slot_sets``):
a row that names one (``RateRow.slots``) is priced by that set's slots; a row that names none by
the service's unnamed slots, else by its own price (``ServiceRules.slots_for``).

Split at band boundary (time units, ``split_at_band_boundary``): billed seconds are computed on
the whole call; each real second of [start, start + d) belongs to the band in force at the instant
that second begins; consecutive seconds of one band form a part; the extra (billed - d) seconds go
to the last part; each part is priced at its band's price (slots still count from the call's
start). The band reported is the parts' bands joined by "+" in time order.

Increments per slot (``slot_incs``: a slot with increments of its own): billed seconds are not
computed on the whole call; time is walked from the call's start (``select.slot_windows``): in
each slot the seconds still to bill up to the slot's end (the minimum applied first) are billed
with the slot's increments (else the row's, else the service's), a block running past the slot's
end moving the next slot's start; each slot's billed seconds are priced at its price.

Maximum cost per call (``max_cost``): the exact amount (connect fee + usage) is capped at
``max_cost`` before the one rounding; per-record charges see the capped traffic amount.

Band parts (``band NAME { price, connect fee, increments }``, ``rules.parts``): the band in force
at the call's start gives the connect fee and the increments where the matched row has none of
its own (else the service's), and, without a rate table, the flat price (each part of a split
call at its band's price).

Amount = connect fee (the row's, else the band's, else the service's; once per rated record) + usage, computed
exactly (the one division comes last) and rounded once with the service's rounding (precision,
mode). Currency: the rate table's, else the service's. ``rate``: the price of the first second
(first part or first slot), written without exponent or trailing zeros (``0.1``).

Time: ``start`` is an aware datetime (a naive one is taken as UTC). Agreement periods and rate
rows' effective dates use the local date in the agreement's time zone; bands use the calendar's.

Per-record charges (surcharges; ``icdsl.charges.evaluate.RecordChargeType``): after the amount,
each per-record charge of the agreement whose scope holds the record's (direction, service) is
evaluated in the agreement's order (none for a 0-second call the ``free`` policy made free): its condition (``icdsl.charges.conditions``; ``cycle.*``
fields read the ``cycle`` totals given to ``rate_record``, empty without them), its exact amount,
rounded once with the service's precision and mode. They are listed in ``surcharges`` and never
change ``amount``.

Limits: a split call is walked day by day (a call lasting years is slow, not wrong); a record
whose amount does not fit decimal(18, P) is rejected ``amount_overflow`` rather than truncated.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, Rounded
from fractions import Fraction
from typing import Any

from icdsl.charges.conditions import RecordEnv
from icdsl.charges.evaluate import RecordView, record_charges
from icdsl.money import div_round_int
from icdsl.plan.model import NO_SPAN, Agreement, Partner, Plan, RateRow, ServicePlan, Span
from icdsl.plan.render import expr_text
from icdsl.rating import result as R
from icdsl.rating.calendar import DAY_US, US, book, zone
from icdsl.rating.origins import NUMBER_FIELDS, number_field, origin_matcher
from icdsl.rating.result import RatedRecord, RecordChargeHit, RejectedRecord, TraceStep
from icdsl.rating.select import (
    FAR_FUTURE,
    FAR_PAST,
    KIND_COUNT,
    KIND_TIME,
    KIND_VOLUME,
    RulesCache,
    Selector,
    ServiceRules,
    field_price,
    money_text,
    ordinal,
    slot_windows,
    volume_bytes,
)
from icdsl.rounding import div_round_int as round_int

# Exact arithmetic: any rounding in a product or sum would raise, not pass unnoticed.
EXACT = Context(prec=400, traps=[Inexact, Rounded, InvalidOperation, Overflow])
ZERO = Decimal(0)
SHOW = Context(prec=34)  # for displaying the unrounded amount only
EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
INT64_MAX = 2**63 - 1
LIMIT = 10**R.MAX_DIGITS


class RowService:
    """A ServiceRules plus the texts the row executor writes for it, cached per row."""

    __slots__ = (
        "rules",
        "rule_texts",
        "rate_texts",
        "book",
        "zone",
        "rows",
        "match",
        "fast",
        "fee",
        "inc",
        "minimum",
        "per",
        "pow",
        "mode",
        "precision",
        "record_charges",
        "origin",
        "refile",
    )

    def __init__(self, rules: ServiceRules):
        self.rules = rules
        sp = rules.plan
        self.rule_texts: dict[int, str] = {}
        self.rate_texts: dict[tuple[int, str], str] = {}
        cal = sp.calendar
        self.book = book(cal) if cal is not None else None
        self.zone = self.book.zone if self.book is not None else None
        dest = rules.destinations
        self.rows = dest.rows if dest is not None else ()
        self.match = dest.match if dest is not None else None
        # a rate table keyed by origin: its cells (icdsl.rating.origins), never the fast path
        self.origin = origin_matcher(sp, dest)
        # the common case, priced by _fast: a time unit with a rate table, no slots, no split
        self.fast = (
            rules.kind == KIND_TIME and dest is not None and not rules.slots and not rules.slot_sets
            and not sp.split_at_band_boundary
            and self.origin is None and sp.max_cost is None and not sp.band_parts
        )
        self.fee = sp.connect_fee
        self.inc = sp.increments
        self.minimum = sp.minimum_s
        self.per = rules.per
        self.precision = rules.precision
        self.pow = 10**rules.precision if rules.precision >= 0 else 0
        self.mode = rules.mode
        # refile origin ZONE reject: (ZONE, its prefixes); checked by _price, never the fast path
        self.refile = sp.refile_reject
        if self.refile is not None:
            self.fast = False
        self.record_charges = ()
        if rules.agreement.charges:
            self.record_charges = tuple(record_charges(rules.agreement, sp.direction, sp.service))
            if self.record_charges:
                self.fast = False


class RowPlan:
    """What the row executor precomputes for a plan: routes (partner, direction, service) to
    candidate agreements, and per service its rules and texts."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.selector = Selector(plan)
        self.rules = RulesCache()
        self._routes: dict[tuple[Any, str, str], Any] = {}
        self._services: dict[int, tuple[ServicePlan, RowService]] = {}
        self._partners = {p.code: p for p in plan.partners}

    def partner(self, code: Any) -> Partner | None:
        return self._partners.get(str(code)) if code is not None else None

    def route(self, partner: Any, direction: str, service: str):
        """A reject ``(reason, detail)`` or the candidates ``((agreement, service, lo, hi, zone), ...)``."""
        key = (partner, direction, service)
        got = self._routes.get(key)
        if got is None:
            sel = self.selector
            pkey = sel.partner_key(str(partner))
            if pkey is None:
                got = (R.UNKNOWN_PARTNER, R.detail_unknown_partner(partner))
            else:
                cands = sel.candidates(pkey, direction, service)
                if not cands:
                    got = (R.NO_AGREEMENT, R.detail_no_agreement(partner, direction, service))
                else:
                    got = tuple(
                        (
                            ag,
                            sp,
                            ordinal(ag.effective_from, FAR_PAST),
                            ordinal(ag.effective_to, FAR_FUTURE),
                            zone(ag.timezone),
                            self.service(ag, sp),
                        )
                        for ag, sp in cands
                    )
            if len(self._routes) > 100_000:
                self._routes.clear()
            self._routes[key] = got
        return got

    def service(self, agreement: Agreement, sp: ServicePlan) -> RowService:
        got = self._services.get(id(sp))
        if got is None or got[0] is not sp or got[1].rules.agreement is not agreement:
            got = (sp, RowService(self.rules.get(agreement, sp)))
            self._services[id(sp)] = got
        return got[1]


_plans: dict[int, RowPlan] = {}


def row_plan(plan: Plan) -> RowPlan:
    got = _plans.get(id(plan))
    if got is None or got.plan is not plan:
        if len(_plans) > 32:
            _plans.clear()
        got = RowPlan(plan)
        _plans[id(plan)] = got
    return got


def to_utc(start: datetime) -> datetime:
    """Aware datetimes are converted to UTC; a naive one is taken as UTC."""
    if start.tzinfo is None:
        return start.replace(tzinfo=UTC)
    return start.astimezone(UTC)


def epoch_us(start: datetime) -> int:
    d = start - EPOCH_UTC
    return (d.days * 86_400 + d.seconds) * US + d.microseconds


def exact_round(value: Decimal, per: int, precision: int, mode: str) -> int:
    """round(value / per) in units of 10**-precision, exactly, with the money helpers' modes."""
    num, den = value.as_integer_ratio()
    if precision >= 0:
        return div_round_int(num * 10**precision, den * per, mode)
    return div_round_int(num, den * per * 10**-precision, mode)


def _reject(record, steps, reason: str, detail: str, span: Span = NO_SPAN) -> RejectedRecord:
    if steps is not None:
        steps.append(TraceStep(f"rejected {reason}: {detail}", span))
        return RejectedRecord(record.get("id"), reason, detail, record, tuple(steps))
    return RejectedRecord(record.get("id"), reason, detail, record)


def rate_record(
    plan: Plan, record: dict[str, Any], *, trace: bool = False, cycle: Any = None
) -> RatedRecord | RejectedRecord:
    """Rate one record (``start`` an aware datetime) with ``plan``; ``trace`` adds the explanation.
    ``cycle``: the cycle's totals (``icdsl.charges.context.CycleTotals``) for conditions of
    per-record charges that read ``cycle.*``."""
    rp = _plans.get(id(plan))
    if rp is None or rp.plan is not plan:
        rp = row_plan(plan)
    steps: list[TraceStep] | None = [] if trace else None
    get = record.get

    # 1. the fields every record needs
    partner = get("partner")
    direction = get("direction")
    service = get("service")
    start = get("start")
    dur = get("duration_s")
    if partner is None or direction is None or service is None or start is None or dur is None:
        for name, value in (
            ("partner", partner),
            ("direction", direction),
            ("service", service),
            ("start", start),
            ("duration_s", dur),
        ):
            if value is None:
                return _reject(record, steps, R.MISSING_FIELD, R.detail_missing(name))
    if dur < 0:
        return _reject(record, steps, R.NEGATIVE_DURATION, R.detail_negative("duration_s", dur))
    if start.tzinfo is not UTC:
        start = to_utc(start)

    # 2. agreement
    route = rp.route(partner, direction, service)
    if isinstance(route[0], str):
        return _reject(record, steps, route[0], route[1])
    chosen = None
    for cand in route:
        day = start.astimezone(cand[4]).toordinal()
        if cand[2] <= day <= cand[3]:
            chosen = cand
            break
    if chosen is None:
        return _reject(
            record,
            steps,
            R.OUTSIDE_AGREEMENT_PERIOD,
            R.detail_outside_period(partner, direction, service, start),
        )
    svc = chosen[5]
    if steps is None and svc.fast:
        got = _fast(svc, record, start, dur, day)
        if got is not None:
            return got
    ag, sp = chosen[0], chosen[1]
    if steps is not None:
        rules = svc.rules
        until = ag.effective_to.isoformat() if ag.effective_to else "open"
        if ag.amendment is not None:
            until += f", {'ended' if ag.amendment.ends else 'amended'} by v{ag.amendment.by}"
        others = len(route) - 1
        steps.append(
            TraceStep(
                f"partner {partner} {direction} {service}: agreement {ag.name} v{ag.version} "
                f"(partner {ag.partner}, in force {ag.effective_from.isoformat()}..{until}; local date "
                f"{date.fromordinal(day).isoformat()} {ag.timezone})"
                + (f", preferred over {others} other candidate(s)" if others else ""),
                ag.span,
            )
        )
        steps.append(
            TraceStep(
                f"service {direction}/{service} priced per {sp.unit}; rounding {rules.mode} to "
                f"{rules.precision} decimals",
                sp.span,
            )
        )
    return _price(svc, record, start, dur, day, steps, rp, cycle)


def _record_charges(rp: RowPlan, svc: RowService, rated: RatedRecord, record, start, steps, cycle,
                    traffic: Fraction) -> None:
    """Evaluate the per-record charges of ``rated`` (see the module's documentation)."""

    rules = svc.rules
    kind = rules.kind
    derived = {
        "band": rated.band,
        "destination": rated.destination,
        "prefix": rated.prefix,
        "billed_s": rated.billed_units if kind == KIND_TIME else None,
        "amount": rated.amount,
        "start": start,
    }
    numbers = rules.plan.numbers
    if numbers is not None:  # operators and circles of both numbers (icdsl.rating.origins)
        for name in NUMBER_FIELDS:
            derived[name] = number_field(numbers, record.get("a_number" if name[0] == "o" else "b_number"), name)
    ag = rules.agreement
    partner = record.get("partner")
    env = RecordEnv(record, derived, rp.partner(partner), partner, cycle, ag.name, ag.timezone)
    view = RecordView(env, kind, rated.billed_units, rules.per, traffic, rated.amount, rated.currency,
                      rules.precision, rules.mode)
    hits = []
    p = rules.precision
    for charge, ctype in svc.record_charges:
        got = ctype.evaluate_record(charge, view)
        when = charge.param("when")
        if got is None:
            if steps is not None:
                why = f"{expr_text(when)} does not hold" if when is not None else "does not apply"
                steps.append(TraceStep(f"{charge.kind} {charge.name}: {why}", charge.span))
            continue
        f = Fraction(got.exact)
        if p >= 0:
            units = round_int(f.numerator * 10**p, f.denominator, rules.mode)
        else:
            units = round_int(f.numerator, f.denominator * 10**-p, rules.mode)
        amount = Decimal(units).scaleb(-p)
        hits.append(RecordChargeHit(charge.kind, charge.name, amount, got.currency, str(charge.span)))
        if steps is not None:
            cond = f"{expr_text(when)} holds" if when is not None else "every record"
            steps.append(TraceStep(
                f"{charge.kind} {charge.name}: {cond} -> {got.explanation} -> rounded once, {rules.mode} to "
                f"{p} decimals: {money_text(amount)} {got.currency}", charge.span))
    rated.surcharges = tuple(hits)
    if steps is not None:
        rated.trace = tuple(steps)


def _fast(svc: RowService, record, start: datetime, dur: int, day: int) -> RatedRecord | None:
    """The common case (time unit, rate table, no slots, no split, no trace), or None to let the
    general path decide (anything unusual: a reject, a zero-duration policy, an overflow)."""
    number = record.get("b_number")
    if number is None or dur == 0:
        return None
    ri = svc.match(number, day)
    if ri < 0:
        return None
    row = svc.rows[ri]
    band = svc.book.piece_at(start.astimezone(svc.zone)).band if svc.book is not None else "all"
    rate = row.price_for(band)
    if rate is None:
        return None
    fee = row.connect_fee if row.connect_fee is not None else svc.fee
    inc = row.increments if row.increments is not None else svc.inc
    billed = inc.billed(dur if dur >= svc.minimum else svc.minimum)
    per = svc.per
    num, den = EXACT.add(EXACT.multiply(fee, per), EXACT.multiply(rate, billed)).as_integer_ratio()
    if svc.pow:
        q = div_round_int(num * svc.pow, den * per, svc.mode)
    else:
        q = div_round_int(num, den * per * 10**-svc.precision, svc.mode)
    if not -LIMIT < q < LIMIT:
        return None
    rules = svc.rules
    rule = svc.rule_texts.get(ri)
    if rule is None:
        rule = svc.rule_texts[ri] = str(row.span)
    rate_text = svc.rate_texts.get((ri, band))
    if rate_text is None:
        rate_text = svc.rate_texts[(ri, band)] = money_text(rate)
    ag = rules.agreement
    return RatedRecord(
        record.get("id"),
        record.get("partner"),
        record.get("direction"),
        record.get("service"),
        ag.name,
        ag.version,
        ag.source_hash,
        row.prefix,
        row.destination,
        band,
        billed,
        rate_text,
        EXACT.scaleb(Decimal(q), -svc.precision),
        rules.currency,
        rule,
        start,
        dur,
    )


def _price(svc: RowService, record, start: datetime, dur: int, day: int, steps, rp: RowPlan | None = None,
           cycle: Any = None):
    rules = svc.rules
    sp = rules.plan
    kind = rules.kind
    # 3. what this service needs from the record
    qty = 0
    if kind == KIND_VOLUME:
        vol = record.get("volume")
        if vol is None:
            return _reject(record, steps, R.MISSING_FIELD, R.detail_missing("volume"))
        if vol < 0:
            return _reject(record, steps, R.BAD_VOLUME, R.detail_negative("volume", vol))
        qty = volume_bytes(vol, rules.volume)
    elif kind == KIND_COUNT:
        units = record.get("units")
        if units is not None and units < 0:
            return _reject(record, steps, R.BAD_UNITS, R.detail_negative("units", units))
        qty = 1 if units is None else units
    # 3b. the route's declared origin (refile origin ZONE reject)
    if svc.refile is not None:
        zone_name, prefixes = svc.refile
        caller = record.get("a_number")
        if not caller or not str(caller).startswith(prefixes):
            return _reject(record, steps, R.REFILED, R.detail_refiled(caller, zone_name), sp.span)
        if steps is not None:
            steps.append(TraceStep(f"calling number {caller} is in {zone_name}: not refiled", sp.span))
    if not rules.priced:
        return _reject(record, steps, R.NO_RATE, R.detail_no_price_rule(), sp.span)

    # 4. destination
    row: RateRow | None = None
    ri = -1
    if svc.match is not None:
        number = record.get("b_number")
        if number is None:
            return _reject(record, steps, R.MISSING_FIELD, R.detail_missing("b_number"))
        origin = svc.origin
        ri = svc.match(number, day) if origin is None else origin.match(number, record.get("a_number"), day)
        if ri < 0:
            if steps is not None and origin is not None:
                steps.extend(TraceStep(t, where or sp.rates.span)
                             for t, where in origin.explain(number, record.get("a_number"), day))
            detail = (R.detail_no_destination(number) if origin is None
                      else R.detail_no_origin_cell(number, record.get("a_number")))
            return _reject(record, steps, R.NO_RATE, detail, sp.rates.span)
        row = svc.rows[ri]
        if steps is not None and origin is not None:
            for text, where in origin.explain(number, record.get("a_number"), day):
                steps.append(TraceStep(text, where or sp.rates.span))
        elif steps is not None:
            dest = rules.destinations
            dated = " in force on " + date.fromordinal(day).isoformat() if dest.dated else ""
            cut = dest.fallback_at
            where = ""
            if cut is not None:
                fb = sp.rates.fallback
                where = (f" of the fallback table ({fb.source}): no row of the price table holds it"
                         if ri >= cut else " of the price table (its fallback table is not consulted)")
            steps.append(
                TraceStep(
                    f"b_number {number}: longest prefix {row.prefix} ({row.destination}) among rows{dated}{where}",
                    row.span,
                )
            )
    prefix = row.prefix if row is not None else ""

    # band at the start
    bk = svc.book
    if bk is not None:
        local = start.astimezone(bk.zone)
        piece = bk.piece_at(local)
        band = piece.band
        if steps is not None:
            steps.append(TraceStep(bk.explain(local, piece), piece.span))
    else:
        band = "all"
        if steps is not None:
            steps.append(TraceStep("no calendar: band all", sp.span))

    if rules.parts is None:
        fee = row.connect_fee if row is not None and row.connect_fee is not None else sp.connect_fee
    else:  # band NAME { ... }: the band in force at the call's start
        fee = rules.band_fee(row, band)
        part = rules.parts.get(band)
        if steps is not None and part is not None:
            said = [f"price {money_text(part.price)}"] if part.price is not None and row is None else []
            said += [f"connect fee {money_text(part.connect_fee)}"] if part.connect_fee is not None else []
            said += [f"increments {part.increments}"] if part.increments is not None else []
            said += [f"minimum volume {part.minimum_bytes} B"] if part.minimum_bytes is not None else []
            said += [f"round volume up to {part.rounding_bytes} B"] if part.rounding_bytes is not None else []
            mine = " (the rate row's own connect fee and increments win)" if row is not None else ""
            steps.append(TraceStep(f"band {band} at the call's start: {', '.join(said) or 'nothing of its own'}"
                                   f"{mine}", part.span))
    per = rules.per
    # the slots of the matched row's set (`slots NAME`), else the service's unnamed ones
    slots, slot_incs = rules.slots_for(row)
    written = slots  # as written (slot_windows gives the billed windows of increments per slot)
    if steps is not None and row is not None and row.slots is not None:
        ss = next(x for x in sp.slot_sets if x.name == row.slots)
        steps.append(TraceStep(f"the row {row.prefix} ({row.destination}) chooses the slot set {row.slots}: its "
                               "slots price the call", ss.span))
    parts = None  # [(band, seconds)] when a split call has several parts
    if kind == KIND_TIME:
        if rules.parts is None:
            inc = row.increments if row is not None and row.increments is not None else sp.increments
        else:
            inc = rules.band_increments(row, band)
        billed = 0
        if slot_incs is not None:  # increments per slot: billed slot by slot
            eff = (dur if dur >= sp.minimum_s else sp.minimum_s) if dur > 0 else 0
            slots, billed = slot_windows(slots, slot_incs, inc, eff)
            if steps is not None and dur > 0:
                steps.append(TraceStep(_explain_slot_billed(dur, eff, sp.minimum_s, slots, slot_incs, inc,
                                                            billed), rules.rule_span(row)))
        elif dur > 0:
            eff = dur if dur >= sp.minimum_s else sp.minimum_s
            billed = inc.billed(eff)
            if steps is not None:
                steps.append(
                    TraceStep(_explain_billed(dur, eff, inc, sp.minimum_s, billed), rules.rule_span(row))
                )
        if sp.split_at_band_boundary and bk is not None and dur > 1:
            runs = _runs(bk, epoch_us(start), dur)
            if len(runs) > 1:
                parts = []
                for j, (first, b) in enumerate(runs):
                    end = runs[j + 1][0] if j + 1 < len(runs) else dur
                    parts.append([b, end - first])
                parts[-1][1] += billed - dur
                if steps is not None:
                    text = " + ".join(f"{s} s {b}" for b, s in parts)
                    steps.append(
                        TraceStep(
                            f"split at band changes: {text} (extra {billed - dur} s on the last part)",
                            sp.span,
                        )
                    )
    else:
        if kind == KIND_VOLUME and rules.parts is not None:  # the band's minimum and rounding step
            qty = volume_bytes(record.get("volume"), rules.volume_for(band))
        billed = qty

    # prices
    pf = sp.price_field
    if pf is not None:  # `price from field NAME`: the record's own price
        rate = field_price(record.get(pf.name), pf)
        if rate is None:
            return _reject(record, steps, R.MISSING_FIELD, R.detail_missing(pf.name), pf.span)
        if isinstance(rate, str):
            return _reject(record, steps, R.NO_RATE, rate, pf.span)
        if steps is not None:
            moved = f" / 10^{pf.scale}" if pf.scale else ""
            steps.append(TraceStep(f"price from field {pf.name}: {record.get(pf.name)}{moved} = {money_text(rate)} "
                                   f"{rules.currency}, the record's own price (its {billed} unit(s) are counted, "
                                   "not priced)", pf.span))
    elif written:
        rate = written[0][2]
    else:
        rate = row.price_for(band) if row is not None else rules.flat(band)
        if rate is None:
            return _reject(record, steps, R.NO_RATE, R.detail_no_price(band, prefix), rules.rule_span(row))
        if parts is not None:
            for b, _ in parts[1:]:
                if (row.price_for(b) if row is not None else rules.flat(b)) is None:
                    return _reject(
                        record, steps, R.NO_RATE, R.detail_no_price(b, prefix), rules.rule_span(row)
                    )
    if steps is not None and pf is None:
        what = f"slots {', '.join(_slot_text(s) for s in written)}" if written else f"band {band}"
        steps.append(TraceStep(f"rate {money_text(rate)} per {sp.unit} ({what})", rules.rule_span(row)))

    # 5. zero-duration policy
    charge = True
    if kind == KIND_TIME and dur == 0:
        policy = sp.zero_duration
        if policy == "reject":
            return _reject(record, steps, R.ZERO_DURATION, R.detail_zero_duration(), sp.span)
        charge = policy != "free"
        if steps is not None:
            steps.append(TraceStep(f"0-second call: zero_duration policy {policy}", sp.span))

    # amount, exactly: numerator / per, rounded once
    if not charge:
        num = ZERO
    elif pf is not None:
        num = EXACT.add(EXACT.multiply(fee, per), rate)
    elif parts is None and not slots:
        num = EXACT.add(EXACT.multiply(fee, per), EXACT.multiply(rate, billed))
    else:
        num = EXACT.multiply(fee, per)
        a = 0
        for b, s in parts if parts is not None else ((band, billed),):
            if slots:
                for lo, until, price, _span in slots:
                    hi = a + s if until is None else min(a + s, until)
                    if hi > max(a, lo):
                        num = EXACT.add(num, EXACT.multiply(price, hi - max(a, lo)))
            else:
                price = row.price_for(b) if row is not None else rules.flat(b)
                num = EXACT.add(num, EXACT.multiply(price, s))
            a += s
    if steps is not None and pf is None:
        steps.append(
            TraceStep(
                _explain_amount(
                    rules,
                    fee if charge else ZERO,
                    rate,
                    billed,
                    parts,
                    num,
                    lambda b: row.price_for(b) if row is not None else rules.flat(b),
                    slots,
                ),
                rules.rule_span(row),
            )
        )
    cap = sp.max_cost
    if cap is not None:
        top = EXACT.multiply(cap, per)
        if num > top:
            num = top
            if steps is not None:
                steps.append(TraceStep(f"above the maximum cost: capped at {money_text(cap)} {rules.currency} "
                                       "per call", sp.max_cost_span))
    q = exact_round(num, per, rules.precision, rules.mode)
    amount = EXACT.scaleb(Decimal(q), -rules.precision)
    if steps is not None:
        steps.append(
            TraceStep(
                f"rounded once, {rules.mode} to {rules.precision} decimals: {money_text(amount)} {rules.currency}",
                sp.rounding.span,
            )
        )
        for c in rules.agreement.charges:  # `at most ... per month`: the cycle's line, not the record's amount
            if c.kind == "usage_cap" and (not c.applies_to or (sp.direction, sp.service) in c.applies_to):
                (value, cur), period = c.param("amount"), c.param("period")
                prorated = (", prorated by the days in force in a partial period"
                            if c.param("option:prorate", "none") == "daily" else "")
                steps.append(TraceStep(f"at most {value} {cur} per {period}: the period cap applies at "
                                       f"the cycle (a line \"{c.name}\" takes off the usage above it{prorated}); "
                                       "this record keeps its amount", c.span))
        ag = rules.agreement
        if ag.progressive:  # `progressive billing at ...`: interim invoices, not the record's amount
            at = ", ".join(f"{t} {ag.progressive_currency}" for t in ag.progressive)
            steps.append(TraceStep(f"progressive billing at {at}: this record counts in the usage of its period to "
                                   "date; an interim invoice is raised when that usage passes a threshold", ag.span))

    # 6. does it fit the output
    if q >= LIMIT or -q >= LIMIT or billed > INT64_MAX:
        return _reject(record, steps, R.AMOUNT_OVERFLOW, R.detail_overflow(rules.precision), sp.rounding.span)

    rule = svc.rule_texts.get(ri)
    if rule is None:
        rule = svc.rule_texts[ri] = str(rules.rule_span(row))
    rate_text = svc.rate_texts.get((ri, band)) if pf is None else money_text(rate)  # a record's own price
    if rate_text is None:
        rate_text = svc.rate_texts[(ri, band)] = money_text(rate)
    ag = rules.agreement
    out = RatedRecord(
        record.get("id"),
        record.get("partner"),
        record.get("direction"),
        record.get("service"),
        ag.name,
        ag.version,
        ag.source_hash,
        prefix,
        row.destination if row is not None else "",
        "+".join(p[0] for p in parts) if parts is not None else band,
        billed,
        rate_text,
        amount,
        rules.currency,
        rule,
        start,
        dur,
        tuple(steps) if steps is not None else (),
    )
    if svc.record_charges and rp is not None and charge:  # a call made free bears no charges either
        _record_charges(rp, svc, out, record, start, steps, cycle, Fraction(num) / per)
    return out


def _explain_amount(rules: ServiceRules, fee, rate, billed, parts, num, price_of, slots=()) -> str:
    terms = [f"connect fee {money_text(fee)}"] if fee else []
    if slots:
        for lo, until, price, _span in slots:
            hi = billed if until is None else min(billed, until)
            if hi > lo:
                terms.append(_term(price, hi - lo, rules))
    elif parts is not None:
        terms += [f"{_term(price_of(b), s, rules)} ({b})" for b, s in parts]
    else:
        terms.append(_term(rate, billed, rules))
    shown = SHOW.divide(num, rules.per)
    return f"{' + '.join(terms) or '0'} = {money_text(shown)} (unrounded)"


def _runs(bk, start_us: int, seconds: int) -> list[tuple[int, str]]:
    """Bands of the call's seconds 0..seconds-1 as runs ``(first second, band)``: each second takes
    the band in force at the instant it begins."""
    last = start_us + (seconds - 1) * US
    out = [(0, bk.band_at_us(start_us))]
    for day in range(start_us // DAY_US, last // DAY_US + 1):
        for c in bk.day_changes(day):
            if start_us < c <= last:
                e = -(-(c - start_us) // US)
                b = bk.band_at_us(start_us + e * US)
                if out[-1][0] == e:
                    out.pop()
                if out[-1][1] == b:
                    continue
                out.append((e, b))
    return out


def _explain_billed(d: int, eff: int, inc, minimum: int, billed: int) -> str:
    head = f"{d} s"
    if eff != d:
        head = f"{d} s below the minimum {minimum} s -> {eff} s"
    if eff <= inc.initial:
        return f"{head} with {inc} -> first block {inc.initial} s = {billed} s"
    rest = eff - inc.initial
    return f"{head} with {inc} -> {inc.initial} + ceil({rest}/{inc.subsequent})*{inc.subsequent} = {billed} s"


def _explain_slot_billed(d: int, eff: int, minimum: int, windows, incs, inc, billed: int) -> str:
    head = f"{d} s below the minimum {minimum} s -> {eff} s" if eff != d else f"{d} s"
    parts = []
    for (lo, hi, _p, _s), own in zip(windows, incs, strict=True):
        if hi > lo:
            parts.append(f"{hi - lo} s from {lo} s with {own or inc}")
    return f"{head}, increments per slot: {' + '.join(parts) or '0 s'} = {billed} s"


def _term(price: Decimal, qty: int, rules: ServiceRules) -> str:
    unit = rules.plan.unit
    if rules.kind == KIND_TIME:
        return f"{money_text(price)} x {qty} s" + (f" / {rules.per}" if rules.per != 1 else "")
    if rules.kind == KIND_VOLUME:
        return f"{money_text(price)} x {qty} B / {rules.per} ({unit})"
    return f"{money_text(price)} x {qty} {unit}"


def _slot_text(slot) -> str:
    lo, until, price, _ = slot
    return f"{lo}-{until if until is not None else 'end'} s at {money_text(price)}"


def explain(plan: Plan, record: dict[str, Any]) -> list[str]:
    """The trace of one record as lines of text (for the CLI's ``explain``)."""
    res = rate_record(plan, record, trace=True)
    return [str(s) for s in res.trace]


__all__ = ["RowPlan", "epoch_us", "exact_round", "explain", "rate_record", "row_plan", "to_utc"]
