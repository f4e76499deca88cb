"""The working calendar (engine.calendar): due times count working hours on China's working days
when BPM_WORKING_CALENDAR is on, and clock hours when it is off (the default).

Times here are written in China's time (+08:00); the engine stores and compares UTC.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from engine import audit, calendar, timers, versions
from engine.runtime import Runtime
from engine.store import DueTimer, LogEntry, SlaBreach

from .conftest import DATA
from .test_runtime import only_task

CN = timezone(timedelta(hours=8))
FRIDAY_17 = datetime(2026, 11, 27, 17, 0, tzinfo=CN)
MONDAY_12 = datetime(2026, 11, 30, 12, 0, tzinfo=CN)
NINE_TO_SIX = json.dumps({"hours": [["09:00", "18:00"]]})
GOOD = {"customer": "C-A01", "amount": 120000, "delivery_date": "2026-12-20"}


def nine_to_six(**changes) -> calendar.WorkingCalendar:
    return calendar.from_data({"hours": [["09:00", "18:00"]], **changes})


def cn(*args) -> datetime:
    return datetime(*args, tzinfo=CN)


# --- the calendar itself -------------------------------------------------------------------------

def test_four_working_hours_from_friday_five_pm_end_monday_noon():
    cal = nine_to_six()
    assert cal.after(FRIDAY_17, "PT4H") == MONDAY_12
    assert cal.after(cn(2026, 11, 27, 14, 0), "PT4H") == cn(2026, 11, 27, 18, 0)  # the same day, to the minute
    assert cal.after(cn(2026, 11, 28, 10, 0), "PT4H") == cn(2026, 11, 30, 13, 0)  # given on a Saturday
    assert cal.after(cn(2026, 11, 26, 20, 0), "PT4H") == cn(2026, 11, 27, 13, 0)  # given after hours
    assert cal.before(MONDAY_12, "PT1H") == cn(2026, 11, 30, 11, 0)
    assert cal.before(cn(2026, 11, 30, 9, 30), "PT1H") == cn(2026, 11, 27, 17, 30)  # back over the weekend


def test_national_day_is_not_worked_and_the_make_up_saturday_is():
    cal = nine_to_six()
    assert [cal.is_workday(date(2026, 10, d)) for d in (1, 7, 8)] == [False, False, True]
    # Wednesday 30 September 17:00: one hour that day, then 1–7 October off, three hours on the 8th
    assert cal.after(cn(2026, 9, 30, 17, 0), "PT4H") == cn(2026, 10, 8, 12, 0)
    # Saturday 10 October 2026 is a make-up working day (调休): Friday 17:00 is due that Saturday
    assert cal.is_workday(date(2026, 10, 10)) and not cal.is_workday(date(2026, 10, 17))
    assert cal.after(cn(2026, 10, 9, 17, 0), "PT4H") == cn(2026, 10, 10, 12, 0)
    # Sunday 20 September 2026 is one too
    assert cal.after(cn(2026, 9, 19, 10, 0), "PT2H") == cn(2026, 9, 20, 11, 0)


def test_a_deployment_adds_its_own_days_off_and_on_and_lunch_breaks():
    cal = nine_to_six(holidays=["2026-11-30"], workdays=["2026-11-28"])
    assert cal.after(FRIDAY_17, "PT4H") == cn(2026, 11, 28, 12, 0)  # its Saturday is worked
    cal = nine_to_six(holidays=["2026-11-30"])
    assert cal.after(FRIDAY_17, "PT4H") == cn(2026, 12, 1, 12, 0)    # its Monday is not
    lunch = calendar.from_data({"hours": [["09:00", "12:00"], ["13:00", "18:00"]]})
    assert lunch.after(cn(2026, 11, 30, 11, 0), "PT2H") == cn(2026, 11, 30, 14, 0)
    assert lunch.before(cn(2026, 11, 30, 13, 30), "PT1H") == cn(2026, 11, 30, 11, 30)
    plain_week = calendar.from_data({"china": False, "weekdays": [1, 2, 3, 4, 5, 6]})
    assert plain_week.after(cn(2026, 10, 1, 17, 0), "PT4H") == cn(2026, 10, 2, 12, 0)  # no National Day
    assert plain_week.after(FRIDAY_17, "PT4H") == cn(2026, 11, 28, 12, 0)             # Saturdays worked


def test_a_year_china_has_not_announced_yet_falls_back_to_monday_to_friday():
    cal = nine_to_six()
    friday = cn(2035, 6, 1, 17, 0)
    assert friday.weekday() == 4
    assert cal.after(friday, "PT4H") == cn(2035, 6, 4, 12, 0)


def test_days_are_calendar_days_and_never_end_outside_working_time():
    cal = nine_to_six()
    assert cal.after(cn(2026, 11, 23, 10, 0), "P2D") == cn(2026, 11, 25, 10, 0)
    assert cal.after(FRIDAY_17, "P1D") == cn(2026, 11, 30, 9, 0)  # Saturday 17:00: the next working moment
    assert cal.after(cn(2026, 11, 23, 10, 0), "P1DT4H") == cn(2026, 11, 24, 14, 0)
    assert cal.after(cn(2026, 11, 2, 10, 0), "P30D") == cn(2026, 12, 2, 10, 0)


def test_the_setting_is_off_by_default_and_says_what_is_wrong(monkeypatch, tmp_path):
    monkeypatch.delenv(calendar.SETTING, raising=False)
    assert calendar.configured() is None
    monkeypatch.setenv(calendar.SETTING, "off")
    assert calendar.configured() is None
    monkeypatch.setenv(calendar.SETTING, "china")
    china = calendar.configured()
    assert china.zone.key == "Asia/Shanghai" and china.after(FRIDAY_17, "PT4H") == MONDAY_12
    toml = tmp_path / "calendar.toml"
    toml.write_text('hours = [["08:30", "17:30"]]\nholidays = ["2026-11-30"]\n', encoding="utf-8")
    monkeypatch.setenv(calendar.SETTING, str(toml))
    assert calendar.configured().after(FRIDAY_17, "PT4H") == cn(2026, 12, 1, 12, 0)  # half an hour Friday
    as_json = tmp_path / "calendar.json"
    as_json.write_text(json.dumps({"time_zone": "Asia/Shanghai", "workdays": ["2026-11-28"]}), encoding="utf-8")
    monkeypatch.setenv(calendar.SETTING, str(as_json))
    assert calendar.configured().after(FRIDAY_17, "PT4H") == cn(2026, 11, 28, 12, 0)
    for value, said in ((str(tmp_path / "none.json"), "cannot read"),
                        ('{"hours": [["18:00", "09:00"]]}', "must end after it begins"),
                        ('{"hours": [["9am", "18:00"]]}', "'9am' is not a time of day such as 09:00"),
                        ('{"time_zone": "Mars/Olympus"}', "not a known time zone"),
                        ('{"holidays": ["2026-13-01"]}', "'2026-13-01' is not a date"),
                        ('{"weekend": [6, 7]}', "unknown key 'weekend'"),
                        ('{"hours": ', "is not JSON")):
        monkeypatch.setenv(calendar.SETTING, value)
        with pytest.raises(calendar.CalendarError, match=said):
            calendar.configured()
    with pytest.raises(calendar.CalendarError, match="no working time"):
        calendar.from_data({"china": False, "weekdays": []}).after(FRIDAY_17, "PT1H")


# --- through the engine ---------------------------------------------------------------------------

@pytest.fixture
def runtime(store):
    versions.deploy(store, [DATA / "runtime" / "review.bpmn"], at=FRIDAY_17 - timedelta(days=7))
    return Runtime(store, lookups={"customer": lambda v: v == "C-A01"})


def test_without_the_setting_four_hours_are_clock_hours(runtime, monkeypatch):
    monkeypatch.delenv(calendar.SETTING, raising=False)
    view = runtime.start("review", "rep.wang", GOOD, at=FRIDAY_17)
    assert only_task(view).due == cn(2026, 11, 27, 21, 0)


def test_a_four_hour_task_from_friday_five_pm_is_due_monday_noon_and_escalates_then(runtime, store, monkeypatch):
    """The issue's Done-when: on 09:00–18:00, due Monday 12:00 and escalated then, not Friday 21:00."""
    monkeypatch.setenv(calendar.SETTING, NINE_TO_SIX)
    view = runtime.start("review", "rep.wang", GOOD, at=FRIDAY_17)
    task = only_task(view)
    assert task.due == MONDAY_12
    with store.read() as s:
        assert {t.kind: t.due_at for t in s.scalars(select(DueTimer))} == {
            "reminder": cn(2026, 11, 30, 11, 0), "escalation": MONDAY_12}
    for quiet in (cn(2026, 11, 27, 21, 1), cn(2026, 11, 29, 23, 0), cn(2026, 11, 30, 10, 59)):
        assert timers.run_once(runtime, quiet).fired == [], quiet
    assert timers.run_once(runtime, cn(2026, 11, 30, 11, 1)).fired == [view.id]  # the reminder
    assert only_task(runtime.instance(view.id)).assignee is None
    assert timers.run_once(runtime, cn(2026, 11, 30, 12, 1)).fired == [view.id]
    escalated = only_task(runtime.instance(view.id))
    # the superior's window is four working hours too
    assert (escalated.assignee, escalated.due) == ("vp.qian", cn(2026, 11, 30, 16, 1))
    with store.read() as s:
        breach = s.scalars(select(SlaBreach)).one()
        assert (breach.holder, breach.escalated_to, breach.due_at) == ("dm.zhou", "vp.qian", MONDAY_12)


def test_replay_takes_the_due_times_from_the_log_not_from_todays_setting(runtime, store, monkeypatch):
    monkeypatch.setenv(calendar.SETTING, NINE_TO_SIX)
    view = runtime.start("review", "rep.wang", GOOD, at=FRIDAY_17)
    timers.run_once(runtime, cn(2026, 11, 30, 12, 1))
    with store.read() as s:
        logged = [e.input.get("deadlines") for e in s.scalars(select(LogEntry).order_by(LogEntry.seq))]
    assert logged[0] == [MONDAY_12.astimezone(timezone.utc).isoformat(),
                         cn(2026, 11, 30, 11, 0).astimezone(timezone.utc).isoformat()]
    for setting in (NINE_TO_SIX, "off", json.dumps({"hours": [["10:00", "11:00"]]})):
        monkeypatch.setenv(calendar.SETTING, setting)
        with store.read() as s:
            assert audit.verify(s, view.id, runtime.script_engine).ok, setting
            audit._replays.clear()


def test_a_national_day_task_waits_for_the_eighth(runtime, monkeypatch):
    monkeypatch.setenv(calendar.SETTING, "china")
    view = runtime.start("review", "rep.wang", {**GOOD, "delivery_date": "2026-10-20"},
                         at=cn(2026, 9, 30, 17, 0))
    assert only_task(view).due == cn(2026, 10, 8, 12, 0)
    assert timers.run_once(runtime, cn(2026, 10, 1, 9, 0)).fired == []
    view = runtime.start("review", "rep.wang", {**GOOD, "delivery_date": "2026-10-20"}, at=cn(2026, 10, 9, 17, 0))
    assert only_task(view).due == cn(2026, 10, 10, 12, 0)  # the make-up Saturday is worked


def test_a_bad_setting_stops_the_runtime_before_it_acts(store, monkeypatch):
    monkeypatch.setenv(calendar.SETTING, '{"hours": [["18:00", "09:00"]]}')
    with pytest.raises(calendar.CalendarError, match="must end after it begins"):
        Runtime(store)
