"""FreeSWITCH ``mod_cdr_csv`` files written with the ``example`` template.

One call per line, no header, every value quoted, 15 columns::

    caller_id_name, caller_id_number, destination_number, context, start_stamp,
    answer_stamp, end_stamp, duration, billsec, hangup_cause, uuid, bleg_uuid,
    accountcode, read_codec, write_codec

Stamps are the switch's local time (``YYYY-MM-DD HH:MM:SS``); ``answer_stamp`` is empty for an
unanswered call.

Mapping: id = uuid; a_number = caller_id_number; b_number = destination_number; start =
answer_stamp (start_stamp for an unanswered call); duration_s = billsec (``duration``, which
includes the ring time, is kept as ``total_s``, never billed); rated only when hangup_cause is
NORMAL_CLEARING and billsec > 0, else ``unanswered``.
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
    answered_default = ("NORMAL_CLEARING",)
    partner_fields = ("accountcode", "context", "caller_id_name")
    disposition_label = "hangup_cause"

    def fields(self, values: list[str]) -> dict[str, str]:
        f = dict(zip(COLUMNS, values, strict=True))
        f["_id"] = f["uuid"].strip()
        return f

    def record(self, f: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
        unanswered = self.is_answered(f["hangup_cause"], f["billsec"])
        if unanswered is not None:
            return None, unanswered
        return {
            "id": f["_id"] or None,
            "a_number": f["caller_id_number"].strip() or None,
            "b_number": self.number(f["destination_number"]),
            "start": f["answer_stamp"].strip() or f["start_stamp"],
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
