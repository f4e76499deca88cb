"""The one source of "now": `BPM_NOW`, a per-command fixed instant, or the wall clock.

Every command runs inside `command_context` (see `engine.determinism`), which pins "now"
to the command's logged time; outside a command, `now()` reads `BPM_NOW` if set.

Also how a person reads an instant: `local_text` writes it in the deployment's time zone
(`BPM_TIMEZONE`, default Asia/Shanghai) — the pages' `when` filter, the command line and the
notices all use it; stored times stay UTC. `local_date` is the company's day of an instant
("today" by default): from 00:00 to 08:00 China time it is one day after the UTC date.
"""
from __future__ import annotations

import os
from contextvars import ContextVar
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_fixed: ContextVar[datetime | None] = ContextVar("bpm_fixed_now", default=None)


class ClockError(ValueError):
    """A time given by the user (BPM_NOW, --now) is not ISO 8601 with an offset."""


def parse_instant(text: str, what: str = "time") -> datetime:
    """Parse an ISO 8601 instant; a naive time is refused, since it is ambiguous."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ClockError(f"{what} {text!r} is not an ISO 8601 date-time such as 2026-11-23T09:00:00+08:00") from None
    if value.tzinfo is None:
        raise ClockError(f"{what} {text!r} has no UTC offset; write it like 2026-11-23T09:00:00+08:00")
    return value.astimezone(timezone.utc)


def now() -> datetime:
    """The present, as an aware UTC datetime."""
    fixed = _fixed.get()
    if fixed is not None:
        return fixed
    env = os.environ.get("BPM_NOW")
    if env:
        return parse_instant(env, "BPM_NOW")
    return datetime.now(timezone.utc)


class fixed_now:
    """Context manager pinning `now()` to one instant for the current thread/task."""

    def __init__(self, instant: datetime):
        if instant.tzinfo is None:
            raise ClockError("a fixed instant must carry a UTC offset")
        self.instant = instant.astimezone(timezone.utc)
        self._token = None

    def __enter__(self) -> datetime:
        self._token = _fixed.set(self.instant)
        return self.instant

    def __exit__(self, *exc) -> None:
        _fixed.reset(self._token)


DEFAULT_ZONE = "Asia/Shanghai"


def zone_name() -> str:
    """The deployment's time zone: BPM_TIMEZONE, default Asia/Shanghai (the company's)."""
    return (os.environ.get("BPM_TIMEZONE") or "").strip() or DEFAULT_ZONE


def zone(name: str | None = None) -> ZoneInfo:
    """The zone `name` (default: the deployment's); an unknown name is a ClockError in one sentence."""
    name = name or zone_name()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ClockError(f"BPM_TIMEZONE {name!r} is not a time zone such as {DEFAULT_ZONE}") from None


def local_date(instant: datetime | None = None, zone_name_: str | None = None) -> date:
    """The day `instant` (default: the present) falls on in the deployment's zone (or `zone_name_`)."""
    instant = now() if instant is None else instant
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=timezone.utc)
    return instant.astimezone(zone(zone_name_)).date()


def local_text(value: datetime | str | None, zone_name_: str | None = None) -> str:
    """An instant as people read it: "2026-11-23 13:00" in the deployment's zone (or `zone_name_`);
    a naive datetime is taken as UTC (how the store keeps it); None is ""."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(zone(zone_name_)).strftime("%Y-%m-%d %H:%M")
