"""The 4-hour reply (4小时复命, seed 000 岗位基本原则): the holder replies "in progress, expected by …" or
"cannot finish, because …"; the reply is logged and in the history, the superior is told, and the
first reply restarts the escalation clock — once. Through the engine, the JSON API, the command
line and the task page.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from engine import audit, calendar, notifications, timers, versions
from engine.runtime import Forbidden, InvalidInput, NotFound, Runtime
from engine.store import SlaBreach

from .conftest import DATA, snapshot, views_of, history_json
from .test_runtime import only_task

CN = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # Monday 09:00 in China
FRIDAY_17 = datetime(2026, 11, 27, 17, 0, tzinfo=CN)
MONDAY_12 = datetime(2026, 11, 30, 12, 0, tzinfo=CN)
GOOD = {"customer": "C-A01", "amount": 120000, "delivery_date": "2026-12-20"}


def cn(*args) -> datetime:
    return datetime(*args, tzinfo=CN)


@pytest.fixture
def runtime(store, monkeypatch):
    monkeypatch.delenv(calendar.SETTING, raising=False)
    versions.deploy(store, [DATA / "runtime" / "review.bpmn"], at=T0 - timedelta(days=7))
    return Runtime(store, lookups={"customer": lambda v: v == "C-A01"})


def claimed(runtime, at=T0):
    """A review dm.zhou holds, given at `at`."""
    view = runtime.start("review", "rep.wang", GOOD, at=at)
    runtime.claim(only_task(view).id, "dm.zhou", at=at)
    return view, only_task(view).id


def notices(store, username: str) -> list[tuple[str, str]]:
    with store.read() as s:
        return [(n["kind"], n["message"]) for n in reversed(notifications.for_user(s, username))]


def test_a_reply_within_the_window_stops_the_first_escalation_on_the_working_calendar(runtime, store, monkeypatch):
    """The issue's Done-when: Friday 17:00 on 09:00–18:00 is due Monday 12:00; dm.zhou replies at
    17:30 "in progress", so Monday 12:00 passes quietly; his silence after it still escalates."""
    monkeypatch.setenv(calendar.SETTING, json.dumps({"hours": [["09:00", "18:00"]]}))
    view, task_id = claimed(runtime, FRIDAY_17)
    assert only_task(runtime.instance(view.id)).due == MONDAY_12
    task = runtime.reply(task_id, "dm.zhou", "in_progress", expected_by="2026-11-30T18:00:00+08:00",
                         at=cn(2026, 11, 27, 17, 30))
    # a fresh window of four working hours from the reply: half an hour on Friday, 3½ on Monday
    assert (task.assignee, task.due) == ("dm.zhou", cn(2026, 11, 30, 12, 30))
    timers.run_once(runtime, cn(2026, 11, 30, 12, 1))  # the reminder of the new window (11:30), no more
    assert only_task(runtime.instance(view.id)).assignee == "dm.zhou"
    with store.read() as s:
        assert s.scalars(select(SlaBreach)).all() == []
        assert [n["kind"] for n in notifications.for_user(s, "dm.zhou")] == ["reminder"]
    # a second reply is recorded but restarts nothing
    again = runtime.reply(task_id, "dm.zhou", "in_progress", expected_by="2026-11-30T18:00:00+08:00",
                          at=cn(2026, 11, 30, 12, 15))
    assert again.due == cn(2026, 11, 30, 12, 30)
    assert timers.run_once(runtime, cn(2026, 11, 30, 12, 31)).fired == [view.id]
    assert only_task(runtime.instance(view.id)).assignee == "vp.qian"
    with store.read() as s:
        assert [(b.holder, b.escalated_to, b.due_at) for b in s.scalars(select(SlaBreach))] == [
            ("dm.zhou", "vp.qian", cn(2026, 11, 30, 12, 30))]
        assert audit.verify(s, view.id, runtime.script_engine).ok


def test_on_clock_hours_a_reply_restarts_four_hours_once_and_silence_still_escalates(runtime, store):
    view, task_id = claimed(runtime)
    assert runtime.reply(task_id, "dm.zhou", "in_progress", expected_by=T0 + timedelta(days=2),
                         at=T0 + timedelta(hours=3)).due == T0 + timedelta(hours=7)
    timers.run_once(runtime, T0 + timedelta(hours=4, minutes=1))  # no escalation at the old due
    assert only_task(runtime.instance(view.id)).assignee == "dm.zhou"
    assert runtime.reply(task_id, "dm.zhou", "cannot_finish", reason="客户资料未到 / the customer's papers are late",
                         at=T0 + timedelta(hours=6)).due == T0 + timedelta(hours=7)
    timers.run_once(runtime, T0 + timedelta(hours=7, minutes=1))
    assert only_task(runtime.instance(view.id)).assignee == "vp.qian"


def test_an_earlier_expected_by_is_the_new_due(runtime):
    view, task_id = claimed(runtime)
    task = runtime.reply(task_id, "dm.zhou", "in_progress", expected_by=T0 + timedelta(hours=2),
                         at=T0 + timedelta(hours=1))
    assert task.due == T0 + timedelta(hours=2)


def test_the_superior_hears_of_each_reply_and_the_history_shows_it(runtime, store):
    view, task_id = claimed(runtime)
    before = runtime.instance(view.id).data
    runtime.reply(task_id, "dm.zhou", "in_progress", expected_by="2026-11-23T15:00:00+08:00",
                  reason="等财务确认 / waiting for finance", at=T0 + timedelta(hours=1))
    runtime.reply(task_id, "dm.zhou", "cannot_finish", reason="客户未回复 / no answer from the customer",
                  at=T0 + timedelta(hours=2))
    assert notices(store, "vp.qian") == [
        ("reply_in_progress", "dm.zhou 复命：进行中，预计 2026-11-23 15:00 Asia/Shanghai 完成 / dm.zhou replies: "
                              "in progress, expected by 2026-11-23 15:00 Asia/Shanghai: 审核 / Review"),
        ("reply_cannot_finish", "dm.zhou 复命：无法按时完成，原因：客户未回复 / no answer from the customer / "
                                "dm.zhou replies: cannot finish, because 客户未回复 / no answer from the "
                                "customer: 审核 / Review")]
    history = [h for h in history_json(runtime, view.id) if h["command"] == "reply"]
    assert [(h["actor"], h["reply"]["kind"], h["reply"]["to"], h["element_id"]) for h in history] == [
        ("dm.zhou", "in_progress", "vp.qian", "dm_review"), ("dm.zhou", "cannot_finish", "vp.qian", "dm_review")]
    assert history[0]["reply"]["expected_by"] == "2026-11-23T07:00:00+00:00"
    # the reply changes neither the instance's data nor the task's
    assert runtime.instance(view.id).data == before
    detail = views_of(runtime).task_detail(task_id, "dm.zhou")
    assert detail["data"] == before and detail["last_reply"]["kind"] == "cannot_finish"
    assert detail["reply_restarted"] and detail["may_reply"]
    with store.read() as s:
        assert audit.verify(s, view.id, runtime.script_engine).ok
    view = runtime.complete(task_id, "dm.zhou", {"decision": "approve"}, at=T0 + timedelta(hours=3))
    assert view.status == "completed" and "last_reply" not in view.data


def test_an_open_task_is_replied_on_by_its_role_and_a_held_one_by_its_holder_only(runtime, store):
    view = runtime.start("review", "rep.wang", GOOD, at=T0)
    task_id = only_task(view).id
    task = runtime.reply(task_id, "dm.zhou", "in_progress", expected_by=T0 + timedelta(hours=3), at=T0)
    assert task.assignee is None  # a reply is not a claim
    runtime.claim(task_id, "dm.zhou", at=T0)
    before = snapshot(store, view.id)
    with pytest.raises(NotFound, match=f"there is no open task {task_id}"):  # may not even see it
        runtime.reply(task_id, "wh.wei", "in_progress", expected_by=T0 + timedelta(hours=3), at=T0)
    with pytest.raises(Forbidden, match=f"rep.wang may not reply on task {task_id}: it is held by dm.zhou"):
        runtime.reply(task_id, "rep.wang", "in_progress", expected_by=T0 + timedelta(hours=3), at=T0)
    assert snapshot(store, view.id) == before


@pytest.mark.parametrize("kind, expected_by, reason, field, said", [
    ("maybe", None, None, "kind", "a reply is in_progress (with the time it is expected to be done by) or "
                                  "cannot_finish (with the reason), not 'maybe'"),
    ("cannot_finish", None, "  ", "reason", "a reply that the task cannot be finished needs the reason"),
    ("in_progress", None, None, "expected_by", "a reply that the task is in progress needs the time it is "
                                               "expected to be done by"),
    ("in_progress", "2026-11-23T08:00:00+08:00", None, "expected_by",
     "the expected-by time 2026-11-23T00:00:00+00:00 is not after the reply (2026-11-23T01:00:00+00:00): "
     "say when it will be done"),
    ("in_progress", "tomorrow", None, "expected_by", "the expected-by time 'tomorrow' is not a date-time with "
                                                     "a UTC offset such as 2026-11-27T17:00:00+08:00"),
    ("in_progress", "2026-11-24T09:00:00", None, "expected_by", "is not a date-time with a UTC offset"),
    ("cannot_finish", "2026-11-24T09:00:00+08:00", "late", "expected_by", "a cannot_finish reply takes a "
                                                                          "reason, not an expected-by time"),
])
def test_a_bad_reply_is_refused_with_a_sentence_and_changes_nothing(runtime, store, kind, expected_by, reason,
                                                                     field, said):
    view, task_id = claimed(runtime)
    before = snapshot(store, view.id)
    with pytest.raises(InvalidInput) as refused:
        runtime.reply(task_id, "dm.zhou", kind, expected_by=expected_by, reason=reason, at=T0)
    assert said in str(refused.value) and field in refused.value.fields
    assert snapshot(store, view.id) == before
    assert notices(store, "vp.qian") == []


# --- the JSON API and the command line -----------------------------------------------------------

@pytest.fixture
def api(runtime):
    from web import create_app
    app = create_app(runtime, {"TESTING": True, "SECRET_KEY": "test"})
    return app.test_client()


def bearer(api, username: str) -> dict:
    answer = api.post("/api/v1/tokens", json={"username": username, "password": "demo"})
    return {"Authorization": f"Bearer {answer.json['token']}"}


def test_the_api_replies_and_refuses_with_4xx_sentences(api, runtime, store, monkeypatch):
    monkeypatch.setenv("BPM_NOW", "2026-11-23T10:00:00+08:00")
    view, task_id = claimed(runtime)
    before = snapshot(store, view.id)
    dm, rep = bearer(api, "dm.zhou"), bearer(api, "rep.wang")
    path = f"/api/v1/tasks/{task_id}/reply"
    for headers, body, status, said in (
            (rep, {"kind": "in_progress", "expected_by": "2026-11-23T15:00:00+08:00"}, 403,
             f"rep.wang may not reply on task {task_id}: it is held by dm.zhou"),
            (dm, {"kind": "done"}, 400, "not 'done'"),
            (dm, {"kind": "cannot_finish"}, 400, "a reply that the task cannot be finished needs the reason"),
            (dm, {"kind": "in_progress", "expected_by": "2026-11-23T09:30:00+08:00"}, 400,
             "is not after the reply"),
            (dm, {"kind": "in_progress", "expected_by": 5}, 400, "is not a date-time with a UTC offset"),
            (bearer(api, "wh.wei"), {"kind": "cannot_finish", "reason": "x"}, 404,
             f"there is no open task {task_id}")):
        answer = api.post(path, headers=headers, json=body)
        assert (answer.status_code, said in answer.json["error"]) == (status, True), answer.json
    assert api.post(path, headers=dm, data="[1]", content_type="application/json").status_code == 400
    assert snapshot(store, view.id) == before
    assert api.post(path, json={"kind": "cannot_finish", "reason": "x"}).status_code == 401
    answer = api.post(path, headers=dm, json={"kind": "in_progress", "expected_by": "2026-11-23T16:00:00+08:00",
                                              "reason": "在等样品 / waiting for samples"})
    assert answer.status_code == 200, answer.json
    assert answer.json["id"] == task_id and answer.json["due"] == "2026-11-23T06:00:00+00:00"
    assert [h["reply"]["kind"] for h in api.get(f"/api/v1/instances/{view.id}/history", headers=dm).json
            if h["command"] == "reply"] == ["in_progress"]


def test_the_command_line_replies_and_refuses_with_exit_1(tmp_path, monkeypatch, capsys):
    from bpm.cli import main
    monkeypatch.setenv("BPM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.delenv(calendar.SETTING, raising=False)
    monkeypatch.setenv("BPM_NOW", "2026-11-23T09:00:00+08:00")

    def bpm(*args: str):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err
    assert bpm("init", "--demo")[0] == 0
    assert bpm("deploy", str(DATA / "runtime" / "review.bpmn"))[0] == 0
    monkeypatch.setenv("BPM_NOW", "2026-11-23T09:00:00+08:00")
    code, out, err = bpm("start", "review", "--as", "rep.wang", "--data", json.dumps(GOOD), "--json")
    assert code == 0, err
    task_id = json.loads(out)["tasks"][0]["id"]
    for args, said in (
            (("--as", "rep.wang", "--cannot-finish", "--reason", "x"),
             f"rep.wang may not reply on task {task_id}: it is for role dept_manager"),
            (("--as", "dm.zhou", "--cannot-finish"), "a reply that the task cannot be finished needs the reason"),
            (("--as", "dm.zhou", "--in-progress"), "needs the time it is expected to be done by"),
            (("--as", "dm.zhou", "--in-progress", "--expected", "2026-11-23T08:00:00+08:00"),
             "is not after the reply"),
            (("--as", "dm.zhou", "--in-progress", "--expected", "soon"), "is not a date-time with a UTC offset")):
        code, out, err = bpm("reply", task_id, *args)
        assert (code, out) == (1, ""), err
        assert err.startswith("bpm reply: ") and said in err and len(err.strip().splitlines()) == 1, err
    assert bpm("reply", task_id, "--as", "dm.zhou")[0] == 2  # neither kind: usage
    code, out, err = bpm("reply", task_id, "--as", "dm.zhou", "--in-progress", "--expected",
                         "2026-11-23T15:00:00+08:00")
    assert code == 0 and out.strip() == f"{task_id} reply recorded (in_progress); due 2026-11-23 13:00", err
    code, out, err = bpm("reply", task_id, "--as", "dm.zhou", "--cannot-finish", "--reason", "样品未到", "--json")
    assert code == 0 and json.loads(out)["due"] == "2026-11-23T05:00:00+00:00"  # restarted once only
    instance_id = json.loads(out)["instance_id"]
    code, out, err = bpm("history", instance_id, "--json")
    assert [(r["actor"], r["reply"]["kind"], r["reply"]["reason"]) for r in json.loads(out) if r["command"] == "reply"] \
        == [("dm.zhou", "in_progress", None), ("dm.zhou", "cannot_finish", "样品未到")]
    assert bpm("verify", instance_id)[0] == 0


# --- the task page ---------------------------------------------------------------------------------

def test_the_task_page_has_a_reply_form_with_errors_next_to_the_field(runtime, store, monkeypatch):
    from web import create_app
    monkeypatch.setenv("BPM_NOW", "2026-11-23T10:00:00+08:00")
    app = create_app(runtime, {"TESTING": True, "SECRET_KEY": "test", "WTF_CSRF_ENABLED": False})
    view, task_id = claimed(runtime)
    client = app.test_client()
    client.post("/login", data={"username": "dm.zhou", "password": "demo"})
    client.post("/lang", data={"lang": "en"})
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert 'id="reply"' in page and "Reply to your superior" in page
    before = snapshot(store, view.id)
    answer = client.post(f"/tasks/{task_id}/reply", data={"kind": "cannot_finish", "reason": ""})
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "a reply that the task cannot be finished needs the reason" in page
    assert snapshot(store, view.id) == before
    answer = client.post(f"/tasks/{task_id}/reply", data={"kind": "in_progress", "expected_by": "2026-11-23T14:00"},
                         follow_redirects=True)
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert "Your reply was sent to vp.qian" in page
    assert "replied to the superior" in page and "in progress, expected by 2026-11-23 14:00 → vp.qian" in page
    assert only_task(runtime.instance(view.id)).due == datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)
    client.post("/lang", data={"lang": "zh_CN"})
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert "向上级复命" in page and "进行中，预计 2026-11-23 14:00 完成" in page
    answer = client.post(f"/tasks/{task_id}/reply", data={"kind": "in_progress", "expected_by": "2026-11-23T09:00"})
    assert answer.status_code == 422 and "预计完成时间" in answer.get_data(as_text=True)
    superior = app.test_client()
    superior.post("/login", data={"username": "vp.qian", "password": "demo"})
    superior.post("/lang", data={"lang": "en"})
    page = superior.get("/notifications").get_data(as_text=True)
    assert "Reply: in progress" in page and "dm.zhou replies: in progress, expected by 2026-11-23 14:00" in page
