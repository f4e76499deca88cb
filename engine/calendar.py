"""The working calendar (工作日历): working hours, weekends, China's public holidays and make-up
working days (调休), and the one function that turns a task's due duration into a due time.

Off by default: a due of PT4H is four clock hours, as the demo always had. `BPM_WORKING_CALENDAR`
turns it on for a deployment, with the calendar as data:

* `china` (or `on`): 09:00–18:00 in Asia/Shanghai, on the days China works — weekends, public
  holidays and make-up working days as the State Council schedules them (the `chinesecalendar`
  package, which knows the years it was released for);
* a path to a `.json` or `.toml` file, or the JSON itself, with any of
  `{"time_zone": "Asia/Shanghai", "hours": [["09:00", "12:00"], ["13:00", "18:00"]],
  "china": true, "weekdays": [1, 2, 3, 4, 5], "holidays": ["2026-12-31"],
  "workdays": ["2026-12-27"]}` — `holidays` and `workdays` are the deployment's own days off and
  days on, over China's; `weekdays` (1 = Monday) are the working days when `china` is false, or
  for a year `chinesecalendar` does not know yet *(choice: a plain Monday–Friday week then)*.

On the calendar, a due duration's hours, minutes and seconds count working time only: four hours
from Friday 17:00 on 09:00–18:00 is Monday 12:00. Its days (and weeks, months, years) are calendar
days — "P30D" for a registration is the law's thirty days — and a due that falls outside working
time moves on to the next working moment *(choice: the regulations do not say)*. A reminder's
"remind_before" counts back the same way. Stored times stay UTC.

Replay never reads the calendar: a command on the calendar logs the due times it computed
(`deadlines`, engine.determinism), and replay takes them from the log; a command without it
computes clock hours, as it did.
"""
from __future__ import annotations

import functools
import json
import os
import re
import tomllib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from . import determinism

SETTING = "BPM_WORKING_CALENDAR"
OFF = ("", "0", "off", "false", "no", "none")
DEFAULT = {"time_zone": "Asia/Shanghai", "hours": [["09:00", "18:00"]], "china": True}
_FURTHEST = 3660  # days searched for working time before a calendar is said to have none


class CalendarError(ValueError):
    """The working calendar setting cannot be used; the message says what is wrong and where."""


@dataclass(frozen=True)
class WorkingCalendar:
    zone: ZoneInfo
    hours: tuple[tuple[time, time], ...]
    china: bool = True
    weekdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    # --- which days and hours are worked ---

    def is_workday(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        if self.china:
            known = _china_workday(day)
            if known is not None:
                return known
        return day.isoweekday() in self.weekdays

    def periods(self, day: date) -> list[tuple[datetime, datetime]]:
        """The working periods of `day` (local), as UTC instants, in order."""
        if not self.is_workday(day):
            return []
        return [(datetime.combine(day, a, self.zone).astimezone(timezone.utc),
                 datetime.combine(day, b, self.zone).astimezone(timezone.utc)) for a, b in self.hours]

    # --- working time ---

    def add(self, start: datetime, amount: timedelta) -> datetime:
        """The instant `amount` of working time after `start` (the next working moment for zero)."""
        remaining = amount
        cursor = start.astimezone(timezone.utc)
        day = cursor.astimezone(self.zone).date()
        for _ in range(_FURTHEST):
            for a, b in self.periods(day):
                if b <= cursor:
                    continue
                begin = max(a, cursor)
                if remaining <= b - begin:
                    return begin + remaining
                remaining -= b - begin
            day += timedelta(days=1)
        raise CalendarError(f"the working calendar has no working time within {_FURTHEST} days of {start.isoformat()}")

    def subtract(self, end: datetime, amount: timedelta) -> datetime:
        """The instant `amount` of working time before `end` (the last working moment for zero)."""
        remaining = amount
        cursor = end.astimezone(timezone.utc)
        day = cursor.astimezone(self.zone).date()
        for _ in range(_FURTHEST):
            for a, b in reversed(self.periods(day)):
                if a >= cursor:
                    continue
                finish = min(b, cursor)
                if remaining <= finish - a:
                    return finish - remaining
                remaining -= finish - a
            day -= timedelta(days=1)
        raise CalendarError(f"the working calendar has no working time within {_FURTHEST} days before {end.isoformat()}")

    def after(self, start: datetime, duration: str) -> datetime:
        """A due `duration` (ISO 8601) after `start`: its days in calendar days, then its hours in
        working hours; never outside working time."""
        days, clock_part = _split(duration, start)
        return self.add(start + days, clock_part)

    def before(self, end: datetime, duration: str) -> datetime:
        """`duration` before `end`, counted back the same way (a reminder before its due)."""
        days, clock_part = _split(duration, end)
        return self.subtract(end - days, clock_part)


def _split(duration: str, at: datetime) -> tuple[timedelta, timedelta]:
    """(its date part as a timedelta from `at`, its time part) of an ISO 8601 duration."""
    parsed = TimerEventDefinition.parse_iso_duration(duration)
    time_part = timedelta(hours=parsed.get("hours", 0), minutes=parsed.get("minutes", 0),
                          seconds=parsed.get("seconds", 0))
    date_only = {k: v for k, v in parsed.items() if k in ("years", "months", "weeks", "days")}
    if not any(date_only.values()):
        return timedelta(0), time_part
    # (counting back, a month is as long as the month from `at`: near enough for a reminder)
    return TimerEventDefinition.get_timedelta_from_start(date_only, at), time_part


@functools.lru_cache(maxsize=4096)
def _china_workday(day: date) -> bool | None:
    """Whether China works on `day` (weekends, holidays, 调休), or None for a year the package
    does not know."""
    import chinese_calendar
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return None


# --- the setting -----------------------------------------------------------------------------------

_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _time(text: Any, where: str) -> time:
    match = _TIME.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise CalendarError(f"{where}: {text!r} is not a time of day such as 09:00")
    return time(int(match.group(1)), int(match.group(2)))


def _days(values: Any, where: str) -> frozenset[date]:
    if not isinstance(values, list):
        raise CalendarError(f"{where} must be a list of dates such as \"2026-10-01\"")
    out = set()
    for value in values:
        try:
            out.add(date.fromisoformat(value))
        except (TypeError, ValueError):
            raise CalendarError(f"{where}: {value!r} is not a date such as 2026-10-01") from None
    return frozenset(out)


def from_data(data: Any, source: str = SETTING) -> WorkingCalendar:
    """A calendar from its data (the keys of the module docstring; missing ones from DEFAULT)."""
    if not isinstance(data, dict):
        raise CalendarError(f"{source} must describe the calendar as an object (JSON or TOML table)")
    unknown = sorted(set(data) - {"time_zone", "hours", "china", "weekdays", "holidays", "workdays"})
    if unknown:
        raise CalendarError(f"{source}: unknown key {unknown[0]!r} (known: time_zone, hours, china, "
                            "weekdays, holidays, workdays)")
    merged = {**DEFAULT, **data}
    try:
        zone = ZoneInfo(str(merged["time_zone"]))
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarError(f"{source}: time_zone {merged['time_zone']!r} is not a known time zone "
                            "such as Asia/Shanghai") from None
    hours = merged["hours"]
    if not isinstance(hours, list) or not hours:
        raise CalendarError(f"{source}: hours must be a list of periods such as [[\"09:00\", \"18:00\"]]")
    periods: list[tuple[time, time]] = []
    for period in hours:
        if not isinstance(period, list) or len(period) != 2:
            raise CalendarError(f"{source}: hours: {period!r} is not a period such as [\"09:00\", \"18:00\"]")
        a, b = _time(period[0], f"{source}: hours"), _time(period[1], f"{source}: hours")
        if not a < b or (periods and a < periods[-1][1]):
            raise CalendarError(f"{source}: hours: the period {period[0]}–{period[1]} must end after it "
                                "begins and after the period before it")
        periods.append((a, b))
    weekdays = merged.get("weekdays", [1, 2, 3, 4, 5])
    if not isinstance(weekdays, list) or not all(isinstance(d, int) and 1 <= d <= 7 for d in weekdays):
        raise CalendarError(f"{source}: weekdays must be a list of day numbers, 1 (Monday) to 7 (Sunday)")
    if not isinstance(merged["china"], bool):
        raise CalendarError(f"{source}: china must be true or false")
    return WorkingCalendar(zone, tuple(periods), merged["china"], frozenset(weekdays),
                           _days(merged.get("holidays", []), f"{source}: holidays"),
                           _days(merged.get("workdays", []), f"{source}: workdays"))


def _read(text: str) -> WorkingCalendar | None:
    value = text.strip()
    if value.lower() in OFF:
        return None
    if value.lower() in ("china", "on", "1", "true", "yes"):
        return from_data({})
    if value.startswith("{"):
        try:
            return from_data(json.loads(value))
        except json.JSONDecodeError as exc:
            raise CalendarError(f"{SETTING} is not JSON: {exc.msg} at column {exc.colno}") from None
    path = Path(value)
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalendarError(f"{SETTING}: cannot read {path}: {exc.strerror}; set it to off, china, "
                            "a calendar file (.json or .toml) or the calendar as JSON") from None
    try:
        data = tomllib.loads(content) if path.suffix.lower() == ".toml" else json.loads(content)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CalendarError(f"{path} is not {'TOML' if path.suffix.lower() == '.toml' else 'JSON'}: {exc}") from None
    return from_data(data, str(path))


@functools.lru_cache(maxsize=8)
def _cached(text: str, stamp: float | None) -> WorkingCalendar | None:
    return _read(text)


def configured() -> WorkingCalendar | None:
    """The deployment's working calendar (BPM_WORKING_CALENDAR), or None: plain clock hours."""
    text = os.environ.get(SETTING, "")
    path = Path(text.strip())
    try:
        stamp = path.stat().st_mtime if text.strip() and not text.strip().startswith("{") and path.is_file() else None
    except OSError:
        stamp = None
    return _cached(text, stamp)


# --- the one way a due time is computed (tasks, reminders, escalations, replies) -------------------

def _plain(start: datetime, duration: str, back: bool) -> datetime:
    span = TimerEventDefinition.get_timedelta_from_start(TimerEventDefinition.parse_iso_duration(duration), start)
    return start - span if back else start + span


def _timed(start: datetime, duration: str, back: bool) -> datetime:
    ctx = determinism.current()
    if ctx is not None and ctx.replaying:
        logged = ctx.next_deadline()
        return datetime.fromisoformat(logged) if logged is not None else _plain(start, duration, back)
    calendar = ctx.calendar if ctx is not None else configured()
    if calendar is None:
        return _plain(start, duration, back)
    found = calendar.before(start, duration) if back else calendar.after(start, duration)
    if ctx is not None:
        ctx.deadlines.append(found.astimezone(timezone.utc).isoformat())
    return found


def due_after(start: datetime, duration: str) -> datetime:
    """When something given at `start` with `duration` (ISO 8601, e.g. PT4H) is due: on the working
    calendar when one is on, else clock time."""
    return _timed(start, duration, back=False)


def due_before(end: datetime, duration: str) -> datetime:
    """`duration` before `end` (a reminder before its due), the same way."""
    return _timed(end, duration, back=True)
