"""Compile a checked program into the immutable evaluation Plan.

Runs only on a program the checker found free of errors, so it converts without re-checking.
Nothing user-written is ever evaluated as Python: conditions become ``Expr`` trees.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from icdsl.errors import ChargeError
from icdsl.lang import ast
from icdsl.lang.checker import DEFAULT_ROUNDING, AgreementInfo, Checked, CycleExampleInfo, ServiceInfo, check
from icdsl.lang.diagnostics import Diagnostic
from icdsl.lang.loader import load
from icdsl.lang.origins import calling_code
from icdsl.lang.values import TIME_UNITS, VOLUME_UNITS, WEEKDAYS, parse_date, parse_time
from icdsl.parties import Contact, Template, compact
from icdsl.plan import model as m
from icdsl.plan.lcr import compile_policy


class Compiler:
    def __init__(self, checked: Checked):
        self.c = checked
        self._calendars: dict[int, m.Calendar] = {}

    # ------------------------------------------------------------------ values
    def money(self, x: ast.Money) -> m.Money:
        return m.Money(x.amount.value, x.currency.text)

    def price(self, x: ast.MoneyPer) -> m.Price:
        per = int(x.per_count.value) if x.per_count is not None else 1
        return m.Price(x.money.amount.value, x.money.currency.text, x.unit.text if x.unit else "", per)

    def value(self, v: Any) -> Any:
        """An AST value as a plain immutable value."""
        if isinstance(v, ast.Num):
            return v.value
        if isinstance(v, ast.Str):
            return v.value
        if isinstance(v, ast.Ident):
            return v.text
        if isinstance(v, ast.DateLit):
            return parse_date(v.text)
        if isinstance(v, ast.Money):
            return self.money(v)
        if isinstance(v, ast.MoneyPer):
            return self.price(v) if v.unit is not None else self.money(v.money)
        if isinstance(v, ast.Percent):
            return v.value.value
        if isinstance(v, ast.Quantity):
            return (v.value.value, v.unit.text)
        if isinstance(v, ast.ListValue):
            return tuple(self.value(i) for i in v.items)
        if isinstance(v, ast.MapValue):
            return tuple((p.key.text, self.value(p.value)) for p in v.params)
        if isinstance(v, tuple):
            return tuple(self.value(i) for i in v)
        if isinstance(v, (ast.BoolOp, ast.Not, ast.Compare, ast.Member, ast.Between, ast.Call, ast.FieldRef,
                          ast.Literal)):
            return self.expr(v)
        return v

    def expr(self, e: Any) -> m.Expr:
        if isinstance(e, ast.BoolOp):
            return m.Expr(e.op, tuple(self.expr(o) for o in e.operands), e.span)
        if isinstance(e, ast.Not):
            return m.Expr("not", (self.expr(e.operand),), e.span)
        if isinstance(e, ast.Compare):
            return m.Expr("cmp", (e.op, self.expr(e.left), self.expr(e.right)), e.span)
        if isinstance(e, ast.Member):
            return m.Expr("in", (self.expr(e.left), tuple(self._lit(v) for v in e.values)), e.span)
        if isinstance(e, ast.Between):
            return m.Expr("and", (
                m.Expr("cmp", (">=", self.expr(e.left), m.Expr("const", (self._lit(e.low),), e.low.span)), e.span),
                m.Expr("cmp", ("<=", self.expr(e.left), m.Expr("const", (self._lit(e.high),), e.high.span)), e.span),
            ), e.span)
        if isinstance(e, ast.Call):
            return m.Expr("call", (e.name.text, tuple(self.expr(a) for a in e.args)), e.span)
        if isinstance(e, ast.FieldRef):
            return m.Expr("field", (e.dotted,), e.span)
        if isinstance(e, ast.Literal):
            return m.Expr("const", (self._lit(e),), e.span)
        if isinstance(e, ast.Percent):
            return m.Expr("const", (e.value.value,), e.span)
        raise TypeError(f"not an expression: {e!r}")

    def _lit(self, lit: Any) -> Any:
        if isinstance(lit, ast.Percent):
            return lit.value.value
        return lit.value

    def tier(self, t: ast.TierNode) -> m.Tier:
        v = t.value
        if isinstance(v, ast.Percent):  # a percentage, with a flat fee on top ("2% plus 10.00 EUR flat")
            plus = self.money(t.plus_flat) if t.plus_flat is not None else None
            return m.Tier(t.start.value, percent=v.value.value, flat=plus, span=t.span)
        if isinstance(v, ast.MoneyPer):
            plus = self.money(t.plus_flat) if t.plus_flat is not None else None
            return m.Tier(t.start.value, price=self.price(v), flat=plus, span=t.span)
        return m.Tier(t.start.value, flat=self.money(v), span=t.span)

    def share(self, p: ast.SharePartyNode) -> m.Share:
        if isinstance(p.value, ast.Percent):
            return m.Share(p.party.text, percent=p.value.value.value, span=p.span)
        if isinstance(p.value, ast.MoneyPer):
            return m.Share(p.party.text, fixed=self.price(p.value) if p.value.unit else
                           m.Price(p.value.money.amount.value, p.value.money.currency.text, "cycle"), span=p.span)
        return m.Share(p.party.text, remainder=True, span=p.span)

    def share_tier(self, t: ast.ShareTierNode) -> m.ShareTier:
        return m.ShareTier(self.money(t.start), tuple(self.share(p) for p in t.parties), t.span)

    # ------------------------------------------------------------------ declarations
    def partner(self, p: ast.PartnerDecl) -> m.Partner:
        def get(key, default=None):
            s = p.setting(key)
            return s.values if s else default

        tax = m.Tax()
        if (t := get("tax")) is not None:
            rate = t[1].value.value if len(t) > 1 else Decimal(0)
            tax = m.Tax(t[0].text, rate, "", p.setting("tax").span)
        due = get("due")
        rounding = None
        if p.rounding is not None:
            rounding = self._rounding(p.rounding, DEFAULT_ROUNDING)
        return m.Partner(
            code=p.code.text,
            name=p.name.value,
            kind=get("kind", (ast.Ident("interconnect", p.span),))[0].text,
            currency=get("currency")[0].text,
            timezone=get("timezone", (ast.Str("UTC", p.span),))[0].value,
            billing=_billing(get("billing", (ast.Ident("monthly", p.span),))),
            due_days=int(due[0].value) if due else 30,
            tax=tax,
            country=get("country")[0].text if get("country") else None,
            rounding=rounding,
            attributes=tuple((a.key.text, self.value(a.value)) for a in p.attributes),
            span=p.span,
            party=self.party(p.code.text, p.name.value, get("country")[0].text if get("country") else None, p.party)
            if p.party else None,
        )

    def accounts(self, a: ast.AccountsDecl) -> m.Accounts:
        by: dict[str, list[tuple[str, str]]] = {"revenue_kind": [], "revenue_service": [], "tax": []}
        one: dict[str, str] = {}
        for what, key, account, _span in a.entries:
            if key is None:
                one[what] = account.value.strip()
            else:
                by[what].append((key.text, account.value.strip()))
        return m.Accounts(one.get("receivable", ""), one.get("revenue", ""), tuple(by["revenue_kind"]),
                          tuple(by["revenue_service"]), tuple(by["tax"]))

    def party(self, code: str, name: str, country: str | None, fields: tuple[ast.PartyField, ...]) -> m.Party:
        by: dict[str, Any] = {}
        contacts = []
        templates: list[Template] = []
        for f in fields:
            vals = [v.value if v is not None else None for v in f.values]
            if f.key == "contact":
                contacts.append(Contact(vals[0], vals[1], vals[2]))
            elif f.key == "template":
                sp = f.values[0].span
                got = self.c.party_templates.get((sp.file, sp.line, sp.col))
                if got is not None:  # (read by the checker)
                    templates.append(Template(vals[1], got[0], got[1]))
            elif f.key == "locale":
                by["locale"] = vals[0].strip().replace("-", "_")
            elif f.key == "address":
                by["address"] = tuple(v.strip() for v in vals if v)
            else:
                by[f.key] = compact(f.key, vals[0])
        return m.Party(code=code, name=name, country=country, contacts=tuple(contacts),
                       templates=tuple(sorted(templates, key=lambda t: t.stream or "")), **by)

    def _rounding(self, node: ast.RoundingNode, fallback: m.Rounding) -> m.Rounding:
        if node.preset is not None:
            preset = self.c.presets[node.preset.text]
            return m.Rounding(int(preset.precision.value), preset.mode.text, node.span)
        return m.Rounding(int(node.precision.value), node.mode.text, node.span)

    def calendar(self, c: ast.CalendarDecl, name: str | None = None) -> m.Calendar:
        cached = self._calendars.get(id(c))
        if cached is not None:
            return cached
        rules = []
        for r in c.rules:
            days: set[int] = set()
            for a, b in r.days:
                lo = WEEKDAYS[a.text]
                hi = WEEKDAYS[b.text] if b is not None else lo
                d = lo
                while True:
                    days.add(d)
                    if d == hi:
                        break
                    d = (d + 1) % 7
            start = parse_time(r.start.text) if r.start else time(0)
            end = parse_time(r.end.text) if r.end else time(0)
            rules.append(m.BandRule(r.band.text, frozenset(days), start, end, r.span))
        hol = tuple(m.HolidayRule(h.country.text, h.subdivision.value if h.subdivision else None, h.band.text, h.span)
                    for h in c.holidays)
        dates = tuple((parse_date(d.date.text), d.band.text) for d in c.dates)
        cal = m.Calendar(name or (c.name.text if c.name else "bands"), c.timezone.value, tuple(rules),
                         c.default.text, hol, dates, c.span)
        self._calendars[id(c)] = cal
        return cal

    def fx(self, f: ast.FxDecl) -> m.FxSource:
        rates = tuple(m.FxRate(r.base.text, r.quote.text, r.rate.value, parse_date(r.start.text), r.span)
                      for r in f.rates)
        rounding = self._rounding(f.rounding, m.Rounding(6, "half_even")) if f.rounding else m.Rounding(6, "half_even")
        return m.FxSource(f.name.text, rates, rounding, f.span)

    def layout(self, r: ast.RecordsDecl) -> m.RecordLayout:
        settings = {s.key: s.values[0] for s in r.settings}
        return m.RecordLayout(
            name=r.name.text,
            columns=tuple((f.text, col.value) for f, col in r.columns),
            constants=tuple((f.text, v.text if isinstance(v, ast.Ident) else v.value) for f, v in r.constants),
            timestamp_format=settings["format"].value if "format" in settings else None,
            timezone=settings["timezone"].value if "timezone" in settings else "UTC",
            country=settings["country"].text if "country" in settings else None,
            numbers=settings["numbers"].text if "numbers" in settings else "normalize",
            span=r.span,
        )

    def invoice_layout(self, r: ast.InvoiceLayoutDecl) -> m.InvoiceLayout:
        settings = {s.key: s.values[0].value for s in r.settings}
        return m.InvoiceLayout(
            name=r.name.text,
            columns=tuple((f.text, col.value) for f, col in r.columns),
            constants=tuple((f.text, v.text if isinstance(v, ast.Ident) else str(v.value)) for f, v in r.constants),
            services=tuple((word.value, ours.text) for word, ours in r.services),
            date_format=settings.get("date_format", "%Y-%m-%d"),
            decimal=settings.get("decimal", "."),
            delimiter=settings.get("delimiter", ","),
            encoding=settings.get("encoding", "utf-8"),
            span=r.span,
        )

    # ------------------------------------------------------------------ agreements
    def rate_table(self, si: ServiceInfo, fallback: ServiceInfo | None = None) -> m.RateTable | None:
        dp = si.node.destination_price
        if dp is None:
            return None
        if fallback is not None:  # the table, then its fallback table (same currency and unit)
            table = self.rate_table(si)
            return replace(table, fallback=self.rate_table(fallback))
        if isinstance(si.rows, m.RateColumns):  # a deck read as columns is already the plan's rows
            keys = self.cell_keys([si.rows.origin_of(i) for i in range(len(si.rows))]) if si.rows.origins else None
            return m.RateTable(si.rows, si.currency, si.unit, si.deck.path, si.deck.sha256, dp.span, keys)
        rows = []
        for r in si.rows:
            prices = list(r.band_prices)
            if r.price is not None:
                prices.insert(0, ("*", r.price))
            rows.append(m.RateRow(
                prefix=r.prefix,
                destination=r.destination,
                prices=tuple(prices),
                connect_fee=r.connect,
                increments=m.Increments(*r.increments) if r.increments else None,
                effective_from=date.fromisoformat(r.start) if r.start else None,
                effective_to=date.fromisoformat(r.until) if r.until else None,
                span=r.span,
                origin=r.origin,
                slots=r.slot_set,
            ))
        source = "inline"
        sha = None
        if si.deck is not None:
            source = si.deck.path
            sha = si.deck.sha256
        keys = self.cell_keys([r.origin for r in rows]) if any(r.origin for r in rows) else None
        return m.RateTable(tuple(rows), si.currency, si.unit, source, sha, dp.span, keys)

    def cell_keys(self, origins: list[tuple[tuple[str, str], ...]]) -> tuple[m.CellKey, ...]:
        """Each row's origin key, zones and countries resolved to their prefixes (one CellKey
        per distinct key)."""
        made: dict[tuple[tuple[str, str], ...], m.CellKey] = {}
        out = []
        for key in origins:
            got = made.get(key)
            if got is None:
                got = made[key] = self.cell_key(key)
            out.append(got)
        return tuple(out)

    def cell_key(self, key: tuple[tuple[str, str], ...]) -> m.CellKey:
        if not key:
            return m.EMPTY_KEY
        f = dict(key)
        country = f.get("origin_country")
        zone = f.get("origin_zone")
        return m.CellKey(
            origin=f.get("origin"),
            country=country,
            country_prefixes=(calling_code(country)[0],) if country else (),
            zone=zone,
            zone_prefixes=self.c.zones[zone].prefixes if zone else (),
            operator=f.get("origin_operator"),
            circle=f.get("origin_circle"),
            d_operator=f.get("destination_operator"),
            d_circle=f.get("destination_circle"),
        )

    def service(self, info: AgreementInfo, si: ServiceInfo) -> m.ServicePlan:
        s = si.node
        settings = {st.key: st for st in s.settings}
        increments = m.Increments(60, 60)
        if "increments" in settings:
            a, b = settings["increments"].values
            increments = m.Increments(int(a.value), int(b.value))
        elif si.unit == "second":
            increments = m.Increments(1, 1)
        minimum = 0
        if "minimum" in settings:
            q = settings["minimum"].values[0]

            minimum = int(q.value.value * TIME_UNITS[q.unit.text])
        connect = Decimal(0)
        if "connect_fee" in settings:
            connect = settings["connect_fee"].values[0].amount.value
        slots = _slots(s.slots)
        volume = None
        if si.unit in VOLUME_UNITS and si.unit != "B":
            rb = mb = 1
            if "volume_rounding" in settings:
                q = settings["volume_rounding"].values[0]
                rb = int(q.value.value * VOLUME_UNITS[q.unit.text])
            if "volume_minimum" in settings:
                q = settings["volume_minimum"].values[0]
                mb = int(q.value.value * VOLUME_UNITS[q.unit.text])
            volume = m.VolumeUnit(si.unit, VOLUME_UNITS[si.unit], rb, mb if "volume_minimum" in settings else 0)
        zero = settings["zero_duration"].values[0].text if "zero_duration" in settings else "connect_fee"
        cap = settings.get("max_cost")
        parts = []
        for bp in s.band_parts:
            price, fee, inc = bp.setting("price"), bp.setting("connect_fee"), bp.setting("increments")
            vmin, vround = bp.setting("volume_minimum"), bp.setting("volume_rounding")

            def nbytes(st):
                q = st.values[0]
                return int(q.value.value * VOLUME_UNITS[q.unit.text])

            parts.append(m.BandPart(
                bp.band.text,
                price.values[0].money.amount.value if price is not None else None,
                fee.values[0].amount.value if fee is not None else None,
                m.Increments(int(inc.values[0].value), int(inc.values[1].value)) if inc is not None else None,
                bp.span,
                nbytes(vmin) if vmin is not None and volume is not None else None,
                nbytes(vround) if vround is not None and volume is not None else None))
        return m.ServicePlan(
            direction=s.direction.text,
            service=s.service.text,
            unit=si.unit if not s.slots and not s.slot_sets else "minute",
            rates=self.rate_table(si, fallback=si.fallback),
            flat_price=s.flat_price.money.amount.value if s.flat_price else None,
            currency=si.currency,
            increments=increments,
            minimum_s=minimum,
            connect_fee=connect,
            slots=slots,
            slot_sets=tuple(m.SlotSet(ss.name.text, _slots(ss.slots), ss.span) for ss in s.slot_sets),
            calendar=self.calendar(si.calendar) if si.calendar is not None else None,
            split_at_band_boundary="split" in settings,
            zero_duration=zero,
            volume=volume,
            rounding=si.rounding,
            max_cost=cap.values[0].amount.value if cap is not None else None,
            max_cost_span=cap.span if cap is not None else m.NO_SPAN,
            band_parts=tuple(parts),
            span=s.span,
            numbers=si.numbers.table if si.numbers is not None else None,
            numbers_name=si.numbers.node.name.text if si.numbers is not None else None,
            refile_reject=si.refile_reject,
            price_field=_price_field(settings.get("field_price")),
        )

    def charge(self, node: ast.ChargeNode, scope: tuple[tuple[str, str], ...]) -> m.Charge:
        ct = self.c.charge_types[node.kind]
        params = list(ct.compile(node, self))
        for o in node.options:
            if o.key == "of":
                scope = scope + ((o.values[0].text, o.values[1].text),)
            elif o.key == "when":
                params.append(("when", self.expr(o.values[0])))
            elif o.key == "capacity":
                params.append(("option:capacity", o.values[0].value))
            else:
                params.append((f"option:{o.key}", o.values[0].text))
        label = node.label.value if node.label else node.kind
        return m.Charge(node.kind, label, tuple(params), scope, node.span)

    def amendment(self, info: AgreementInfo) -> m.Amendment | None:
        """The later version that amends or ends this one (resolved by the checker)."""
        by = info.amended_by
        if by is None or info.last_day is None:
            return None
        texts = self.c.program.texts
        if isinstance(by, ast.AgreementEndDecl):
            file = next(e.file for e in self.c.endings if e.node is by)
            h = hashlib.sha256(_own_text(texts.get(file, ""), by.span).encode("utf-8")).hexdigest()
        else:
            other = next(i for i in self.c.agreements if i.node is by)
            h = _agreement_hash(texts.get(other.file, ""), by, other)
        return m.Amendment(by=by.version_number, last_day=info.last_day, ends=isinstance(by, ast.AgreementEndDecl),
                           written_to=info.end, source_hash=h, span=by.span)

    def agreement(self, info: AgreementInfo) -> m.Agreement:
        a = info.node
        streams = tuple(
            m.InvoiceStream(st.name.text, tuple(
                ("charge", sel.name.value) if sel.name else
                (("traffic", sel.words[0].text, sel.words[1].text) if len(sel.words) == 2 else ("kind", sel.words[0].text))
                for sel in st.selectors), st.span)
            for st in a.streams)
        program = self.c.program
        desc = a.setting("description")
        del desc
        return m.Agreement(
            name=a.name.value,
            version=a.version_number,
            partner=a.partner.text if a.partner else "*",
            effective_from=info.start,
            effective_to=info.in_force_to,
            currency=info.currency,
            timezone=info.timezone,
            rounding=info.rounding,
            services=tuple(self.service(info, si) for si in info.services.values()),
            charges=tuple(self.charge(c, scope) for c, scope in info.charges),
            streams=streams,
            netting=tuple((d.text, s.text) for d, s in a.netting),
            fx=info.fx.name.text if info.fx else None,
            source_file=info.file,
            source_hash=_agreement_hash(program.texts.get(info.file, ""), a, info),
            span=a.span,
            amendment=self.amendment(info),
            reconcile=self.tolerances(info),
            progressive=tuple(t.amount.value for t in (a.setting("progressive").values
                                                       if a.setting("progressive") else ())),
            progressive_currency=a.setting("progressive").values[0].currency.text if a.setting("progressive") else "",
        )

    def tolerances(self, info: AgreementInfo) -> m.Tolerances | None:
        if info.tolerances is None:
            return None
        percent, amount, start, duration = info.tolerances
        a = info.node
        return m.Tolerances(line_percent=percent, line_amount=amount, start_seconds=start, duration_seconds=duration,
                            span=a.reconcile[0].span, agreement=f"{a.name.value} {a.version.text}")

    def example(self, file: str, ex: ast.ExampleDecl) -> m.Example:
        record: list[tuple[str, Any]] = []
        agreement = None
        if ex.direction is not None:
            record += [("direction", ex.direction.text), ("service", ex.service.text)]
        if ex.number is not None:
            record.append(("b_number", ex.number.value if isinstance(ex.number, ast.Str) else ex.number.text))
        for o in ex.options:
            v = o.values
            if o.key == "partner":
                record.append(("partner", v[0].text))
            elif o.key == "agreement":
                agreement = v[0].value
            elif o.key == "at":
                tz = v[2].value if len(v) > 2 else None
                record.append(("start_local", (v[0].text, v[1].text, tz)))
            elif o.key == "for":
                q = v[0]
                record.append(("duration_s", int(q.value.value * TIME_UNITS[q.unit.text])))
            elif o.key == "from":
                record.append(("a_number", v[0].value if isinstance(v[0], ast.Str) else v[0].text))
            elif o.key == "messages":
                record.append(("units", int(v[0].value)))
            elif o.key == "volume":
                q = v[0]
                record.append(("volume", int(q.value.value * VOLUME_UNITS[q.unit.text])))
        for p in ex.fields:
            record.append((p.key.text, self.value(p.value)))
        expect = []
        for e in ex.expectations:
            v = e.values
            if e.key in ("amount", "rate"):
                expect.append((e.key, self.money(v[0])))
            elif e.key == "billed":
                expect.append((e.key, (v[0].value.value, v[0].unit.text)))
            elif e.key == "version":
                expect.append((e.key, int(v[0].text[1:])))
            else:
                x = v[0]
                expect.append((e.key, x.value if isinstance(x, ast.Str) else (x.text if hasattr(x, "text") else x)))
        return m.Example(ex.name.value, tuple(record), tuple(expect), agreement, ex.span)

    def cycle_example(self, info: CycleExampleInfo) -> m.CycleExample:

        ex = info.node
        traffic = []
        for t in ex.traffic:
            kind = info.kinds[(t.direction.text, t.service.text)]
            q = t.quantity
            factor = TIME_UNITS.get(q.unit.text, 1) if kind == "time" else (
                VOLUME_UNITS.get(q.unit.text, 1) if kind == "volume" else 1)
            amount = t.option("for")
            records = t.option("in")
            surcharges = t.option("surcharges")
            version = t.option("version")
            day = t.option("on")
            traffic.append(m.CycleTraffic(
                t.direction.text, t.service.text, kind, int(q.value.value * factor),
                self.money(amount.values[0]) if amount else m.Money(Decimal(0), info.currencies[(t.direction.text,
                                                                                     t.service.text)]),
                int(records.values[0].value.value) if records else None,
                surcharges.values[0].amount.value if surcharges else Decimal(0),
                int(version.values[0].text[1:]) if version else None, t.span,
                parse_date(day.values[0].text) if day else None))
        items = tuple(m.CycleItem(it.kind.text, it.item_id.value,
                                  it.quantity.value if it.quantity is not None else Decimal(1),
                                  parse_date(it.start.text),
                                  parse_date(it.end.text) + timedelta(days=1) if it.end is not None else None, it.span)
                      for it in ex.items)
        events = tuple(m.CycleEvents(e.event.text, int(e.count.value), parse_date(e.day.text) if e.day else None,
                                     e.span, self.money(e.worth) if e.worth is not None else None)
                       for e in ex.events)
        refunds = tuple(m.CycleRefund(r.direction.text, r.service.text, self.money(r.amount), r.span)
                        for r in ex.refunds)
        expect = tuple(m.CycleExpectation(
            e.key, e.label.value if e.label else None,
            None if e.subject is None else (e.subject.value if isinstance(e.subject, ast.Str) else e.subject.text),
            self.money(e.amount) if e.amount is not None else None, e.span,
            parse_date(e.day.text) if e.day is not None else None) for e in ex.expectations)
        return m.CycleExample(ex.name.value, info.partner, info.agreement, info.start, info.end, info.label,
                              tuple(traffic), items, events, refunds, expect, ex.span)

    def plan(self) -> m.Plan:
        c = self.c
        return m.Plan(
            partners=tuple(self.partner(p) for p in c.partners.values()),
            agreements=tuple(self.agreement(i) for i in c.agreements),
            calendars=tuple(self.calendar(cal) for cal in c.calendars.values()),
            fx_sources=tuple(self.fx(f) for f in c.fx.values()),
            examples=tuple(self.example(f, ex) for f, ex in c.examples),
            cycle_examples=tuple(self.cycle_example(i) for i in c.cycle_examples),
            layouts=tuple(self.layout(r) for r in c.layouts.values()),
            invoice_layouts=tuple(self.invoice_layout(r) for r in c.invoice_layouts.values()),
            sources=_sources(c),
            lcr_policies=tuple(compile_policy(d) for d in c.lcr_policies.values()),
            accounts=self.accounts(c.accounts) if c.accounts is not None else None,
            company=(self.party(c.company.code.text, c.company.name.value,
                                c.company.setting("country").values[0].text if c.company.setting("country") else None,
                                c.company.party) if c.company is not None else None),
        )


def _own_text(text: str, span: m.Span) -> str:
    """The lines of a file that a declaration spans (what its hash covers)."""
    lines = text.splitlines()
    return "\n".join(lines[span.line - 1 : span.end_line]) if span.line else ""


def _sources(c: Checked) -> tuple[tuple[str, str], ...]:
    """The files the plan was built from, with their SHA-256: the rule files, and the
    number-range tables (ranges, ported numbers) the rules read. The tables are reference
    data outside every agreement's hash (a porting update is no new version), so they are
    here: a cycle's ``plan_hash`` (and ``icdsl plan``) changes with them, and says which
    tables rated it."""
    out = dict(c.program.hashes)
    for info in c.numbers.values():
        t = info.table
        if t is None:
            continue
        out[t.source] = t.sha256
        if t.ported_source:
            out[t.ported_source] = t.ported_sha256 or ""
    return tuple(sorted(out.items()))


def _agreement_hash(text: str, a: ast.AgreementDecl, info: AgreementInfo) -> str:
    """SHA-256 of the agreement's own source text plus the decks it reads: a stable identity of
    exactly what was agreed, independent of other agreements in the same file."""

    lines = text.splitlines()
    own = "\n".join(lines[a.span.line - 1 : a.span.end_line]) if a.span.line else ""
    h = hashlib.sha256(own.encode("utf-8"))
    for si in info.services.values():
        if si.deck is not None:
            h.update(si.deck.sha256.encode())
        if si.fallback is not None and si.fallback.deck is not None:  # the fallback deck is a term too
            h.update(si.fallback.deck.sha256.encode())
        # number-range tables and zones are reference data, not terms: like calendars they are
        # outside the hash (a daily porting update is no new agreement version); the tables'
        # files are among the plan's sources (_sources: the cycle's plan_hash), the zones' text
        # is in the rule files there
    return h.hexdigest()


def compile_checked(checked: Checked) -> m.Plan:
    return Compiler(checked).plan()


def build(paths: list[Path | str], root: Path | str | None = None, pm=None):
    """Load, check and compile: returns (plan or None, program, diagnostics). ``pm``: the plugin
    manager whose charge types, rounding modes and functions the rule files may use (default:
    the active one)."""

    program, diags = load(paths, root)
    if any(d.is_error for d in diags):
        return None, program, diags
    checked, more = check(program, pm=pm)
    diags = diags + more
    if any(d.is_error for d in diags):
        return None, program, diags

    try:
        return compile_checked(checked), program, diags
    except ChargeError as exc:  # a charge type (a plugin's) could not compile a rule it had accepted
        span = exc.span if exc.span is not None else m.NO_SPAN
        return None, program, diags + [Diagnostic(
            "E122", str(exc), span, "the rule passed the checks but its charge type could not compile it")]


def _billing(values: tuple) -> str:
    """A partner's billing frequency: ``monthly``, or ``monthly@15`` for cycles from the 15th
    (`billing monthly from day 15`; day 1 is the calendar month)."""
    if len(values) > 1 and int(values[1].value) != 1:
        return f"{values[0].text}@{int(values[1].value)}"
    return values[0].text


def _slots(nodes: tuple[ast.SlotNode, ...]) -> tuple[m.Slot, ...]:
    """Slots as the plan keeps them: each slot's end in seconds from the call's start (None: the
    rest of the call), its price per minute, its own increments."""
    slots = []
    for sl in nodes:
        until = None
        if sl.first is not None:
            until = int(sl.first.value.value * TIME_UNITS[sl.first.unit.text])
        per_minute = sl.price.amount.value * (60 if sl.unit.text == "second" else 1)
        inc = None
        if sl.increments is not None:
            a, b = sl.increments.values
            inc = m.Increments(int(a.value), int(b.value))
        slots.append(m.Slot(until, per_minute, sl.span, inc))
    return tuple(slots)


def _price_field(st: ast.Setting | None) -> m.PriceField | None:
    """``price from field NAME in EUR [cents]``: the field, and how many places its value moves."""
    if st is None:
        return None
    name, _currency, *scale = st.values
    return m.PriceField(name.text, 2 if scale else 0, st.span)
