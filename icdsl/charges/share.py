"""Revenue shares: a cycle's revenue split between parties, exact to the minor unit.

``revenue share ["LABEL"] [tiered] on gross|net [of SELECTORS] { parties | tiers }``. Plan
parameters: ``basis``, ``mode`` (``split`` | ``tiered``), ``shares`` (Share...) or ``tiers``
(ShareTier...), ``scope`` (``"outbound sms"``... ; empty: all the agreement's traffic).

1. **Amount split**: ``gross`` = the records' amounts in scope in the cycle; ``net`` = gross
   less the refunds, credits and adjustments recorded against that traffic in the cycle
   (``ChargeContext.adjustments``). It is rounded to the currency's minor unit first (the
   agreement's mode): shares split an invoiceable amount. One split per currency.
2. **Tier** (``tiered``): the amount chooses the tier, the last whose ``from`` it reaches, and
   that tier's split applies to the **whole** amount (docs/language.md: "At 8,000 EUR net, CPX
   gets 60 % of 8,000; at 12,000 EUR, 70 % of 12,000").
3. **Order**: fixed shares first (``PARTY: 0.0200 EUR per message``: per unit of the scope's
   traffic; ``PARTY: 500.00 EUR``: per cycle), in the order listed, each capped at what is
   left (a share never exceeds the amount and is never negative); then the percentages, of what
   is left after the fixed shares; the ``remainder`` party gets the rest.
4. **Exactness** (largest remainder method at the minor unit): every party's exact share is
   rounded towards zero to the minor unit; the units still missing go one each to the parties
   with the largest remainders (the fractions dropped), ties to the party listed first. The
   shares add up to the amount exactly (a negative net amount is split the same way, signs
   reversed).

Worked example (docs/language.md): 26 messages for 36.00 EUR; AGGR 26 x 0.0200 = 0.52; left
35.48; CPX 70 % = 24.836; us 10.644 -> 24.83 and 10.64, one cent short, CPX has the larger
remainder: CPX 24.84, us 10.64; 0.52 + 24.84 + 10.64 = 36.00.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from icdsl.charges.context import Adjustment, ChargeContext, scope_text
from icdsl.charges.lines import ChargeError, ChargeLine, exact_sum, exact_text, minor_units, shown
from icdsl.charges.tiers import UNIT_FACTORS
from icdsl.plan.model import Charge, Price, Share, ShareTier

#: fixed share unit -> measure it counts
UNIT_MEASURE = {
    "message": "messages", "minute": "minutes", "second": "minutes", "hour": "minutes", "min": "minutes",
    "KB": "volume", "MB": "volume", "GB": "volume", "TB": "volume", "call": "calls", "event": "events",
}


@dataclass(frozen=True, slots=True)
class PartyShare:
    party: str
    kind: str  # fixed | percent | remainder
    exact: Fraction
    amount: Decimal
    how: str


@dataclass(frozen=True, slots=True)
class ShareResult:
    """One split: the amount, the tier chosen (if tiered) and each party's share."""

    charge: str
    basis: str
    currency: str
    gross: Decimal
    deducted: Decimal
    amount: Decimal
    tier: str
    shares: tuple[PartyShare, ...]
    gross_exact: str = ""
    deducted_exact: str = ""
    deductions: tuple[Adjustment, ...] = ()
    fx: tuple[dict[str, str], ...] = ()
    tier_shown: str = ""

    @property
    def total(self) -> Decimal:
        return exact_sum(s.amount for s in self.shares)


def largest_remainder(amount: Decimal, exact: list[Fraction], currency: str) -> list[Decimal]:
    """Round ``exact`` shares (all of ``amount``'s sign, adding up to it exactly) to the
    currency's minor unit so that they add up to ``amount``: each rounded towards zero, the
    missing units to the largest remainders, ties to the earliest."""
    d = minor_units(currency)
    scale = 10**d
    total = Fraction(amount) * scale
    if total.denominator != 1:
        raise ValueError(f"{amount} is not a whole number of {currency} minor units")
    if sum(exact, Fraction(0)) != Fraction(amount):
        raise ValueError("the exact shares do not add up to the amount")
    sign = -1 if amount < 0 else 1
    units = [abs(x) * scale for x in exact]
    floors = [u.numerator // u.denominator for u in units]
    missing = abs(total.numerator) - sum(floors)
    order = sorted(range(len(units)), key=lambda i: (-(units[i] - floors[i]), i))
    for i in order[:missing]:
        floors[i] += 1
    return [Decimal(sign * f).scaleb(-d) if d else Decimal(sign * f) for f in floors]


def split(amount: Decimal, shares: tuple[Share, ...], currency: str,
          quantities: dict[str, Fraction] | None = None, span=None) -> list[PartyShare]:
    """Split ``amount`` (at the minor unit) between ``shares``; ``quantities``: the scope's
    measures (messages, minutes, volume, calls, events) for fixed shares per unit."""
    quantities = quantities or {}
    total = Fraction(amount)
    positive = total >= 0
    left = total
    exact: list[tuple[Share, str, Fraction, str]] = []
    for s in shares:
        if s.fixed is None:
            continue
        want, how = _fixed(s.fixed, quantities, span)
        got = min(want, max(left, Fraction(0))) if positive else Fraction(0)
        if got != want:
            how += f", capped at {exact_text(got)} (what was left)"
        left -= got
        exact.append((s, "fixed", got, how))
    pct_total = Fraction(0)
    for s in shares:
        if s.percent is not None:
            x = left * Fraction(s.percent) / 100
            pct_total += x
            exact.append((s, "percent", x, f"{format(s.percent.normalize(), 'f')}% of {exact_text(left)}"))
    rem = [s for s in shares if s.remainder]
    if len(rem) > 1:
        raise ChargeError("only one party can take the remainder", span)
    if rem:
        exact.append((rem[0], "remainder", left - pct_total, f"{exact_text(left)} - {exact_text(pct_total)}"))
    elif pct_total != left:
        raise ChargeError(f"the shares leave {exact_text(left - pct_total)} {currency} to nobody: "
                          "the percentages must add up to 100% or a party must take the remainder", span)
    order = {id(s): i for i, s in enumerate(shares)}
    exact.sort(key=lambda e: order[id(e[0])])
    rounded = largest_remainder(amount, [e[2] for e in exact], currency)
    return [PartyShare(s.party, kind, x, r, how) for (s, kind, x, how), r in zip(exact, rounded, strict=True)]


def _fixed(price: Price, quantities: dict[str, Fraction], span) -> tuple[Fraction, str]:
    if price.unit in ("cycle", ""):
        return Fraction(price.amount), f"{price.amount} {price.currency} per cycle"
    measure = UNIT_MEASURE.get(price.unit)
    if measure is None:
        raise ChargeError(f"a fixed share per {price.unit} cannot be counted: use per message, minute, MB, call "
                          "or event", span)
    q = quantities.get(measure, Fraction(0)) * UNIT_FACTORS.get(measure, {}).get(price.unit, Fraction(1))
    return Fraction(price.amount) * q / price.per_count, f"{exact_text(q)} {price.unit} x {price.amount}"


def choose_tier(tiers: tuple[ShareTier, ...], amount: Decimal, span=None) -> ShareTier:
    chosen = None
    for t in tiers:
        if amount >= t.start.amount:
            chosen = t
    if chosen is None:
        raise ChargeError(f"{amount} is below the first tier ({tiers[0].start}): no split applies; start the "
                          "first tier from 0", span)
    return chosen


def parse_scope(charge: Charge) -> tuple[tuple[str, str], ...]:
    out = list(charge.applies_to)
    for text in charge.param("scope", ()) or ():
        words = str(text).split()
        if len(words) == 2:
            out.append((words[0], words[1]))
    return tuple(out)


def share_currency(charge: Charge, ctx: ChargeContext) -> str:
    """A revenue share's currency: that of its money (a tier's ``from``, a fixed share), else the
    agreement's."""
    found: list[str] = []
    for t in charge.param("tiers", ()) or ():
        found.append(t.start.currency)
        found += [sh.fixed.currency for sh in t.shares if sh.fixed is not None]
    found += [sh.fixed.currency for sh in charge.param("shares", ()) or () if sh.fixed is not None]
    if len(set(found)) > 1:
        raise ChargeError(f"'{charge.name}' mixes currencies ({', '.join(sorted(set(found)))}): a revenue share is "
                          "split in one currency; write its tiers and fixed shares in the same one", charge.span)
    return found[0] if found else ctx.agreement.currency


def shares_of(charge: Charge, ctx: ChargeContext) -> list[ShareResult]:
    """The split of a revenue share charge for the cycle, in the share's currency
    (:func:`share_currency`): the records' amounts in scope (gross) less, ``on net``, the
    refunds, credits and adjustments of the cycle against that traffic
    (:meth:`ChargeContext.adjustments_of`), amounts in other currencies converted at the fx rate
    in force on the cycle's last day, exactly; then rounded once to the minor unit and split.
    No traffic and nothing deducted: no split."""
    basis = charge.param("basis", "gross")
    scope = parse_scope(charge)
    currency = share_currency(charge, ctx)
    rows = ctx.usage_of(scope)
    day = ctx.last_day
    gross, fx_gross = ctx.total_in(charge, [(day, u.currency, u.amount) for u in rows], currency)
    deductions = ctx.adjustments_of(scope) if basis == "net" else []
    deducted, fx_net = ctx.total_in(charge, [(day, a.currency, a.amount) for a in deductions], currency)
    if not rows and not deductions:
        return []
    amount = ctx.round(gross - deducted, currency)
    tier = tier_shown = ""
    shares = charge.param("shares")
    if charge.param("tiers"):
        t = choose_tier(charge.param("tiers"), amount, charge.span)
        shares, tier, tier_shown = t.shares, f"from {t.start}", f"tier from {shown(t.start.amount, t.start.currency)}"
    if not shares:
        raise ChargeError(f"'{charge.name}' has no parties", charge.span)
    measures = {m: ctx.measure(m, scope) for m in ("messages", "minutes", "volume", "calls", "events")}
    parts = split(amount, shares, currency, measures, charge.span)
    return [ShareResult(charge.name, basis, currency, ctx.round(gross, currency), ctx.round(deducted, currency),
                        amount, tier, tuple(parts), exact_text(gross), exact_text(deducted),
                        tuple(deductions), tuple(fx_gross + fx_net), tier_shown)]


#: at most this many deductions are listed one by one in a share line's details
LISTED = 50


def _deduction(a: Adjustment) -> dict[str, str]:
    d = {"kind": a.kind, "amount": str(a.amount), "currency": a.currency, "scope": f"{a.direction} {a.service}"}
    for k in ("id", "refers_to", "description"):
        if getattr(a, k):
            d[k] = getattr(a, k)
    if a.day is not None:
        d["day"] = a.day.isoformat()
    return d


def _counted(deductions: tuple[Adjustment, ...]) -> str:
    """``2 refunds, 1 adjustment``."""
    by: dict[str, int] = {}
    for a in deductions:
        by[a.kind] = by.get(a.kind, 0) + 1
    return ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in sorted(by.items()))


def evaluate(charge: Charge, ctx: ChargeContext) -> list[ChargeLine]:
    lines = []
    scope = parse_scope(charge)
    for res in shares_of(charge, ctx):
        basis = res.basis
        if res.basis == "net":
            basis = f"net: {shown(res.gross, res.currency)} gross less {shown(res.deducted, res.currency)} " \
                    f"({_counted(res.deductions)})" if res.deductions else "net (nothing to deduct)"
        for p in res.shares:
            desc = f"{charge.name}: {p.party} {p.kind} share of {shown(res.amount, res.currency)} {basis}" + \
                   (f" ({res.tier_shown})" if res.tier else "")
            details = {"basis": res.basis, "gross": str(res.gross), "deducted": str(res.deducted),
                       "amount_split": str(res.amount), "tier": res.tier, "scope": scope_text(scope),
                       "exact_share": exact_text(p.exact), "how": p.how,
                       "method": "largest remainder at the minor unit, ties to the party listed first"}
            if res.basis == "net":
                details["gross_exact"] = res.gross_exact
                details["deducted_exact"] = res.deducted_exact
                details["deductions_count"] = len(res.deductions)
                details["deductions"] = [_deduction(a) for a in res.deductions[:LISTED]]
            if res.fx:
                details["fx"] = list(res.fx)
            lines.append(ctx.line(
                charge, description=desc, exact=p.amount, currency=res.currency, quantity=Decimal(1), unit="share",
                application=ctx.key(charge, f"party:{p.party}:{res.currency}", ctx.cycle_label),
                dimensions={"party": p.party, "share_kind": p.kind, "tier": res.tier, "basis": res.basis},
                details=details, stage="share"))
    return lines


@dataclass(frozen=True)
class PartyStatement:
    """What one party of revenue shares is owed, per currency, itemized."""

    party: str
    currency: str
    lines: tuple[ChargeLine, ...] = field(default=())

    @property
    def total(self) -> Decimal:
        return exact_sum(ln.amount for ln in self.lines)


def party_statements(lines) -> dict[tuple[str, str], PartyStatement]:
    """Revenue share lines gathered per (party, currency): the settlement statement of every
    party (``us`` included: what we keep)."""
    acc: dict[tuple[str, str], list[ChargeLine]] = {}
    for ln in lines:
        if ln.kind != "revenue_share":
            continue
        acc.setdefault((ln.dimensions["party"], ln.currency), []).append(ln)
    return {k: PartyStatement(k[0], k[1], tuple(v)) for k, v in sorted(acc.items())}
