"""The mediation readers on real CDR lines (Asterisk's test suite, FreeSWITCH's documentation)
and on files written in the same formats, rated through both icdsl executors."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import icdsl_mediation
import pytest
from icdsl_mediation.asterisk import AsteriskCsv, trunk_of
from icdsl_mediation.freeswitch import FreeswitchCsv

from icdsl.plan.model import RecordLayout
from icdsl.plugins import reject_reasons
from icdsl.rating.intake import IntakeError
from icdsl.readers import choose_reader, open_reader
from icdsl.testing import PluginKit

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ASTERISK_REAL = FIXTURES / "asterisk_master_csv.txt"  # asterisk/testsuite self_test/Master.csv
FREESWITCH_REAL = FIXTURES / "freeswitch_cdr_csv.txt"  # FreeSWITCH docs, mod_cdr_csv example
ASTERISK = FIXTURES / "asterisk_trunk_calls.csv"
FREESWITCH = FIXTURES / "freeswitch_calls.csv"
MADRID = {"timezone": "Europe/Madrid", "country": "ES"}


@pytest.fixture(scope="module")
def kit():
    return PluginKit(icdsl_mediation)


def lines(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8", "backslashreplace").splitlines()


def rejects_by_row(rejects) -> dict[int, tuple[str, str]]:
    return {r["row"]: (r["reason"], r["detail"]) for r in rejects.to_pylist()}


# --------------------------------------------------------------------------- the plugin itself


def test_plugin_loads_cleanly_and_adds_its_reason(kit):
    from icdsl.plugins import record_readers

    assert icdsl_mediation.ICDSL_HOOK_API == 1
    assert kit.pm.problems == []
    assert {"asterisk_csv", "freeswitch_csv", "table"} <= set(record_readers(kit.pm))
    reasons = reject_reasons(kit.pm)
    assert "unanswered" in reasons and "billsec" in reasons["unanswered"]
    assert "missing_field" in reasons  # the core's are still there


@pytest.mark.parametrize(("path", "reader"), [
    (ASTERISK_REAL, "asterisk_csv"), (ASTERISK, "asterisk_csv"),
    (FREESWITCH_REAL, "freeswitch_csv"), (FREESWITCH, "freeswitch_csv"),
])
def test_files_are_claimed_by_content(kit, path, reader):
    assert choose_reader(path, pm=kit.pm).name == reader


def test_a_csv_with_a_header_stays_with_the_table_reader(kit, tmp_path):
    p = tmp_path / "Master.csv"
    p.write_text("id,partner,direction,service,b_number,start,duration_s\n1,ORFR,outbound,voice,33612345678,"
                 "2026-03-04T09:15:00Z,61\n")
    assert choose_reader(p, pm=kit.pm).name == "table"


# --------------------------------------------------------------------------- real lines


def test_real_asterisk_lines(kit):
    records, rejects, counts = kit.read(ASTERISK_REAL, options={"timezone": "Europe/Madrid", "partner": "ORFR"})
    # both calls of Asterisk's self-test dial extension "1": not a dialable number
    assert (counts.read, counts.passed, counts.rejected) == (2, 0, 2)
    got = rejects.to_pylist()
    assert [r["id"] for r in got] == ["1270167992.0", "1270168442.0"]
    assert {r["reason"] for r in got} == {"invalid_number"}
    assert got[0]["detail"] == "dst (b_number) '1' has 1 digit, fewer than 3"
    assert [r["raw"] for r in got] == lines(ASTERISK_REAL)
    assert [r["row"] for r in got] == [1, 2]


def test_real_asterisk_lines_rated_when_the_extension_is_a_number(kit, tmp_path):
    p = tmp_path / "Master.csv"
    p.write_text("\n".join(line.replace('"","","1","default"', '"","2001","34688886392","default"')
                           for line in lines(ASTERISK_REAL)) + "\n")
    records, rejects, counts = kit.read(p, options={"timezone": "Europe/Madrid", "partner": "ORFR"})
    assert counts.passed == 2, rejects.to_pylist()
    first = records.to_pylist()[0]
    assert first["id"] == "1270167992.0"
    assert first["duration_s"] == 7 and first["total_s"] == 7  # billsec, duration
    # "2010-04-02 00:26:32" in Madrid (CEST, UTC+2) is 2010-04-01 22:26:32 UTC
    assert first["start"] == datetime(2010, 4, 1, 22, 26, 32, tzinfo=UTC)
    assert first["a_number"] == "2001" and first["disposition"] == "ANSWERED"


def test_real_freeswitch_lines_are_unanswered(kit):
    records, rejects, counts = kit.read(FREESWITCH_REAL, options={"timezone": "Europe/Madrid", "partner": "ORFR"})
    assert (counts.read, counts.passed, counts.rejected) == (3, 0, 3)
    assert counts.by_reason == {"unanswered": 3}
    got = rejects.to_pylist()
    # NORMAL_CLEARING says how the call ended; no answer_stamp (and billsec 0): never answered
    assert got[0]["detail"] == "hangup_cause NORMAL_CLEARING, no answer_stamp: the call was not answered"
    assert [r["id"] for r in got] == ["a5c9f6c0-e752-11e3-8bfb-65b6c3cdac7d", "e29ff0ae-e752-11e3-8bff-65b6c3cdac7d",
                                      "e38cb5b0-e752-11e3-8c0b-65b6c3cdac7d"]
    assert [r["raw"] for r in got] == lines(FREESWITCH_REAL)


def answered(line: str, billsec: int) -> str:
    """A real FreeSWITCH line as if the call had been answered (answer = start, billsec > 0)."""
    fields = line.split('","')
    fields[5] = fields[4]
    fields[7] = fields[8] = str(billsec)
    return '","'.join(fields)


@pytest.mark.parametrize(("options", "expected"), [
    ({}, ["34688886392", "34688886392", "invalid_number"]),
    ({"access_code": "0"}, ["34688886392", "34688886392", "34688886392"]),
])
def test_the_three_spellings_of_one_number(kit, tmp_path, options, expected):
    p = tmp_path / "Master.csv"
    p.write_text("\n".join(answered(line, 20) for line in lines(FREESWITCH_REAL)) + "\n")
    records, rejects, counts = kit.read(p, options={"timezone": "Europe/Madrid", "partner": "ORFR", **options})
    numbers = iter(records.column("b_number").to_pylist())
    reasons = rejects_by_row(rejects)
    got = [reasons[row][0] if row in reasons else next(numbers) for row in (1, 2, 3)]
    assert got == expected
    if "invalid_number" in expected:
        assert "00034688886392" in reasons[3][1] and "followed by 0" in reasons[3][1]


# --------------------------------------------------------------------------- the formats in full


def test_asterisk_trunk_calls(kit):
    options = {**MADRID, "partner_field": "trunk", "partner_map": "orange=ORFR,bt-gb=BTGB"}
    records, rejects, counts = kit.read(ASTERISK, options=options)
    assert str(counts) == ("read 12, passed 3, rejected 8, duplicates 1 (bad_timestamp 1, duplicate_id 1, "
                           "invalid_number 1, malformed_row 3, unanswered 3)")
    rows = records.to_pylist()
    assert [r["id"] for r in rows] == ["1772612095.11", "1772614800.12", "1772629200.20"]
    assert [r["partner"] for r in rows] == ["ORFR", "ORFR", "BTGB"]
    assert [r["b_number"] for r in rows] == ["34688886392", "33612345678", "442071234567"]
    # billsec, never duration (which includes the ring time)
    assert [(r["duration_s"], r["total_s"]) for r in rows] == [(61, 66), (125, 132), (600, 610)]
    # start = answer time, local to Madrid (CET, UTC+1 on 4 March)
    assert rows[0]["start"] == datetime(2026, 3, 4, 8, 15, 0, tzinfo=UTC)
    assert rows[0]["a_number"] == "2001" and rows[0]["cdr_format"] == "asterisk"
    rej = rejects_by_row(rejects)
    assert rej[3] == ("unanswered", "disposition NO ANSWER: the call was not answered")
    assert rej[4] == ("unanswered", "disposition BUSY: the call was not answered")
    assert rej[5] == ("unanswered", "disposition ANSWERED but billsec 0: no billable second")
    assert rej[6] == ("malformed_row", "6 fields; a line of Asterisk Master.csv has 16 to 21")
    assert rej[7] == ("duplicate_id", "id '1772612095.11' was already seen earlier in the file")
    assert rej[8] == ("malformed_row", "bytes that are not UTF-8 at column 44")
    assert rej[9] == ("bad_timestamp", "answer (start) '2026-03-29 02:30:00' does not exist in Europe/Madrid (DST gap)")
    assert rej[10][0] == "invalid_number"
    assert rej[11] == ("malformed_row", "the line is not valid CSV (unbalanced quotes)")
    raw = {r["row"]: r["raw"] for r in rejects.to_pylist()}
    assert raw[8].startswith('"ORFR","2009","688886392","from-internal","\\xff\\xfeReception"')
    assert raw[11] == lines(ASTERISK)[10]


def test_freeswitch_calls(kit):
    records, rejects, counts = kit.read(FREESWITCH, options={**MADRID, "partner_field": "accountcode"})
    assert counts.by_reason == {"invalid_number": 1, "unanswered": 2, "malformed_row": 1, "bad_duration": 1}
    assert records.column("b_number").to_pylist() == ["34688886392"] * 3  # 0034..., +34..., national 6...
    assert records.column("duration_s").to_pylist() == [42, 30, 61]
    rej = rejects_by_row(rejects)
    assert rej[4] == ("unanswered", "hangup_cause USER_BUSY, no answer_stamp: the call was not answered")
    assert rej[5] == ("unanswered", "hangup_cause NO_ANSWER, no answer_stamp: the call was not answered")
    assert rej[7] == ("malformed_row", "14 fields; a line of FreeSWITCH mod_cdr_csv 'example' has 15")
    assert rej[8] == ("bad_duration", "billsec (duration_s) '3O' is not a number of seconds")


def fs_line(cause: str, answer: str, billsec: int, uuid_tail: str) -> str:
    return (f'"9010","9010","0034688886392","public","2026-03-04 09:20:00","{answer}","2026-03-04 09:30:00",'
            f'"{billsec + 5}","{billsec}","{cause}","0b8f0a4e-17a5-11f1-8c2a-5b3c9d2e{uuid_tail}","","ORFR",'
            '"PCMA","PCMA"')


def test_freeswitch_answered_means_an_answer_stamp_whatever_the_hangup_cause(kit, tmp_path):
    p = tmp_path / "Master.csv"
    p.write_text("\n".join([
        fs_line("MEDIA_TIMEOUT", "2026-03-04 09:20:05", 595, "0001"),  # answered, then RTP stopped: billable
        fs_line("ALLOTTED_TIMEOUT", "2026-03-04 09:20:05", 300, "0002"),  # answered, hit the call limit
        fs_line("NORMAL_CLEARING", "2026-03-04 09:20:05", 0, "0003"),  # answered, hung up at once
        fs_line("ORIGINATOR_CANCEL", "", 0, "0004"),  # the caller gave up while ringing
    ]) + "\n")
    records, rejects, counts = kit.read(p, options={**MADRID, "partner": "ORFR"})
    assert records.column("duration_s").to_pylist() == [595, 300]
    assert records.column("disposition").to_pylist() == ["MEDIA_TIMEOUT", "ALLOTTED_TIMEOUT"]
    assert records.column("start").to_pylist()[0] == datetime(2026, 3, 4, 8, 20, 5, tzinfo=UTC)  # answer_stamp
    assert rejects_by_row(rejects) == {
        3: ("unanswered", "hangup_cause NORMAL_CLEARING, answered but billsec 0: no billable second"),
        4: ("unanswered", "hangup_cause ORIGINATOR_CANCEL, no answer_stamp: the call was not answered"),
    }
    # the answered option restricts the causes that are rated
    _, rejects, _ = kit.read(p, options={**MADRID, "partner": "ORFR", "answered": "NORMAL_CLEARING"})
    assert rejects_by_row(rejects)[1] == ("unanswered", "hangup_cause MEDIA_TIMEOUT is not one the 'answered' "
                                                        "option lists")


def test_answered_option_widens_what_is_rated(kit):
    _, _, counts = kit.read(FREESWITCH, options={**MADRID, "partner": "ORFR",
                                                 "answered": "NORMAL_CLEARING,USER_BUSY"})
    assert counts.by_reason["unanswered"] == 2  # USER_BUSY has billsec 0: still nothing to bill


def test_batches_and_duplicates_across_batches(kit):
    rd = open_reader(ASTERISK, reader="asterisk_csv", options={**MADRID, "partner": "ORFR"}, pm=kit.pm,
                     batch_rows=4)
    batches = list(rd.batches())
    assert [b.first_row for b in batches] == [1, 5, 9]
    assert [b.counts.read for b in batches] == [4, 4, 4]
    assert rd.counts.duplicates == 1 and rd.counts.reconciles()


def test_gzip_files(kit, tmp_path):
    p = tmp_path / "Master.csv.gz"
    p.write_bytes(gzip.compress(ASTERISK.read_bytes()))
    assert choose_reader(p, pm=kit.pm).name == "asterisk_csv"
    _, _, counts = kit.read(p, options={**MADRID, "partner": "ORFR"})
    assert counts.passed == 3


def test_layout_gives_time_zone_country_and_partner(kit):
    layout = RecordLayout("switch", constants=(("partner", "ORFR"), ("route_class", "standard")),
                          timezone="Europe/Madrid", country="ES")
    records, _, counts = kit.read(ASTERISK, layout=layout)
    assert counts.passed == 3
    assert set(records.column("partner").to_pylist()) == {"ORFR"}
    assert set(records.column("route_class").to_pylist()) == {"standard"}


@pytest.mark.parametrize(("options", "message"), [
    ({"partner": "ORFR"}, "give its time zone"),
    ({"timezone": "Europe/Madrid"}, "does not say which partner"),
    ({"timezone": "Europe/Madird", "partner": "ORFR"}, "unknown time zone"),
    ({"timezone": "UTC", "partner_field": "carrier"}, "partner_field must be one of"),
    ({"timezone": "UTC", "partner": "X", "colour": "red"}, "has no option 'colour'"),
])
def test_file_level_mistakes(kit, options, message):
    with pytest.raises(IntakeError, match=message):
        open_reader(ASTERISK, reader="asterisk_csv", options=options, pm=kit.pm)


def test_trunk_names():
    assert trunk_of("SIP/orange-0000001f") == "orange"
    assert trunk_of("PJSIP/bt-gb-00000a2c") == "bt-gb"
    assert trunk_of("IAX2/peer-1234;1") == "peer"


def test_seventeen_columns_uniqueid_or_userfield():
    base = lines(ASTERISK_REAL)[0]
    cols = base.split(",")
    uid = AsteriskCsv.fields(AsteriskCsv, [c.strip('"') for c in cols[:17]])
    assert uid["_id"] == "1270167992.0"
    user = AsteriskCsv.fields(AsteriskCsv, [c.strip('"') for c in cols[:16]] + ["vip"])
    assert user["userfield"] == "vip" and user["_id"] == "Console/dsp@2010-04-02 00:26:32"
    assert FreeswitchCsv.sniff([""] * 15) is False


# --------------------------------------------------------------------------- rated by icdsl

RULES = """
partner ORFR "Orange Espana" {
  currency EUR
  timezone "Europe/Madrid"
}

partner BTGB "BT" {
  currency EUR
  timezone "Europe/London"
}

agreement "Orange voice" v1 with ORFR effective 2026-01-01 .. {
  outbound voice {
    price by destination from deck "decks/a-z.csv"
    increments 60/60
  }
}

agreement "BT voice" v1 with BTGB effective 2026-01-01 .. {
  outbound voice {
    price by destination from deck "decks/a-z.csv"
    increments 60/60
  }
}
"""
DECK = """prefix,destination,rate
34,Spain,0.0100
346,Spain mobile,0.0300
33,France,0.0200
336,France mobile,0.0400
44,United Kingdom,0.0150
"""


def test_switch_calls_rated_by_both_executors(kit):
    plan = kit.build(RULES, files={"decks/a-z.csv": DECK})
    options = {**MADRID, "partner_field": "trunk", "partner_map": "orange=ORFR,bt-gb=BTGB"}
    records, _, _ = kit.read(ASTERISK, options=options)
    result = kit.rate(plan, records.to_pylist()).assert_agree()
    # 61 s -> 2 min x 0.0300 (346); 125 s -> 3 min x 0.0400 (336); 600 s -> 10 min x 0.0150 (44)
    assert result.amounts == [Decimal("0.060000"), Decimal("0.120000"), Decimal("0.150000")]
