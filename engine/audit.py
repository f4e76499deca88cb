"""The instance log read back: hash-chain checks, deterministic replay of the logged inputs, the
history an auditor reads (with each step's change of the instance data), and `verify`, which says
whether an instance's record is whole or names the first step where it is not. The replay and
the checks take log entries and a loaded definition, not a session (`replay_entries`,
`replay_verdict`, `row_verdict`), so an evidence bundle is checked by the same code offline
(engine.evidence).

`verify` replays scripts (in the sandbox, under its limits), so its outcome is kept in a small
in-process LRU keyed by the instance's log head hash: once the hash chain is recomputed and found
whole up to that head, every logged input is pinned by it, and the deployed definition never
changes, so the replay would only say the same again. A page view then costs the chain check
(one SHA-256 per step), not a replay.

A replay is one pass: the workflow each step leaves goes on to the next, and each step's state
hash is compared as it is made. `verify` always starts at step 1; a replay to a step (`bpm replay
--to`) may start at the latest replay checkpoint below it whose state the hash chain vouches for
(engine.checkpoints), so it re-executes at most `checkpoints.EVERY - 1` steps.
"""
from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session
from SpiffWorkflow.util.task import TaskState

from . import checkpoints, state, tasks
from .determinism import CommandContext, command_context
from .runtime import (GENESIS_HASH, LoadedDefinition, _entry_hash, apply_command, instance_data,
                      loaded_definition, new_workflow, prune_tree)
from .store import Definition, Instance, LogEntry


@dataclass(frozen=True)
class ReplayedStep:
    seq: int
    command: str
    recorded_hash: str
    replayed_hash: str
    chain_ok: bool
    at: datetime | None = None
    actor: str | None = None
    data: dict = field(default_factory=dict)         # the instance data after this step
    completed: bool = False                          # the instance had ended after this step
    waiting: tuple[str, ...] = ()                    # user tasks open after this step (names)
    seen: Any = None                                 # what `observe` made of the step (replay)
    restored: bool = False                           # its state was a checkpoint's, not re-executed
    text: str | None = field(default=None, repr=False, compare=False)  # the state (last step only)

    @property
    def ok(self) -> bool:
        return self.chain_ok and self.recorded_hash == self.replayed_hash


class ReplayFailed(Exception):
    """Replaying a logged step raised: the log and the definition no longer agree."""

    def __init__(self, seq: int, command: str, error: BaseException):
        super().__init__(f"step {seq} ({command}) could not be replayed: {type(error).__name__}: {error}")
        self.seq = seq
        self.command = command


def _entries(session: Session, instance_id: str) -> tuple[Instance, list[LogEntry]]:
    instance = session.get(Instance, instance_id)
    if instance is None:
        raise LookupError(f"there is no instance {instance_id}")
    entries = session.scalars(select(LogEntry).where(LogEntry.instance_id == instance_id)
                              .order_by(LogEntry.seq)).all()
    return instance, list(entries)


def replay(session: Session, instance_id: str, script_engine, to_step: int | None = None,
           _read: tuple[Instance, list[LogEntry]] | None = None,
           observe: Callable[[LogEntry, Any], Any] | None = None, *,
           from_checkpoint: bool = False, _start: tuple[int, str] | None = None,
           detail: str = "all") -> list[ReplayedStep]:
    """Feed the logged inputs to the pinned definition again and compare every state hash;
    `observe(entry, workflow)`, if given, is asked after each step what to keep of it (`seen`).
    With `from_checkpoint`, start at the latest checkpoint at or below `to_step` that the hash
    chain vouches for (the steps returned then begin with it, `restored`); else at step 1 — or at
    `_start` (step, state text), a state the caller holds for that step (engine.views). `detail`
    as for `replay_entries`."""
    instance, entries = _read or _entries(session, instance_id)
    first, version = pinned(session, instance, entries)
    start = _start
    if from_checkpoint and entries and start is None:
        upto = [e for e in entries if to_step is None or e.seq <= to_step]
        if upto and chain_whole(instance_id, upto):
            start = checkpoints.trusted(session, instance_id, upto, to_step)
    return replay_entries(instance_id, entries, first, script_engine, to_step, observe, version, start=start,
                          detail=detail)


VersionOf = Callable[[int], LoadedDefinition]


def pinned(session: Session, instance: Instance, entries: Sequence[Any]) -> tuple[LoadedDefinition, VersionOf]:
    """The definition version the instance started on, and how to find the versions its
    `migrate` steps moved it to (engine.migration): without such a step, the instance's own."""
    def version(number: int) -> LoadedDefinition:
        found = session.scalar(select(Definition.id).where(Definition.process_id == instance.process_id,
                                                           Definition.version == number))
        if found is None:
            raise LookupError(f"process {instance.process_id} has no version {number}")
        return loaded_definition(session, found)
    move = next((e for e in entries if e.command == "migrate"), None)
    if move is not None:
        try:
            return version((move.input or {}).get("from")), version
        except LookupError:
            pass  # (a changed entry: its replay says so)
    return loaded_definition(session, instance.definition_id), version


def replay_entries(instance_id: str, entries: Sequence[Any], loaded: LoadedDefinition, script_engine,
                   to_step: int | None = None,
                   observe: Callable[[Any, Any], Any] | None = None,
                   version: VersionOf | None = None, *,
                   start: tuple[int, str] | None = None, detail: str = "all") -> list[ReplayedStep]:
    """`replay` without a database: `entries` are the log's rows in order, or anything with their
    columns (seq, at, actor, command, input, state_hash, prev_hash, hash), as an evidence bundle
    holds them (engine.evidence); `loaded` is the definition version they started on, and
    `version(n)` gives version n of the process, where a `migrate` step moved the instance.
    `start` = (step, state text): go on from that state, trusted as the state after that step
    (a checkpoint, or a replay kept in memory; the caller checked it hashes to the step's logged
    state hash) — the steps before it are not re-executed, their chain links are checked. `detail`:
    "all" steps carry their data, waiting tasks and what `observe` saw; "last" only the last one
    (a replay to a step); "none": only what a verdict needs."""
    last = min(to_step, entries[-1].seq) if (to_step is not None and entries) else (entries[-1].seq if entries else 0)
    steps: list[ReplayedStep] = []
    text, counter, prev, workflow = None, 0, GENESIS_HASH, None
    for entry in entries:
        if to_step is not None and entry.seq > to_step:
            break
        chain_ok = entry.prev_hash == prev and entry.hash == _entry_hash(
            instance_id, entry.seq, entry.at, entry.actor, entry.command, entry.input, entry.state_hash, prev)
        restored = start is not None and entry.seq <= start[0]
        if restored:
            try:
                if entry.command == "migrate":
                    loaded = _target(entry, loaded, version)
                if entry.seq == start[0]:   # the step the start state is from: restored, not executed
                    text = start[1]
                    workflow, counter = state.load_state(text, loaded.spec, loaded.subprocess_specs)
                    workflow.script_engine = script_engine
            except Exception as exc:  # a version no longer at hand
                raise ReplayFailed(entry.seq, entry.command, exc) from exc
            if entry.seq < start[0]:
                prev = entry.hash
                continue
        else:
            try:
                if entry.command == "migrate":
                    # The step is SpiffWorkflow's move of the state to another version, made again.
                    target = _target(entry, loaded, version)
                    workflow, text, ctx = _replay_move(instance_id, entry, loaded, target, text)
                    loaded = target
                else:
                    workflow, text, ctx = _replayed(instance_id, entry, loaded, script_engine, text, counter,
                                                    workflow)
            except Exception as exc:  # a tampered input, a definition changed under the log
                raise ReplayFailed(entry.seq, entry.command, exc) from exc
            counter = ctx.counter
        replayed_hash = state.digest(text)
        if detail == "none" or (detail == "last" and entry.seq != last):
            steps.append(ReplayedStep(entry.seq, entry.command, entry.state_hash, replayed_hash, chain_ok,
                                      restored=restored))
        else:
            waiting = tuple(t.task_spec.bpmn_name or t.task_spec.name
                            for t in workflow.get_tasks(state=TaskState.READY, manual=True))
            steps.append(ReplayedStep(entry.seq, entry.command, entry.state_hash, replayed_hash, chain_ok,
                                      entry.at, entry.actor, copy.deepcopy(instance_data(workflow)),
                                      workflow.is_completed(), waiting,
                                      observe(entry, workflow) if (observe is not None and not restored) else None,
                                      restored))
        prev = entry.hash
    if steps:
        steps[-1] = replace(steps[-1], text=text)
    return steps


def _target(entry: Any, loaded: LoadedDefinition, version: VersionOf | None) -> LoadedDefinition:
    moved = entry.input or {}
    if moved.get("from") != loaded.version:
        raise ValueError(f"the step moves the instance from version {moved.get('from')}, but it is on "
                         f"version {loaded.version}")
    if version is None:
        raise LookupError(f"version {moved.get('to')} of the process is not at hand")
    return version(moved.get("to"))


def _replay_move(instance_id: str, entry: Any, loaded: LoadedDefinition, target: LoadedDefinition,
                 text: str | None) -> tuple[Any, str, CommandContext]:
    """A `migrate` step applied again: the state the step before left, restored on its version and
    moved to the target (the workflow in memory is not reused: the move rebuilds its tasks' specs)."""
    from .migration import SpecDiffs, move_workflow  # (engine.migration imports engine.runtime, as this does)
    workflow, counter = state.load_state(text, loaded.spec, loaded.subprocess_specs)
    ctx = CommandContext(instance_id, entry.at, counter, replaying=True)
    with command_context(ctx):
        move_workflow(workflow, SpecDiffs(loaded, target))
    return workflow, state.dump_state(workflow, ctx.counter), ctx


def _replayed(instance_id: str, entry: Any, loaded: LoadedDefinition, script_engine, text: str | None,
              counter: int, workflow) -> tuple[Any, str, CommandContext]:
    """One logged command replayed. The workflow the step before left in memory goes on, which
    spares restoring the state at every step; a state that comes out other than the log says is
    made again the way the engine made it — restored from the text of the step before — so a
    verdict is that of an exact replay."""
    done = None
    if workflow is not None:
        try:
            done = _replay_step(instance_id, entry, loaded, script_engine, text, counter, workflow)
        except Exception:
            done = None
        if done is not None and state.digest(done[1]) != entry.state_hash:
            done = None
    if done is None:
        done = _replay_step(instance_id, entry, loaded, script_engine, text, counter, None)
    return done


def _replay_step(instance_id: str, entry: Any, loaded: LoadedDefinition, script_engine, text: str | None,
                 counter: int, workflow) -> tuple[Any, str, CommandContext]:
    """One logged command applied again: to `workflow` if given (the one the step before left), else
    to the state `text` restored; returns the workflow, its state text and the command's context."""
    inputs = dict(entry.input)
    ctx = CommandContext(instance_id, entry.at, counter, replaying=True,
                         service_results=list(inputs.pop("service_results", [])),
                         deadlines=list(inputs.pop("deadlines", [])))
    with command_context(ctx):
        if entry.command == "start":
            workflow = new_workflow(loaded, inputs.get("data") or {}, script_engine,
                                    pruned=bool(inputs.get("pruned")))
            tasks.route(workflow, inputs.get("route"))
        else:
            if workflow is None:
                workflow, ctx.counter = state.load_state(text, loaded.spec, loaded.subprocess_specs)
                workflow.script_engine = script_engine
            apply_command(entry.command, workflow, inputs, entry.actor, script_engine)
        prune_tree(workflow, loaded)  # as the live command did (engine.pruning)
    return workflow, state.dump_state(workflow, ctx.counter), ctx


@dataclass(frozen=True)
class Verdict:
    instance_id: str
    steps: int
    template: str | None = None  # None: the record is whole; else the first thing found wrong,
    params: dict = field(default_factory=dict)  # one sentence: template % params (pages translate it)

    @property
    def ok(self) -> bool:
        return self.template is None

    @property
    def problem(self) -> str | None:
        return None if self.template is None else self.template % self.params


def _problem(instance_id: str, count: int, template: str, /, **params: Any) -> Verdict:
    return Verdict(instance_id, count, template, params)


_CACHE_SIZE = 1024
_replays: OrderedDict[tuple[str, str, str], Verdict | None] = OrderedDict()
_replays_lock = threading.Lock()


def chain_whole(instance_id: str, entries: Sequence[Any]) -> bool:
    prev = GENESIS_HASH
    for entry in entries:
        if entry.prev_hash != prev or entry.hash != _entry_hash(
                instance_id, entry.seq, entry.at, entry.actor, entry.command, entry.input, entry.state_hash, prev):
            return False
        prev = entry.hash
    return True


def verify(session: Session, instance_id: str, script_engine) -> Verdict:
    """Is the instance's record whole? The hash chain links every entry to the one before, the
    replayed state matches the logged state hash at every step (re-executed once each, from step
    1, in one pass: never from a checkpoint), the instance row (state, state hash, revision, last
    log hash) is the end of that chain, and every replay checkpoint is the state its step logged."""
    instance, entries = _entries(session, instance_id)
    if not entries:
        return _problem(instance_id, 0, "the instance has no log entries")
    key = None
    if chain_whole(instance_id, entries):
        key = (str(session.get_bind().url), instance_id, entries[-1].hash)
        with _replays_lock:
            if key in _replays:
                _replays.move_to_end(key)
                found = _replays[key]
                return found if found is not None else _stored_verdict(session, instance, entries)
    first, version = pinned(session, instance, entries)
    found = replay_verdict(instance_id, entries, first, script_engine, version)
    if key is not None:
        _keep(key, found)
    return found if found is not None else _stored_verdict(session, instance, entries)


def default_jobs() -> int:
    """How many processes `verify_many` uses by default: the CPUs this process may run on."""
    import os
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # (not Linux)
        return max(1, os.cpu_count() or 1)


def verify_many(url: str, instance_ids: Sequence[str], make_script_engine: Callable[[Any], Any],
                jobs: int) -> list[Verdict]:
    """`verify` of each instance, in the order given, by `jobs` processes at once (each opens the
    database at `url` itself and gets its script engine from `make_script_engine(store)`, a
    module-level function). Instances are handed out in small slices so a slow one holds up
    only its slice; the verdicts are the ones `verify` gives one by one, in the same order. An
    instance that is not there raises LookupError, as `verify` does. The caller holds no
    connection of its own open across the call (the processes are forked where the system can)."""
    import math
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ids = list(instance_ids)
    jobs = max(1, min(jobs, len(ids)))
    size = max(1, min(32, math.ceil(len(ids) / (jobs * 8))))
    slices = [ids[i:i + size] for i in range(0, len(ids), size)]
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_verifier,
                             initargs=(url, make_script_engine)) as pool:
        return [verdict for part in pool.map(_verify_slice, slices) for verdict in part]


_verifier: tuple[Any, Any] | None = None   # (store, script engine) of a `verify_many` process


def _start_verifier(url: str, make_script_engine: Callable[[Any], Any]) -> None:
    global _verifier
    from .store import Store
    forget_verdicts()  # (a forked process starts with its parent's: each verdict is made here)
    store = Store(url)
    _verifier = (store, make_script_engine(store))


def _verify_slice(ids: list[str]) -> list[Verdict]:
    store, script_engine = _verifier
    with store.read() as session:
        return [verify(session, instance_id, script_engine) for instance_id in ids]


def _stored_verdict(session: Session, instance: Instance, entries: list[LogEntry]) -> Verdict:
    """What is stored beside the (whole) log — the instance row and the replay checkpoints — is
    what the log says: checked on every call, never cached."""
    verdict = row_verdict(instance, entries)
    # (a log shorter than the checkpoints' spacing has none the engine wrote; one forged there is
    # never started from either: `checkpoints.trusted` checks each against the log)
    if verdict.ok and len(entries) >= checkpoints.EVERY and \
            (bad := checkpoints.untrue(session, instance.id, entries)) is not None:
        return _problem(instance.id, len(entries), "the replay checkpoint at step %(step)d is not the state "
                        "the log holds for that step (a replay to a step does not start from it)", step=bad)
    return verdict


def forget_verdicts() -> None:
    """Empty the verdicts kept by log head (a benchmark's cold run, a test's)."""
    with _replays_lock:
        _replays.clear()


def _keep(key: tuple[str, str, str], found: Verdict | None) -> None:
    with _replays_lock:
        _replays[key] = found
        while len(_replays) > _CACHE_SIZE:
            _replays.popitem(last=False)


def keep_verdict(session: Session, instance_id: str, entries: Sequence[Any], problem: Verdict | None) -> None:
    """What a replay made elsewhere (engine.views, for the history) says of the record — `problem`,
    as `first_problem` found it; None: every step replayed as logged — kept as `verify` keeps its
    own: the same replay is not run twice for one log head."""
    if entries and chain_whole(instance_id, entries):
        _keep((str(session.get_bind().url), instance_id, entries[-1].hash), problem)


def replay_verdict(instance_id: str, entries: Sequence[Any], loaded: LoadedDefinition,
                   script_engine, version: VersionOf | None = None) -> Verdict | None:
    """The first step whose chain link or replayed state is wrong, or None (entries, `loaded` and
    `version` as for `replay_entries`)."""
    try:
        steps = replay_entries(instance_id, entries, loaded, script_engine, version=version, detail="none")
    except ReplayFailed as exc:
        return _problem(instance_id, len(entries), "step %(step)d (%(command)s) could not be replayed: %(error)s",
                        step=exc.seq, command=exc.command, error=str(exc.__cause__))
    return first_problem(instance_id, steps)


def first_problem(instance_id: str, steps: list[ReplayedStep], first_seq: int = 1) -> Verdict | None:
    """The first replayed step whose place, chain link or state is wrong, or None (`steps` begin at
    step `first_seq`)."""
    for expected_seq, step in enumerate(steps, start=first_seq):
        if step.seq != expected_seq:
            return _problem(instance_id, len(steps), "step %(step)d is missing from the log (the next entry "
                            "is step %(next)d)", step=expected_seq, next=step.seq)
        if not step.chain_ok:
            return _problem(instance_id, len(steps), "step %(step)d (%(command)s): the hash chain is broken "
                            "(the entry was changed, or one before it)", step=step.seq, command=step.command)
        if step.recorded_hash != step.replayed_hash:
            return _problem(instance_id, len(steps), "step %(step)d (%(command)s): replaying it gives state "
                            "%(replayed)s…, the log says %(recorded)s…", step=step.seq, command=step.command,
                            replayed=step.replayed_hash[:12], recorded=step.recorded_hash[:12])
    return None


def row_verdict(instance: Any, entries: Sequence[Any]) -> Verdict:
    """The instance row (or anything with its id, revision, log_hash, state_hash and state) is
    the end of its (whole) chain: checked on every call, never cached."""
    instance_id, steps = instance.id, len(entries)
    last = entries[-1]
    if instance.revision != len(entries):
        return _problem(instance_id, steps, "the instance is at revision %(revision)d but the log has "
                        "%(steps)d steps", revision=instance.revision, steps=len(entries))
    if instance.log_hash != last.hash:
        return _problem(instance_id, steps, "the instance's last log hash is not the hash of its last step")
    if instance.state_hash != last.state_hash or state.digest(instance.state) != instance.state_hash:
        return _problem(instance_id, steps, "the instance's stored state is not the state after step %(step)d",
                        step=last.seq)
    return Verdict(instance_id, steps)
