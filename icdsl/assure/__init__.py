"""Revenue assurance on plain data: leakage checks and expected versus billed traffic.

No database and no UI: inventory, charge lines, agreements in force and traffic counts in,
findings (each saying what to do) out. ``icdsl.billing`` reads the store's side.
"""
