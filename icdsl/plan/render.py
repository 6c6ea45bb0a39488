"""Print a Plan readably, like a database's EXPLAIN: what will be applied, in which order, from where."""

from __future__ import annotations

from datetime import timedelta

from icdsl.plan import model as m

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _days(days: frozenset[int]) -> str:
    ds = sorted(days)
    if not ds:
        return "no days"
    runs, start, prev = [], ds[0], ds[0]
    for d in ds[1:] + [None]:
        if d is not None and d == prev + 1:
            prev = d
            continue
        runs.append(WEEKDAY_NAMES[start] if start == prev else f"{WEEKDAY_NAMES[start]}-{WEEKDAY_NAMES[prev]}")
        if d is not None:
            start = prev = d
    return ",".join(runs)


def _t(t) -> str:
    return "24:00" if t.hour == 0 and t.minute == 0 and t.second == 0 else t.strftime("%H:%M")


def calendar_text(c: m.Calendar) -> str:
    parts = [f"{r.band} {_days(r.weekdays)} {_t(r.start) if (r.start.hour or r.start.minute) else '00:00'}-{_t(r.end)}"
             for r in c.rules]
    parts += [f"holidays {h.country}{'/' + h.subdivision if h.subdivision else ''} -> {h.band}" for h in c.holidays]
    parts += [f"{d.isoformat()} -> {b}" for d, b in c.extra_dates]
    parts.append(f"otherwise {c.default_band}")
    return f"calendar {c.name} ({c.timezone}): " + "; ".join(parts)


def _money(x) -> str:
    return str(x)


def _param(v) -> str:
    if isinstance(v, m.Expr):
        return expr_text(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(_param(i) for i in v) + "]"
    if isinstance(v, m.Tier):
        what = (f"{v.percent}%" if v.percent is not None else f"{v.price} plus {v.flat} flat" if v.price and v.flat else str(v.price) if v.price else f"{v.flat} flat")
        return f"from {v.start}: {what}"
    if isinstance(v, m.Share):
        what = f"{v.percent}%" if v.percent is not None else str(v.fixed) if v.fixed else "remainder"
        return f"{v.party} {what}"
    if isinstance(v, m.ShareTier):
        return f"from {v.start}: " + ", ".join(_param(s) for s in v.shares)
    return str(v)


def expr_text(e: m.Expr) -> str:
    if e.op == "field":
        return e.args[0]
    if e.op == "const":
        v = e.args[0]
        return f'"{v}"' if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
    if e.op == "cmp":
        op, a, b = e.args
        return f"{expr_text(a)} {op} {expr_text(b)}"
    if e.op == "in":
        a, values = e.args
        return f"{expr_text(a)} in [" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in values) + "]"
    if e.op in ("and", "or"):
        return "(" + f" {e.op} ".join(expr_text(x) for x in e.args) + ")"
    if e.op == "not":
        return f"not {expr_text(e.args[0])}"
    if e.op == "call":
        name, args = e.args
        return f"{name}(" + ", ".join(expr_text(a) for a in args) + ")"
    return repr(e)


def service_lines(s: m.ServicePlan) -> list[str]:
    out = []
    if s.rates is not None:
        t = s.rates
        lens = sorted({len(r.prefix) for r in t.rows}) or [0]
        src = f"deck {t.source} sha256 {t.source_hash[:12]}" if t.source_hash else "inline table"
        out.append(f"price by destination: {len(t.rows)} prefixes ({src}), lengths {lens[0]}-{lens[-1]}, "
                   f"{t.currency} per {t.unit}; longest-prefix match, rates in force at call start")
        if t.fallback is not None:
            f = t.fallback
            fsrc = f"deck {f.source} sha256 {f.source_hash[:12]}" if f.source_hash else "inline table"
            out.append(f"fallback: {len(f.rows)} prefixes ({fsrc}), for the numbers no row above holds "
                       "(their longest prefix there)")
        if t.keys is not None:
            cells = sorted({k.text() for k in t.keys})
            out.append(f"by origin: {len(cells)} cells ({', '.join(cells[:8])}{', ...' if len(cells) > 8 else ''}); "
                       "the longest destination prefix, then the most specific origin key")
        if s.numbers is not None:
            n = s.numbers
            ported = f", {len(n.ported)} ported numbers ({n.ported_source})" if n.ported else ""
            out.append(f"numbers {s.numbers_name}: {len(n.prefixes)} range prefixes ({n.source}){ported}")
    elif s.slots:
        out.append("price by slot from the call's start: " + _slots_text(s.slots, s.currency))
        if any(sl.increments is not None for sl in s.slots):
            out.append("increments per slot: each slot's seconds billed with its own increments (else the "
                       "service's), a block past the slot's end moving the next slot's start")
    elif s.flat_price is None and s.band_parts:
        out.append(f"price by band, {s.currency} per {s.unit} (below)")
    else:
        out.append(f"price {s.flat_price} {s.currency} per {s.unit}")
    for ss in s.slot_sets:
        rows = s.rates.rows if s.rates is not None else ()
        named = rows.slot_sets if isinstance(rows, m.RateColumns) else [r.slots for r in rows]
        n = sum(1 for x in named or () if x == ss.name)
        out.append(f"slots {ss.name}, chosen by {n} row{'s' if n != 1 else ''}, from the call's start: "
                   + _slots_text(ss.slots, s.currency))
    if s.unit in ("minute", "second") or s.slots:
        out.append(f"increments {s.increments} (billed = initial if d <= initial, else initial + "
                   f"ceil((d - initial) / subsequent) * subsequent); minimum {s.minimum_s} s; "
                   f"connect fee {s.connect_fee} {s.currency}; zero duration: {s.zero_duration}")
    for bp in s.band_parts:
        said = [f"price {bp.price} {s.currency} per {s.unit}"] if bp.price is not None else []
        said += [f"connect fee {bp.connect_fee} {s.currency}"] if bp.connect_fee is not None else []
        said += [f"increments {bp.increments}"] if bp.increments is not None else []
        said += [f"minimum volume {bp.minimum_bytes} bytes"] if bp.minimum_bytes is not None else []
        said += [f"volume rounded up to {bp.rounding_bytes} bytes"] if bp.rounding_bytes is not None else []
        out.append(f"band {bp.band} (at the call's start): {', '.join(said) or 'nothing of its own'}")
    if s.max_cost is not None:
        out.append(f"at most {s.max_cost} {s.currency} per call: a record's amount is capped before rounding")
    if s.volume is not None:
        out.append(f"volume in {s.volume.unit} ({s.volume.unit_bytes} bytes), rounded up to {s.volume.rounding_bytes} "
                   f"bytes, minimum {s.volume.minimum_bytes} bytes")
    if s.calendar is not None:
        how = "split at band boundaries" if s.split_at_band_boundary else "by the call's start"
        out.append(f"bands {how}: {calendar_text(s.calendar)}")
    else:
        out.append("no calendar: one band 'all'")
    out.append(f"rounding {s.rounding.mode} to {s.rounding.precision} decimals, once per record")
    return out


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def render_plan(plan: m.Plan) -> str:
    out: list[str] = []
    out.append(f"Plan: {_n(len(plan.partners), 'partner')}, {_n(len(plan.agreements), 'agreement')}, "
               f"{_n(len(plan.examples), 'example')}, "
               + (f"{_n(len(plan.cycle_examples), 'cycle example')}, " if plan.cycle_examples else "")
               + f"from {_n(len(plan.sources), 'file')}")
    for path, sha in plan.sources:
        out.append(f"  source {path} sha256 {sha[:12]}")
    for p in plan.partners:
        tax = p.tax.kind + (f" {p.tax.rate}%" if p.tax.kind == "vat" else "")
        out.append(f"\nPartner {p.code} \"{p.name}\" [{p.span}]")
        out.append(f"  {p.kind}, invoices in {p.currency}, time zone {p.timezone}, billing {p.billing.replace('@', ' from day ')}, "
                   f"due {p.due_days} days, tax {tax}" + (f", country {p.country}" if p.country else ""))
        if p.attributes:
            out.append("  attributes: " + ", ".join(f"{k}={v}" for k, v in p.attributes))
    for a in plan.agreements:
        period = f"{a.effective_from} .. {a.effective_to or 'open'}"
        out.append(f"\nAgreement \"{a.name}\" v{a.version} with {'any partner' if a.partner == '*' else a.partner}, "
                   f"{period} [{a.span}]")
        am = a.amendment
        if am is not None:
            how = (f"ended by v{am.by} on {am.last_day}" if am.ends else
                   f"amended by v{am.by} from {am.last_day + timedelta(days=1)}")
            out.append(f"  {how} [{am.span}] (written end: {am.written_to or 'open'})")
        out.append(f"  hash {a.source_hash[:16]}; currency {a.currency}; time zone {a.timezone}; "
                   f"rounding {a.rounding.mode} to {a.rounding.precision} decimals"
                   + (f"; fx {a.fx}" if a.fx else ""))
        for s in a.services:
            out.append(f"  {s.direction} {s.service} [{s.span}]")
            out.extend(f"    {line}" for line in service_lines(s))
        for c in a.charges:
            scope = " for " + ", ".join(f"{d} {s}" for d, s in c.applies_to) if c.applies_to else ""
            out.append(f"  charge {c.kind} \"{c.name}\"{scope} [{c.span}]")
            for k, v in c.params:
                out.append(f"    {k}: {_param(v)}")
        for st in a.streams:
            sels = ", ".join(" ".join(x for x in sel[1:]) for sel in st.selectors)
            out.append(f"  invoice stream {st.name}: {sels}")
        for d, s in a.netting:
            out.append(f"  netting with {d} {s}")
        if a.reconcile is not None:
            t = a.reconcile
            out.append(f"  reconcile: lines within {t.line_percent}% or {t.line_amount} {a.currency} (the larger); "
                       f"starts within {t.start_seconds} s, durations within {t.duration_seconds} s [{t.span}]")
    for c in plan.calendars:
        out.append(f"\n{calendar_text(c)} [{c.span}]")
    for f in plan.fx_sources:
        out.append(f"\nfx {f.name}: " + "; ".join(f"{r.base}/{r.quote} {r.rate} from {r.effective_from}" for r in f.rates))
    for lay in plan.layouts:
        cols = ", ".join(f"{k}<-{v}" for k, v in lay.columns)
        consts = ", ".join(f"{k}={v}" for k, v in lay.constants)
        out.append(f"\nrecords {lay.name}: {cols}" + (f"; {consts}" if consts else "") + f"; times in {lay.timezone}")
    for il in plan.invoice_layouts:
        cols = ", ".join(f"{k}<-{v}" for k, v in il.columns)
        consts = ", ".join(f"{k}={v}" for k, v in il.constants)
        words = ", ".join(f"\"{w}\"->{o}" for w, o in il.services)
        out.append(f"\ninvoice layout {il.name}: {cols}" + (f"; {consts}" if consts else "")
                   + (f"; services {words}" if words else "")
                   + f"; dates {il.date_format!r}, decimal {il.decimal!r}, delimiter {il.delimiter!r}, {il.encoding}")
    for x in plan.cycle_examples:
        out.append(f"\nexample cycle \"{x.name}\": {x.partner}, \"{x.agreement}\", days {x.start} .. {x.end} "
                   f"(end excluded) [{x.span}]")
        for t in x.traffic:
            unit = {"time": "billed seconds", "count": "units", "volume": "bytes"}[t.kind]
            out.append(f"  usage {t.direction} {t.service}: {t.quantity} {unit}, {t.amount}"
                       + (f", {t.records} records" if t.records is not None else "")
                       + (f", surcharges {t.surcharges}" if t.surcharges else "")
                       + (f", version v{t.version}" if t.version is not None else "")
                       + (f", on {t.day}" if t.day is not None else ""))
        for it in x.items:
            out.append(f"  inventory {it.kind} {it.item_id} x {it.quantity}: {it.activated} .. "
                       f"{it.terminated or 'open'} (end excluded)")
        for e in x.events:
            out.append(f"  events {e.event}: {e.units}" + (f" on {e.day}" if e.day else ""))
        for r in x.refunds:
            out.append(f"  refund {r.direction} {r.service}: {r.amount}")
        for e in x.expect:
            what = {"line": f"line \"{e.label}\"", "no_line": f"no line \"{e.label}\"", "total": "total",
                    "interim": f"interim on {e.day}", "no_interim": f"no interim on {e.day}",
                    "invoice": "invoice"}[e.key]
            out.append(f"  expect {what}" + (f" for {e.subject}" if e.subject else "")
                       + (f" = {e.amount}" if e.amount is not None else ""))
    for pol in plan.lcr_policies:
        out.extend(_lcr_lines(pol))
    return "\n".join(out) + "\n"


def _lcr_lines(pol) -> list[str]:
    """An lcr policy as the plan holds it (docs/routing.md)."""
    sell = f", margins against inbound {pol.service} of {pol.sell}" if pol.sell else ", no sell deck"
    out = [f"\nlcr {pol.name}: outbound {pol.service}, costs in {pol.currency}"
           + (f" (fx {pol.fx})" if pol.fx else "") + f" of a {pol.reference_s} s call{sell} [{pol.span}]"]
    if pol.suppliers:
        out.append(f"  suppliers {', '.join(pol.suppliers)}")
    if pol.routes is not None:
        out.append(f"  at most {pol.routes} routes per destination")
    out.append(f"  quality over {pol.window_days} days; unmeasured routes: {pol.unmeasured}")
    for lim in pol.limits:
        scope = f" for {', '.join(lim.prefixes)}" if lim.prefixes else ""
        out.append(f"  {lim.bound} {lim.measure} {lim.value} {lim.unit}{scope} [{lim.span}]")
    for rule in pol.rules:
        scope = f" for {', '.join(rule.prefixes)}" if rule.prefixes else ""
        out.append(f"  {rule.kind} {', '.join(rule.suppliers)}{scope} [{rule.span}]")
    for sp in pol.splits:
        out.append(f"  split {sp.prefix}: " + ", ".join(f"{w} {p}%" for w, p in sp.shares) + f" [{sp.span}]")
    return out


def _slots_text(slots, currency: str) -> str:
    out = []
    prev = 0
    for sl in slots:
        own = f" increments {sl.increments}" if sl.increments is not None else ""
        out.append(f"{prev}-{sl.until_s if sl.until_s is not None else '...'} s at {sl.price} {currency}/min{own}")
        prev = sl.until_s or prev
    return "; ".join(out)
