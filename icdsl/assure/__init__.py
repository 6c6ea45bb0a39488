"""Revenue assurance on plain data: leakage checks and expected versus billed traffic.

No database and no UI: inventory, charge lines, agreements in force and traffic counts in
(:class:`~icdsl.assure.model.Inputs`), findings (each saying what to do) out
(:class:`~icdsl.assure.model.Finding`). ``icdsl.billing.assurance`` reads the store's side.

======================  =========================================================
module                  checks
======================  =========================================================
``leakage``             inventory no charge bills, fees after termination, agreements and
                        commitments ending or ended with traffic, traffic no agreement prices
``pricing``             destinations sold below the cheapest supplier's price
``baseline``            expected versus billed traffic per day (median and MAD by weekday)
======================  =========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from icdsl.assure import baseline, leakage, pricing
from icdsl.assure.model import CODES, SEVERITIES, BilledFee, Finding, Inputs, Policy, Series, Unplaced

Check = Callable[[Inputs, Policy], list[Finding]]

#: name -> check, in the order they run
CHECKS: dict[str, Check] = {
    "inventory": leakage.inventory,
    "termination": leakage.termination,
    "expiry": leakage.expiry,
    "no_agreement": leakage.no_agreement,
    "below_cost": pricing.below_cost,
    "traffic": baseline.traffic,
}


def check(inputs: Inputs, policy: Policy | None = None, only: Sequence[str] | None = None) -> list[Finding]:
    """Every check (or those named in ``only``) over ``inputs``; findings sorted by severity,
    partner, code, day and subject."""
    policy = policy or Policy()
    out: list[Finding] = []
    for name, fn in CHECKS.items():
        if only is None or name in only:
            out += fn(inputs, policy)
    out.sort(key=lambda f: (SEVERITIES.index(f.severity), f.partner, f.code, f.day or inputs.start, f.subject))
    return out


__all__ = ["CHECKS", "CODES", "BilledFee", "Finding", "Inputs", "Policy", "Series", "Unplaced", "check"]
