"""icdsl-slices: 5G network-slice charges for icdsl.

An icdsl plugin (entry point group ``icdsl``, name ``slices``) that registers one charge type,
``network_slice``: a price per slice-hour for each slice class (eMBB, URLLC, mMTC), with an SLA
credit when the availability measured from downtime records falls below the committed level::

    charge network_slice "5G slices" {
      embb:  { price: 0.50 EUR per hour  availability: 99.9%  credit: 10% }
      urllc: { price: 2.00 EUR per hour  availability: 99.99% credit: 25% }
      mmtc:  0.02 EUR per hour
    }, stream fees

See README.md for the records it reads and the arithmetic.
"""

from __future__ import annotations

from icdsl.hookspecs import hookimpl

ICDSL_HOOK_API = 1
__version__ = "0.1.0"


@hookimpl
def icdsl_charge_types():
    from icdsl_slices.charge import NetworkSlice

    return [NetworkSlice]
