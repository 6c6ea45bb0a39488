"""The built-in charge types, registered through the same hook an outside plugin uses.

Each implements the evaluation contract of :mod:`icdsl.charges.evaluate` (cycle-level
``evaluate`` or per-record ``evaluate_record``/``evaluate_batch``); the evaluation itself
lives in one module per kind: :mod:`~icdsl.charges.surcharge`, :mod:`~icdsl.charges.recurring`,
:mod:`~icdsl.charges.fees`, :mod:`~icdsl.charges.tiers`, :mod:`~icdsl.charges.commitment`,
:mod:`~icdsl.charges.share`.
"""

from __future__ import annotations

from dataclasses import replace as dataclass_replace
from decimal import Decimal
from typing import Any

from icdsl.charges import cap, commitment, fees, percentage, recurring, share, surcharge, tiers
from icdsl.charges.contract import CycleChargeType, RecordChargeType
from icdsl.hookspecs import hookimpl
from icdsl.lang import ast
from icdsl.lang.values import VOCAB, currencies

ICDSL_HOOK_API = 1


class Surcharge(RecordChargeType):
    name = "surcharge"
    description = "an extra price per unit, or a percentage, on records that meet a condition"
    per_record = True

    def evaluate_record(self, charge, rec):
        return surcharge.row_amount(charge, rec)

    def evaluate_batch(self, charge, batch):
        return surcharge.batch_amounts(charge, batch)

    def check(self, node, checker):
        amount = node.param("amount")
        if isinstance(amount, ast.MoneyPer):
            checker.money(amount.money)
            checker.price_unit(amount.unit)
            if checker.agreement:
                checker.currency_matches(amount.money.currency, checker.agreement.currency, "the surcharge")
        elif isinstance(amount, ast.Percent):
            checker.percent(amount, high=Decimal(1000))
        when = node.param("when")
        if when is not None:
            checker.expr(when, checker.agreement.partner if checker.agreement else None)


class Recurring(CycleChargeType):
    name = "recurring"
    description = "a fee every month, quarter or year, flat or per inventory item, prorated by day"

    def evaluate(self, charge, ctx):
        return recurring.evaluate(charge, ctx)

    def check(self, node, checker):
        checker.money(node.param("amount"))
        checker.word(node.param("period"), "recurring period")
        if checker.agreement:
            checker.currency_matches(node.param("amount").currency, checker.agreement.currency, "the fee")


class OneTime(CycleChargeType):
    name = "one_time"
    description = "a fee charged once: on activation, completion, termination or at invoice time"

    def evaluate(self, charge, ctx):
        return fees.evaluate_one_time(charge, ctx)

    def check(self, node, checker):
        checker.money(node.param("amount"))
        checker.word(node.param("on"), "one-time trigger")
        kind, trigger = node.param("per_inventory"), node.param("on")
        if kind is not None and trigger is not None and trigger.text not in ("activation", "termination"):
            checker.error("E226", f"a fee per inventory item is due on an item's activation or termination, "
                                  f"not on '{trigger.text}'", trigger.span,
                          "write 'on activation' or 'on termination', or drop 'per inventory'")
        if checker.agreement:
            checker.currency_matches(node.param("amount").currency, checker.agreement.currency, "the fee")


class Event(CycleChargeType):
    name = "event"
    description = "a fee per event record of a given type (a porting, a migration, an integration job)"

    def evaluate(self, charge, ctx):
        return fees.evaluate_event(charge, ctx)

    def check(self, node, checker):
        checker.money(node.param("amount"))
        if checker.agreement:
            checker.currency_matches(node.param("amount").currency, checker.agreement.currency, "the fee")


class Commitment(CycleChargeType):
    name = "commitment"
    description = "a minimum spend or quantity per period; the shortfall is charged as its own line"
    stage = "commitment"

    def evaluate(self, charge, ctx):
        return commitment.evaluate(charge, ctx)

    def check(self, node, checker):
        q: ast.Quantity = node.param("amount")
        unit = q.unit.text

        if unit in currencies():
            if checker.agreement:
                checker.currency_matches(q.unit, checker.agreement.currency, "the commitment")
        elif unit not in VOCAB["measure"]:
            checker.error("E206", f"a commitment is in a currency or one of {', '.join(VOCAB['measure'])}, "
                                  f"not '{unit}'", q.unit.span)
        if q.value.value <= 0:
            checker.error("E213", "a commitment must be positive", q.value.span)
        checker.word(node.param("period"), "commitment period")
        counts = node.option("counts")
        if counts is not None and unit not in currencies():
            checker.error("E343", f"only a money commitment chooses which charges count; this one counts {unit}",
                          counts.span, "drop ', counts ...', or commit an amount of money")


class UsageCap(CycleChargeType):
    name = "usage_cap"
    description = "a maximum cost per period (at most 5000.00 EUR per month): the usage above it, taken off"
    stage = "cap"

    def evaluate(self, charge, ctx):
        return cap.evaluate(charge, ctx)

    def check(self, node, checker):
        pass  # the checker checks `at most ... per PERIOD` where it stands (its scope's currency)

    def compile(self, node, compiler):
        money = node.param("amount")
        return (("amount", (money.amount.value, money.currency.text)), ("period", node.param("period").text))


def compile_tiers(nodes, compiler) -> tuple:
    """The plan's tiers. Tiers written by their ends (`up to 10`, `up to 20`, `above 20`) become
    tiers that start *after* the end of the one before (the first after 0), ``exclusive``."""
    if all(t.bound == "from" for t in nodes):
        return tuple(compiler.tier(t) for t in nodes)
    out, lo = [], Decimal(0)
    for t in nodes:
        up_to = t.start.value if t.bound == "up_to" else None
        start = lo if t.bound == "up_to" else t.start.value
        out.append(dataclass_replace(compiler.tier(t), start=start, exclusive=True, up_to=up_to))
        lo = t.start.value
    return tuple(out)


class _Tiers(CycleChargeType):
    mode_vocab = "tier mode"

    def check(self, node, checker):
        checker.word(node.param("mode"), self.mode_vocab)
        checker.word(node.param("on"), "measure")
        checker.word(node.param("period"), "tier period")
        tiers: tuple[ast.TierNode, ...] = node.param("tiers")
        measure = node.param("on")
        if self.name == "tiered_price" and isinstance(measure, ast.Ident) and measure.text != "revenue":
            for t in tiers:
                if isinstance(t.value, ast.Percent):
                    checker.error("E315", f"a percentage tier prices an amount of money, but this one measures "
                                          f"{measure.text}", t.value.span,
                                  "measure 'on revenue' (a percentage of the revenue in each tier), or give the "
                                  "tier a price per unit; a discount is a 'volume discount ...'")
        if any(t.bound != "from" for t in tiers):
            self.check_upper_bounds(tiers, checker)
            for t in tiers:
                self.check_value(t, checker)
            return
        prev = None
        for t in tiers:
            if t.start.value < 0:
                checker.error("E213", "a tier cannot start below zero", t.start.span)
            if prev is not None and t.start.value <= prev.start.value:
                checker.error("E313", f"tiers must increase: {t.start.text} comes after {prev.start.text}", t.start.span,
                              "list tiers from the smallest 'from' to the largest")
            prev = t
            self.check_value(t, checker)
        if tiers and tiers[0].start.value != 0 and self.name == "tiered_price":
            checker.error("E314", f"the first tier starts at {tiers[0].start.text}: quantities below it have no price",
                          tiers[0].start.span, "start the first tier 'from 0'")

    def check_upper_bounds(self, tiers, checker):
        """Tiers written by their ends (`up to 10`, `up to 20`, `above 20`): one convention per
        charge, ends increasing, the last tier `above` the end of the one before."""
        prev = None
        for i, t in enumerate(tiers):
            if t.bound == "from":
                checker.error("E340", "tiers written 'from' and 'up to' in one charge", t.span,
                              "write every tier by its end ('up to 10: ...', then 'above 10: ...'), or every "
                              "tier by its start ('from 0: ...')")
                return
            if t.bound == "above" and i != len(tiers) - 1:
                checker.error("E341", f"'above {t.start.text}' is not the last tier", t.span,
                              "the tier above the last end comes last; the tiers before it are 'up to N'")
            if t.start.value < 0 or (t.bound == "up_to" and t.start.value == 0):
                checker.error("E213", f"a tier's end must be above zero, not {t.start.text}", t.start.span)
            if prev is not None and t.bound == "up_to" and t.start.value <= prev.start.value:
                checker.error("E313", f"tiers must increase: {t.start.text} comes after {prev.start.text}",
                              t.start.span, "list tiers from the smallest 'up to' to the largest")
            if t.bound == "above":
                if prev is not None and t.start.value != prev.start.value:
                    checker.error("E341", f"the last tier is above {t.start.text}, but the tier before it ends "
                                          f"at {prev.start.text}", t.start.span,
                                  f"write 'above {prev.start.text}': the last tier starts where the one before "
                                  "ends")
                elif prev is None and t.start.value != 0 and self.name == "tiered_price":
                    checker.error("E314", f"the first tier is above {t.start.text}: quantities up to it have no price",
                                  t.start.span, "write 'above 0', or add 'up to N' tiers before it")
            prev = t
        if tiers and tiers[-1].bound != "above":
            last = tiers[-1].start.text
            checker.error("E314", f"the last tier ends at {last}: quantities above it have no tier", tiers[-1].span,
                          f"add a last tier 'above {last}: ...'")

    def check_value(self, t, checker):
        v = t.value
        if isinstance(v, ast.Percent):  # a percentage of the revenue in the tier (measured `on revenue`)
            checker.percent(v)
            plus = getattr(t, "plus_flat", None)
            if plus is not None and checker.money(plus) and checker.agreement:
                checker.currency_matches(plus.currency, checker.agreement.currency, "the tier's fee")
        elif isinstance(v, ast.MoneyPer):
            checker.money(v.money)
            checker.price_unit(v.unit)
            if v.per_count is not None and (v.per_count.value <= 0 or v.per_count.value != int(v.per_count.value)):
                checker.error("E215", "a package size must be a positive whole number", v.per_count.span)
            if checker.agreement:
                checker.currency_matches(v.money.currency, checker.agreement.currency, "the tier's price")
            plus = getattr(t, "plus_flat", None)
            if plus is not None:
                checker.money(plus)
                if plus.currency.text != v.money.currency.text:
                    checker.error("E211", f"the tier's flat fee is in {plus.currency.text} but its price is in "
                                          f"{v.money.currency.text}", plus.currency.span,
                                  "give the price and the fee of a tier the same currency")
        elif isinstance(v, ast.Money):
            checker.money(v)
            if checker.agreement:
                checker.currency_matches(v.currency, checker.agreement.currency, "the tier's fee")

    def compile(self, node, compiler):
        return (
            ("mode", node.param("mode").text),
            ("on", node.param("on").text),
            ("period", node.param("period").text),
            ("tiers", compile_tiers(node.param("tiers"), compiler)),
        )


class TieredPrice(_Tiers):
    name = "tiered_price"
    description = "graduated (each tier at its price) or volume (all at the tier reached) pricing per cycle"

    def evaluate(self, charge, ctx):
        return tiers.evaluate_tiered(charge, ctx)


class VolumeDiscount(_Tiers):
    name = "volume_discount"
    description = "a percentage discount by volume tier, retroactive or incremental; its own invoice line"
    mode_vocab = "discount mode"
    stage = "discount"

    def evaluate(self, charge, ctx):
        return tiers.evaluate_discount(charge, ctx)

    def check_value(self, t, checker):
        if not isinstance(t.value, ast.Percent) or t.plus_flat is not None:
            checker.error("E315", "a volume discount tier is a percentage", t.span, "write e.g. 'from 1_000_000: 3%'")
        else:
            checker.percent(t.value)


class RevenueShare(CycleChargeType):
    name = "revenue_share"
    description = "a split of revenue between parties: percentages, fixed fees, tiers; exact to the cent"
    stage = "share"

    def evaluate(self, charge, ctx):
        return share.evaluate(charge, ctx)

    def check(self, node, checker):
        checker.word(node.param("basis"), "revenue basis")
        parties = node.param("parties")
        if parties is not None:
            self._check_split(parties, node.span, checker)
        tiers = node.param("tiers")
        if tiers is not None:
            prev = None
            for t in tiers:
                checker.money(t.start)
                if checker.agreement:
                    checker.currency_matches(t.start.currency, checker.agreement.currency, "the revenue share")
                if prev is not None and t.start.amount.value <= prev.start.amount.value:
                    checker.error("E313", "revenue share tiers must increase", t.start.span)
                prev = t
                self._check_split(t.parties, t.span, checker)

    def _check_split(self, parties: tuple[ast.SharePartyNode, ...], span, checker) -> None:
        total = Decimal(0)
        remainder = 0
        names: set[str] = set()
        for p in parties:
            if p.party.text in names:
                checker.error("E103", f"party '{p.party.text}' appears twice in this split", p.span)
            names.add(p.party.text)
            if isinstance(p.value, ast.Percent):
                if checker.percent(p.value):
                    total += p.value.value.value
            elif isinstance(p.value, ast.MoneyPer):
                checker.money(p.value.money)
                checker.price_unit(p.value.unit)
                if checker.agreement:
                    checker.currency_matches(p.value.money.currency, checker.agreement.currency, "the fixed share")
            else:
                remainder += 1
        if remainder > 1:
            checker.error("E316", "only one party can take the remainder", span)
        elif remainder == 0 and total != 100:
            checker.error("E316", f"the shares add up to {_fmt(total)}%, not 100%", span,
                          f"{'add' if total < 100 else 'remove'} {_fmt(abs(100 - total))}%, or give one party "
                          f"'remainder'")
        elif remainder == 1 and total > 100:
            checker.error("E316", f"the shares add up to {_fmt(total)}%, more than 100%", span)

    def compile(self, node, compiler):
        out: list[tuple[str, Any]] = [("basis", node.param("basis").text), ("mode", node.param("mode"))]
        parties = node.param("parties")
        if parties is not None:
            out.append(("shares", tuple(compiler.share(p) for p in parties)))
        tiers = node.param("tiers")
        if tiers is not None:
            out.append(("tiers", tuple(compiler.share_tier(t) for t in tiers)))
        out.append(("scope", tuple(sel.text for sel in node.param("scope"))))
        return tuple(out)


#: the words a percentage charge's amounts are counted per (besides the charge's own event)
PER_TRANSACTION = ("transaction", "transactions", "event", "events")


class Percentage(CycleChargeType):
    name = "percentage"
    description = ("a percentage of each transaction's value, with a fixed amount, a minimum and a maximum per "
                   "transaction and free allowances")

    def evaluate(self, charge, ctx):
        return percentage.evaluate(charge, ctx)

    def event_types(self, charge):
        event = charge.param("event")
        return (str(event),) if event else ()

    def check(self, node, checker):
        rate = node.param("rate")
        if isinstance(rate, ast.Percent):
            checker.percent(rate)
        event = node.param("event")
        keys = [p.key.text for p in node.params]
        for key in ("fixed", "minimum", "maximum", "free"):
            if keys.count(key) > 1:
                second = [p for p in node.params if p.key.text == key][1]
                checker.error("E103", f"'{key}' is stated twice in this percentage charge", second.span)
        currency = None
        for key in ("fixed", "minimum", "maximum"):
            given = node.param(key)
            if given is None:
                continue
            money, per = given
            if isinstance(money, ast.Money) and checker.money(money):
                if checker.agreement:
                    checker.currency_matches(money.currency, checker.agreement.currency, f"the {key} amount")
                if currency is not None and money.currency.text != currency:
                    checker.error("E211", f"the {key} amount is in {money.currency.text}, the charge's other "
                                          f"amounts in {currency}", money.currency.span,
                                  "give a percentage charge's amounts one currency")
                currency = currency or money.currency.text
            if per.text not in PER_TRANSACTION and (event is None or per.text != event.text):
                checker.error("E206", f"a percentage charge's {key} is per transaction, not per '{per.text}'",
                              per.span, f"write '{key} ... per transaction'")
        lo, hi = node.param("minimum"), node.param("maximum")
        if (lo and hi and isinstance(lo[0], ast.Money) and isinstance(hi[0], ast.Money)
                and lo[0].amount.value > hi[0].amount.value):
            checker.error("E342", f"the minimum per transaction ({lo[0].amount.text}) is above the maximum "
                                  f"({hi[0].amount.text})", lo[0].span, "swap them, or drop one")
        free = node.param("free")
        if free is not None:
            kinds: set[str] = set()
            for q in free:
                unit = q.unit.text
                kind = "value" if unit in currencies() else "count"
                if kind == "count" and unit not in PER_TRANSACTION and (event is None or unit != event.text):
                    checker.error("E206", f"a free allowance is a number of transactions or an amount of money, "
                                          f"not '{unit}'", q.unit.span,
                                  "write e.g. 'free 3 transactions', 'free 100.00 EUR' or 'free 3 transactions or "
                                  "100.00 EUR'")
                    continue
                if kind in kinds:
                    checker.error("E342", f"the free allowance gives two {'amounts' if kind == 'value' else 'counts'}",
                                  q.span, "give one number of transactions and/or one amount")
                kinds.add(kind)
                if q.value.value <= 0:
                    checker.error("E213", "a free allowance must be positive", q.value.span)
                elif kind == "count" and q.value.value != int(q.value.value):
                    checker.error("E215", "transactions are counted in whole numbers", q.value.span)
                elif kind == "value":
                    if checker.agreement:
                        checker.currency_matches(q.unit, checker.agreement.currency, "the free allowance")
                    if currency is not None and unit != currency:
                        checker.error("E211", f"the free allowance is in {unit}, the charge's other amounts in "
                                              f"{currency}", q.unit.span, "give a percentage charge's amounts one currency")

    def compile(self, node, compiler):
        out: list[tuple[str, Any]] = [("rate", node.param("rate").value.value), ("event", node.param("event").text)]
        for key in ("fixed", "minimum", "maximum"):
            given = node.param(key)
            if given is not None:
                out.append((key, compiler.money(given[0])))
        for q in node.param("free") or ():
            if q.unit.text in currencies():
                out.append(("free_value", compiler.money(ast.Money(q.value, q.unit, q.span))))
            else:
                out.append(("free_count", int(q.value.value)))
        return tuple(out)


def _fmt(d: Decimal) -> str:
    return format(d.normalize(), "f")


BUILTIN = (Surcharge, Recurring, OneTime, Event, Commitment, UsageCap, TieredPrice, VolumeDiscount, RevenueShare, Percentage)


@hookimpl
def icdsl_charge_types():
    return list(BUILTIN)
