"""Routing economics on plain data: rates by origin, least-cost routing and margins.

No database and no UI: plans (supplier and sell decks) and rated records in, routing tables
and margins out. ``icdsl.billing`` reads the store's side.
"""
