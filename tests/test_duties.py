"""Offices and separation of duties (RULES.md "Offices and separation of duties"), through the
engine, the API and a page, with the company's own processes and the demo organisation:

- an office's request goes to that office's manager, a region's to that region's manager;
- one person approves at most one level of a request; escalation skips whoever already acted
  or would receive a later level; the submitter's own approval goes at once to another holder
  of the role or to their superior; the submitter's rework stays with the submitter.

Regional managers' reach (a choice, written here): an open office-manager task (the Guangzhou
return's 办事处经理签发) belongs to the office managers of that office only. The regional manager
(rm.zheng, over Guangzhou and Nanning) does not claim it — it is not his role, and his level is
the one above: he receives it when the office manager lets it pass the 4-hour rule (escalation to
the superior), and then acts on it. Tasks of the regional_manager role are scoped to the region.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

import processes
from engine import access, audit, inbox, timers, versions
from engine.runtime import Conflict, Forbidden, InvalidInput, NotFound, Runtime
from engine.store import LogEntry, Office, SlaBreach, UserRole

from .conftest import contract, snapshot, views_of
from .orders_on_file import put_order
from .test_processes import T0, the_task

ROOT = Path(__file__).resolve().parents[1]
APPROVE = {"decision": "approve", "comment": "同意"}
RETURN = {"customer": "C-A01", "order_no": "SO-20261102-4c1d9e", "reason": "quality", "kind": "return",
          "lines": [{"product": "爵士白大理石板", "spec": "800x800x18", "quantity": 12}],
          "description": "表面有裂纹，客户拒收", "attachments": []}

# A refusal: Forbidden to one who may see the instance, NotFound (as for no such task) to anyone else.
REFUSED = (Forbidden, NotFound)


@pytest.fixture
def rt(store):
    versions.deploy(store, [ROOT / "bpmn"], actor="design.yang", at=T0)
    put_order(store)  # the order RETURN names
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def inbox_ids(store, username: str) -> set[str]:
    with store.read() as s:
        return {t.id for t in inbox.tasks_for(s, access.person(s, username))}


def completions(store, instance_id: str) -> list[str]:
    with store.read() as s:
        return [e.actor for e in s.scalars(select(LogEntry).where(
            LogEntry.instance_id == instance_id, LogEntry.command.in_(["start", "complete"])).order_by(LogEntry.seq))]


def give_role(store, username: str, role: str) -> None:
    with store.write() as s:
        s.add(UserRole(username=username, role_id=role))


def verified(rt, store, instance_id: str) -> bool:
    with store.read() as s:
        return audit.verify(s, instance_id, rt.script_engine).ok


# --- offices ------------------------------------------------------------------------------------

# Who may claim, and who may sign, the Guangzhou return's 办事处经理签发 (om_sign), filed by rep.wang
# of the Guangzhou office (manager om.wu; region South China under rm.zheng). Nanning is om.lin's.
OM_SIGN = {
    "om.wu": True,       # Guangzhou's office manager
    "om.lin": False,     # Nanning's office manager: another office
    "rm.zheng": False,   # the region's manager: the level above, reached by escalation only
    "rep.wang": False,   # the submitter
    "rep.feng": False,   # a Guangzhou sales rep: not the role
    "rep.liu": False,    # a Nanning sales rep
    "dm.zhou": False, "vp.qian": False, "gm.zhao": False, "gmo.tang": False,  # HQ: not the role
    "plan.chen": False, "fin.chu": False, "wh.wei": False, "audit.han": False,
}


@pytest.mark.parametrize("username,allowed", sorted(OM_SIGN.items()))
def test_only_the_request_office_manager_may_claim_and_sign_its_return(rt, store, username, allowed):
    view = rt.start("return_request", "rep.wang", RETURN, at=T0)
    task = the_task(view, "om_sign")
    assert (task.role, task.assignee) == ("office_manager", None)
    assert (task.id in inbox_ids(store, username)) is allowed
    if not allowed:
        before = snapshot(store, view.id)
        with pytest.raises(REFUSED):
            rt.claim(task.id, username, at=T0)
        with pytest.raises(REFUSED):
            rt.complete(task.id, username, APPROVE, at=T0)
        assert snapshot(store, view.id) == before
        return
    assert rt.claim(task.id, username, at=T0).assignee == username
    done = rt.complete(task.id, username, APPROVE, at=T0 + timedelta(minutes=5))
    assert "om_sign" not in [t.element_id for t in done.tasks]


def test_another_office_manager_cannot_take_a_guangzhou_return_and_its_own_manager_then_can(rt, store):
    """The quoted case: om.lin (Nanning) claimed and signed rep.wang's Guangzhou return, and om.wu
    was refused afterwards. Now om.lin is refused at claim, sign, view, draft, comment; om.wu signs."""
    view = rt.start("return_request", "rep.wang", RETURN, at=T0)
    task = the_task(view, "om_sign")
    assert task.office_scope == "guangzhou"
    with pytest.raises(NotFound, match="there is no open task"):  # not his office's: told nothing
        rt.claim(task.id, "om.lin", at=T0)
    with pytest.raises(REFUSED):
        rt.complete(task.id, "om.lin", APPROVE, at=T0)
    with pytest.raises(REFUSED):
        rt.instance(view.id, viewer="om.lin")
    with pytest.raises(REFUSED):
        views_of(rt).task_detail(task.id, "om.lin")
    with pytest.raises(REFUSED):
        rt.save_draft(task.id, "om.lin", {"comment": "x"}, at=T0)
    with pytest.raises(REFUSED):
        rt.comment(task.id, "om.lin", "mine", at=T0)
    assert rt.claim(task.id, "om.wu", at=T0).assignee == "om.wu"
    with pytest.raises(InvalidInput, match="not of guangzhou"):  # nor handed to another office
        rt.delegate(task.id, "om.wu", "om.lin", at=T0)
    view = rt.complete(task.id, "om.wu", APPROVE, at=T0 + timedelta(minutes=5))
    assert completions(store, view.id) == ["rep.wang", "om.wu"]
    assert verified(rt, store, view.id)


def test_a_nanning_return_goes_to_nanning_and_escalates_to_the_region(rt, store):
    view = rt.start("return_request", "rep.liu", RETURN, at=T0)
    task = the_task(view, "om_sign")
    assert task.office_scope == "nanning"
    assert task.id in inbox_ids(store, "om.lin") and task.id not in inbox_ids(store, "om.wu")
    timers.run_once(rt, T0 + timedelta(hours=5))  # om.lin let the 4 hours pass: to his superior
    held = the_task(rt.instance(view.id), "om_sign")
    assert held.assignee == "rm.zheng"
    rt.complete(held.id, "rm.zheng", APPROVE, at=T0 + timedelta(hours=6))


def test_a_regional_managers_task_is_for_the_applicants_region(rt, store):
    """branch_establishment's rework is the regional manager's (the applicant's lane): another
    region's manager neither sees nor takes it."""
    with store.write() as s:
        s.add(Office(id="east_china", name="华东大区 East China region", parent_id="HQ"))
        s.flush()
        access.add_user(s, "rm.qin", "pw", ["regional_manager"], superior="vp.qian", office_id="east_china")
    with store.read() as s:
        assert access.request_office(s, "rep.wang") == access.RequestOffice("guangzhou", "south_china")
        assert access.request_office(s, "rm.zheng") == access.RequestOffice("south_china", "south_china")
        assert access.request_office(s, "dm.zhou") == access.RequestOffice()  # HQ is not scoped
        me = access.person(s, "rm.qin")
    assert access.task_scope("regional_manager", access.RequestOffice("guangzhou", "south_china")) == "south_china"
    assert not access.may_act(me, "regional_manager", None, "south_china")
    assert access.may_act(me, "regional_manager", None, "east_china")
    assert access.may_act(me, "regional_manager", None, access.COMPANY)


# --- levels ---------------------------------------------------------------------------------------

def test_a_silent_manager_is_escalated_past_the_vp_who_holds_the_next_level(rt, store):
    """The quoted case: dm.zhou silent, vp.qian received the manager's review, approved it, then
    approved his own VP level too. Now the review skips him (the VP level will be his) to gm.zhao."""
    view = rt.start("contract_review", "rep.wang", contract(price=480, amount=240000), at=T0)
    assert view.data["deviation_approver"] == "vp_sales"
    timers.run_once(rt, T0 + timedelta(hours=5))
    review = the_task(rt.instance(view.id), "dm_review")
    assert review.assignee == "gm.zhao"
    with store.read() as s:
        assert s.scalars(select(SlaBreach.escalated_to)).all() == ["gm.zhao"]
    with pytest.raises(REFUSED):
        rt.complete(review.id, "vp.qian", APPROVE, at=T0 + timedelta(hours=5))
    view = rt.complete(review.id, "gm.zhao", APPROVE, at=T0 + timedelta(hours=6))
    vp = the_task(view, "vp_approval")
    view = rt.complete(vp.id, "vp.qian", APPROVE, at=T0 + timedelta(hours=7))
    assert completions(store, view.id) == ["rep.wang", "gm.zhao", "vp.qian"]  # three people, three levels
    assert verified(rt, store, view.id)


def test_a_silent_manager_of_a_one_level_contract_goes_to_the_vp(rt, store):
    """No later level: the superior is the right one (the skip is not blanket)."""
    view = rt.start("contract_review", "rep.wang", contract(), at=T0)
    assert view.data["deviation_approver"] == "none"  # later: only 总经办 (gmo.tang), not vp.qian
    timers.run_once(rt, T0 + timedelta(hours=5))
    assert the_task(rt.instance(view.id), "dm_review").assignee == "vp.qian"


def test_a_silent_manager_of_a_deviating_major_contract_goes_to_the_vp_whose_level_is_not_next(rt, store):
    """The GM approves the deviation (gm.zhao's level) and 总经办 (gmo.tang's) follows: vp.qian has
    no later level, so the review goes to him. (When everyone above has a level and there is no
    one above, the task stays with its holder: tests/test_contracts.py, the silent 总经办.)"""
    view = rt.start("contract_review", "rep.wang", contract(amount=1_200_000, price=500), at=T0)
    assert (view.data["major_contract"], view.data["deviation_approver"]) == (True, "general_manager")
    timers.run_once(rt, T0 + timedelta(hours=5))
    review = the_task(rt.instance(view.id), "dm_review")
    assert review.assignee == "vp.qian"
    with store.read() as s:
        assert s.scalars(select(SlaBreach.escalated_to)).all() == ["vp.qian"]


def test_a_vp_who_reviewed_as_manager_does_not_get_the_vp_level(rt, store):
    """Role overlap: vp.qian also holds dept_manager and reviews; the VP level, whose only holder
    he is, goes at once to his superior; he can neither take it nor sign it."""
    give_role(store, "vp.qian", "dept_manager")
    view = rt.start("contract_review", "rep.wang", contract(price=480, amount=240000), at=T0)
    review = the_task(view, "dm_review")
    rt.claim(review.id, "vp.qian", at=T0)
    view = rt.complete(review.id, "vp.qian", APPROVE, at=T0 + timedelta(minutes=5))
    vp = the_task(view, "vp_approval")
    assert vp.assignee == "gm.zhao"
    assert vp.id not in inbox_ids(store, "vp.qian")
    with pytest.raises(REFUSED):
        rt.complete(vp.id, "vp.qian", APPROVE, at=T0 + timedelta(minutes=10))
    view = rt.complete(vp.id, "gm.zhao", APPROVE, at=T0 + timedelta(minutes=10))
    assert completions(store, view.id) == ["rep.wang", "vp.qian", "gm.zhao"]
    assert verified(rt, store, view.id)


def test_with_other_vps_the_one_who_reviewed_is_refused_the_vp_level(rt, store):
    """Several other holders: the level stays open to them; the one who acted on another level is
    refused at claim and at complete, with one sentence."""
    give_role(store, "vp.qian", "dept_manager")
    with store.write() as s:
        for name in ("vp.sun", "vp.li"):
            access.add_user(s, name, "pw", ["vp_sales"], superior="gm.zhao", office_id="HQ")
    view = rt.start("contract_review", "rep.wang", contract(price=480, amount=240000), at=T0)
    review = the_task(view, "dm_review")
    rt.claim(review.id, "vp.qian", at=T0)
    view = rt.complete(review.id, "vp.qian", APPROVE, at=T0 + timedelta(minutes=5))
    vp = the_task(view, "vp_approval")
    assert vp.assignee is None
    before = snapshot(store, view.id)
    with pytest.raises(Forbidden, match="already acted on another level"):
        rt.claim(vp.id, "vp.qian", at=T0 + timedelta(minutes=6))
    with pytest.raises(Forbidden, match="already acted on another level"):
        rt.complete(vp.id, "vp.qian", APPROVE, at=T0 + timedelta(minutes=6))
    assert snapshot(store, view.id) == before
    rt.complete(vp.id, "vp.sun", APPROVE, at=T0 + timedelta(minutes=7))


def test_the_submitters_own_approval_goes_to_their_superior_at_once(rt, store):
    """The quoted case: a contract submitted by dm.zhou landed in his own inbox as the dm_review,
    claimable, refused only at submit, and nobody else could take it. Now it goes at once to his
    superior (he is the only department manager), and never waits in his inbox."""
    give_role(store, "dm.zhou", "sales_rep")
    view = rt.start("contract_review", "dm.zhou", contract(), at=T0)
    review = the_task(view, "dm_review")
    assert review.assignee == "vp.qian"
    assert review.id not in inbox_ids(store, "dm.zhou") and review.id in inbox_ids(store, "vp.qian")
    with pytest.raises(Conflict, match="held by vp.qian"):
        rt.claim(review.id, "dm.zhou", at=T0)
    with pytest.raises(REFUSED):
        rt.complete(review.id, "dm.zhou", APPROVE, at=T0)
    view = rt.complete(review.id, "vp.qian", APPROVE, at=T0 + timedelta(minutes=5))
    assert completions(store, view.id) == ["dm.zhou", "vp.qian"]
    assert verified(rt, store, view.id)


def test_a_routed_approval_cannot_be_given_back_to_a_role_no_one_else_may_act_for(rt, store):
    """vp.qian holds dm.zhou's own review because no one else may take it: giving it back to the
    department managers' role would leave it with no one, so unclaim is refused."""
    give_role(store, "dm.zhou", "sales_rep")
    view = rt.start("contract_review", "dm.zhou", contract(), at=T0)
    review = the_task(view, "dm_review")
    before = snapshot(store, view.id)
    with pytest.raises(Forbidden, match="no one else may take it"):
        rt.unclaim(review.id, "vp.qian", at=T0)
    assert snapshot(store, view.id) == before


def test_the_submitters_own_approval_goes_to_another_holder_of_the_role(rt, store):
    give_role(store, "dm.zhou", "sales_rep")
    with store.write() as s:
        access.add_user(s, "dm.he", "pw", ["dept_manager"], superior="vp.qian", office_id="HQ")
    view = rt.start("contract_review", "dm.zhou", contract(), at=T0)
    review = the_task(view, "dm_review")
    assert review.assignee == "dm.he"
    assert review.id not in inbox_ids(store, "dm.zhou")
    rt.unclaim(review.id, "dm.he", at=T0)  # back to the role: open to dm.he, not to dm.zhou
    assert review.id not in inbox_ids(store, "dm.zhou") and review.id in inbox_ids(store, "dm.he")


def test_the_submitters_own_approval_open_to_several_others_is_not_in_their_inbox(rt, store, client):
    """With several other holders the review stays open to them, and never shows in the
    submitter's inbox (engine, API) nor may he take it."""
    give_role(store, "dm.zhou", "sales_rep")
    with store.write() as s:
        for name in ("dm.he", "dm.ma"):
            access.add_user(s, name, "pw", ["dept_manager"], superior="vp.qian", office_id="HQ")
    view = rt.start("contract_review", "dm.zhou", contract(), at=T0)
    review = the_task(view, "dm_review")
    assert review.assignee is None
    assert review.id not in inbox_ids(store, "dm.zhou")
    assert review.id in inbox_ids(store, "dm.he") and review.id in inbox_ids(store, "dm.ma")
    assert client.get("/api/v1/tasks", headers=token(client, "dm.zhou")).json["total"] == 0
    with pytest.raises(Forbidden, match="four-eyes"):
        rt.claim(review.id, "dm.zhou", at=T0)
    rt.complete(review.id, "dm.ma", APPROVE, at=T0 + timedelta(minutes=5))


def test_the_submitters_own_approval_skips_a_superior_who_holds_a_later_level(rt, store):
    give_role(store, "dm.zhou", "sales_rep")
    view = rt.start("contract_review", "dm.zhou", contract(price=480, amount=240000), at=T0)
    assert the_task(view, "dm_review").assignee == "gm.zhao"  # vp.qian will have the VP level


def test_the_reps_rework_stays_with_the_submitter(rt, store):
    view = rt.start("contract_review", "rep.wang", contract(price=480, amount=240000), at=T0)
    view = rt.complete(the_task(view, "dm_review").id, "dm.zhou", {"decision": "reject", "comment": "价格过低"},
                       at=T0 + timedelta(minutes=5))
    revise = the_task(view, "revise")
    assert revise.assignee == "rep.wang"
    with pytest.raises(Forbidden, match="stays with rep.wang"):
        rt.delegate(revise.id, "rep.wang", "rep.feng", "you do it", at=T0 + timedelta(minutes=6))
    timers.run_once(rt, T0 + timedelta(days=3))  # P2D passed: the breach is recorded, the rep keeps it
    revise = the_task(rt.instance(view.id), "revise")
    assert revise.assignee == "rep.wang"
    with store.read() as s:
        assert s.scalars(select(SlaBreach.escalated_to)).all() == [None]


def test_a_second_round_counts_levels_afresh(rt, store):
    """A rejected contract revised by its rep is a new round: whoever reviewed in round 1 may take
    the same or another level in round 2, once."""
    view = rt.start("contract_review", "rep.wang", contract(price=480, amount=240000), at=T0)
    timers.run_once(rt, T0 + timedelta(hours=5))  # round 1: dm_review to gm.zhao
    review = the_task(rt.instance(view.id), "dm_review")
    view = rt.complete(review.id, "gm.zhao", {"decision": "reject", "comment": "重新报价"}, at=T0 + timedelta(hours=6))
    view = rt.complete(the_task(view, "revise").id, "rep.wang",
                       {"price": 500, "amount": 250000, "lines": contract(amount=250000, price=500)["lines"],
                        "payment_terms": "30% 定金，发货前付清",
                        "delivery_date": "2027-01-15"}, at=T0 + timedelta(hours=7))
    review = the_task(view, "dm_review")
    assert review.assignee is None  # round 2 starts open to the department manager again
    view = rt.complete(review.id, "dm.zhou", APPROVE, at=T0 + timedelta(hours=8))
    view = rt.complete(the_task(view, "vp_approval").id, "vp.qian", APPROVE, at=T0 + timedelta(hours=9))
    view = rt.complete(the_task(view, "go_approval").id, "gmo.tang", APPROVE, at=T0 + timedelta(hours=10))
    assert [t.element_id for t in view.tasks] == ["file_contract"]
    assert verified(rt, store, view.id)


# --- through the API and a page ---------------------------------------------------------------------

@pytest.fixture
def client(rt):
    from web import create_app
    return create_app(rt, {"TESTING": True, "SECRET_KEY": "test", "WTF_CSRF_ENABLED": False}).test_client()


def token(client, username: str) -> dict:
    reply = client.post("/api/v1/tokens", json={"username": username, "password": "demo"})
    assert reply.status_code == 201, reply.json
    return {"Authorization": f"Bearer {reply.json['token']}"}


def test_offices_through_the_api(client, store):
    rep = token(client, "rep.wang")
    started = client.post("/api/v1/processes/return_request/instances", headers=rep, json={"data": RETURN})
    assert started.status_code == 201, started.json
    task_id = started.json["tasks"][0]["id"]
    lin, wu = token(client, "om.lin"), token(client, "om.wu")
    assert client.get("/api/v1/tasks", headers=lin).json["total"] == 0
    assert [t["id"] for t in client.get("/api/v1/tasks", headers=wu).json["tasks"]] == [task_id]
    refused = client.post(f"/api/v1/tasks/{task_id}/claim", headers=lin)
    assert refused.status_code == 404  # another office's request: as for a task that does not exist
    assert client.post(f"/api/v1/tasks/{task_id}/complete", headers=lin,
                       json={"data": {"decision": "approve"}}).status_code == 404
    assert client.post(f"/api/v1/tasks/{task_id}/claim", headers=wu).status_code == 200


def test_levels_through_the_api(client, store):
    give_role(store, "dm.zhou", "sales_rep")
    dm = token(client, "dm.zhou")
    started = client.post("/api/v1/processes/contract_review/instances", headers=dm, json={"data": contract()})
    assert started.status_code == 201, started.json
    review = started.json["tasks"][0]
    assert review["assignee"] == "vp.qian"
    assert client.get("/api/v1/tasks", headers=dm).json["total"] == 0
    assert client.post(f"/api/v1/tasks/{review['id']}/complete", headers=dm,
                       json={"data": APPROVE}).status_code == 403


def test_another_offices_manager_is_refused_on_the_page(client, store):
    rep = token(client, "rep.wang")
    started = client.post("/api/v1/processes/return_request/instances", headers=rep, json={"data": RETURN})
    task_id = started.json["tasks"][0]["id"]
    assert client.post("/login", data={"username": "om.lin", "password": "demo"}).status_code == 302
    client.post("/lang", data={"lang": "en"})  # the refusal's words below are the English ones
    assert task_id not in client.get("/").get_data(as_text=True)
    page = client.post(f"/tasks/{task_id}/claim", follow_redirects=True)
    assert page.status_code == 200 and f"there is no open task {task_id}" in page.get_data(as_text=True)
    client.post("/logout")
    assert client.post("/login", data={"username": "om.wu", "password": "demo"}).status_code == 302
    assert task_id in client.get("/").get_data(as_text=True)
    client.post(f"/tasks/{task_id}/claim")
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    # another office's manager is not offered for delegation (the only other office manager)
    assert 'value="om.lin"' not in page and 'id="delegate-to"' not in page
