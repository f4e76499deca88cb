"""Replay in one pass and from checkpoints (issue 12, item 2), on SQLite and PostgreSQL: a replay to a
step started at a checkpoint gives what a replay from step 1 gives; a checkpoint that is not its
step's state is passed over and named by the record check; `verify` re-executes each step once from
step 1; the history re-executes each step once per log head (a grown log: only the new steps)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from engine import audit, checkpoints, state
from engine.store import LogEntry, ReplayCheckpoint

from .conftest import contract, views_of
from .test_processes import Clock, deposit_to_dispatch, order, pay, reconcile, rt  # noqa: F401  (fixture)
from .test_cli import bpm  # noqa: F401  (a fixture)
from .test_migration import REVISED, at_dm_review, deploy, tightened
from .test_views import revised

EVERY = 3  # a checkpoint every third step here: several in a short log


@pytest.fixture(autouse=True)
def often(monkeypatch):
    monkeypatch.setattr(checkpoints, "EVERY", EVERY)
    audit.forget_verdicts()


def rework_contract(rt, rounds: int) -> str:
    """A contract sent back and revised `rounds` times, then still at the manager: 1 + 2*rounds steps."""
    clock = Clock()
    view = rt.start("contract_review", "rep.wang", contract(), at=clock.now)
    for n in range(rounds):
        view = rt.complete(view.tasks[0].id, "dm.zhou", {"decision": "reject", "comment": f"第 {n + 1} 轮"},
                           at=clock())
        view = rt.complete(view.tasks[0].id, "rep.wang", {**revised(), "payment_terms": f"30% 定金 v{n + 1}"},
                           at=clock())
    return view.id


def settled_order(rt) -> str:
    """order_to_settlement, credit A, straight through: 8 steps (services, a message, the DMN)."""
    clock = Clock()
    view = rt.start("order_to_settlement", "rep.wang", order("C-A01", 120000), at=clock.now)
    view = deposit_to_dispatch(rt, view, clock)
    view = pay(rt, view, 84000, clock(hours=3))
    return reconcile(rt, view, clock).id


def log_of(store, instance_id: str) -> list[LogEntry]:
    with store.read() as s:
        return list(s.scalars(select(LogEntry).where(LogEntry.instance_id == instance_id).order_by(LogEntry.seq)))


def kept(store, instance_id: str) -> dict[int, str]:
    with store.read() as s:
        return dict(s.execute(select(ReplayCheckpoint.seq, ReplayCheckpoint.state)
                              .where(ReplayCheckpoint.instance_id == instance_id)).all())


def replay(rt, instance_id: str, to_step: int | None, from_checkpoint: bool):
    with rt.store.read() as s:
        return audit.replay(s, instance_id, rt.script_engine, to_step, from_checkpoint=from_checkpoint)


def counting(monkeypatch) -> list[int]:
    """The steps re-executed (audit._replay_step: one call per logged command made again)."""
    ran, real = [], audit._replay_step
    monkeypatch.setattr(audit, "_replay_step", lambda instance_id, entry, *a: ran.append(entry.seq)
                        or real(instance_id, entry, *a))
    return ran


@pytest.mark.parametrize("make", [lambda rt: rework_contract(rt, 6), settled_order], ids=["contract", "order"])
def test_replay_from_a_checkpoint_equals_replay_from_the_start(rt, make, monkeypatch):
    instance_id = make(rt)
    log = log_of(rt.store, instance_id)
    checkpoints_kept = kept(rt.store, instance_id)
    # one per EVERY-th step, written by the command that reached it: the state its entry hashes
    assert sorted(checkpoints_kept) == [e.seq for e in log if e.seq % EVERY == 0] and checkpoints_kept
    assert all(state.digest(checkpoints_kept[e.seq]) == e.state_hash for e in log if e.seq in checkpoints_kept)
    for n in sorted({2, EVERY, EVERY + 1, 2 * EVERY + 2, len(log) - 1, len(log)}):
        ran = counting(monkeypatch)
        whole = replay(rt, instance_id, n, from_checkpoint=False)
        assert ran == list(range(1, n + 1))
        ran.clear()
        near = replay(rt, instance_id, n, from_checkpoint=True)
        start = n - n % EVERY
        # started at the checkpoint at or below n: only the steps after it re-executed
        assert (near[0].seq, near[0].restored) == ((start, True) if start else (1, False)), n
        assert ran == list(range(start + 1 if start else 1, n + 1)), n
        for a, b in zip(whole[-len(near):], near):
            assert (a.seq, a.recorded_hash, a.replayed_hash, a.data, a.waiting, a.completed, a.chain_ok) == \
                   (b.seq, b.recorded_hash, b.replayed_hash, b.data, b.waiting, b.completed, b.chain_ok), (n, a.seq)
            assert b.ok
        assert whole[-1].text == near[-1].text and state.digest(near[-1].text) == log[n - 1].state_hash


def test_a_tampered_checkpoint_is_passed_over_and_named_by_verify(rt, monkeypatch):
    instance_id = rework_contract(rt, 4)        # 9 steps: checkpoints at 3, 6, 9
    with rt.store.read() as s:
        assert audit.verify(s, instance_id, rt.script_engine).ok
    forged = kept(rt.store, instance_id)[6].replace("第 2 轮", "第 9 轮")
    assert forged != kept(rt.store, instance_id)[6]
    with rt.store.engine.begin() as conn:
        conn.execute(update(ReplayCheckpoint).where(ReplayCheckpoint.instance_id == instance_id,
                                                    ReplayCheckpoint.seq == 6).values(state=forged))
    ran = counting(monkeypatch)
    near = replay(rt, instance_id, 7, from_checkpoint=True)
    assert near[0].seq == 3 and ran == [4, 5, 6, 7]          # not from the forged one: from the one before
    assert all(s.ok for s in near) and near[-1].data == replay(rt, instance_id, 7, False)[-1].data
    with rt.store.read() as s:   # the verdict kept for this log head is not trusted for what lies beside it
        verdict = audit.verify(s, instance_id, rt.script_engine)
    assert not verdict.ok and verdict.problem == (
        "the replay checkpoint at step 6 is not the state the log holds for that step (a replay to a step "
        "does not start from it)")


def test_verify_re_executes_every_step_once_from_step_1_in_one_pass(rt, monkeypatch):
    instance_id = rework_contract(rt, 5)        # 11 steps, checkpoints at 3, 6, 9
    ran = counting(monkeypatch)
    restored, real_load = [], state.load_state
    monkeypatch.setattr(state, "load_state", lambda *a, **k: restored.append(1) or real_load(*a, **k))
    monkeypatch.setattr(checkpoints, "trusted", lambda *a, **k: pytest.fail("verify started from a checkpoint"))
    with rt.store.read() as s:
        assert audit.verify(s, instance_id, rt.script_engine).ok
    assert ran == list(range(1, 12)) and restored == []     # each step once; the workflow carried, never restored
    with rt.store.read() as s:
        assert audit.verify(s, instance_id, rt.script_engine).ok
    assert len(ran) == 11                                     # the same log head: no replay at all


def test_the_history_replays_each_step_once_per_log_head(rt, monkeypatch):
    instance_id = rework_contract(rt, 3)        # 7 steps
    ran = counting(monkeypatch)
    first, replayed = views_of(rt).history(instance_id)
    assert replayed and ran == list(range(1, 8))
    assert views_of(rt).history(instance_id)[0] == first and len(ran) == 7      # the same head: kept
    view = rt.instance(instance_id)
    rt.complete(view.tasks[0].id, "dm.zhou", {"decision": "approve"}, at=first[-1].at + timedelta(hours=1))
    ran.clear()
    grown, _ = views_of(rt).history(instance_id)
    assert ran == [8] and grown[:7] == first                                     # only the new step
    audit.forget_verdicts()
    import engine.views
    engine.views._steps.clear()
    ran.clear()
    again, _ = views_of(rt).history(instance_id)                                 # from step 1, cold
    assert ran == list(range(1, 9)) and again == grown
    with rt.store.read() as s:                     # the history's replay gave the record check its verdict
        assert audit.verify(s, instance_id, rt.script_engine).ok and len(ran) == 8


def test_the_instance_page_and_its_record_check_replay_once_per_log_head(rt, monkeypatch):
    """An auditor's instance page (steps, diagram, the record check) views after views, then the
    history: each step re-executed once for the log head; one more command, only the new step."""
    instance_id = rework_contract(rt, 2)        # 5 steps
    import engine.views
    audit.forget_verdicts()
    engine.views._steps.clear()
    ran = counting(monkeypatch)
    views = views_of(rt)
    for _ in range(3):
        page = views.instance_page(instance_id, viewer="audit.han")
        assert page.replayed and page.verdict.ok and len(page.steps) == 5
    assert views.history(instance_id)[1] and ran == [1, 2, 3, 4, 5]
    view = rt.instance(instance_id)
    rt.complete(view.tasks[0].id, "dm.zhou", {"decision": "approve"}, at=page.steps[-1].at + timedelta(hours=1))
    ran.clear()
    for _ in range(2):
        page = views.instance_page(instance_id, viewer="audit.han")
        assert page.verdict.ok and len(page.steps) == 6
    assert ran == [6]


def test_bpm_replay_to_a_step_starts_at_its_checkpoint_and_verify_names_a_forged_one(bpm, tmp_path):
    """The command line: `bpm replay --to` says where it started; `--from-start` re-executes all;
    a checkpoint edited in the database makes `bpm verify` exit 1 naming it."""
    import json
    import sqlite3

    from .test_cli import _walked_instance
    instance_id = _walked_instance(bpm)                  # 3 steps: a checkpoint at step 3
    code, out, err = bpm("replay", instance_id, "--to", "3", "--json")
    assert code == 0, err
    at = json.loads(out)
    assert (at["from_checkpoint"], at["every_hash_matched"], at["data"]["note"]) == (3, True, "ok")
    code, out, _ = bpm("replay", instance_id, "--from-start", "--json")
    assert code == 0 and json.loads(out)["from_checkpoint"] is None and json.loads(out)["data"] == at["data"]
    with sqlite3.connect(tmp_path / "cli.sqlite3") as db:
        assert db.execute("UPDATE replay_checkpoint SET state = replace(state, '\"note\":\"ok\"', "
                          "'\"note\":\"ko\"') WHERE seq = 3").rowcount == 1
    code, out, _ = bpm("replay", instance_id, "--to", "3", "--json")
    assert code == 0 and json.loads(out)["from_checkpoint"] is None and json.loads(out)["data"]["note"] == "ok"
    code, out, err = bpm("verify", instance_id)
    assert code == 1 and f"BAD  {instance_id}: the replay checkpoint at step 3 is not the state the log holds" in out


def test_a_checkpoint_after_a_move_to_another_version_is_restored_on_that_version(rt, store, tmp_path, monkeypatch):
    """A `migrate` step before the checkpoint: the replay restores it on the version moved to."""
    from engine import migration
    monkeypatch.setattr(checkpoints, "EVERY", 2)
    clock = Clock()
    view = at_dm_review(rt, clock)
    deploy(store, tightened(tmp_path), clock)
    assert [m.moved for m in migration.migrate(store, "contract_review", 1, 2, actor="design.yang", at=clock())] == [True]
    view = rt.complete(rt.instance(view.id).tasks[0].id, "dm.zhou", {"decision": "reject", "comment": "再议"},
                       at=clock())
    view = rt.complete(view.tasks[0].id, "rep.wang", REVISED, at=clock())
    view = rt.complete(view.tasks[0].id, "dm.zhou", {"decision": "reject", "comment": "再议"}, at=clock())
    assert sorted(kept(store, view.id)) == [2, 4]       # the move's step kept one too (engine.migration)
    for n in (2, 3, 4, 5):
        whole, near = replay(rt, view.id, n, False), replay(rt, view.id, n, True)
        assert near[0].restored and near[0].seq == n - n % 2
        assert (whole[-1].replayed_hash, whole[-1].data, whole[-1].waiting) == \
               (near[-1].replayed_hash, near[-1].data, near[-1].waiting) and all(s.ok for s in near)
