"""When the timer worker wakes: on PostgreSQL a command that writes a due row nearer than a
sleeping worker's horizon sends `NOTIFY bpm_timers` (delivered at commit, with the due time as
payload), and workers `LISTEN` on a connection of their own and wake for it; between passes a
worker sleeps until the nearest due row (`next_due`) or `HORIZON`, whichever is first.

On SQLite there is no notification: the worker polls every `interval` (engine.timers.run_forever).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Connection, func, select, text

from . import clock
from .store import DueTimer, Incident, Store

CHANNEL = "bpm_timers"
HORIZON = 5.0  # seconds a PostgreSQL worker sleeps at most; writers notify rows due sooner than this

_T, _X = DueTimer.__table__, Incident.__table__


def notify(conn: Connection, due_ats: list[datetime]) -> None:
    """In the writer's transaction: wake the workers if the nearest of `due_ats` is within HORIZON."""
    if not due_ats or conn.dialect.name != "postgresql":
        return
    nearest = min(due_ats)
    if nearest > clock.now() + timedelta(seconds=HORIZON):
        return  # a worker re-reads the nearest due row at least every HORIZON seconds
    conn.execute(text("SELECT pg_notify(:channel, :due)"),
                 {"channel": CHANNEL, "due": nearest.astimezone(timezone.utc).isoformat()})


def next_due(store: Store) -> datetime | None:
    """The nearest due row a pass would pick (none of an instance with an open timer incident)."""
    stuck = select(_X.c.instance_id).where(_X.c.status == "open", _X.c.command == "timer",
                                           _X.c.instance_id.is_not(None))
    with store.transaction() as conn:
        return conn.execute(select(func.min(_T.c.due_at)).where(_T.c.instance_id.not_in(stuck))).scalar()


class Listener:
    """A PostgreSQL connection listening on CHANNEL, outside SQLAlchemy's pool (autocommit)."""

    def __init__(self, store: Store):
        import psycopg

        url = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn = psycopg.connect(url, autocommit=True)
        self._conn.execute(f"LISTEN {CHANNEL}")
        self.woken = 0  # notifications received: the tests assert a wake, not a time

    def wait(self, seconds: float) -> datetime | None:
        """Block up to `seconds`; the due time a writer notified, or None if none came."""
        for note in self._conn.notifies(timeout=max(seconds, 0.0), stop_after=1):
            self.woken += 1
            try:
                return datetime.fromisoformat(note.payload)
            except ValueError:
                return clock.now()  # a notification from elsewhere: look now
        return None

    def close(self) -> None:
        self._conn.close()
