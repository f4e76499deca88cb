"""The instance search (engine/instances.py) and its three doors: the page `/instances`, the API
`GET /api/v1/instances` and `bpm instances` — scopes by who is asking, each filter, free text,
sorting and paging by position, and the refusals.

The instances are real: started and worked through the runtime on the demo organisation.
"""
from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import select

from bpm import cli
from engine import access, instances, timers, versions
from engine.instances import InstanceQuery
from engine.runtime import CommandFailed, Forbidden, InvalidInput
from engine.store import HumanTask, LogEntry, SlaBreach

from .conftest import contract
from .test_web import T0, app, as_user, catalogs, rt, text  # noqa: F401 (fixtures)

RUNTIME_DATA = Path(__file__).parent / "data" / "runtime"
APPROVE = {"decision": "approve"}


def task_of(rt, instance_id: str, element_id: str):
    return next(t for t in rt.instance(instance_id).tasks if t.element_id == element_id)


@pytest.fixture
def world(rt, store):
    """Five instances, in China's days (UTC+8):
    A  rep.wang, C-B01, Mon 23rd — approved by dm.zhou and gmo.tang, filed: completed
    B  rep.wang, C-A01, Mon 23rd — claimed by dm.zhou, silent past its due: escalated to vp.qian (a breach)
    C  rep.feng, C-C01, Tue 24th — waiting for the department manager
    D  rep.liu,  C-B01, Wed 25th — waiting for the department manager
    E  rep.wang, the `failing` test process, Wed 25th — a failed step left an open incident
    """
    a = rt.start("contract_review", "rep.wang", contract(), at=T0)
    rt.complete(task_of(rt, a.id, "dm_review").id, "dm.zhou", APPROVE, at=T0 + timedelta(minutes=10))
    rt.complete(task_of(rt, a.id, "go_approval").id, "gmo.tang", APPROVE, at=T0 + timedelta(minutes=20))
    a = rt.complete(task_of(rt, a.id, "file_contract").id, "rep.wang",
                    {"signed_on": "2026-11-23", "archive_location": "A-3"}, at=T0 + timedelta(minutes=30))
    assert a.status == "completed"
    b = rt.start("contract_review", "rep.wang", contract(customer="C-A01"), at=T0 + timedelta(hours=1))
    rt.claim(b.tasks[0].id, "dm.zhou", at=T0 + timedelta(hours=1, minutes=5))
    timers.run_once(rt, T0 + timedelta(hours=6))
    c = rt.start("contract_review", "rep.feng", contract(customer="C-C01"), at=T0 + timedelta(days=1))
    d = rt.start("contract_review", "rep.liu", contract(), at=T0 + timedelta(days=2))
    versions.deploy(store, [RUNTIME_DATA / "failing.bpmn"], actor="design.yang", at=T0)
    e = rt.start("failing", "rep.wang", {}, at=T0 + timedelta(days=2, minutes=5))
    with pytest.raises(CommandFailed):
        rt.complete(e.tasks[0].id, "rep.wang", {"amount": 0}, at=T0 + timedelta(days=2, minutes=6))
    with store.read() as s:
        assert s.scalars(select(SlaBreach.instance_id)).all() == [b.id]
    return {"A": a.id, "B": b.id, "C": c.id, "D": d.id, "E": e.id}


NOW = T0 + timedelta(days=2, hours=1)  # Wed 25th 10:00 in China


def find(store, username: str, now: datetime = NOW, **args) -> instances.InstancePage:
    with store.read() as s:
        who = access.person(s, username)
        return instances.search(s, who, InstanceQuery.from_args({k: str(v) for k, v in args.items()}), now)


def named(world: dict, page) -> set[str]:
    by_id = {v: k for k, v in world.items()}
    return {by_id[r.id] for r in page.rows}


# --- scopes ---------------------------------------------------------------------------------------

def test_a_rep_sees_what_he_started_and_took_part_in_and_nothing_else(store, world, matches):
    page = find(store, "rep.wang")
    assert page.scope == "took_part" and named(world, page) == {"A", "B", "E"} and page.total == 3
    assert named(world, find(store, "rep.wang", scope="started")) == {"A", "B", "E"}
    assert named(world, find(store, "rep.feng")) == {"C"}
    assert named(world, find(store, "rep.liu")) == {"D"}


def test_a_manager_sees_what_he_acted_on_though_he_started_none(store, world, matches):
    assert named(world, find(store, "dm.zhou")) == {"A", "B"}  # approved A, claimed B
    assert named(world, find(store, "dm.zhou", scope="started")) == set()
    assert named(world, find(store, "gmo.tang")) == {"A"}


def test_the_auditor_sees_every_instance_by_default(store, world):
    page = find(store, "audit.han")
    assert page.scope == "all" and named(world, page) == set(world) and page.total == 5
    assert named(world, find(store, "audit.han", scope="took_part")) == set()


def test_search_all_is_refused_to_everyone_but_the_auditor(store, world):
    for username in ("rep.wang", "dm.zhou", "gm.zhao"):
        with pytest.raises(Forbidden) as refused:
            find(store, username, scope="all")
        assert str(refused.value) == (f"only auditors may search all instances; {username} may search the "
                                      "instances they started or took part in")


# --- filters --------------------------------------------------------------------------------------

@pytest.fixture(params=["few", "many"])
def matches(request, monkeypatch):
    """The search reads memberships (took part, overdue, breach, incident) as a list of ids when few
    instances match, and checks them while walking an order index when many do: both ways here."""
    if request.param == "many":  # as if each membership were larger than DENSE
        monkeypatch.setattr(instances, "DENSE", -1)
    return request.param


def test_each_filter_narrows_the_auditors_list(store, world, matches):
    def only(**args) -> set[str]:
        return named(world, find(store, "audit.han", **args))
    assert only(process="failing") == {"E"}
    assert only(process="contract_review") == {"A", "B", "C", "D"}
    key = find(store, "audit.han", process="contract_review", customer="C-C01").rows[0].business_key
    assert key and only(business_key=key) == {"C"}
    assert only(customer="C-B01") == {"A", "D"}
    assert only(actor="dm.zhou") == {"A", "B"}
    assert only(actor="rep.liu") == {"D"}
    assert only(status="completed") == {"A"}
    assert only(status="running") == {"B", "C", "D", "E"}
    assert only(status="cancelled") == set()
    assert only(breach=1) == {"B"}
    assert only(incident=1) == {"E"}
    assert only(customer="C-B01", status="running") == {"D"}


def test_overdue_means_an_open_task_past_its_due_time(store, world, matches):
    with store.read() as s:
        late = {i for i, due in s.execute(select(HumanTask.instance_id, HumanTask.due_at)) if due and due < NOW}
    expected = {k for k, v in world.items() if v in late}
    assert "C" in expected and "D" not in expected and "A" not in expected  # C waited a day; D an hour
    assert named(world, find(store, "audit.han", overdue=1)) == expected
    row = next(r for r in find(store, "audit.han").rows if r.id == world["C"])
    assert row.overdue and not next(r for r in find(store, "audit.han").rows if r.id == world["D"]).overdue


def test_the_date_range_is_read_in_the_deployments_days(store, world):
    # C started at 2026-11-24T01:00Z = the 24th, 09:00 in China
    assert named(world, find(store, "audit.han", started_from="2026-11-24", started_to="2026-11-24")) == {"C"}
    assert named(world, find(store, "audit.han", started_from="2026-11-24")) == {"C", "D", "E"}
    assert named(world, find(store, "audit.han", started_to="2026-11-23")) == {"A", "B"}
    # an instant at 23:30 UTC on the 23rd is already the 24th in China, not in UTC
    with store.read() as s:
        who = access.person(s, "audit.han")
        utc = instances.search(s, who, InstanceQuery(started_from=date(2026, 11, 24), started_to=date(2026, 11, 24)),
                               NOW, tz=timezone.utc)
    assert named(world, utc) == {"C"}


def test_free_text_looks_at_key_customer_initiator_and_process_name(store, world):
    def q(text: str, username: str = "audit.han") -> set[str]:
        return named(world, find(store, username, q=text))
    assert q("c-a01") == {"B"}               # customer, any case
    assert q("REP.FENG") == {"C"}            # initiator
    assert q("rep.") == set(world)
    assert q("合同") == {"A", "B", "C", "D"}  # the process's name (合同评审 / Contract review)
    assert q("contract review") == {"A", "B", "C", "D"}
    key = find(store, "audit.han", customer="C-C01").rows[0].business_key
    assert q(key[-6:]) == {"C"}              # part of the business key
    assert q("%") == set() and q("r_p") == set()  # LIKE's wildcards are plain characters here
    assert q("contract_") == {"A", "B", "C", "D"}   # … and match themselves (the process id)
    assert q("c-", "rep.feng") == {"C"}      # within the scope


def test_each_row_says_where_the_instance_waits_and_what_is_wrong(store, world):
    rows = {r.id: r for r in find(store, "audit.han").rows}
    a, b, d, e = (rows[world[k]] for k in "ABDE")
    assert (a.status, a.steps, a.process_id, a.version, a.initiator) == ("completed", [], "contract_review", 1, "rep.wang")
    assert a.customer == "C-B01" and a.amount == 260000 and a.business_key and " / " in a.process_name
    assert [(s.element_id, s.assignee) for s in b.steps] == [("dm_review", "vp.qian")] and b.breach
    assert [(s.element_id, s.assignee, s.role) for s in d.steps] == [("dm_review", None, "dept_manager")]
    assert not d.breach and not d.incident and e.incident and not e.breach
    assert a.started == T0 and a.changed == T0 + timedelta(minutes=30)
    json.dumps(find(store, "audit.han").as_json())  # the API's shape is plain JSON


# --- sorting and paging ---------------------------------------------------------------------------

@pytest.mark.parametrize("sort", ["started", "changed", "business_key"])
@pytest.mark.parametrize("desc", ["1", "0"])
def test_pages_by_position_give_every_row_once_in_order(store, world, sort, desc, matches):
    whole = [r.id for r in find(store, "audit.han", sort=sort, desc=desc, per_page=50).rows]
    assert len(whole) == 5
    keys = {r.id: r for r in find(store, "audit.han").rows}

    def key(i):
        r = keys[i]
        return {"started": (r.started, i), "changed": (r.changed, i),
                "business_key": (r.business_key is None, r.business_key or "", i)}[sort]
    assert whole == sorted(whole, key=key, reverse=desc == "1")
    seen, pages, args = [], [], {"sort": sort, "desc": desc, "per_page": 2}
    page = find(store, "audit.han", **args)
    while True:
        pages.append(page)
        seen += [r.id for r in page.rows]
        if not page.next_after:
            break
        page = find(store, "audit.han", **args, page=page.page + 1, after=page.next_after)
    assert seen == whole and [p.total for p in pages] == [5, 5, 5] and pages[-1].page == 3
    assert named(world, find(store, "rep.wang", sort=sort, desc=desc, per_page=2, page=2)) <= {"A", "B", "E"}
    back = find(store, "audit.han", **args, page=2, before=pages[-1].prev_before)
    assert [r.id for r in back.rows] == whole[2:4]
    assert [r.id for r in find(store, "audit.han", **args, page=2).rows] == whole[2:4]  # by number too


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, field, sentence", [
    ({"scope": "everyone"}, "scope", "must be one of took_part, started, all"),
    ({"status": "done"}, "status", "must be one of running, completed, cancelled"),
    ({"sort": "amount"}, "sort", "must be one of started, changed, business_key"),
    ({"started_from": "24.11.2026"}, "started_from", "'24.11.2026' is not a date such as 2026-11-23"),
    ({"started_from": "2026-11-25", "started_to": "2026-11-24"}, "started_to", "is before the first day of the range"),
    ({"page": "0"}, "page", "must be between 1 and 1000000"),
    ({"per_page": "x"}, "per_page", "'x' is not a whole number"),
    ({"q": "x" * 201}, "q", "must have at most 200 characters"),
    ({"after": "bm90IGEgcG9zaXRpb24"}, "after",
     "is not a position in this list (it belongs to another sort, or was changed)"),
])
def test_a_bad_value_is_refused_naming_its_field(args, field, sentence):
    with pytest.raises(InvalidInput) as refused:
        InstanceQuery.from_args(args)
    assert refused.value.fields == {field: sentence}


def test_a_count_beyond_the_limit_says_more(store, world, monkeypatch):
    monkeypatch.setattr(instances, "COUNT_LIMIT", 3)
    page = find(store, "audit.han", per_page=2)
    assert (page.total, page.more, page.pages) == (3, True, 2)
    page = find(store, "audit.han", per_page=2, page=2, after=page.next_after)
    page = find(store, "audit.han", per_page=2, page=3, after=page.next_after)
    assert len(page.rows) == 1  # the pages go on by position past the counted ones
    assert find(store, "rep.wang").more is False


def test_a_position_of_another_sort_is_refused(store, world):
    page = find(store, "audit.han", per_page=2)
    with pytest.raises(InvalidInput) as refused:
        InstanceQuery.from_args({"sort": "changed", "after": page.next_after})
    assert set(refused.value.fields) == {"after"}


# --- the page -------------------------------------------------------------------------------------

@pytest.fixture
def pinned(monkeypatch):
    monkeypatch.setenv("BPM_NOW", NOW.isoformat())


def test_the_page_lists_what_the_user_may_see_with_links_to_each_instance(app, world, pinned):
    page = text(as_user(app, "rep.wang").get("/instances"))
    assert 'href="/instances"' in page and ">Instances</a>" in page  # the nav link
    for k in "ABE":
        assert f'href="/instances/{world[k]}"' in page
    for k in "CD":
        assert world[k] not in page
    assert "3 instances" in page and "C-A01" in page and "Department manager review · vp.qian" in page
    assert "SLA breached" in page and "incident" in page
    zh = text(as_user(app, "dm.zhou", lang="zh_CN").get("/instances?status=completed"))
    assert "流程实例" in zh and f'/instances/{world["A"]}' in zh and world["B"] not in zh and "已完成" in zh


def test_the_auditor_finds_an_escalated_contract_by_customer(app, world, pinned):
    page = text(as_user(app, "audit.han").get("/instances?customer=C-A01&breach=1"))
    assert f'href="/instances/{world["B"]}"' in page and "1 instance" in page
    assert '<option value="all" selected>' in page  # the auditor's default


def test_the_page_sorts_and_pages_by_position(app, world, pinned):
    client = as_user(app, "audit.han")
    first = text(client.get("/instances?per_page=2&sort=started&desc=0"))
    assert first.index(world["A"]) < first.index(world["B"]) and world["C"] not in first
    after = re.search(r'href="(/instances\?[^"]*after=[^"]+)" rel="next"', first).group(1)
    second = text(client.get(unescape(after)))
    assert world["C"] in second and world["D"] in second and world["A"] not in second
    assert 'rel="prev"' in second and "Page 2 of 3" in second
    assert 'aria-sort="ascending"' in first


def test_a_bad_filter_is_shown_next_to_its_field_and_finds_nothing(app, world, pinned):
    response = as_user(app, "audit.han").get("/instances?started_from=24.11.2026&status=done")
    page = text(response)
    assert response.status_code == 400 and world["A"] not in page
    assert 'id="e-started_from">Not a date: write it like 2026-11-23.' in page
    assert 'id="e-status">Choose one of the offered values.' in page
    zh = text(as_user(app, "audit.han", lang="zh_CN").get("/instances?started_from=x"))
    assert "不是日期" in zh


def test_the_page_refuses_all_to_a_non_auditor_next_to_the_scope(app, world, pinned):
    response = as_user(app, "dm.zhou").get("/instances?scope=all")
    page = text(response)
    assert response.status_code == 403 and world["A"] not in page
    assert 'id="e-scope">Only auditors may search all instances' in page or \
        'id="e-scope">only auditors may search all instances' in page
    assert '<option value="all"' not in page  # not offered to him


# --- the API --------------------------------------------------------------------------------------

def test_the_api_answers_the_same_search(app, world, pinned):
    client = as_user(app, "rep.wang")
    body = client.get("/api/v1/instances?per_page=2").get_json()
    assert body["scope"] == "took_part" and body["total"] == 3 and len(body["instances"]) == 2
    rest = client.get(f"/api/v1/instances?per_page=2&page=2&after={body['next_after']}").get_json()
    assert {r["id"] for r in body["instances"] + rest["instances"]} == {world[k] for k in "ABE"}
    b = next(r for r in client.get("/api/v1/instances?customer=C-A01").get_json()["instances"])
    assert (b["id"], b["breach"], b["steps"][0]["assignee"], b["status"]) == (world["B"], True, "vp.qian", "running")
    assert "/v1/instances" in client.get("/api/openapi.json").get_json()["paths"]


def test_the_api_refuses_bad_input_and_all_for_a_non_auditor(app, world, pinned):
    client = as_user(app, "rep.wang")
    response = client.get("/api/v1/instances?status=done")
    assert response.status_code == 400
    assert response.get_json()["fields"] == {"status": "must be one of running, completed, cancelled"}
    response = client.get("/api/v1/instances?scope=all")
    assert response.status_code == 403 and response.get_json()["error"].startswith(
        "only auditors may search all instances; rep.wang")
    assert as_user(app, "audit.han").get("/api/v1/instances?scope=all").get_json()["total"] == 5


# --- the command line -----------------------------------------------------------------------------

def run_bpm(store, monkeypatch, capsys, *args):
    monkeypatch.setenv("BPM_DATABASE_URL", store.url)
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_line_lists_and_filters(store, world, pinned, monkeypatch, capsys):
    code, out, err = run_bpm(store, monkeypatch, capsys, "instances", "--as", "rep.wang", "--customer", "C-A01")
    assert code == 0 and err == ""
    assert world["B"] in out and "vp.qian" in out and "breach" in out and world["A"] not in out
    assert "2026-11-23 10:00" in out  # started at 02:00 UTC, shown in China's time
    code, out, _err = run_bpm(store, monkeypatch, capsys, "instances", "--as", "audit.han", "--q", "rep.feng",
                              "--status", "running", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)["instances"]] == [world["C"]]


def test_the_command_line_refuses_in_one_sentence(store, world, pinned, monkeypatch, capsys):
    code, out, err = run_bpm(store, monkeypatch, capsys, "instances", "--as", "rep.wang", "--status", "done")
    assert (code, out) == (1, "") and err == ("bpm instances: the instance search is not valid: "
                                              "status: must be one of running, completed, cancelled\n")
    code, out, err = run_bpm(store, monkeypatch, capsys, "instances", "--as", "dm.zhou", "--scope", "all")
    assert (code, out) == (1, "") and err.startswith("bpm instances: only auditors may search all instances")


# --- free text in the inbox -----------------------------------------------------------------------

def test_the_inbox_finds_tasks_by_free_text(app, store, world, pinned):
    from engine import inbox
    from engine.inbox import InboxQuery

    def tasks(username: str, q: str) -> set[str]:
        with store.read() as s:
            page = inbox.search(s, access.person(s, username), InboxQuery.from_args({"q": q}), NOW)
        return {next(k for k, v in world.items() if v == t.instance_id) for t in page.tasks}
    assert tasks("dm.zhou", "") == {"C", "D"}               # the open reviews
    assert tasks("dm.zhou", "c-c01") == {"C"}               # customer, any case
    assert tasks("vp.qian", "c-a01") == {"B"}               # (escalated to him)
    assert tasks("dm.zhou", "MANAGER REVIEW") == {"C", "D"}  # the step's name
    assert tasks("dm.zhou", "业务部经理") == {"C", "D"}
    key = find(store, "audit.han", customer="C-C01").rows[0].business_key
    assert tasks("dm.zhou", key[-5:]) == {"C"}              # part of the business key
    assert tasks("dm.zhou", "contract_") == {"C", "D"}      # the process id; "_" is itself
    assert tasks("dm.zhou", "c_ntract") == set() and tasks("dm.zhou", "%") == set()
    page = text(as_user(app, "dm.zhou").get("/?q=c-c01"))
    assert 'name="q" value="c-c01"' in page and "1 task" in page
    assert as_user(app, "vp.qian").get("/api/v1/tasks?q=nobody").get_json()["total"] == 0
    with pytest.raises(InvalidInput) as refused:
        InboxQuery.from_args({"q": "x" * 201})
    assert refused.value.fields == {"q": "must have at most 200 characters"}
