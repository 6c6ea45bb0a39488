"""Revenue assurance as data: what the checks read (:class:`Inputs`), how strict they are
(:class:`Policy`) and what they find (:class:`Finding`).

Plain values only (dates, Decimals, text, NumPy arrays of counts): the store's side
(:mod:`icdsl.billing.assurance`) fills the inputs; the command line, the TUI's dashboard and
cycle validation show the findings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from icdsl.inventory import InventoryItem
from icdsl.plan.model import Plan

SEVERITIES = ("error", "warning", "info")

#: code -> (default severity, what it means). Stable: scripts and the TUI key on them.
CODES: dict[str, tuple[str, str]] = {
    "unbilled_item_kind": ("warning", "inventory items of a kind that no charge in force bills"),
    "unbilled_item": ("warning", "an inventory item of a billed kind that no charge has billed yet"),
    "billed_after_termination": ("error", "a recurring fee billed for days after the item's termination"),
    "agreement_expiring": ("warning", "an agreement ends within the notice window and nothing follows it"),
    "commitment_expiring": ("warning", "a commitment ends within the notice window and nothing renews it"),
    "agreement_expired_traffic": ("error", "an agreement has ended but the partner's traffic still flows"),
    "commitment_expired_traffic": ("warning", "a commitment has ended but the partner's traffic still flows"),
    "traffic_no_agreement": ("error", "records rejected because no agreement in force prices them"),
    "traffic_unknown_partner": ("error", "records of a partner nobody declared"),
    "below_cost": ("warning", "a destination sold for less than what the cheapest supplier charges us for it"),
    "traffic_missing_day": ("warning", "a day without traffic from a partner that usually sends it"),
    "traffic_drop": ("warning", "far less traffic to a destination than the partner's baseline"),
    "traffic_spike": ("warning", "far more traffic to a destination than the partner's baseline"),
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing revenue assurance found. ``subject``: what it is about (an item, an agreement,
    a service or destination); ``day``/``until``: the day or run of days concerned (local
    dates, ``until`` included); ``count``: records, items or days; ``amount``: money, exact, in
    ``currency``; ``expected``/``actual``/``deviation``: a traffic check's baseline, what came
    and how far apart in MADs; ``action``: what to do."""

    code: str
    severity: str
    partner: str
    subject: str
    message: str
    action: str
    period: str = ""
    day: date | None = None
    until: date | None = None
    count: int | None = None
    amount: Decimal | None = None
    currency: str | None = None
    expected: int | None = None
    actual: int | None = None
    deviation: Decimal | None = None
    details: Mapping[str, Any] | None = None

    def __str__(self) -> str:
        when = ""
        if self.day is not None:
            when = f" {self.day}" + (f"..{self.until}" if self.until is not None and self.until != self.day else "")
        return f"{self.severity}[{self.code}] {self.partner} {self.subject}{when}: {self.message} -> {self.action}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: dates ISO, money and deviations as decimal text (exact)."""
        return {
            "code": self.code, "severity": self.severity, "partner": self.partner, "subject": self.subject,
            "period": self.period, "day": _iso(self.day), "until": _iso(self.until), "count": self.count,
            "amount": None if self.amount is None else str(self.amount), "currency": self.currency,
            "expected": self.expected, "actual": self.actual,
            "deviation": None if self.deviation is None else str(self.deviation),
            "message": self.message, "action": self.action, "details": _plain(self.details),
        }


def _iso(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, date):
        return v.isoformat()
    return v


@dataclass(frozen=True, slots=True)
class Policy:
    """How strict the checks are.

    ``within``: days ahead in which an ending agreement or commitment is reported (from the
    day after the period). Baseline (:mod:`icdsl.assure.baseline`): ``history_days`` of
    history before the period; a weekday needs ``min_weeks`` observations; a series is
    judged only when its expected daily records reach ``min_daily``; a day is a drop (spike)
    when it is ``threshold`` MADs (scaled by 1.4826, at least the Poisson noise of the
    expected count) below (above) the weekday's median **and** at least ``min_drop``
    (``min_spike``) below (above) it relatively. ``own_prefixes``: our own network's number
    prefixes (inbound traffic to them terminates with us and costs no supplier); inbound
    services are compared with suppliers' prices only when they are given; transit always."""

    within: int = 90
    history_days: int = 364
    min_weeks: int = 4
    min_daily: int = 20
    threshold: Decimal = Decimal(4)
    min_drop: Decimal = Decimal("0.3")
    min_spike: Decimal = Decimal("0.5")
    active_share: Decimal = Decimal("0.75")
    own_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BilledFee:
    """One application of a recurring fee for an inventory item as billed so far (the net of
    its line and any corrections): ``period_start``..``period_end`` (included) is the fee's
    period; ``full``: the fee for the whole period (unit price x quantity)."""

    partner: str
    charge: str
    agreement: str
    item_id: str
    item_kind: str
    period_start: date
    period_end: date
    amount: Decimal
    currency: str
    full: Decimal | None
    prorate: str
    days_in_period: int | None
    application: str
    cycles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Unplaced:
    """Records of a partner that no agreement in force prices (rejected ``reason``) on a day."""

    partner: str
    direction: str
    service: str
    reason: str
    day: date
    records: int
    samples: tuple[str, ...] = ()


@dataclass
class Series:
    """Records per local day of several series (``keys``: (partner, direction, service,
    destination)), as a matrix ``counts[series, day]`` from ``first`` (history, then the
    period). ``amounts``: the period's exact amount and currency per series (a drop's money
    is estimated at the series' average price in the period)."""

    keys: list[tuple[str, str, str, str]]
    first: date
    counts: np.ndarray
    amounts: dict[tuple[str, str, str, str], tuple[Decimal, int, str]] = field(default_factory=dict)


@dataclass
class Inputs:
    """What the checks read for ``partners`` over a period (``start``..``end`` exclusive,
    local dates). ``as_of``: the day the notice window counts from (the day after the
    period); ``items``: current inventory; ``fees``: recurring fees billed per item;
    ``cycles``: the periods of each partner's cycles run so far (label -> (start, end
    exclusive)); ``unplaced``: records rejected for want of an agreement; ``unknown``: records
    of undeclared partners by day; ``ingested``: records ingested per partner and day of the
    period (intake statistics); ``rated``: rated records per (partner, direction, service) and
    day; ``series``: the daily records of every destination, history then period;
    ``volumes``: billed units per (partner, direction, service, destination) in the period;
    ``last_data_day``: the latest day any traffic was ingested for (later days are not judged)."""

    plan: Plan
    period: str
    start: date
    end: date
    partners: Sequence[str]
    as_of: date | None = None
    items: Sequence[InventoryItem] = ()
    fees: Sequence[BilledFee] = ()
    cycles: Mapping[str, Mapping[str, tuple[date, date]]] = field(default_factory=dict)
    unplaced: Sequence[Unplaced] = ()
    unknown: Mapping[str, Mapping[date, int]] = field(default_factory=dict)
    ingested: Mapping[str, Mapping[date, int]] = field(default_factory=dict)
    rated: Mapping[tuple[str, str, str], Mapping[date, int]] = field(default_factory=dict)
    series: Series | None = None
    volumes: Mapping[tuple[str, str, str, str], int] = field(default_factory=dict)
    last_data_day: date | None = None

    @property
    def last(self) -> date:
        return self.end - timedelta(days=1)


def action(code: str) -> str:
    """The default "what to do" of a code (each check may say more)."""
    return ACTIONS[code]


ACTIONS = {
    "unbilled_item_kind": "add a charge for this kind to the partner's agreement (e.g. `recurring ... per inventory "
                          "KIND`), or correct the item's kind in the inventory",
    "unbilled_item": "run the partner's cycle again (`icdsl cycle run`), or check the item's dates and the charge's "
                     "agreement period",
    "billed_after_termination": "run the partner's next cycle (it corrects the fee) or rerate the billed period "
                                "(`icdsl rerate`); if the item is still in service, correct its termination date",
    "agreement_expiring": "renew the agreement (load a new version) or plan the end of the traffic",
    "commitment_expiring": "negotiate the renewal of the commitment, or accept the traffic without it",
    "agreement_expired_traffic": "load the renewed agreement (then `icdsl rejects resubmit`), or stop the traffic",
    "commitment_expired_traffic": "add the commitment to the agreement now in force, or record that it lapsed",
    "traffic_no_agreement": "add or extend an agreement pricing this direction and service, then resubmit the "
                            "records (`icdsl rejects resubmit`)",
    "traffic_unknown_partner": "declare the partner and its agreement, then resubmit its records "
                               "(`icdsl rejects resubmit`)",
    "below_cost": "raise the selling price, route the destination through a cheaper supplier, or accept the loss",
    "traffic_missing_day": "ask the mediation system for the day's files (then `icdsl ingest`), or confirm an outage",
    "traffic_drop": "check the route and the partner's files for the day(s); confirm with the partner",
    "traffic_spike": "check for fraud or a routing change; confirm the traffic with the partner",
}
