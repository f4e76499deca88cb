"""The record of archive reads beside the instance and per customer (issue 10, part 6): the reads of
one customer's card and of the customer of one instance (engine.customers), the `archive_reads`
macro of parts.html that shows them, and the customer page, where the auditor (who may not read
the card) and the general manager see that customer's reads.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from flask import render_template_string

from engine.runtime import Forbidden, NotFound

from .conftest import contract
from .test_processes import BRANCH
from .test_customers import T0, app, archive, page, rt, signed_in  # noqa: F401  (fixtures)


@pytest.fixture
def recorded(archive, rt):
    """A contract for C-B01; its card read by dm.zhou (page) and refused to wh.wei (API); C-A01's read by
    gm.zhao (command line), which is not C-B01's."""
    view = rt.start("contract_review", "rep.wang", contract(), at=T0)
    archive.card("C-B01", "dm.zhou", door="web", at=T0 + timedelta(minutes=1))
    with pytest.raises(Forbidden):
        archive.card("C-B01", "wh.wei", door="api", at=T0 + timedelta(minutes=2))
    archive.card("C-A01", "gm.zhao", door="cli", at=T0 + timedelta(minutes=3))
    return view.id


def summary(reads) -> list[tuple]:
    return [(r["reader"], r["customer"], r["allowed"], r["basis"], r["door"]) for r in reads]


def test_the_reads_of_an_instances_customer_newest_first_for_the_auditor(archive, recorded):
    expected = [("wh.wei", "C-B01", False, None, "api"), ("dm.zhou", "C-B01", True, "role:dept_manager", "web")]
    assert summary(archive.instance_reads("audit.han", recorded)) == expected
    assert summary(archive.reads("audit.han", customer="C-B01")) == expected
    assert summary(archive.instance_reads("audit.han", recorded, limit=1)) == expected[:1]
    # who may not see the record of reads gets nothing to show, not a refusal: the instance page is theirs
    assert archive.instance_reads("rep.wang", recorded) is None
    assert archive.instance_reads("dm.zhou", recorded) is None
    # the general manager sees the record, but this instance is none of his: as if it did not exist
    with pytest.raises(NotFound, match="there is no instance"):
        archive.instance_reads("gm.zhao", recorded)
    with pytest.raises(NotFound):
        archive.instance_reads("audit.han", "no-such-instance")
    with pytest.raises(Forbidden):
        archive.reads("rep.wang", customer="C-B01")


def test_an_instance_without_a_customer_has_no_reads(archive, rt):
    view = rt.start("branch_establishment", "rm.zheng", dict(BRANCH), at=T0)
    archive.card("C-B01", "dm.zhou", door="web", at=T0)
    assert archive.instance_reads("audit.han", view.id) == []


def test_the_macro_shows_each_read_and_links_to_all_of_the_customers(app, archive, recorded):
    template = '{% import "parts.html" as parts with context %}{{ parts.archive_reads(reads) }}'
    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        shown = render_template_string(template, reads=archive.instance_reads("audit.han", recorded))
        nothing = render_template_string(template, reads=None)
        empty = render_template_string(template + "{{ parts.archive_reads([], 'C-Z09') }}", reads=None)
    assert "Reads of the archive of C-B01" in shown
    assert shown.count('class="read-refused"') == 1 and shown.count('class="read-allowed"') == 1
    assert "2026-11-23 09:02" in shown and "wh.wei" in shown and "web page" in shown and "API" in shown
    assert "Business department manager" in shown  # dm.zhou's basis, by the role's name
    assert 'href="/archive-reads?customer=C-B01"' in shown
    assert nothing.strip() == ""
    assert "No reads recorded." in empty and "C-Z09" in empty


def test_the_customer_page_shows_its_reads_to_the_auditor_and_the_general_manager(app, recorded):
    auditor = signed_in(app, "audit.han", "zh_CN")
    refused = auditor.get("/customers/C-B01")
    assert refused.status_code == 403  # the auditor reads the record, not the card
    html = page(refused)
    assert "0757-2238 6410" not in html and 'id="archive-reads"' in html
    assert html.count('class="read-refused"') == 2  # wh.wei's, and this very attempt
    assert "dm.zhou" in html and "gm.zhao" not in html  # C-A01's read is not this customer's
    assert "网页" in html
    gm = page(signed_in(app, "gm.zhao").get("/customers/C-B01"))
    assert 'id="archive-reads"' in gm and "wh.wei" in gm
    assert 'id="archive-reads"' not in page(signed_in(app, "dm.zhou").get("/customers/C-B01"))
    assert 'id="archive-reads"' not in page(signed_in(app, "wh.wei").get("/customers/C-B01"))


def test_the_instance_page_shows_the_reads_to_the_auditor_only(app, recorded):
    auditor = page(signed_in(app, "audit.han").get(f"/instances/{recorded}"))
    beside = auditor.split("Reads of the archive of C-B01")[1]
    assert "dm.zhou" in beside and "wh.wei" in beside and "gm.zhao" not in beside   # C-A01's read is not C-B01's
    assert "Reads of the archive" not in page(signed_in(app, "rep.wang").get(f"/instances/{recorded}"))
