"""A year of a country's holidays is kept in the plan cache's folder (icdsl.plan.cache's kept
values), so that a warm ``icdsl rate`` or ``explain`` does not import ``holidays``: the kept year
says exactly what ``holidays`` says, a corrupt or foreign file is deleted and derived again, and
nothing is kept or read with the cache off."""

from __future__ import annotations

from datetime import date, timedelta

import holidays
import pytest

from icdsl.plan import cache as plan_cache
from icdsl.rating import calendar


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv(plan_cache.ENV_DIR, str(tmp_path))
    monkeypatch.delenv(plan_cache.ENV_OFF, raising=False)
    calendar._holiday_years.cache_clear()
    yield tmp_path
    calendar._holiday_years.cache_clear()


def _every_day(year: int):
    d = date(year, 1, 1)
    while d.year == year:
        yield d
        d += timedelta(days=1)


@pytest.mark.parametrize(("country", "subdivision", "year"), [("US", None, 2021), ("GB", "SCT", 2022),
                                                                 ("FR", None, 2026), ("DE", "BY", 2024)])
def test_a_kept_year_says_what_holidays_says_day_by_day(folder, country, subdivision, year):
    """2021 in the US: New Year's Day 2022 (a Saturday) is observed on 2021-12-31."""
    fresh = holidays.country_holidays(country, subdiv=subdivision, language="en_US")
    first = [calendar.holiday_name(country, subdivision, d) for d in _every_day(year)]
    assert len(list(folder.glob("*.kept"))) == 1
    calendar._holiday_years.cache_clear()  # a new process: the year is read back from the file
    again = [calendar.holiday_name(country, subdivision, d) for d in _every_day(year)]
    expected = [fresh.get(d) for d in _every_day(year)]
    assert first == again == expected
    assert any(expected)
    if country == "US":
        assert again[-1] == "New Year's Day (observed)"


def test_a_warm_read_does_not_ask_holidays(folder, monkeypatch):
    assert calendar.holiday_name("FR", None, date(2026, 7, 14)) == "National Day"
    calendar._holiday_years.cache_clear()

    def refuse(*_args):
        raise AssertionError("holidays asked although the year was kept")

    monkeypatch.setattr(calendar, "_holiday_calendar", refuse)
    assert calendar.holiday_name("FR", None, date(2026, 7, 14)) == "National Day"
    assert calendar.holiday_name("FR", None, date(2026, 7, 15)) is None


@pytest.mark.parametrize("damage", ["truncate", "flip a byte", "another cache's key", "another key's file"])
def test_a_corrupt_or_foreign_kept_year_is_deleted_and_derived_again(folder, damage):
    calendar.holiday_name("FR", None, date(2026, 1, 1))
    calendar.holiday_name("FR", None, date(2025, 1, 1))
    kept_2026 = folder / f"{plan_cache.kept_key('holidays', 'FR', None, 2026)}.kept"
    kept_2025 = folder / f"{plan_cache.kept_key('holidays', 'FR', None, 2025)}.kept"
    data = kept_2026.read_bytes()
    if damage == "truncate":
        kept_2026.write_bytes(data[:-7])
    elif damage == "flip a byte":
        kept_2026.write_bytes(data[:-3] + bytes([data[-3] ^ 1]) + data[-2:])
    elif damage == "another cache's key":
        (folder / "key").write_bytes(b"k" * 32)
    else:  # a well-signed file under another name: its header names its own key
        kept_2026.write_bytes(kept_2025.read_bytes())
    assert plan_cache.read_kept(plan_cache.kept_key("holidays", "FR", None, 2026)) is None
    assert not kept_2026.exists()
    calendar._holiday_years.cache_clear()
    assert calendar.holiday_name("FR", None, date(2026, 1, 1)) == "New Year's Day"
    assert kept_2026.exists()
    assert plan_cache.read_kept(plan_cache.kept_key("holidays", "FR", None, 2026))["2026-01-01"] == "New Year's Day"


def test_another_installation_is_another_key(folder, monkeypatch):
    before = plan_cache.kept_key("holidays", "FR", None, 2026)
    assert plan_cache.installed_fingerprint() == plan_cache.code_fingerprint()
    monkeypatch.setattr(plan_cache, "installed_fingerprint", lambda: "another icdsl or holidays")
    assert plan_cache.kept_key("holidays", "FR", None, 2026) != before


def test_nothing_kept_or_read_with_the_cache_off(folder, monkeypatch):
    monkeypatch.setenv(plan_cache.ENV_OFF, "off")
    assert calendar.holiday_name("FR", None, date(2026, 12, 25)) == "Christmas Day"
    assert list(folder.glob("*.kept")) == []
