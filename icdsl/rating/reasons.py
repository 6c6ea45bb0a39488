"""Why a record was not rated: stable reason codes with a one-line explanation each."""

REJECT_CODES: dict[str, str] = {
    "malformed_row": "the row could not be read (wrong number of fields, bad encoding)",
    "missing_field": "a required field is empty",
    "bad_timestamp": "the start time is not a valid timestamp",
    "negative_duration": "the duration is negative",
    "bad_duration": "the duration is not a whole number of seconds",
    "bad_volume": "the volume is not a whole number of bytes",
    "invalid_number": "the called number is not a dialable number",
    "duplicate_id": "a record with the same id was already read",
    "unknown_partner": "no partner with this code is declared",
    "no_agreement": "the partner has no agreement for this direction and service",
    "outside_agreement_period": "no agreement for this direction and service is in force on that date",
    "no_rate": "no destination prefix matches the number, or there is no price for the band",
    "zero_duration": "the agreement rejects zero-duration records",
}
