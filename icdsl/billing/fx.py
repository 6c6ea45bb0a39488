"""Exchange rates for invoices: the store's ``fx_rates`` rows as an :class:`FxTable` (the
lookup itself is pure: :mod:`icdsl.cycle.fx`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl.billing import models as M
from icdsl.cycle import fx as _fx
from icdsl.cycle.fx import DEFAULT_INVERSE_ROUNDING, FxQuote, FxRow
from icdsl.plan.model import Plan

_RATES = select(M.FxRate)  # built once: every cycle reads the rates


class FxTable(_fx.FxTable):
    """The store's rates by source and pair (load once per transaction)."""

    @classmethod
    def load(cls, s: Session, plan: Plan | None = None) -> FxTable:
        return cls.of_plan(s.scalars(_RATES), plan)


__all__ = ["DEFAULT_INVERSE_ROUNDING", "FxQuote", "FxRow", "FxTable"]
