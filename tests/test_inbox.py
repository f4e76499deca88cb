"""What the pages and the API read: inbox search, saved filters, delegation, comments,
notifications, startable processes, the diagram's markers, history, task details."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete

from engine import access, inbox, notifications, timers, versions
from engine.inbox import SORT_KEYS, InboxQuery
from engine.store import HumanTask
from engine.runtime import Forbidden, InvalidInput, NotFound, Runtime

from .conftest import DATA, views_of, history_json
from .test_runtime import only_task

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
CUSTOMERS = {"C-A01", "C-B01", "C-C01"}


@pytest.fixture
def runtime(store):
    versions.deploy(store, [DATA / "runtime" / "review.bpmn", DATA / "runtime" / "approval.bpmn"], at=T0)
    return Runtime(store, lookups={"customer": lambda v: v in CUSTOMERS})


def start_review(runtime, customer="C-A01", amount=100.0, at=T0):
    return runtime.start("review", "rep.wang", {"customer": customer, "amount": amount,
                                                "delivery_date": "2026-12-20"}, at=at)


def search(store, username, now=T0, **args):
    with store.read() as s:
        return inbox.search(s, access.person(s, username), InboxQuery.from_args(args), now)


def test_inbox_filters_sorts_and_pages_from_url_arguments(runtime, store):
    for n, (customer, amount) in enumerate([("C-A01", 50.0), ("C-B01", 500.0), ("C-C01", 5000.0)]):
        start_review(runtime, customer, amount, at=T0 + timedelta(minutes=n))
    assert search(store, "dm.zhou").total == 3
    assert [t.customer for t in search(store, "dm.zhou", sort="amount", desc="1").tasks] == ["C-C01", "C-B01", "C-A01"]
    assert [t.amount for t in search(store, "dm.zhou", amount_min="100", amount_max="1000").tasks] == [500.0]
    assert [t.customer for t in search(store, "dm.zhou", customer="C-B01").tasks] == ["C-B01"]
    page = search(store, "dm.zhou", per_page="2", page="2")
    assert (page.total, page.pages, len(page.tasks)) == (3, 2, 1)
    assert search(store, "dm.zhou", overdue="1").total == 0
    assert search(store, "dm.zhou", now=T0 + timedelta(hours=5), overdue="1").total == 3
    assert search(store, "dm.zhou", scope="mine").total == 0
    assert search(store, "rep.wang").total == 0
    assert InboxQuery.from_args({"sort": "amount", "desc": "1"}).to_args() == {"sort": "amount", "desc": "1"}
    with pytest.raises(InvalidInput) as bad:
        InboxQuery.from_args({"sort": "state", "amount_min": "lots"})
    assert set(bad.value.fields) == {"sort", "amount_min"}


def test_saved_filters_per_user(store):
    with store.write() as s:
        inbox.save_filter(s, "dm.zhou", "big ones", {"amount_min": "1000", "sort": "amount"})
        inbox.save_filter(s, "dm.zhou", "big ones", {"amount_min": "2000"})
        with pytest.raises(InvalidInput):
            inbox.save_filter(s, "dm.zhou", "broken", {"sort": "nonsense"})
    with store.read() as s:
        assert inbox.saved_filters(s, "dm.zhou") == [{"name": "big ones", "args": {"amount_min": "2000"}}]
        assert inbox.saved_filters(s, "vp.qian") == []
    with store.write() as s:
        inbox.delete_filter(s, "dm.zhou", "big ones")
    with store.read() as s:
        assert inbox.saved_filters(s, "dm.zhou") == []


def test_delegation_to_a_colleague_of_the_same_role_with_a_note(runtime, store):
    with store.write() as s:
        access.add_user(s, "dm.he", "pw", ["dept_manager"], superior="vp.qian")
    task = only_task(start_review(runtime))
    with pytest.raises(InvalidInput, match="does not have role dept_manager"):
        runtime.delegate(task.id, "dm.zhou", "rep.feng", "please", at=T0)
    held = runtime.delegate(task.id, "dm.zhou", "dm.he", "on leave today", at=T0)
    assert held.assignee == "dm.he"
    with pytest.raises(Forbidden):
        runtime.complete(task.id, "dm.zhou", {"decision": "approve"}, at=T0)
    assert [c["body"] for c in views_of(runtime).comments(task.instance_id)] == ["on leave today"]
    with store.read() as s:
        assert [n["kind"] for n in notifications.for_user(s, "dm.he")] == ["assigned"]


def test_notifications_for_escalation_reminder_and_return(runtime, store):
    task = only_task(start_review(runtime))
    timers.run_once(runtime, T0 + timedelta(hours=3, minutes=30))  # reminder to the role
    timers.run_once(runtime, T0 + timedelta(hours=5))              # escalated to vp.qian
    runtime.hand_back(task.id, "vp.qian", at=T0 + timedelta(hours=6))
    with store.read() as s:
        assert [n["kind"] for n in notifications.for_user(s, "dm.zhou")] == ["returned", "escalated_away", "reminder"]
        assert [n["kind"] for n in notifications.for_user(s, "vp.qian")] == ["escalated"]
        assert notifications.unread_count(s, "dm.zhou") == 3
    with store.write() as s:
        notifications.mark_read(s, "dm.zhou")
    with store.read() as s:
        assert notifications.unread_count(s, "dm.zhou") == 0


def test_startable_processes_follow_the_start_lane(runtime):
    assert {p["process_id"] for p in views_of(runtime).startable("rep.wang")} == {"review", "approval"}
    assert views_of(runtime).startable("dm.zhou") == []
    review = next(p for p in views_of(runtime).startable("rep.wang") if p["process_id"] == "review")
    assert review["form"] == "review.start.json" and "customer" in review["schema"]["properties"]


def test_diagram_history_and_task_detail(runtime, store):
    view = start_review(runtime)
    task = only_task(view)
    runtime.save_draft(task.id, "dm.zhou", {"comment": "draft"}, at=T0)
    detail = views_of(runtime).task_detail(task.id, "dm.zhou")
    assert detail["form"] == "review.decision.json" and detail["draft"] == {"comment": "draft"}
    assert detail["data"]["customer"] == "C-A01"
    with pytest.raises(NotFound):  # may not see the instance: told nothing of it
        views_of(runtime).task_detail(task.id, "rep.feng")
    with pytest.raises(Forbidden, match="rep.wang may not open task"):  # its initiator: told why
        views_of(runtime).task_detail(task.id, "rep.wang")
    assert views_of(runtime).task_detail(task.id, "audit.han")["may_act"] is False
    diagram = views_of(runtime).diagram(view.id, now=T0 + timedelta(hours=5))
    assert "dm_review" in diagram["active"] and "start" in diagram["completed"]
    assert diagram["overdue"] == ["dm_review"] and diagram["xml"].startswith("<?xml")
    runtime.complete(task.id, "dm.zhou", {"decision": "approve"}, at=T0 + timedelta(hours=1))
    history = history_json(runtime, view.id)
    assert [(h["command"], h["actor"], h["element_id"]) for h in history] == [
        ("start", "rep.wang", None), ("complete", "dm.zhou", "dm_review")]


def test_outbox_mail_is_sent_through_smtp_when_configured(runtime, store, monkeypatch):
    """A tiny SMTP sink on a local port receives the escalation notice."""
    import socket
    import threading as th

    received: list[str] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def sink():
        conn, _ = server.accept()
        f = conn.makefile("rwb")
        f.write(b"220 sink\r\n"); f.flush()
        data = False
        for line in f:
            text = line.decode().rstrip("\r\n")
            if data:
                if text == ".":
                    data = False
                    f.write(b"250 ok\r\n")
                else:
                    received.append(text)
            elif text.upper().startswith("DATA"):
                data = True
                f.write(b"354 go\r\n")
            elif text.upper().startswith("QUIT"):
                f.write(b"221 bye\r\n"); f.flush()
                break
            else:
                f.write(b"250 ok\r\n")
            f.flush()
        conn.close()

    thread = th.Thread(target=sink, daemon=True)
    thread.start()
    monkeypatch.setenv("BPM_SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("BPM_MAIL_DOMAIN", "example.com")
    start_review(runtime)
    timers.run_once(runtime, T0 + timedelta(hours=5))  # escalation: a notice for vp.qian
    assert timers.deliver_mail(runtime, T0 + timedelta(hours=5)) >= 1
    thread.join(10)
    assert any(line == "To: vp.qian@example.com" for line in received)
    from engine.store import Outbox
    from sqlalchemy import select
    with store.read() as s:
        assert {o.status for o in s.scalars(select(Outbox))} == {"sent"}


def test_no_mail_without_smtp_url(runtime, store, monkeypatch):
    monkeypatch.delenv("BPM_SMTP_URL", raising=False)
    start_review(runtime)
    timers.run_once(runtime, T0 + timedelta(hours=5))
    assert timers.deliver_mail(runtime) == 0
    from engine.store import Outbox
    from sqlalchemy import func, select
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(Outbox)) == 0


def _visible_rows(store, instance_id: str, n: int = 240, seed: int = 7) -> list[dict]:
    """`n` task rows of one instance: held by dm.zhou or a colleague, or open to one of 3 roles
    (the office-scoped sales_rep's in his office, another, or the whole company; some barred to
    him as their submitter, some to another), with and without
    due times, equal due times and equal created times (the ties the order breaks)."""
    import random
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        due = None if rng.random() < 0.2 else T0 + timedelta(hours=rng.randrange(-6, 12))
        role = rng.choice(["dept_manager", "sales_rep", "finance", "vp"])
        rows.append(dict(id=f"t{i:04d}", instance_id=instance_id, process_id=rng.choice(["review", "approval"]),
                         element_id="x", name=rng.choice(["审批 approve", "复核 check"]), role=role,
                         office_scope=rng.choice(["", "guangzhou", "nanning"]) if role == "sales_rep" else "",
                         barred=rng.choice(["", "", "dm.zhou", "rep.wang"]),
                         assignee=rng.choice([None, None, "dm.zhou", "vp.qian"]), form=None,
                         business_key=f"HT-{rng.randrange(50):03d}", customer=rng.choice(sorted(CUSTOMERS)),
                         amount=rng.choice([None, 10.0, 500.0, 5000.0]),
                         created_at=T0 - timedelta(minutes=rng.randrange(30)), due_at=due))
    with store.write() as s:
        s.add_all(HumanTask(**r) for r in rows)
    return rows


def test_inbox_branches_give_the_same_rows_as_the_plain_visible_set(runtime, store):
    """The inbox reads held and open tasks as separate index-ordered branches and merges them;
    every scope, filter, sort and page must equal the plain definition of what a user may see."""
    instance_id = start_review(runtime).id
    with store.write() as s:
        s.execute(delete(HumanTask))
    rows = _visible_rows(store, instance_id)
    with store.read() as s:
        me = access.person(s, "dm.zhou")
    # a department manager who also sells, in the Guangzhou office: sales_rep tasks are scoped
    me = me.__class__(**{**me.__dict__, "roles": frozenset({"dept_manager", "finance", "sales_rep"}),
                         "office_id": "guangzhou"})
    now = T0 + timedelta(hours=2)
    assert {r["office_scope"] for r in rows if r["role"] == "sales_rep" and r["assignee"] is None} == {
        "", "guangzhou", "nanning"}
    assert any(r["barred"] == me.username and r["assignee"] is None and r["role"] in me.roles for r in rows)

    def expected(q: InboxQuery) -> tuple[int, list[str]]:
        held = [r for r in rows if r["assignee"] == me.username]
        open_ = [r for r in rows if r["assignee"] is None and r["role"] in me.roles
                 and r["office_scope"] in ("", me.office_id) and r["barred"] != me.username]
        chosen = {"all": held + open_, "mine": held, "claimable": open_}[q.scope]
        chosen = [r for r in chosen
                  if (q.process is None or r["process_id"] == q.process)
                  and (q.customer is None or r["customer"] == q.customer)
                  and (q.amount_min is None or (r["amount"] is not None and r["amount"] >= q.amount_min))
                  and (q.amount_max is None or (r["amount"] is not None and r["amount"] <= q.amount_max))
                  and (not q.overdue or (r["due_at"] is not None and r["due_at"] < now))]
        key = {"process": "process_id", "step": "name", "created": "created_at", "due": "due_at"}.get(q.sort, q.sort)
        # by the key (either direction), then created_at and id ascending; undated (NULL) last
        tiebreak = lambda r: (r["created_at"], r["id"])  # noqa: E731
        dated = sorted(sorted((r for r in chosen if r[key] is not None), key=tiebreak),
                       key=lambda r: r[key], reverse=q.desc)  # stable: ties keep the tie-break order
        undated = sorted((r for r in chosen if r[key] is None), key=tiebreak)
        ordered = dated + undated
        start = (q.page - 1) * q.per_page
        return len(ordered), [r["id"] for r in ordered[start:start + q.per_page]]

    queries = [dict(), dict(scope="mine"), dict(scope="claimable"), dict(overdue="1"),
               dict(customer="C-B01"), dict(process="approval", amount_min="100"),
               dict(amount_max="500", sort="amount", desc="1"), dict(sort="business_key", per_page="7", page="3"),
               dict(sort="assignee"), dict(sort="due", desc="1", per_page="9", page="2"),
               dict(per_page="11", page="4"), dict(scope="claimable", per_page="13", page="6", sort="created")]
    for args in queries:
        q = InboxQuery.from_args(args)
        with store.read() as s:
            page = inbox.search(s, me, q, now)
        assert (page.total, [t.id for t in page.tasks]) == expected(q), args
    nobody = me.__class__(**{**me.__dict__, "username": "nobody", "roles": frozenset()})
    with store.read() as s:
        assert inbox.search(s, nobody, InboxQuery(), now).total == 0



def test_keyset_pages_walk_the_same_list_forwards_and_backwards(runtime, store):
    """Next (after=) and previous (before=) positions give exactly the pages OFFSET gives, for
    every sort, either direction, with rows that have no sort value and with ties."""
    instance_id = start_review(runtime).id
    with store.write() as s:
        s.execute(delete(HumanTask))
    _visible_rows(store, instance_id, n=150)
    with store.read() as s:
        me = access.person(s, "dm.zhou")
    me = me.__class__(**{**me.__dict__, "roles": frozenset({"dept_manager", "finance"})})
    now = T0 + timedelta(hours=2)

    def page(**args):
        with store.read() as s:
            return inbox.search(s, me, InboxQuery.from_args({"per_page": "7", **args}), now)

    for sort in SORT_KEYS:
        for desc in ("", "1"):
            for extra in ({}, {"overdue": "1"}, {"scope": "claimable", "amount_min": "100"}):
                base = {"sort": sort, "desc": desc, **extra}
                first = page(**base)
                by_offset = [[t.id for t in page(**base, page=str(n)).tasks] for n in range(1, first.pages + 1)]
                walked, current, n = [], first, 1
                while True:
                    walked.append([t.id for t in current.tasks])
                    if current.next_after is None:
                        break
                    n += 1
                    current = page(**base, page=str(n), after=current.next_after)
                assert walked == by_offset, (base, n)
                back = []
                while True:
                    back.insert(0, [t.id for t in current.tasks])
                    if current.prev_before is None:
                        break
                    n -= 1
                    current = page(**base, page=str(n), before=current.prev_before)
                assert back == by_offset, (base, n)
    with pytest.raises(InvalidInput) as bad:  # a position of another sort, or made up
        InboxQuery.from_args({"sort": "amount", "after": page(sort="due").next_after})
    assert set(bad.value.fields) == {"after"}
    with pytest.raises(InvalidInput):
        InboxQuery.from_args({"before": "bm90IGEgY3Vyc29y"})


def test_inbox_first_page_reads_each_branch_in_index_order(sqlite_store):
    """Each branch of the default inbox order is one range of an inbox-order index (no sort of
    the whole visible set); only the merge of the branches' first rows is sorted."""
    from sqlalchemy import event
    statements = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))
    with sqlite_store.read() as s:
        me = access.person(s, "dm.zhou")
        me = me.__class__(**{**me.__dict__, "roles": frozenset({"dept_manager", "finance"})})
        event.listen(sqlite_store.engine, "before_cursor_execute", grab)
        try:
            inbox.search(s, me, InboxQuery(), T0)
        finally:
            event.remove(sqlite_store.engine, "before_cursor_execute", grab)
    count, page = statements[-2:]
    with sqlite_store.engine.connect() as c:
        page_plan = [r[3] for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + page[0], page[1])]
        count_plan = [r[3] for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + count[0], count[1])]
    # each branch reads the sort keys from its index alone; only the page's rows are read by id
    assert sum("USING COVERING INDEX ix_human_task_open_order (role=? AND office_scope=?)" in line for line in page_plan) == 2, page_plan
    assert sum("USING COVERING INDEX ix_human_task_held_order (assignee=?)" in line for line in page_plan) == 1, page_plan
    assert sum("(id=?)" in line for line in page_plan) == 1, page_plan
    assert sum("TEMP B-TREE" in line for line in page_plan) == 2, page_plan  # the merge, the page's rows
    assert all("COVERING INDEX" in line for line in count_plan if line.startswith("SEARCH")), count_plan
    assert not any(line.startswith("SCAN human_task") for line in page_plan + count_plan)

    # a customer: every branch reads that customer's rows only (of its role and scope), in inbox order
    statements.clear()
    with sqlite_store.read() as s:
        event.listen(sqlite_store.engine, "before_cursor_execute", grab)
        try:
            inbox.search(s, me, InboxQuery(customer="C-B07"), T0)
        finally:
            event.remove(sqlite_store.engine, "before_cursor_execute", grab)
    with sqlite_store.engine.connect() as c:
        page_plan = [r[3] for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + statements[-1][0], statements[-1][1])]
    searches = [line for line in page_plan if line.startswith("SEARCH")]
    assert len(searches) == 4, page_plan
    assert "ix_human_task_customer_order (customer=? AND assignee=?)" in searches[0], page_plan  # held
    assert all("COVERING INDEX ix_human_task_customer_open_order (customer=? AND role=? AND office_scope=?)" in line
               for line in searches[1:3]), page_plan  # open, of each role in its office scope


def test_migrations_build_the_schema_the_models_declare(store):
    """`alembic upgrade head` gives the tables, columns and indexes of engine.store's models."""
    import warnings
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from engine.store import Base
    with store.engine.connect() as c, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLite cannot reflect expression indexes: listed below
        differences = compare_metadata(MigrationContext.configure(c), Base.metadata)
        listed = ("SELECT name FROM sqlite_master WHERE tbl_name = 'human_task' AND sql LIKE 'CREATE INDEX%'"
                  if store.is_sqlite else
                  "SELECT indexname FROM pg_indexes WHERE tablename = 'human_task' AND indexname <> 'human_task_pkey'")
        indexes = set(c.exec_driver_sql(listed).scalars())
    assert differences == []
    assert {ix.name for ix in Base.metadata.tables["human_task"].indexes} == indexes


def test_a_failing_mail_leaves_the_rest_pending_and_sends_none_twice(store, monkeypatch):
    import smtplib

    from engine.store import Outbox
    sent: list[str] = []

    class FlakySMTP:
        fail_after = 1  # the second mail fails

        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def send_message(self, message):
            if FlakySMTP.fail_after is not None and len(sent) >= FlakySMTP.fail_after:
                raise smtplib.SMTPServerDisconnected("gone")
            sent.append(message["To"])
    monkeypatch.setattr(smtplib, "SMTP", FlakySMTP)
    with store.write() as s:
        s.add_all(Outbox(recipient=f"u{i}", subject="s", body="b", status="pending", created_at=T0) for i in range(3))
    with store.write() as s:
        assert notifications.deliver_outbox(s, "smtp://mail", "example.com", T0) == 1
    FlakySMTP.fail_after = None
    with store.write() as s:
        assert notifications.deliver_outbox(s, "smtp://mail", "example.com", T0) == 2
    assert sent == ["u0@example.com", "u1@example.com", "u2@example.com"]  # each once


def test_the_holder_whose_task_is_escalated_away_is_told_and_the_inbox_row_says_from_whom(runtime, store):
    task = only_task(start_review(runtime))
    runtime.claim(task.id, "dm.zhou", at=T0)
    timers.run_once(runtime, T0 + timedelta(hours=5))  # silent: escalated to dm.zhou's superior
    with store.read() as s:
        told = notifications.for_user(s, "dm.zhou")[0]
        assert (told["kind"], told["task_id"], told["params"]["to"]) == ("escalated_away", task.id, "vp.qian")
        assert "escalated to vp.qian" in told["message"]
        assert notifications.for_user(s, "vp.qian")[0]["params"]["holder"] == "dm.zhou"
    held = search(store, "vp.qian", now=T0 + timedelta(hours=5)).tasks
    assert [(t.id, t.assignee, t.escalated_from) for t in held] == [(task.id, "vp.qian", "dm.zhou")]
    assert held[0].as_json()["escalated_from"] == "dm.zhou"
    runtime.hand_back(task.id, "vp.qian", at=T0 + timedelta(hours=6))
    back = search(store, "dm.zhou", now=T0 + timedelta(hours=6)).tasks
    assert [(t.assignee, t.escalated_from) for t in back] == [("dm.zhou", None)]
