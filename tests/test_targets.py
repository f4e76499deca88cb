"""Monthly regional targets (区域月度销售指标, seed 002 集团公司年度销售区域管理办法 一; seed 000 办事处经理
岗位职责 3) through the engine's public API: bpmn/monthly_target.bpmn, its decision tables and
processes/targets.py.

The timer starts the month's targets on the 20th for every region; the regional manager submits
next month's figure by the 28th (reminded, escalated to the VP when silent); a figure more than
5 % below the split needs a reason, a remedy and the VP's approval; one change until the 10th; on
the 28th finance sees the 70 % figures computed from the orders and receipts of the order chain
and records the reward or fine.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from html import unescape

import pytest
from sqlalchemy import select

import processes
from engine import audit, timers, versions
from engine.runtime import Forbidden, InvalidInput, Runtime
from engine.store import BusinessRecord, Definition, Instance, Notification, Office, User, UserRole
from engine.views import ENGINE_KEYS, Views

from .test_processes import APPROVE, BPMN, Clock, do, order, reject, the_task
from .test_web import as_user, catalogs, make_app  # noqa: F401 (catalogs: a fixture)

CHINA = timezone(timedelta(hours=8))
T0 = datetime(2026, 12, 15, 9, 0, tzinfo=CHINA)  # deployed in mid-December
RUN = datetime(2026, 12, 20, 9, 0, tzinfo=CHINA)  # the timer: the 20th, 09:00 China time
SPLIT_JAN = 1_800_000  # South China's split for January 2027 (monthly_target_split.dmn: 1,080,000 + 720,000)


@pytest.fixture
def rt(store):
    versions.deploy(store, [BPMN], actor="design.yang", at=T0)
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def month_runs(store) -> list[Instance]:
    with store.read() as s:
        return list(s.scalars(select(Instance).where(Instance.process_id == "monthly_target")
                              .order_by(Instance.created_at)))


def started(rt, at: datetime = RUN + timedelta(seconds=30)):
    timers.run_once(rt, at)
    [run] = month_runs(rt.store)
    return rt.instance(run.id)


def tasks_of(view, element_id: str) -> list:
    return [t for t in view.tasks if t.element_id == element_id]


def views(rt) -> Views:
    return Views(rt.store, rt.script_engine)


def shown(rt, task, user: str) -> dict:
    """What the task's page shows its holder (the data the form starts from)."""
    return views(rt).task_detail(task.id, user)["data"]


def add_region(store, region: str = "east_china", manager: str = "rm.xu") -> None:
    """A second region (a row of the office table under HQ) with its own regional manager."""
    with store.transaction() as conn:
        conn.execute(Office.__table__.insert().values(id=region, name="华东大区 East China region", parent_id="HQ"))
        conn.execute(User.__table__.insert().values(username=manager, display_name="许经理 Xu", password_hash="x",
                                                     office_id=region, superior="vp.qian", active=True,
                                                     session_version=0))
        conn.execute(UserRole.__table__.insert().values(username=manager, role_id="regional_manager"))


def forecast(rt, view, expected: float, at: datetime, user: str = "rm.zheng", **more):
    return do(rt, view, "forecast", user, {"expected": expected, **more}, at=at)


def change(rt, view, at: datetime, **data):
    return do(rt, view, "confirm", "rm.zheng", {"choice": "change", **data}, at=at)


def record(store, key: str) -> dict | None:
    with store.read() as s:
        row = s.get(BusinessRecord, ("monthly_target", key))
        return row.data if row else None


# --- the timer on the 20th starts the work for every region --------------------------------------

def test_the_timer_on_the_20th_starts_next_months_targets_for_every_region(rt, store):
    add_region(store)
    assert timers.run_once(rt, RUN - timedelta(minutes=1)).started == []
    view = started(rt)
    assert view.initiator == "worker" and view.data["scheduled_for"] == RUN.isoformat()
    assert view.business_key == "MT-2027-01"
    assert view.data["plan"]["month"] == "2027-01"
    # one forecast per region, held by that region's manager, due on the 28th at 18:00 China time
    holders = sorted((t.assignee, t.role, t.due.astimezone(CHINA)) for t in tasks_of(view, "forecast"))
    due = datetime(2026, 12, 28, 18, 0, 30, tzinfo=CHINA)
    assert holders == [("rm.xu", "regional_manager", due), ("rm.zheng", "regional_manager", due)]
    # a second pass starts nothing; the next run is January's, for February
    assert timers.run_once(rt, RUN + timedelta(hours=2)).started == []
    assert len(month_runs(store)) == 1
    # the forecast shows the region's split by office (monthly_target_split.dmn)
    south = next(t for t in tasks_of(view, "forecast") if t.assignee == "rm.zheng")
    split = shown(rt, south, "rm.zheng")["split"]
    assert split["total"] == SPLIT_JAN
    assert [(o["office"], o["target"]) for o in split["offices"]] == [("guangzhou", 1_080_000), ("nanning", 720_000)]
    # another region's manager does not act on it
    with pytest.raises(Forbidden):
        rt.complete(south.id, "rm.xu", {"expected": SPLIT_JAN}, at=RUN + timedelta(hours=1))


def test_a_silent_regional_manager_is_reminded_the_day_before_and_escalated_to_the_vp_on_the_28th(rt, store):
    view = started(rt)
    timers.run_once(rt, datetime(2026, 12, 27, 18, 1, tzinfo=CHINA))
    with store.read() as s:
        kinds = [(n.username, n.kind) for n in s.scalars(select(Notification).where(
            Notification.instance_id == view.id).order_by(Notification.id))]
    assert ("rm.zheng", "reminder") in kinds
    timers.run_once(rt, datetime(2026, 12, 28, 18, 1, tzinfo=CHINA))
    task = the_task(rt.instance(view.id), "forecast")
    assert (task.assignee, task.escalated_from) == ("vp.qian", "rm.zheng")


def test_the_sales_plan_department_may_start_a_month_by_hand_and_nobody_else(rt, store):
    at = datetime(2027, 1, 21, 10, 0, tzinfo=CHINA)
    with pytest.raises(Forbidden):
        rt.start("monthly_target", "rm.zheng", {}, at=at)
    with pytest.raises(InvalidInput) as refused:
        rt.start("monthly_target", "plan.chen", {"scheduled_for": "2027-02-30"}, at=at)
    assert "2027-02-30" in str(refused.value)
    assert month_runs(store) == []
    # the day it stands for decides the month: a start on 21 January is for February
    view = rt.start("monthly_target", "plan.chen", {"note": "部署后补发"}, at=at)
    assert view.business_key == "MT-2027-02" and view.data["plan"]["change_last_day"] == "2027-02-10"
    view = rt.start("monthly_target", "plan.chen", {"scheduled_for": "2026-12-20"}, at=at)
    assert view.business_key == "MT-2027-01"


# --- the -5 % rule --------------------------------------------------------------------------------

def test_a_forecast_6_percent_under_the_split_needs_a_reason_a_remedy_and_waits_for_the_vp(rt, store):
    view = started(rt)
    at = RUN + timedelta(days=1)
    six_under = SPLIT_JAN * 0.94
    with pytest.raises(InvalidInput) as refused:
        forecast(rt, view, six_under, at)
    assert "6 % below the split 1800000" in str(refused.value) and "reason and the remedy" in str(refused.value)
    assert set(refused.value.fields) == {"reason", "remedy"}
    with pytest.raises(InvalidInput) as refused:
        forecast(rt, view, six_under, at, reason="春节停工")
    assert set(refused.value.fields) == {"remedy"}
    assert [t.element_id for t in rt.instance(view.id).tasks] == ["forecast"]  # nothing changed
    view = forecast(rt, view, six_under, at, reason="春节停工两周", remedy="节前备货，节后加开展会")
    approval = the_task(view, "vp_approval")
    assert approval.role == "vp_sales"
    proposal = shown(rt, approval, "vp.qian")["proposal"]
    assert (proposal["expected"], proposal["shortfall_pct"], proposal["below_limit"]) == (1_692_000, 6, True)
    assert proposal["reason"] == "春节停工两周"
    # the regional manager does not approve his own figure
    with pytest.raises(Forbidden):
        rt.complete(approval.id, "rm.zheng", APPROVE, at=at)
    # rejected: back to the regional manager with the VP's comment
    view = do(rt, view, "vp_approval", "vp.qian", reject("补救措施不足，请再议"), at=at + timedelta(hours=1))
    again = the_task(view, "forecast")
    assert again.assignee == "rm.zheng" and shown(rt, again, "rm.zheng")["comment"] == "补救措施不足，请再议"
    view = forecast(rt, view, six_under, at + timedelta(hours=2), reason="春节停工两周", remedy="节前备货，增加两场展会")
    view = do(rt, view, "vp_approval", "vp.qian", APPROVE, at=at + timedelta(hours=3))
    confirm = the_task(view, "confirm")
    assert shown(rt, confirm, "rm.zheng")["figure"]["expected"] == 1_692_000


@pytest.mark.parametrize("expected", [SPLIT_JAN * 0.95, SPLIT_JAN * 0.96, SPLIT_JAN * 1.1])
def test_a_figure_within_5_percent_of_the_split_or_above_it_goes_through_without_approval(rt, expected):
    view = forecast(rt, started(rt), expected, RUN + timedelta(days=2))
    assert [t.element_id for t in view.tasks] == ["confirm"]
    figure = shown(rt, the_task(view, "confirm"), "rm.zheng")["figure"]
    assert figure["below_limit"] is False and figure["expected"] == round(expected)


# --- one change until the 10th ---------------------------------------------------------------------

def test_one_change_before_the_10th_is_accepted_and_a_second_is_refused(rt):
    view = forecast(rt, started(rt), SPLIT_JAN, RUN + timedelta(days=1))
    view = change(rt, view, datetime(2027, 1, 5, 10, 0, tzinfo=CHINA), new_expected=1_900_000)
    confirm = the_task(view, "confirm")
    data = shown(rt, confirm, "rm.zheng")
    assert (data["figure"]["expected"], data["changes_used"], data["changed_on"]) == (1_900_000, 1, "2027-01-05")
    with pytest.raises(InvalidInput) as refused:
        change(rt, view, datetime(2027, 1, 6, 10, 0, tzinfo=CHINA), new_expected=2_000_000)
    assert str(refused.value) == ("the figure may be changed once until the 10th, and it was changed on "
                                  "2027-01-05 already")
    assert refused.value.fields == {"choice": "changed once already"}
    assert shown(rt, the_task(rt.instance(view.id), "confirm"), "rm.zheng")["figure"]["expected"] == 1_900_000
    # confirming closes the window: the figure is fixed, the instance waits for the 28th
    view = do(rt, view, "confirm", "rm.zheng", {"choice": "confirm"}, at=datetime(2027, 1, 6, 11, tzinfo=CHINA))
    assert view.tasks == [] and view.status == "running"


def test_a_change_more_than_5_percent_under_needs_the_vp_and_a_rejected_change_leaves_the_figure(rt):
    view = forecast(rt, started(rt), SPLIT_JAN, RUN + timedelta(days=1))
    at = datetime(2027, 1, 4, 10, 0, tzinfo=CHINA)
    with pytest.raises(InvalidInput) as refused:
        change(rt, view, at, new_expected=1_600_000)
    assert set(refused.value.fields) == {"new_reason", "new_remedy"}
    view = change(rt, view, at, new_expected=1_600_000, new_reason="大客户推迟", new_remedy="开发两个新经销商")
    view = do(rt, view, "vp_approval", "vp.qian", reject("不同意下调"), at=at + timedelta(hours=1))
    data = shown(rt, the_task(view, "confirm"), "rm.zheng")
    assert (data["figure"]["expected"], data["changes_used"]) == (SPLIT_JAN, 0)  # the change did not happen


def test_a_change_after_the_10th_is_refused_and_the_window_closes(rt):
    view = forecast(rt, started(rt), SPLIT_JAN, RUN + timedelta(days=1))
    late = datetime(2027, 1, 11, 0, 30, tzinfo=CHINA)  # before the worker has closed the window
    with pytest.raises(InvalidInput) as refused:
        change(rt, view, late, new_expected=1_900_000)
    assert str(refused.value) == "the figure may be changed only until the 10th (2027-01-10); it is fixed now"
    timers.run_once(rt, late + timedelta(minutes=1))
    view = rt.instance(view.id)
    assert view.tasks == [] and view.status == "running"  # waiting for the 28th with the figure of the 10th


# --- the 28th: the 70 % figures and the reward or fine ------------------------------------------------

def placed(rt, clock: Clock, amount: float, deposit: float, received_on: str, rep: str = "rep.wang"):
    """A phone order of `amount` placed by `rep` through order_to_settlement, approved by the
    department manager, with a deposit of `deposit` received on `received_on`."""
    view = rt.start("order_to_settlement", rep, order("C-A01", amount, delivery_date="2027-03-20"), at=clock())
    view = do(rt, view, "approve_order_dm", "dm.zhou", APPROVE, at=clock())
    return do(rt, view, "confirm_deposit", "fin.chu", {
        "deposit_received": deposit, "received_on": received_on,
        "voucher_no": f"BK-{received_on}-{amount}"}, at=clock())


def to_the_28th(rt, view):
    view = forecast(rt, view, SPLIT_JAN, RUN + timedelta(days=1))
    view = do(rt, view, "confirm", "rm.zheng", {"choice": "confirm"}, at=RUN + timedelta(days=2))
    return view


def test_the_28th_check_shows_the_70_percent_figures_from_orders_and_receipts_and_records_a_fine(rt, store):
    view = to_the_28th(rt, started(rt))
    # December: an order placed before the month (not January's sales), its deposit paid in January
    december = Clock(datetime(2026, 12, 22, 10, 0, tzinfo=CHINA))
    placed(rt, december, 500_000, 150_000, "2027-01-03")
    january = Clock(datetime(2027, 1, 12, 10, 0, tzinfo=CHINA))
    placed(rt, january, 1_000_000, 300_000, "2027-01-12")
    placed(rt, january, 300_000, 90_000, "2027-01-13")
    # a phone order the manager rejected is no sale; an order of another region's rep would not count
    rejected = rt.start("order_to_settlement", "rep.wang", order("C-B01", 800_000, delivery_date="2027-03-20"),
                        at=january())
    do(rt, rejected, "approve_order_dm", "dm.zhou", reject("客户信用不足"), at=january())
    # placed late on the 27th: a sale of the month; its deposit, received on the 28th, is after the cutoff
    placed(rt, Clock(datetime(2027, 1, 27, 23, 0, tzinfo=CHINA)), 200_000, 60_000, "2027-01-28")

    assert timers.run_once(rt, datetime(2027, 1, 28, 8, 59, tzinfo=CHINA)) is not None
    assert rt.instance(view.id).tasks == []
    timers.run_once(rt, datetime(2027, 1, 28, 9, 0, 30, tzinfo=CHINA))
    view = rt.instance(view.id)
    check = the_task(view, "check")
    assert check.role == "finance"
    progress = shown(rt, check, "fin.chu")["progress"]
    assert progress["target"] == SPLIT_JAN and progress["required"] == 1_260_000
    # sales: 1,000,000 + 300,000 + 200,000 placed in January (the rejected one and December's not)
    assert (progress["sales"], progress["orders"], progress["sales_pct"], progress["sales_reached"]) == \
        (1_500_000, 3, 83.33, True)
    # collections: 150,000 + 300,000 + 90,000 received 1–27 January (the 28th's 60,000 not)
    assert (progress["collections"], progress["receipts"], progress["collections_reached"]) == (540_000, 3, False)
    assert progress["proposed"] == "fine"  # both must reach 70 % for the reward
    # finance records the fine; a reward against the figures needs a note
    with pytest.raises(InvalidInput) as refused:
        do(rt, view, "check", "fin.chu", {"outcome": "reward", "sum_cny": 1000}, at=datetime(2027, 1, 28, 10, tzinfo=CHINA))
    assert refused.value.fields == {"note": "required"}
    assert record(store, "2027-01/south_china") is None
    view = do(rt, view, "check", "fin.chu", {"outcome": "fine", "sum_cny": 1000}, at=datetime(2027, 1, 28, 10, tzinfo=CHINA))
    assert view.status == "completed"
    kept = record(store, "2027-01/south_china")
    assert (kept["outcome"], kept["sum_cny"], kept["signed_sum"], kept["sales"], kept["collections"]) == \
        ("fine", 1000, -1000, 1_500_000, 540_000)
    assert view.data["results"][0]["signed_sum"] == -1000
    # the whole month, every region's branch with its timers and services, replays from the log
    with store.read() as s:
        assert audit.verify(s, view.id, rt.script_engine).ok
        labelled = {k for schema in s.scalar(select(Definition.forms).where(
            Definition.process_id == "monthly_target")).values() for k in schema.get("properties") or {}}
    # and every field it holds has a label in both languages (a form's, or monthly_target.data.json's)
    steps, replayed = views(rt).history(view.id)
    assert replayed and {k for step in steps for k in step.after if k not in ENGINE_KEYS} - labelled == set()


def test_sales_and_collections_both_at_70_percent_give_the_reward(rt, store):
    view = to_the_28th(rt, started(rt))
    january = Clock(datetime(2027, 1, 15, 10, 0, tzinfo=CHINA))
    placed(rt, january, 1_260_000, 1_260_000, "2027-01-15")  # exactly 70 %, paid in full as the deposit
    timers.run_once(rt, datetime(2027, 1, 28, 9, 1, tzinfo=CHINA))
    view = rt.instance(view.id)
    progress = shown(rt, the_task(view, "check"), "acct.xu")["progress"]
    assert (progress["sales_reached"], progress["collections_reached"], progress["proposed"]) == (True, True, "reward")
    with pytest.raises(Forbidden):  # only finance checks
        do(rt, view, "check", "rm.zheng", {"outcome": "reward", "sum_cny": 1000}, at=datetime(2027, 1, 28, 10, tzinfo=CHINA))
    view = do(rt, view, "check", "acct.xu", {"outcome": "reward", "sum_cny": 1000}, at=datetime(2027, 1, 28, 10, tzinfo=CHINA))
    kept = record(store, "2027-01/south_china")
    assert (kept["outcome"], kept["signed_sum"], kept["proposed"]) == ("reward", 1000, "reward")


# --- the pages ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang, words", [("en", ["Region's split (CNY)", "Guangzhou office", "1,080,000"]),
                                         ("zh_Hans_CN", ["区域月度分解（元）", "广州办事处", "下月预计完成指标（元）"])])
def test_the_forecast_page_shows_the_split_and_a_short_figure_is_refused_next_to_the_fields(
        rt, catalogs, tmp_path, monkeypatch, lang, words):  # noqa: F811 (catalogs: a fixture)
    view = started(rt)
    task = the_task(view, "forecast")
    monkeypatch.setenv("BPM_NOW", (RUN + timedelta(days=1)).astimezone(timezone.utc).isoformat())
    client = as_user(make_app(rt, catalogs, tmp_path), "rm.zheng", lang)
    page = client.get(f"/tasks/{task.id}")
    assert page.status_code == 200
    body = unescape(page.get_data(as_text=True))
    for word in words:
        assert word in body, word
    refused = client.post(f"/tasks/{task.id}", data={"action": "complete", "expected": "1692000"})
    assert refused.status_code in (200, 400, 422)
    said = unescape(refused.get_data(as_text=True))
    assert ("write the reason and the remedy" in said) or ("须写明原因及补救措施" in said)
    assert [t.element_id for t in rt.instance(view.id).tasks] == ["forecast"]
    assert client.get(f"/instances/{view.id}").status_code == 200


# --- a month is started once ------------------------------------------------------------------------

def test_a_month_the_timer_started_is_not_started_again_by_hand(rt, store):
    view = started(rt)
    forecasts = [(t.id, t.assignee) for t in tasks_of(view, "forecast")]
    at = RUN + timedelta(hours=2)
    for start in ({}, {"scheduled_for": "2026-12-21"}):  # a hand start for January, twice
        with pytest.raises(InvalidInput) as refused:
            rt.start("monthly_target", "plan.chen", start, at=at)
        assert str(refused.value) == (f"the targets of 2027-01 were started already ({view.business_key}, on "
                                      "2026-12-20 09:00): a month's targets are started once")
        assert list(refused.value.fields) == ["scheduled_for"]
    assert [r.id for r in month_runs(store)] == [view.id]
    assert [(t.id, t.assignee) for t in tasks_of(rt.instance(view.id), "forecast")] == forecasts


def test_the_timer_does_not_start_a_month_started_by_hand_and_a_second_hand_start_is_refused(rt, store):
    first = rt.start("monthly_target", "plan.chen", {"note": "提前发起"}, at=RUN - timedelta(days=1))
    assert first.business_key == "MT-2027-01"
    with pytest.raises(InvalidInput, match="the targets of 2027-01 were started already"):
        rt.start("monthly_target", "plan.chen", {}, at=RUN - timedelta(hours=1))
    done = timers.run_once(rt, RUN + timedelta(seconds=30))  # the 20th's run for January: refused, quietly
    assert done.started == [] and "the targets of 2027-01 were started already" in done.failed["monthly_target"]
    assert timers.run_once(rt, RUN + timedelta(minutes=5)).failed == {}  # tried once, not at every pass
    assert [r.id for r in month_runs(store)] == [first.id]
    # February is another month
    assert rt.start("monthly_target", "plan.chen", {"scheduled_for": "2027-01-20"}, at=RUN).business_key == "MT-2027-02"
