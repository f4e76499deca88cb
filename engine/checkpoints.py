"""Replay checkpoints: an instance's state after every `EVERY`-th step, written with the command that
reaches the step, and the latest one below a step that the hash chain vouches for — where a replay to
a late step starts instead of at step 1 (engine.audit). `bpm verify` never starts from one."""
from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import bindparam, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from . import state
from .statements import Prepared
from .store import ReplayCheckpoint

# Steps between two checkpoints: a replay to any step re-executes at most EVERY - 1 of them.
EVERY = 10

_C = ReplayCheckpoint.__table__
_INSERT = Prepared(insert(_C))
_SELECT_BELOW = select(_C.c.seq, _C.c.state).where(
    _C.c.instance_id == bindparam("instance_id"), _C.c.seq <= bindparam("seq")).order_by(_C.c.seq.desc())


def keep(conn: Connection, instance_id: str, seq: int, text: str) -> None:
    """In the command's transaction: keep the state `text` the command left at step `seq`, if
    that step is a checkpoint's."""
    if seq % EVERY == 0:
        _INSERT.execute(conn, {"instance_id": instance_id, "seq": seq, "state": text})


def trusted(session: Session, instance_id: str, entries: Sequence[Any], to_step: int | None = None
            ) -> tuple[int, str] | None:
    """(step, state text) of the latest checkpoint at or below `to_step` (else the last entry) whose
    state hashes to the state hash its log entry holds; None if there is none. `entries` are the
    log's, in order; the caller checks their hash chain, which pins each entry's state hash. A
    checkpoint that does not hash to its entry's is passed over (`verify` names it)."""
    by_seq = {e.seq: e for e in entries}
    upto = min(to_step, entries[-1].seq) if (to_step is not None and entries) else (entries[-1].seq if entries else 0)
    for seq, text in session.execute(_SELECT_BELOW, {"instance_id": instance_id, "seq": upto}):
        entry = by_seq.get(seq)
        if entry is not None and state.digest(text) == entry.state_hash:
            return seq, text
    return None


def untrue(session: Session, instance_id: str, entries: Sequence[Any]) -> int | None:
    """The first checkpoint whose state is not the one its log entry's state hash names (or that
    names no step of the log), or None."""
    by_seq = {e.seq: e for e in entries}
    rows = session.execute(select(_C.c.seq, _C.c.state).where(_C.c.instance_id == instance_id).order_by(_C.c.seq))
    for seq, text in rows:
        entry = by_seq.get(seq)
        if entry is None or state.digest(text) != entry.state_hash:
            return seq
    return None
