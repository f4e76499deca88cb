"""The read side (engine.views): each page reads once, the history in plain language, every data
field labelled, and stepping through an instance on its diagram by exact replay."""
from __future__ import annotations

import inspect
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import state, timers
from engine.store import Definition, Instance
from engine.views import ENGINE_KEYS

from . import test_processes
from .conftest import contract, views_of
from .orders_on_file import put_order
from .test_web import T0, app, as_user, catalogs, rt, text  # noqa: F401  (fixtures)


def escalated_contract(rt):
    """A contract on standard terms dm.zhou let pass its four hours: escalated to his superior vp.qian."""
    view = rt.start("contract_review", "rep.wang", contract(), at=T0)
    timers.run_once(rt, T0 + timedelta(minutes=3 * 60 + 31))   # the reminder, half an hour before due
    timers.run_once(rt, T0 + timedelta(hours=4, minutes=1))     # due: to the superior
    view = rt.instance(view.id)
    assert [t.assignee for t in view.tasks] == ["vp.qian"]
    return view


def test_the_history_says_who_did_what_in_words(app, rt):
    view = escalated_contract(rt)
    task = view.tasks[0]
    rt.complete(task.id, "vp.qian", {"decision": "approve", "comment": "同意"}, at=T0 + timedelta(hours=5))
    zh = text(as_user(app, "audit.han", "zh_CN").get(f"/instances/{view.id}"))
    en = text(as_user(app, "audit.han").get(f"/instances/{view.id}"))
    assert "Reminder sent on “Department manager review”, due 2026-11-23 13:00" in en
    assert re.search(r"“Department manager review” escalated from .*Zhou.* to .*Qian.*, 1 minute overdue", en)
    assert re.search(r"Qian.* approved “Department manager review”", en)
    assert re.search(r"钱.*批准了“业务部经理审核”", zh), zh
    for page in (zh, en):
        assert "\\u" not in page and '{"' not in page      # no escaped JSON anywhere
        assert "timer / escalation" not in page and "system message received" not in page


def test_a_payment_reads_as_money_with_its_voucher(app, rt, store):
    clock = test_processes.Clock(T0)
    view = rt.start("order_to_settlement", "rep.wang", test_processes.order("C-A01"), at=clock())
    view = test_processes.deposit_to_dispatch(rt, view, clock)
    rt.message("payment_received", {"order_no": view.data["order_no"], "amount": 20000, "voucher": "BK-001"},
               {"order_no": view.data["order_no"]}, actor="fin.chu", at=clock())
    page = text(as_user(app, "rep.wang").get(f"/instances/{view.id}"))
    assert re.search(r"Chu.* recorded a payment of CN¥20,000.00, voucher BK-001", page), page


def _every_path(rt, store) -> None:
    """The paths tests/test_processes.py walks, run here for what they leave in the database."""
    for name, test in vars(test_processes).items():
        if not name.startswith("test_") or not callable(test):
            continue
        given = {"rt": rt, "store": store}
        wanted = inspect.signature(test).parameters
        if set(wanted) - {"rt", "store", "order_on_file"}:
            continue
        kwargs = {p: given[p] if p in given else put_order(store) for p in wanted}
        try:
            test(**kwargs)
        except AssertionError:
            pass  # (a path that needs its own clock; its instances are still read below)


def test_every_field_an_instance_holds_has_a_label_or_is_kept_hidden(rt, store):
    _every_path(rt, store)
    labelled: dict[str, dict] = {}
    with store.read() as s:
        for process_id, forms in s.execute(select(Definition.process_id, Definition.forms)):
            for name, schema in (forms or {}).items():
                labelled.setdefault(process_id, {}).update(schema.get("properties") or {})
        instances = s.execute(select(Instance.id, Instance.process_id)).all()
    assert {p for _, p in instances} >= {"contract_review", "order_to_settlement", "return_request",
                                         "branch_establishment"}
    unlabelled = set()
    for instance_id, process_id in instances:
        steps, replayed = views_of(rt).history(instance_id)
        assert replayed
        for step in steps:
            unlabelled |= {(process_id, k) for k in step.after
                           if k not in ENGINE_KEYS and k not in labelled.get(process_id, {})}
    assert unlabelled == set()


def test_the_order_page_shows_no_raw_key_and_the_payments_as_a_table(app, rt, store):
    clock = test_processes.Clock(T0)
    view = rt.start("order_to_settlement", "rep.wang", test_processes.order("C-A01"), at=clock())
    view = test_processes.deposit_to_dispatch(rt, view, clock)
    html = as_user(app, "rep.wang", "zh_CN").get(f"/instances/{view.id}").get_data(as_text=True)
    data = html.split('id="data-title"')[1].split("</section>")[0]
    for key in ("deposit_ratio", "balance_at", "reservation", "priced", "deposit_booked", "order_status"):
        assert f">{key}<" not in data, key
    assert "定金比例" in data and "30%" in data and "发货时" in data and "备货预留" in data
    assert "到账记录" in data and "BK-1124-07" in data and "定金" in data   # the payments, in columns
    assert "{&#39;" not in data and '{"' not in data
    assert "await_payment" not in text(as_user(app, "rep.wang").get(f"/instances/{view.id}")).split("History")[0]


def revised() -> dict:
    """The revise form's fields, back on the quoted terms."""
    return {k: v for k, v in contract().items() if k not in (
        "customer", "quote_price", "allowed_discount", "quote_payment_terms", "quote_delivery_date")}


def test_stepping_through_shows_the_diagram_and_data_of_each_step(app, rt):
    view = rt.start("contract_review", "rep.wang", contract(), at=T0)
    rt.complete(view.tasks[0].id, "dm.zhou", {"decision": "reject", "comment": "价格太低"}, at=T0 + timedelta(hours=1))
    revise = rt.instance(view.id).tasks[0]
    rt.complete(revise.id, "rep.wang", revised(), at=T0 + timedelta(hours=2))
    steps, replayed = views_of(rt).history(view.id)
    assert replayed and [s.command for s in steps] == ["start", "complete", "complete"]
    first, last = steps[0].marks.as_json(), steps[-1].marks.as_json()
    assert first["active"] == ["dm_review"] and "dm_review" not in first["completed"]
    assert last["passes"].get("dm_review") is None and "revise" in last["completed"]
    assert "dm_review" in last["active"]                       # the second round waits at the manager
    assert steps[1].after.get("decision") == "reject" and steps[0].after.get("decision") is None
    client = as_user(app, "audit.han")
    one = text(client.get(f"/instances/{view.id}?step=1"))
    assert "Diagram after step 1 of 3" in one and "Next step" in one and "Previous step" not in one
    assert "Waiting: Department manager review" in one
    two = text(client.get(f"/instances/{view.id}?step=2"))
    assert "Waiting: Revise" in two and "Waiting: Department manager review" not in two
    assert "Previous step" in two and "Data after step 2" in two and "价格太低" in two.split("Data after step 2")[1]
    assert client.get(f"/instances/{view.id}?step=4").status_code == 404
    assert client.get(f"/instances/{view.id}?step=0").status_code == 404


def test_a_rework_round_is_a_second_pass_on_the_diagram(rt):
    view = rt.start("contract_review", "rep.wang", contract(), at=T0)
    rt.complete(view.tasks[0].id, "dm.zhou", {"decision": "reject", "comment": "价格太低"}, at=T0 + timedelta(hours=1))
    rt.complete(rt.instance(view.id).tasks[0].id, "rep.wang", revised(), at=T0 + timedelta(hours=2))
    rt.complete(rt.instance(view.id).tasks[0].id, "dm.zhou", {"decision": "reject", "comment": "再议"},
                at=T0 + timedelta(hours=3))
    steps, _ = views_of(rt).history(view.id)
    assert steps[-1].marks.as_json()["passes"]["dm_review"] == 2
    assert steps[1].marks.as_json()["passes"] == {}


def test_each_page_restores_the_state_at_most_once(app, rt, monkeypatch):
    """The task page restores the instance once (its form starts from the task's data); the
    instance page not at all once its steps are kept: the last step's data and diagram are the
    stored state's (the log head says so)."""
    view = escalated_contract(rt)
    client = as_user(app, "vp.qian")
    assert client.get(f"/instances/{view.id}").status_code == 200    # (the replay is now kept)
    assert client.get(f"/tasks/{view.tasks[0].id}").status_code == 200
    restored = []
    real = state.load_state
    monkeypatch.setattr(state, "load_state", lambda *a, **k: restored.append(1) or real(*a, **k))
    assert client.get(f"/instances/{view.id}").status_code == 200
    assert len(restored) == 0
    rt.claim(view.tasks[0].id, "vp.qian", at=T0 + timedelta(hours=4, minutes=30))   # a new log head: replayed
    restored.clear()   # (the command's own restore)
    page = client.get(f"/instances/{view.id}").get_data(as_text=True)
    # the new step replayed from the kept state of step 3 (one restore), not the log from step 1
    assert 'id="step-4"' in page and len(restored) <= 1
    restored.clear()
    assert client.get(f"/tasks/{view.tasks[0].id}").status_code == 200
    assert len(restored) == 1



def test_a_replay_carried_on_in_memory_is_made_again_exactly_where_it_differs(rt, monkeypatch):
    """The replay carries the workflow from one step to the next instead of restoring it; a step
    whose state then comes out other than the log's is replayed again from the restored state, as
    the engine ran it — so a record is never called broken for the shortcut's sake."""
    from engine import audit
    view = escalated_contract(rt)
    real, carried = audit._replay_step, []

    def skewed(instance_id, entry, loaded, script_engine, text, counter, workflow):
        if workflow is not None:   # what a shared nested object could do to a carried workflow
            carried.append(entry.seq)
            workflow.data["skew"] = entry.seq
        return real(instance_id, entry, loaded, script_engine, text, counter, workflow)
    monkeypatch.setattr(audit, "_replay_step", skewed)
    with rt.store.read() as s:
        verdict = audit.verify(s, view.id, rt.script_engine)
    assert carried == [2, 3] and verdict.ok, verdict.problem


def test_the_auditors_first_view_replays_the_record_once(app, rt, monkeypatch):
    """The history's replay also gives the record check's verdict: one replay per log head, not two."""
    from engine import audit
    view = escalated_contract(rt)
    replays, real = [], audit.replay_entries
    monkeypatch.setattr(audit, "replay_entries", lambda *a, **k: replays.append(1) or real(*a, **k))
    page = text(as_user(app, "audit.han").get(f"/instances/{view.id}"))
    assert "Whole: 3 steps" in page and len(replays) == 1
