"""The core's reject reasons: code -> what it means, for intake and rating rejects.

Plain data at the bottom of the house, so that the plugin manager can merge the plugins' own
reasons (``icdsl_reject_reasons``) with these without importing the rating package, and the
checker can name them all. :mod:`icdsl.rating.rejects` re-exports it with the rejects' table.
"""

from __future__ import annotations

#: code -> one-line explanation. Intake sets the first ten, the billing store's intake
#: conflicting_duplicate, rating (icdsl.rating.result) the others.
REJECT_REASONS: dict[str, str] = {
    "missing_field": (
        "a required field is empty: id, partner, direction, service, start; "
        "b_number for voice and sms; duration_s for voice; to_partner (another partner than the one it "
        "came from) for a transit record of a file that names where records went"
    ),
    "partner_mismatch": (
        "the file names both the record's partner and the partner it came from (from_partner), and they "
        "differ: which partner to bill is not known"
    ),
    "bad_timestamp": (
        "start is not a timestamp (ISO 8601, the layout's format or epoch seconds), "
        "or names a local time that does not exist in the layout's time zone (DST gap)"
    ),
    "bad_duration": "duration_s is not a whole number of seconds",
    "negative_duration": "duration_s is negative",
    "invalid_number": (
        "b_number of a call or a message (voice, sms) is not a dialable number once normalized to "
        "E.164: characters other than digits, a national number without the layout's country, fewer "
        "than 3 or more than 15 digits (other services keep what they carry, an APN for instance)"
    ),
    "bad_volume": "volume is not a whole, non-negative number of bytes",
    "bad_units": "units is not a whole, non-negative number",
    "malformed_row": (
        "the row cannot be read: a different number of fields than the header, or bytes that are not UTF-8"
    ),
    "duplicate_id": (
        "the id was already seen earlier in the run; the first occurrence is kept "
        "(counted as a duplicate, not as a reject)"
    ),
    # the billing store's intake (icdsl.billing.conflicts), not icdsl rate: it compares a
    # repeated id with the version ingested first, in this file or an earlier batch
    "conflicting_duplicate": (
        "the id was already ingested with other content (a duration, a number, a start changed): "
        "the earlier version stays billed; both are kept for review ('icdsl conflicts')"
    ),
    "unknown_partner": "the partner is not declared in the rules",
    "no_agreement": "no agreement with the partner prices the record's direction and service",
    "outside_agreement_period": "the record's start is outside the period of every agreement with the partner",
    "refiled": (
        "the calling number (a_number) is outside the zone the route is declared for, or empty, and the "
        "agreement says `refile origin ZONE reject`"
    ),
    "no_rate": "no rate matches the called number (longest prefix) on the record's date",
    "zero_duration": "a zero-second call, rejected because the service says `zero_duration reject`",
    "amount_overflow": "the rounded amount does not fit the amount column (18 digits)",
}
