"""Monthly sales targets of the regions (销售指标管控, seed 002 集团公司年度销售区域管理办法 一; seed 000
办事处经理岗位职责 3): the services of `bpmn/monthly_target.bpmn`.

- `target_plan` — the month a run is for (the month after the run's instant, China time), its
  dates (submit by the 28th, change until the 10th, the check on the 28th) and the regions the
  company has now (rows of the `office` table directly under the root), each with its regional
  manager. A month is started once: the run holds the record `monthly_target_run` keyed by the
  month (engine.records.claim), so a hand start for a month the timer (or a hand) started already
  is refused with one sentence, and so is the 20th's timer run of a month started by hand before
  it (the worker logs the sentence and does not try that run again) — also when two starts come
  at the same instant on PostgreSQL (the key's row refuses the second).
- `region_split` — the region's share of the year's target for the month, by office, as the
  decision table `monthly_target_split` (kept by the sales plan department) gives it.
- `assess_figure` / `assess_change` — the −5 % rule (a figure more than `max_shortfall` below the
  split needs a reason and a remedy, and an approval), and the one change until the 10th.
- `target_progress` — the 70 % figures: the region's sales (orders placed in the month, not
  rejected, not awaiting approval) and collections (deposits and payments received in the month)
  up to the check, from the order chain's "order" records (engine.records, published by
  processes/order_chain.py), against the figure fixed on the 10th.
- `record_target_result` — finance's reward or fine, kept as the business record
  `monthly_target` (key `YYYY-MM/region`).

Every refusal is one sentence (`InvalidInput` naming the form field) and the engine changes nothing.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from engine import access, clock, determinism, records
from engine.runtime import InvalidInput
from engine.store import BusinessRecord, Instance, Office, User, UserRole

from .amounts import money, number, shown



def _zone() -> ZoneInfo:
    """The company's time zone (BPM_TIMEZONE, default Asia/Shanghai, engine.clock): the 20th, 28th
    and 10th are China's days, as are the days the order chain keeps (`received_on`)."""
    return clock.zone()

SUBMIT_DAY, CHANGE_DAY, CHECK_DAY = 28, 10, 28
CHECK_HOUR = 9  # the check task opens on the 28th at 09:00; the figures count up to the 28th 00:00
RUN_KIND = "monthly_target_run"
_l = str  # marks a refusal's template for the web's catalogs (babel.cfg: -k _l); pages translate it
STARTED = _l("the targets of %(key)s were started already (%(holder)s, on %(started_on)s): "
             "a month's targets are started once")


def _conn():
    conn = determinism.connection()
    if conn is None:
        raise RuntimeError("the monthly target services run inside a command")
    return conn


def _next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def _at(day: date, hour: int = 0) -> datetime:
    return datetime.combine(day, time(hour), _zone())


def regions() -> list[dict]:
    """The regions (大区): offices directly under the root of the office tree, each with the
    username of its regional manager (the first active holder of `regional_manager` who sits in
    it, by name), or None when it has none (then any regional manager may take its task)."""
    conn = _conn()
    root = [r.id for r in conn.execute(select(Office.id).where(Office.parent_id.is_(None)))]
    rows = conn.execute(select(Office.id, Office.name).where(Office.parent_id.in_(root)).order_by(Office.id)).all()
    managers = {}
    for username, office in conn.execute(
            select(User.username, User.office_id).join(UserRole, UserRole.username == User.username)
            .where(UserRole.role_id == "regional_manager", User.active.is_(True)).order_by(User.username)):
        managers.setdefault(office, username)
    return [{"region": r.id, "region_name": r.name, "manager": managers.get(r.id)} for r in rows]


def target_plan(scheduled_for: Any = None) -> dict:
    """Service: the month this run is for and its dates. The timer's run on the 20th (or a hand
    start by the sales plan department) is for the next month; `scheduled_for` is the run's
    instant when the timer started it, else the present."""
    when = clock.now()
    if isinstance(scheduled_for, str) and scheduled_for:
        try:
            when = datetime.fromisoformat(scheduled_for.strip())
        except ValueError:
            raise InvalidInput("the run %(run)r is not a day such as 2026-12-20", {"scheduled_for": "not a day"},
                               run=scheduled_for) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_zone())
    today = when.astimezone(_zone()).date()
    month = _next_month(today)
    submit = today.replace(day=SUBMIT_DAY)
    label = f"{month.year:04d}-{month.month:02d}"
    _hold_month(label)
    return {
        "month": label, "year": month.year, "month_no": month.month,
        "business_key": f"MT-{label}",
        "month_start": month.isoformat(),
        "submit_by": submit.isoformat(),
        # 10号前可以调整一次: through the 10th (choice), so the window closes on the 11th at 00:00
        "change_until": _at(month.replace(day=CHANGE_DAY) + timedelta(days=1)).isoformat(),
        "change_last_day": month.replace(day=CHANGE_DAY).isoformat(),
        # 每月28号前 …70%: counted up to the 28th 00:00; finance's task opens that morning
        "cutoff": _at(month.replace(day=CHECK_DAY)).isoformat(),
        "check_at": _at(month.replace(day=CHECK_DAY), CHECK_HOUR).isoformat(),
        "regions": regions(),
    }


def _hold_month(label: str) -> None:
    """This run holds `label`'s month, or it is refused: started already (see the module)."""
    held = records.find(RUN_KIND, label)
    if held is not None and held["instance_id"] != determinism.current().instance_id:
        holder = _conn().execute(select(Instance.business_key).where(Instance.id == held["instance_id"])).scalar()
        raise InvalidInput(STARTED, {"scheduled_for": "started already"}, key=label,
                           holder=holder or held["instance_id"], started_on=held["data"].get("started_on", "?"))
    records.claim(RUN_KIND, label, {"month": label, "started_on": clock.local_text(clock.now())}, taken=STARTED)


def region_split(region: Any, offices: Any, targets: Any) -> dict:
    """Service: the region's split for the month, by office, from the rows the decision table
    `monthly_target_split` matched (`offices` and `targets`, one each per row)."""
    offices = list(offices or []) if isinstance(offices, list) else []
    targets = list(targets or []) if isinstance(targets, list) else []
    names = dict(_conn().execute(select(Office.id, Office.name)).all())
    rows = [{"office": str(o), "office_name": names.get(str(o), str(o)), "target": money(number(t) or 0)}
            for o, t in zip(offices, targets)]
    return {"region": region, "total": money(sum(r["target"] for r in rows)), "offices": rows}


def _shortfall(split: float, expected: float) -> float:
    """How far `expected` is below `split`, as a fraction of the split (0 when above or no split)."""
    if split <= 0 or expected >= split:
        return 0.0
    return round((split - expected) / split, 6)


def assess_figure(split: Any, expected: Any, reason: Any, remedy: Any, max_shortfall: Any,
                  reason_field: str = "reason", remedy_field: str = "remedy") -> dict:
    """Service: the −5 % rule (002 一 2). A figure more than `max_shortfall` below the split
    (与月度分解差异大于-5%) needs a reason and a remedy (写明原因及补救措施), and an approval; the
    rest goes through. Refused, naming the field, when the reason or the remedy is missing."""
    split_v, value, limit = number(split) or 0.0, number(expected), number(max_shortfall)
    if value is None or value < 0:
        raise InvalidInput("the expected figure must be a number of CNY, 0 or more", {"expected": "not a figure"})
    limit = 0.05 if limit is None else limit
    short = _shortfall(split_v, value)
    below = short > limit + 1e-9
    reason = reason.strip() if isinstance(reason, str) else ""
    remedy = remedy.strip() if isinstance(remedy, str) else ""
    if below:
        missing = {f: "required" for f, v in ((reason_field, reason), (remedy_field, remedy)) if not v}
        if missing:
            raise InvalidInput("the figure %(figure)s is %(pct)s %% below the split %(split)s (more than %(limit)s %%): "
                               "write the reason and the remedy", missing, figure=shown(value),
                               pct=shown(short * 100), split=shown(split_v), limit=shown(limit * 100))
    return {"expected": money(value), "split": money(split_v), "difference": money(value - split_v),
            "shortfall_pct": money(short * 100), "below_limit": below,
            "reason": reason or None, "remedy": remedy or None,
            "on": clock.now().astimezone(_zone()).date().isoformat()}


def assess_change(changes_used: Any, change_until: Any, changed_on: Any, split: Any, expected: Any,
                  reason: Any, remedy: Any, max_shortfall: Any) -> dict:
    """Service: a change of the figure (10号前可以调整一次): once, and only until the 10th; then
    the −5 % rule as for the forecast. Refused with a sentence otherwise."""
    until = datetime.fromisoformat(change_until)
    if clock.now() >= until:
        last = (until.astimezone(_zone()) - timedelta(days=1)).date().isoformat()
        raise InvalidInput("the figure may be changed only until the 10th (%(last)s); it is fixed now",
                           {"choice": "after the 10th"}, last=last)
    if (number(changes_used) or 0) >= 1:
        raise InvalidInput("the figure may be changed once until the 10th, and it was changed on %(day)s already",
                           {"choice": "changed once already"}, day=str(changed_on or "?"))
    return assess_figure(split, expected, reason, remedy, max_shortfall,
                         reason_field="new_reason", remedy_field="new_remedy")


def _region_of(conn, initiator: str, cache: dict) -> str:
    if initiator not in cache:
        cache[initiator] = access.request_office(conn, initiator).region
    return cache[initiator]


def target_progress(region: Any, month_start: Any, cutoff: Any, target: Any, reach_ratio: Any) -> dict:
    """Service: the 70 % figures of `region` for the month (002 一 3: 以10号确定的月度指标为基数，每月
    28号前销售应完成到70%的比例，每月28号前回款应完成到70%的比例).

    Sales: the amounts of the orders the region's people placed from `month_start` up to `cutoff`
    (China time), neither rejected nor awaiting approval. Collections: every deposit and payment
    received (`received_on`) in the month before the cutoff's day, on any order of the region.
    An order's region is its initiator's (the rep's office's region)."""
    conn = _conn()
    start = _at(date.fromisoformat(month_start))
    until = datetime.fromisoformat(cutoff)
    first_day, last_day = start.date(), until.astimezone(_zone()).date()
    target_v, ratio = number(target) or 0.0, number(reach_ratio)
    ratio = 0.7 if ratio is None else ratio
    sales = collections = 0.0
    orders = receipts = 0
    cache: dict = {}
    rows = conn.execute(select(BusinessRecord.data, Instance.initiator, Instance.created_at)
                        .join(Instance, Instance.id == BusinessRecord.instance_id)
                        .where(BusinessRecord.kind == "order")).all()
    for data, initiator, created in rows:
        if _region_of(conn, initiator, cache) != region:
            continue
        data = data or {}
        if start <= created < until and data.get("status") not in ("open", "rejected"):
            sales += number(data.get("amount")) or 0.0
            orders += 1
        for payment in data.get("payments") or []:
            try:
                day = date.fromisoformat(str(payment.get("received_on")))
            except ValueError:
                continue
            if first_day <= day < last_day:
                collections += number(payment.get("amount")) or 0.0
                receipts += 1
    need = money(target_v * ratio)
    sales_reached = target_v > 0 and sales >= need - 0.005
    collections_reached = target_v > 0 and collections >= need - 0.005
    pct = (lambda v: money(v / target_v * 100) if target_v > 0 else 0)
    return {"region": region, "target": money(target_v), "required": need, "ratio_pct": money(ratio * 100),
            "sales": money(sales), "sales_pct": pct(sales), "sales_reached": sales_reached,
            "collections": money(collections), "collections_pct": pct(collections),
            "collections_reached": collections_reached, "orders": orders, "receipts": receipts,
            "counted_from": first_day.isoformat(), "counted_until": (last_day - timedelta(days=1)).isoformat(),
            # 销售回款均需达到70%的比例方可给予奖励
            "proposed": "reward" if sales_reached and collections_reached else "fine"}


def record_target_result(month: Any, region: Any, progress: Any, outcome: Any, sum_cny: Any, note: Any,
                         reward: Any, fine: Any) -> dict:
    """Service: finance's verdict (财务部门核定并提报) kept as the record `monthly_target`. An outcome
    or a sum other than the computed one (达到奖励1000元，未达到罚款1000元) needs a note."""
    progress = progress if isinstance(progress, dict) else {}
    note = note.strip() if isinstance(note, str) else ""
    if outcome not in ("reward", "fine"):
        raise InvalidInput("the outcome is a reward or a fine", {"outcome": "reward or fine"})
    value = number(sum_cny)
    if value is None or value < 0:
        raise InvalidInput("the sum must be a number of CNY, 0 or more", {"sum_cny": "not a sum"})
    expected_sum = number(reward if outcome == "reward" else fine) or 0.0
    if not note and outcome != progress.get("proposed"):
        raise InvalidInput("the figures give a %(proposed)s: a %(outcome)s needs a note saying why",
                           {"note": "required"}, proposed=str(progress.get("proposed")), outcome=outcome)
    if not note and abs(value - expected_sum) > 0.005:
        raise InvalidInput("the %(outcome)s is %(expected)s CNY: another sum needs a note saying why",
                           {"note": "required"}, outcome=outcome, expected=shown(expected_sum))
    data = {"month": month, "region": region, "outcome": outcome, "sum_cny": money(value),
            "signed_sum": money(value if outcome == "reward" else -value), "note": note or None,
            "target": progress.get("target"), "sales": progress.get("sales"),
            "collections": progress.get("collections"), "sales_pct": progress.get("sales_pct"),
            "collections_pct": progress.get("collections_pct"), "proposed": progress.get("proposed")}
    records.publish_record("monthly_target", f"{month}/{region}", data)
    return data
