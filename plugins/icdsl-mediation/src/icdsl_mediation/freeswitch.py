"""FreeSWITCH ``mod_cdr_csv`` files written with the ``example`` template.

One call per line, no header, every value quoted, 15 columns::

    caller_id_name, caller_id_number, destination_number, context, start_stamp,
    answer_stamp, end_stamp, duration, billsec, hangup_cause, uuid, bleg_uuid,
    accountcode, read_codec, write_codec

Stamps are the switch's local time (``YYYY-MM-DD HH:MM:SS``); ``answer_stamp`` is empty for an
unanswered call.

Mapping: id = uuid; a_number = caller_id_number; b_number = destination_number; start =
answer_stamp; duration_s = billsec (``duration``, which includes the ring time, is kept as
``total_s``, never billed).

Answered: ``answer_stamp`` is set and billsec > 0, whatever the hangup cause. The hangup cause
says how a call *ended*, not whether it was answered: an answered call may end with
``MEDIA_TIMEOUT``, ``ALLOTTED_TIMEOUT`` or ``NORMAL_UNSPECIFIED`` and is billable, while the
FreeSWITCH documentation's own sample has ``NORMAL_CLEARING`` calls that were never answered
(empty answer_stamp, billsec 0). Everything else is ``unanswered``. The ``answered`` option
(comma-separated causes) additionally restricts which hangup causes are rated.
"""

from __future__ import annotations

import re
from typing import Any

from icdsl_mediation.cdr import CdrReader, is_timestamp, whole

COLUMNS = (
    "caller_id_name", "caller_id_number", "destination_number", "context", "start_stamp",
    "answer_stamp", "end_stamp", "duration", "billsec", "hangup_cause", "uuid", "bleg_uuid",
    "accountcode", "read_codec", "write_codec",
)
_CAUSE = re.compile(r"[A-Z][A-Z0-9_]*")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class FreeswitchCsv(CdrReader):
    name = "freeswitch_csv"
    description = "FreeSWITCH mod_cdr_csv, 'example' template: 15 quoted columns, no header, local times"
    format_name = "FreeSWITCH mod_cdr_csv 'example'"
    field_text = "15"
    sources = {"id": "uuid", "b_number": "destination_number", "start": "answer_stamp", "duration_s": "billsec"}
    columns = COLUMNS
    field_counts = (15,)
    answered_default = ()  # any hangup cause: answered means an answer_stamp and billsec > 0
    partner_fields = ("accountcode", "context", "caller_id_name")
    disposition_label = "hangup_cause"

    def fields(self, values: list[str]) -> dict[str, str]:
        f = dict(zip(COLUMNS, values, strict=True))
        f["_id"] = f["uuid"].strip()
        return f

    def record(self, f: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
        cause = f["hangup_cause"].strip() or "(empty)"
        if self.answered and cause.upper() not in self.answered:
            return None, f"hangup_cause {cause} is not one the 'answered' option lists"
        if not f["answer_stamp"].strip():
            return None, f"hangup_cause {cause}, no answer_stamp: the call was not answered"
        if whole(f["billsec"]) == 0:
            return None, f"hangup_cause {cause}, answered but billsec 0: no billable second"
        return {
            "id": f["_id"] or None,
            "a_number": f["caller_id_number"].strip() or None,
            "b_number": self.number(f["destination_number"]),
            "start": f["answer_stamp"],
            "duration_s": f["billsec"],
            "total_s": whole(f["duration"]),
            "disposition": f["hangup_cause"].strip(),
            "accountcode": f["accountcode"].strip() or None,
            "context": f["context"].strip() or None,
            "cdr_format": "freeswitch",
        }, None

    @classmethod
    def sniff(cls, values: list[str]) -> bool:
        return (
            len(values) == 15
            and is_timestamp(values[4])
            and whole(values[7]) is not None
            and whole(values[8]) is not None
            and bool(_CAUSE.fullmatch(values[9].strip()))
            and bool(_UUID.fullmatch(values[10].strip()))
        )
