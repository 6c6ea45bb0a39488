"""Charges: what agreements bill besides the per-record prices of their services.

- ``base`` (check and compile) and ``evaluate`` (evaluation) are the contract every charge type
  implements, built-in or a plugin's (``icdsl_charge_types``); ``builtin`` registers the
  built-in types.
- Per-record charges (``surcharge``) are evaluated by both rating executors on every rated
  record (``conditions`` gives conditions one semantics for a record and for columns).
- Cycle-level charges (``recurring``, ``fees``, ``tiers``, ``commitment``, ``share``) are
  evaluated by ``evaluate.evaluate_cycle`` from a ``context.ChargeContext`` into
  ``lines.ChargeLine`` s, each with an idempotency key (``keys``); ``periods`` holds the
  conventions of days; ``netting`` the settlement statements.

Data flows: rated records -> ``context.usage_from_rated`` -> ``ChargeContext`` (+ inventory,
event records, what was billed before) -> ``evaluate_cycle`` -> charge lines -> billing.
``docs/charges.md`` states the conventions of every charge.
"""
