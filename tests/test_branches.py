"""Branch change (分支机构变更) and closure (分支机构撤销) end to end through the engine's public API.

Seeds 000: 分所管理制度 第八条 (a change needs the board or the authorised board, then the legal
procedures), 异地分支机构管理制度 第五、七条 (HQ decides offices; closure is resolved by HQ, the
branch head is notified and carries out 人员调整、财务结算、法律事务处理…), 分子公司管理制度 四.1(2)
(a change approved by HQ and the authorities, the people responsible notified). The approval
authority is the establishment's (docs/processes.md section 1): HQ review (approve / rework /
reject), then the board for a branch company or a subsidiary, HQ alone for an office.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

import processes
from engine import access, versions
from engine.runtime import Forbidden, InvalidInput, NotFound, Runtime
from engine.store import HumanTask
from processes import notices

from .conftest import instances, snapshot
from .test_processes import APPROVE, BPMN, FORMS, T0, Clock, completions, do, reject, the_task, waiting
from .test_web import app, as_user, catalogs, text  # noqa: F401  (the web app's fixtures)

CHANGE = {
    "branch": "南宁办事处",
    "branch_type": "office",
    "branch_head_username": "om.lin",
    "changes": [
        {"item": "location", "before": "广西南宁市青秀区民族大道 136 号", "after": "广西南宁市良庆区五象大道 401 号"},
        {"item": "head_count", "before": "6", "after": "9"},
    ],
    "reason": "五象新区客户集中，扩大办事处",
    "effective_on": "2027-02-01",
}
CLOSURE = {
    "branch": "南宁办事处",
    "branch_type": "office",
    "branch_head": "林主任",
    "branch_head_username": "om.lin",
    "closure_reason": "integration",
    "reason": "广西业务并入广州办事处统一管理",
    "head_count": 6,
    "planned_close_on": "2027-03-31",
}
CHECKLIST = {  # task -> (who does it, what they enter)
    "staff_adjustment": ("hq.li", {"staff_plan": "4 人调往广州办事处，2 人协商解除劳动合同并支付经济补偿",
                                   "staff_transferred": 4, "staff_released": 2, "staff_done_on": "2027-03-15"}),
    "financial_settlement": ("fin.chu", {"settlement_summary": "应收账款已收回，银行账户已销户，税务已清缴",
                                         "final_balance": 125000.5, "settled_on": "2027-03-20"}),
    "legal_matters": ("hq.li", {"legal_summary": "租约已解除，在履行合同转由广州办事处承接，印章已收回",
                                "legal_done_on": "2027-03-18"}),
    "deregistration": ("hq.li", {"deregistered_with": "南宁市市场监督管理局", "deregistration_no": "ZX-2027-0042",
                                 "deregistered_on": "2027-03-30"}),
}


@pytest.fixture
def rt(store):
    deployed = {d.process_id: d.status for d in versions.deploy(store, [BPMN], actor="design.yang", at=T0)}
    assert deployed["branch_change"] == deployed["branch_closure"] == "deployed"
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def refused(rt, store, view, element_id: str, user: str, data: dict, clock: Clock) -> None:
    """`user` may not complete the task: refused, and the instance is as it was."""
    before = snapshot(store, view.id)
    with pytest.raises((Forbidden, NotFound)):
        rt.complete(the_task(rt.instance(view.id), element_id).id, user, data, at=clock())
    assert snapshot(store, view.id) == before


# --- change (变更) ------------------------------------------------------------------------------

def test_an_office_change_is_decided_by_hq_alone_then_the_head_is_told_and_it_is_registered(rt, store):
    clock = Clock()
    view = rt.start("branch_change", "rm.zheng", CHANGE, at=clock.now)
    review = the_task(view, "hq_review")
    assert (review.role, review.form) == ("hq_admin", "branch_change.hq_review.json")
    sent = len(notices.OUTBOX)
    view = do(rt, view, "hq_review", "hq.li", APPROVE, at=clock())
    assert waiting(view) == ["register_change"]  # an office needs no board
    notice = notices.OUTBOX[sent]
    assert notice["to"] == "om.lin" and notice["subject"].endswith("南宁办事处")
    assert notice["body"] == ("location: 广西南宁市青秀区民族大道 136 号 -> 广西南宁市良庆区五象大道 401 号; "
                              "head_count: 6 -> 9")
    registration = the_task(view, "register_change")
    assert registration.due == registration.created + timedelta(days=30)  # the authorities take weeks
    view = do(rt, view, "register_change", "hq.li", {
        "registered_with": "南宁市市场监督管理局", "registration_ref": "BG-2027-0117", "registered_on": "2027-02-10"},
        at=clock(days=20))
    assert view.status == "completed" and view.tasks == []
    assert view.data["changes"] == CHANGE["changes"] and view.data["registered_on"] == "2027-02-10"
    assert ("board.sun", "complete") not in completions(store, view.id)


@pytest.mark.parametrize("branch_type", ["branch_company", "subsidiary"])
def test_a_branch_company_or_subsidiary_change_needs_the_board_after_hq(rt, store, branch_type):
    clock = Clock()
    view = rt.start("branch_change", "rm.zheng", dict(CHANGE, branch="广西分公司", branch_type=branch_type),
                    at=clock.now)
    view = do(rt, view, "hq_review", "hq.li", APPROVE, at=clock())
    board = the_task(view, "board_approval")
    assert (board.role, board.form) == ("board", "branch_change.board_approval.json")
    view = do(rt, view, "board_approval", "board.sun", {"decision": "approve", "comment": "同意迁址扩编"},
              at=clock(days=5))
    assert waiting(view) == ["register_change"]
    view = do(rt, view, "register_change", "hq.li", {"registered_with": "南宁市市场监督管理局",
                                                      "registered_on": "2027-02-10"}, at=clock(days=20))
    assert view.status == "completed"
    assert [a for a, c in completions(store, view.id) if c == "complete"] == ["hq.li", "board.sun", "hq.li"]


def test_a_change_rejected_by_the_board_or_by_hq_ends_without_notice(rt):
    clock = Clock()
    sent = len(notices.OUTBOX)
    view = rt.start("branch_change", "rm.zheng", dict(CHANGE, branch_type="branch_company"), at=clock.now)
    view = do(rt, view, "hq_review", "hq.li", APPROVE, at=clock())
    with pytest.raises(InvalidInput):  # the board's rejection needs its reason
        rt.complete(the_task(view, "board_approval").id, "board.sun", {"decision": "reject"}, at=clock())
    view = do(rt, view, "board_approval", "board.sun", reject("迁址成本过高"), at=clock(days=3))
    assert view.status == "completed" and view.tasks == [] and view.data["decision"] == "reject"

    view = rt.start("branch_change", "rm.zheng", CHANGE, at=clock())
    view = do(rt, view, "hq_review", "hq.li", reject("与区域规划不符"), at=clock())
    assert view.status == "completed" and view.tasks == []
    assert len(notices.OUTBOX) == sent


def test_a_change_returned_for_rework_keeps_its_before_and_after_and_comes_back_to_hq(rt, store):
    clock = Clock()
    view = rt.start("branch_change", "rm.zheng", CHANGE, at=clock.now)
    with pytest.raises(InvalidInput):  # returning it needs a comment
        rt.complete(the_task(view, "hq_review").id, "hq.li", {"decision": "rework"}, at=clock())
    view = do(rt, view, "hq_review", "hq.li", {"decision": "rework", "comment": "请补充新址租赁合同与人员计划"},
              at=clock())
    rework = the_task(view, "rework")
    assert (rework.assignee, rework.form) == ("rm.zheng", "branch_change.rework.json")
    assert view.data["changes"] == CHANGE["changes"] and view.data["comment"] == "请补充新址租赁合同与人员计划"
    corrected = dict(CHANGE, changes=CHANGE["changes"] + [
        {"item": "org_structure", "before": "主任 1 名，业务员 4 名，内勤 1 名", "after": "主任 1 名，业务员 7 名，内勤 1 名"}])
    view = do(rt, view, "rework", "rm.zheng", corrected, at=clock(days=1))
    assert waiting(view) == ["hq_review"] and view.data["changes"] == corrected["changes"]
    view = do(rt, view, "hq_review", "hq.li", APPROVE, at=clock())
    assert waiting(view) == ["register_change"]
    assert [a for a, c in completions(store, view.id) if c == "complete"] == ["hq.li", "rm.zheng", "hq.li"]


def test_the_approvers_see_each_change_before_and_after_and_cannot_rewrite_it(rt, store):
    for task in ("hq_review", "board_approval", "register_change"):
        schema = json.loads((FORMS / f"branch_change.{task}.json").read_text(encoding="utf-8"))
        changes = schema["properties"]["changes"]
        assert changes["readOnly"] is True and set(changes["items"]["properties"]) == {"item", "before", "after"}
        assert "changes" in schema["x-ui"]["order"]
    clock = Clock()
    view = rt.start("branch_change", "rm.zheng", CHANGE, at=clock.now)
    before = snapshot(store, view.id)
    with pytest.raises(InvalidInput):  # what was asked is not the approver's to change
        rt.complete(the_task(view, "hq_review").id, "hq.li",
                    {"decision": "approve", "changes": [{"item": "name", "before": "a", "after": "b"}]}, at=clock())
    assert snapshot(store, view.id) == before


@pytest.mark.parametrize("bad", [
    {"changes": []},                                                         # nothing to change
    {"changes": [{"item": "location", "before": "南宁"}]},                    # no "after"
    {"changes": [{"item": "colour", "before": "红", "after": "蓝"}]},          # not an item that may change
    {"branch": ""},                                                          # which branch?
    {"branch_type": "shop"},
])
def test_a_change_request_without_what_changes_is_refused_and_nothing_starts(rt, store, bad):
    count = instances(store)
    with pytest.raises(InvalidInput):
        rt.start("branch_change", "rm.zheng", dict(CHANGE, **bad), at=T0)
    assert instances(store) == count


def test_only_the_right_roles_act_on_a_change(rt, store):
    clock = Clock()
    count = instances(store)
    for user in ("rep.wang", "hq.li", "board.sun", "om.lin"):  # the applicant's lane is the regional manager's
        with pytest.raises(Forbidden):
            rt.start("branch_change", user, CHANGE, at=clock())
    assert instances(store) == count
    view = rt.start("branch_change", "rm.zheng", dict(CHANGE, branch_type="branch_company"), at=clock())
    for user in ("rm.zheng", "board.sun", "fin.chu"):
        refused(rt, store, view, "hq_review", user, APPROVE, clock)
    view = do(rt, view, "hq_review", "hq.li", APPROVE, at=clock())
    for user in ("hq.li", "rm.zheng", "gm.zhao"):
        refused(rt, store, view, "board_approval", user, APPROVE, clock)
    view = do(rt, view, "board_approval", "board.sun", APPROVE, at=clock())
    for user in ("board.sun", "fin.chu"):
        refused(rt, store, view, "register_change", user,
                {"registered_with": "南宁市市场监督管理局", "registered_on": "2027-02-10"}, clock)


@pytest.mark.parametrize("process_id, data", [("branch_change", CHANGE), ("branch_closure", CLOSURE)])
def test_of_the_whole_demo_organisation_only_the_regional_manager_applies(rt, store, process_id, data):
    """The applicant's lane is the regional manager's, as for establishment (RULES §1)."""
    started = set()
    for user, *_ in access.DEMO_USERS:
        count = instances(store)
        try:
            rt.start(process_id, user, data, at=T0)
        except Forbidden:
            assert instances(store) == count
        else:
            started.add(user)
    assert started == {"rm.zheng"}


# --- closure (撤销) -----------------------------------------------------------------------------

def approved_closure(rt, clock: Clock, **changes):
    view = rt.start("branch_closure", "rm.zheng", dict(CLOSURE, **changes), at=clock.now)
    review = the_task(view, "hq_review")
    assert (review.role, review.form) == ("hq_admin", "branch_closure.hq_review.json")
    return do(rt, view, "hq_review", "hq.li", {"decision": "approve", "comment": "同意撤销（总部撤销决议）"},
              at=clock())


ORDERS = [("staff_adjustment", "financial_settlement", "legal_matters", "deregistration"),
          ("deregistration", "legal_matters", "financial_settlement", "staff_adjustment"),
          ("financial_settlement", "deregistration", "staff_adjustment", "legal_matters")]


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(t[:5] for t in o) for o in ORDERS])
def test_an_office_closure_runs_its_checklist_in_parallel_in_any_order_and_ends_when_all_are_done(
        rt, store, order):
    clock = Clock()
    sent = len(notices.OUTBOX)
    view = approved_closure(rt, clock)
    # HQ's resolution is sent to the branch head, then the four procedures are open at once
    assert notices.OUTBOX[sent]["to"] == "om.lin" and "南宁办事处" in notices.OUTBOX[sent]["subject"]
    assert waiting(view) == sorted(CHECKLIST)
    roles = {t.element_id: (t.role, t.form) for t in view.tasks}
    assert roles == {task: ("finance" if task == "financial_settlement" else "hq_admin",
                            f"branch_closure.{task}.json") for task in CHECKLIST}
    for n, task in enumerate(order):
        user, data = CHECKLIST[task]
        view = do(rt, view, task, user, data, at=clock(days=5))
        if n < 3:
            assert view.status == "running" and waiting(view) == sorted(set(CHECKLIST) - set(order[:n + 1]))
    assert view.status == "completed" and view.tasks == []
    for task, (_, data) in CHECKLIST.items():  # every procedure's record is in the instance
        assert {k: view.data[k] for k in data} == data, task
    assert ("board.sun", "complete") not in completions(store, view.id)


@pytest.mark.parametrize("branch_type", ["branch_company", "subsidiary"])
def test_a_branch_company_or_subsidiary_closure_needs_the_board(rt, store, branch_type):
    clock = Clock()
    view = approved_closure(rt, clock, branch="广西分公司", branch_type=branch_type)
    assert waiting(view) == ["board_approval"]
    assert the_task(view, "board_approval").form == "branch_closure.board_approval.json"
    view = do(rt, view, "board_approval", "board.sun", {"decision": "approve", "comment": "同意撤销"},
              at=clock(days=4))
    assert waiting(view) == sorted(CHECKLIST)
    for task, (user, data) in CHECKLIST.items():
        view = do(rt, view, task, user, data, at=clock(days=3))
    assert view.status == "completed"


def test_a_closure_rejected_by_the_board_or_by_hq_ends_with_no_checklist(rt):
    clock = Clock()
    sent = len(notices.OUTBOX)
    view = approved_closure(rt, clock, branch_type="branch_company")
    view = do(rt, view, "board_approval", "board.sun", reject("分公司仍有在履行的重大合同"), at=clock(days=2))
    assert view.status == "completed" and view.tasks == []
    view = rt.start("branch_closure", "rm.zheng", CLOSURE, at=clock())
    view = do(rt, view, "hq_review", "hq.li", reject("暂不撤销，观察一个季度"), at=clock())
    assert view.status == "completed" and view.tasks == []
    assert len(notices.OUTBOX) == sent


def test_a_closure_returned_for_rework_keeps_the_data_and_comes_back_to_hq(rt, store):
    clock = Clock()
    started = {k: v for k, v in CLOSURE.items() if k not in ("head_count", "planned_close_on")}
    view = rt.start("branch_closure", "rm.zheng", started, at=clock.now)
    view = do(rt, view, "hq_review", "hq.li", {"decision": "rework", "comment": "请说明现有人数与拟撤销日期"},
              at=clock())
    rework = the_task(view, "rework")
    assert (rework.assignee, rework.form) == ("rm.zheng", "branch_closure.rework.json")
    assert view.data["reason"] == CLOSURE["reason"]
    view = do(rt, view, "rework", "rm.zheng", CLOSURE, at=clock(days=1))
    assert waiting(view) == ["hq_review"] and view.data["head_count"] == 6
    view = do(rt, view, "hq_review", "hq.li", APPROVE, at=clock())
    assert waiting(view) == sorted(CHECKLIST)
    assert [a for a, c in completions(store, view.id) if c == "complete"] == ["hq.li", "rm.zheng", "hq.li"]


def test_each_checklist_task_is_for_its_role_only(rt, store):
    clock = Clock()
    count = instances(store)
    for user in ("rep.wang", "hq.li", "fin.chu"):
        with pytest.raises(Forbidden):
            rt.start("branch_closure", user, CLOSURE, at=clock())
    assert instances(store) == count
    view = approved_closure(rt, clock)
    for task, (holder, data) in CHECKLIST.items():
        for user in ("rm.zheng", "om.lin", "board.sun", "fin.chu" if holder == "hq.li" else "hq.li"):
            refused(rt, store, view, task, user, data, clock)
    # the finance role, not one person: the accountant may settle as well as the finance manager
    view = do(rt, view, "financial_settlement", "acct.xu", CHECKLIST["financial_settlement"][1], at=clock())
    assert "financial_settlement" not in waiting(view)


def test_a_checklist_step_without_its_record_is_refused(rt, store):
    clock = Clock()
    view = approved_closure(rt, clock)
    for task, (user, data) in CHECKLIST.items():
        required = json.loads((FORMS / f"branch_closure.{task}.json").read_text(encoding="utf-8"))["required"]
        before = snapshot(store, view.id)
        with pytest.raises(InvalidInput):
            rt.complete(the_task(view, task).id, user, {k: v for k, v in data.items() if k != required[0]},
                        at=clock())
        assert snapshot(store, view.id) == before


# --- the pages ----------------------------------------------------------------------------------

def test_a_change_is_asked_for_on_the_start_page_and_hq_sees_each_before_and_after(app, rt, store):
    client = as_user(app, "rm.zheng")
    page = text(client.get("/start"))
    assert "/start/branch_change" in page and "/start/branch_closure" in page
    assert client.get("/start/branch_change").status_code == 200
    form = {"branch": "南宁办事处", "branch_type": "office", "branch_head_username": "om.lin",
            "changes": "", "changes-0": "", "changes-0-item": "location", "changes-0-before": "民族大道 136 号",
            "changes-0-after": "五象大道 401 号", "reason": "客户集中", "effective_on": "", "action": "start"}
    response = client.post("/start/branch_change", data=form)
    assert response.status_code in (302, 303), text(response)
    with store.read() as s:
        task_id = s.scalar(select(HumanTask.id).where(HumanTask.process_id == "branch_change"))
    page = text(as_user(app, "hq.li").get(f"/tasks/{task_id}"))
    assert "民族大道 136 号" in page and "五象大道 401 号" in page and "Before" in page and "After" in page
