"""The SLA breach report (engine/reports.py, web/reports.py, `bpm sla-report`): real breaches made by
running contract reviews past their due times, grouped by process, step, person, office and month
(the company's time zone), with counts and median lateness; the drill-down to the breaches of one
group; CSV; and the auditor alone may read it, on the page, the API and the command line.

The breaches made here (due times in UTC; China is UTC+8):
- D1 dm_review, dm.zhou, due 10-31 17:00 (11-01 01:00 in China), done 19:00: 2 h late
- D2 go_approval, gmo.tang, due 10-31 23:00 (11-01 07:00 in China), done 11-01 03:00: 4 h
- A dm_review, dm.zhou, due 11-23 05:00, done 07:00: 2 h
- B dm_review, dm.zhou, due 11-23 05:00, done 09:00: 4 h
- C dm_review, dm.zhou, due 11-23 05:00, still open at REPORT_AT (13:00): 8 h so far
"""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

import processes
from bpm.cli import main
from engine import timers, versions
from engine.reports import SlaQuery, SlaReport, parse_query
from engine.runtime import Forbidden, InvalidInput, Runtime

from .conftest import contract
from .test_processes import APPROVE, BPMN, the_task
from .test_web import as_user, catalogs, make_app, text  # noqa: F401  (catalogs: a fixture the app needs)

UTC = timezone.utc
DEPLOYED = datetime(2026, 10, 1, 1, 0, tzinfo=UTC)
D0 = datetime(2026, 10, 31, 13, 0, tzinfo=UTC)
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
REPORT_AT = T0 + timedelta(hours=12)
H = 3600


@pytest.fixture
def rt(store, monkeypatch):
    monkeypatch.setenv("BPM_NOW", DEPLOYED.isoformat())
    versions.deploy(store, [BPMN], actor="design.yang", at=DEPLOYED)
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def complete(rt, instance_id, element_id, user, at, data=None):
    return rt.complete(the_task(rt.instance(instance_id), element_id).id, user, data or APPROVE, at=at)


@pytest.fixture
def breaches(rt, monkeypatch) -> dict[str, str]:
    """The five breaches of the module docstring; returns the instance ids by letter."""
    d = rt.start("contract_review", "rep.wang", contract(), at=D0).id
    timers.run_once(rt, D0 + timedelta(hours=5))  # dm_review due at 17:00: to vp.qian
    complete(rt, d, "dm_review", "vp.qian", D0 + timedelta(hours=6))
    timers.run_once(rt, D0 + timedelta(hours=11))  # go_approval due at 23:00: to gm.zhao
    complete(rt, d, "go_approval", "gm.zhao", D0 + timedelta(hours=14))
    complete(rt, d, "file_contract", "rep.wang", D0 + timedelta(hours=15),
             {"signed_on": "2026-11-01", "archive_location": "A-3"})
    assert rt.instance(d).status == "completed"

    a = rt.start("contract_review", "rep.wang", contract(), at=T0).id
    b = rt.start("contract_review", "rep.wang", contract(payment_terms="月结90天"), at=T0).id
    c = rt.start("contract_review", "rep.wang", contract(price=480, amount=240000), at=T0).id
    timers.run_once(rt, T0 + timedelta(hours=5))
    complete(rt, a, "dm_review", "vp.qian", T0 + timedelta(hours=6))
    complete(rt, b, "dm_review", "vp.qian", T0 + timedelta(hours=8))
    monkeypatch.setenv("BPM_NOW", REPORT_AT.isoformat())
    return {"D": d, "A": a, "B": b, "C": c}


def summary(groups) -> list[tuple]:
    return [(g["key"], g["count"], g["done"], g["still_open"], g["median_late_seconds"]) for g in groups]


def test_breaches_by_process_step_person_office_and_month_with_median_lateness(rt, store, breaches):
    report = SlaReport(store)

    def groups(by, **filters):
        return report.groups("audit.han", SlaQuery(by=by, **filters), now=REPORT_AT)

    # lateness 2, 4, 2, 4 h done and 8 h so far: median 4 h
    assert summary(groups("process")) == [(["contract_review"], 5, 4, 1, 4 * H)]
    assert groups("process")[0]["label"] == "合同评审 / Contract review"
    steps = groups("step")
    # dm_review: 2, 2, 4, 8 h: an even count's median is the mean of the middle two
    assert summary(steps) == [(["contract_review", "dm_review"], 4, 3, 1, 3 * H),
                              (["contract_review", "go_approval"], 1, 1, 0, 4 * H)]
    assert [s["label"] for s in steps] == ["业务部经理审核 / Department manager review", "总经办审批 / General office approval"]
    assert steps[0]["filters"] == {"process": "contract_review", "step": "dm_review"}
    people = groups("person")
    assert summary(people) == [(["dm.zhou"], 4, 3, 1, 3 * H), (["gmo.tang"], 1, 1, 0, 4 * H)]
    assert people[0]["label"] == "周经理 Zhou"
    assert summary(groups("office")) == [(["HQ"], 5, 4, 1, 4 * H)]
    # D's due times fall on 31 October in UTC but on 1 November in China: one month there
    assert summary(groups("month")) == [(["2026-11"], 5, 4, 1, 4 * H)]
    in_utc = SlaReport(store, zone="UTC").groups("audit.han", SlaQuery(by="month"), now=REPORT_AT)
    assert summary(in_utc) == [(["2026-10"], 2, 2, 0, 3 * H), (["2026-11"], 3, 2, 1, 4 * H)]

    # filters: days of the due time in China, an office, a person
    assert summary(groups("person", since=parse_query({"since": "2026-11-02"}).since)) == [
        (["dm.zhou"], 3, 2, 1, 4 * H)]
    asked = parse_query({"by": "step", "until": "2026-11-01", "person": "gmo.tang"})
    assert summary(report.groups("audit.han", asked, now=REPORT_AT)) == [
        (["contract_review", "go_approval"], 1, 1, 0, 4 * H)]
    assert summary(groups("person", until=parse_query({"until": "2026-11-01"}).until)) == [
        (["dm.zhou"], 1, 1, 0, 2 * H), (["gmo.tang"], 1, 1, 0, 4 * H)]
    assert groups("office", office="guangzhou") == []
    assert summary(groups("month", process="contract_review", month="2026-11")) == [(["2026-11"], 5, 4, 1, 4 * H)]
    assert groups("process", process="return_request") == []


def test_the_breaches_of_one_group_link_to_their_instances(rt, store, breaches):
    report = SlaReport(store)
    step = report.groups("audit.han", SlaQuery(by="step"), now=REPORT_AT)[0]
    found = report.breaches("audit.han", parse_query(step["filters"]), now=REPORT_AT)
    assert found["total"] == 4
    rows = found["breaches"]
    # latest due first: A, B, C (due together) then D
    assert {r["instance_id"] for r in rows[:3]} == {breaches["A"], breaches["B"], breaches["C"]}
    assert rows[3]["instance_id"] == breaches["D"]
    by_instance = {r["instance_id"]: r for r in rows}
    late = {k: (by_instance[breaches[k]]["state"], by_instance[breaches[k]]["late_seconds"]) for k in "ABCD"}
    assert late == {"A": ("done", 2 * H), "B": ("done", 4 * H), "C": ("open", 8 * H), "D": ("done", 2 * H)}
    c = by_instance[breaches["C"]]
    assert (c["holder"], c["escalated_to"], c["due_at"], c["done_at"]) == ("dm.zhou", "gm.zhao", T0 + timedelta(hours=4), None)
    a = by_instance[breaches["A"]]
    assert (a["escalated_to"], a["done_at"], a["customer"]) == ("vp.qian", T0 + timedelta(hours=6), "C-B01")
    assert a["business_key"].startswith("HT-")
    assert report.breaches("audit.han", SlaQuery(person="gmo.tang"), now=REPORT_AT)["total"] == 1


def test_only_the_auditor_reads_the_report_and_bad_filters_are_named(store):
    report = SlaReport(store)
    for user in ("rep.wang", "dm.zhou", "gm.zhao"):
        with pytest.raises(Forbidden, match=f"{user} may not read the SLA breach report"):
            report.groups(user, SlaQuery())
        with pytest.raises(Forbidden):
            report.breaches(user, SlaQuery())
    assert report.groups("audit.han", SlaQuery()) == []
    for args, field in (({"by": "colour"}, "by"), ({"since": "yesterday"}, "since"), ({"month": "2026-13"}, "month"),
                        ({"since": "2026-11-02", "until": "2026-11-01"}, "until"), ({"person": "x\x00"}, "person")):
        with pytest.raises(InvalidInput) as refused:
            parse_query(args)
        assert list(refused.value.fields) == [field]
        assert str(refused.value).startswith(f"the SLA report was not made: {field} must be")


# --- the pages, the API and the command line ---------------------------------------------------------

@pytest.fixture
def app(rt, catalogs, tmp_path):
    return make_app(rt, catalogs, tmp_path)


def rows(html: str, table: str) -> list[list[str]]:
    import re
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body.split("<tbody>", 1)[1], re.S)]


def test_the_report_page_groups_drills_down_to_instances_and_downloads_csv(app, breaches):
    auditor = as_user(app, "audit.han", "zh_CN")
    page = auditor.get("/reports/sla?by=person")
    assert page.status_code == 200
    html = text(page)
    assert 'href="/reports/sla"' in html  # the nav link
    assert rows(html, "sla-groups") == [["周经理 Zhou (dm.zhou)", "4", "3", "1", "0", "3小时0分"],
                                        ["唐 Tang (gmo.tang)", "1", "1", "0", "0", "4小时0分"]]
    assert '/reports/sla/breaches?by=person&amp;person=dm.zhou' in page.get_data(as_text=True)
    english = as_user(app, "audit.han")
    assert rows(text(english.get("/reports/sla?by=step")), "sla-groups")[0] == [
        "Department manager review", "4", "3", "1", "0", "3 h 0 min"]

    drill = text(auditor.get("/reports/sla/breaches?by=person&person=dm.zhou&since=2026-10-01"))
    assert '<a href="/reports/sla?since=2026-10-01&by=person">' in drill  # back to the groups, filters kept
    found = rows(drill, "sla-breaches")
    assert len(found) == 4
    assert f'href="/instances/{breaches["C"]}"' in drill
    open_row = next(r for r in found if r[0] == breaches["C"][:8])
    # due 13:00 in China, still open at 21:00: 8 hours so far
    assert open_row[3:] == ["合同评审: 业务部经理审核", "周经理 Zhou (dm.zhou)", "gm.zhao", "2026-11-23 13:00",
                            "仍未完成", "8小时0分 (仍未完成)"]

    data = auditor.get("/reports/sla?by=month&format=csv")
    assert data.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(data.get_data(as_text=True).lstrip("\ufeff"))))
    assert table == [["by", "key", "label", "count", "done", "still_open", "withdrawn", "median_late_hours"],
                     ["month", "2026-11", "2026-11", "5", "4", "1", "0", "4.00"]]
    data = auditor.get("/reports/sla/breaches?process=contract_review&step=go_approval&format=csv")
    table = list(csv.reader(io.StringIO(data.get_data(as_text=True).lstrip("\ufeff"))))
    assert table[1][0] == breaches["D"] and table[1][6:] == [
        "gmo.tang", "gm.zhao", "2026-11-01T07:00+08:00", "2026-11-01T08:00+08:00", "2026-11-01T11:00+08:00",
        "done", "4.00"]


def test_a_bad_filter_is_named_next_to_its_field_and_nothing_else_is_shown(app, breaches):
    auditor = as_user(app, "audit.han")
    page = auditor.get("/reports/sla?since=2026-11-30&until=2026-11-01")
    assert page.status_code == 400
    assert 'id="sla-until-error">The last day is before the first.' in text(page)
    assert 'id="sla-groups"' not in text(page)
    page = auditor.get("/reports/sla/breaches?month=November")
    assert page.status_code == 400 and "Type a month such as 2026-11." in text(page)
    api = auditor.get("/api/v1/reports/sla?by=colour")
    assert api.status_code == 400 and api.json["fields"] == {"by": "one of process, step, person, office, month"}


def test_the_api_gives_the_groups_and_the_breaches_of_one(app, breaches):
    auditor = as_user(app, "audit.han")
    answer = auditor.get("/api/v1/reports/sla?by=step&since=2026-11-02").json
    assert answer["by"] == "step" and answer["filters"] == {"since": "2026-11-02"}
    assert [(g["key"], g["count"], g["median_late_seconds"]) for g in answer["groups"]] == [
        (["contract_review", "dm_review"], 3, 4 * H)]
    group = answer["groups"][0]["filters"]
    found = auditor.get("/api/v1/reports/sla/breaches", query_string=group).json
    assert found["total"] == 3
    assert {b["instance_id"] for b in found["breaches"]} == {breaches[k] for k in "ABC"}
    assert {b["due_at"] for b in found["breaches"]} == {(T0 + timedelta(hours=4)).isoformat()}


def test_a_rep_is_refused_the_report_on_the_page_the_api_and_the_command_line(app, store, breaches, monkeypatch, capsys):
    rep = as_user(app, "rep.wang")
    for url in ("/reports/sla", "/reports/sla/breaches?person=dm.zhou", "/reports/sla?format=csv"):
        page = rep.get(url)
        assert page.status_code == 403 and "The SLA breach report is for the auditor." in text(page), url
        assert "Zhou" not in text(page) and "HT-" not in text(page)  # nothing of the report
    assert 'href="/reports/sla"' not in text(rep.get("/"))
    for url in ("/api/v1/reports/sla", "/api/v1/reports/sla/breaches"):
        answer = rep.get(url)
        assert answer.status_code == 403
        assert answer.json["error"] == "rep.wang may not read the SLA breach report; the auditor may"

    if not store.is_sqlite:
        return  # the command line below reads the SQLite file of this test
    monkeypatch.setenv("BPM_DATABASE_URL", store.engine.url.render_as_string(hide_password=False))
    assert main(["sla-report", "--as", "rep.wang"]) == 1
    assert capsys.readouterr().err.strip() == "bpm sla-report: rep.wang may not read the SLA breach report; the auditor may"
    assert main(["sla-report", "--by", "person", "--as", "audit.han", "--csv"]) == 0
    assert list(csv.reader(io.StringIO(capsys.readouterr().out))) == [
        ["by", "key", "label", "count", "done", "still_open", "withdrawn", "median_late_hours"],
        ["person", "dm.zhou", "周经理 Zhou", "4", "3", "1", "0", "3.00"],
        ["person", "gmo.tang", "唐 Tang", "1", "1", "0", "0", "4.00"]]
    assert main(["sla-report", "--as", "audit.han", "--json", "--breaches", "--person", "gmo.tang"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["total"] == 1 and found["breaches"][0]["instance_id"] == breaches["D"]
    assert main(["sla-report", "--as", "audit.han", "--since", "someday"]) == 1
    assert capsys.readouterr().err.strip() == (
        "bpm sla-report: the SLA report was not made: since must be a day such as 2026-11-23")
