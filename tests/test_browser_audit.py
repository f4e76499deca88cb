"""The auditor's workbench in a real browser (issue 10): audit.han finds an escalated contract by its
customer, reads its history in Chinese (sentences, labelled data — no escaped JSON, no raw keys),
steps back and forth through it on the diagram, downloads its evidence bundle, and `bpm verify
--bundle` accepts the file offline and rejects a copy with one changed byte, naming the entry.
Refreshes docs/screenshots/instances.png, audit-history.png and audit-step.png.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from engine import clock, timers

from .test_browser import (chromium, expect, live, open_page, shot, sign_in,  # noqa: F401  (fixtures)
                           the_task)
from .test_evidence import flipped, offset_of

CUSTOMER = "C-A01"


def contract(customer: str) -> dict:
    """A contract on standard terms: the department manager, then the general office."""
    day = (clock.now().date() + timedelta(days=30)).isoformat()
    return {"customer": customer, "amount": 184000, "quote_price": 92, "price": 92, "allowed_discount": 3,
            "discount": 0, "payment_terms": "30% 定金", "quote_payment_terms": "30% 定金",
            "delivery_date": day, "quote_delivery_date": day,
            "lines": [{"product": "芝麻白花岗岩板", "spec": "600x600x20", "quantity": 2000, "unit_price": 92}]}


def escalated(live, customer: str) -> str:
    """A contract dm.zhou let pass its four hours: reminded, escalated to vp.qian, who approves."""
    now = clock.now()
    start = now - timedelta(hours=6)
    view = live.runtime.start("contract_review", "rep.wang", contract(customer), at=start)
    timers.run_once(live.runtime, start + timedelta(hours=3, minutes=40))   # the reminder
    timers.run_once(live.runtime, start + timedelta(hours=4, minutes=5))    # overdue: to the superior
    review = the_task(live, view.id, "dm_review")
    assert review.assignee == "vp.qian"
    live.runtime.complete(review.id, "vp.qian", {"decision": "approve", "comment": "同意"},
                          at=start + timedelta(hours=5))
    return view.id


def bpm(*args: str, database: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "bpm"), *args], capture_output=True, text=True,
                          env={**os.environ, "BPM_DATABASE_URL": f"sqlite:///{database}"})


def test_the_auditor_finds_reads_steps_through_and_exports_an_escalated_contract(open_page, live, tmp_path):
    instance_id = escalated(live, CUSTOMER)
    other = live.runtime.start("contract_review", "rep.wang", contract("C-B01"))

    page = open_page()
    sign_in(page, "audit.han")
    page.goto("/instances")
    page.fill("#i-customer", CUSTOMER)
    page.locator("#i-customer").press("Enter")
    rows = page.locator("table.instances tbody tr")
    expect(rows.first).to_contain_text(CUSTOMER)
    assert other.id not in page.content()
    expect(page.locator(f"table.instances a[href='/instances/{instance_id}']")).to_have_count(1)
    shot(page, "instances")
    page.locator(f"table.instances a[href='/instances/{instance_id}']").click()

    # the history in Chinese: who did what, in sentences
    history = page.locator("section.history")
    expect(history).to_contain_text("王 Wang发起")
    expect(history).to_contain_text("已就“业务部经理审核”发出提醒")
    expect(history).to_contain_text("由周经理 Zhou升级给钱副总 Qian")
    expect(history).to_contain_text("钱副总 Qian批准了“业务部经理审核”")
    body = page.locator("main").inner_text()
    assert "\\u" not in body and '{"' not in body and "{'" not in body
    data_keys = page.locator("#data-title + dl.pairs > dt").all_inner_texts()
    assert data_keys and not [k for k in data_keys if re.fullmatch(r"[a-z_]+", k)], data_keys
    expect(page.locator("#verification")).to_contain_text("完整")
    shot(page, "audit-history")

    # step back and forth on the diagram
    diagram = page.locator("#diagram")
    expect(diagram.locator(".djs-element.completed[data-element-id=dm_review]")).to_have_count(1)
    page.locator("a[rel=prev]").click()
    expect(page.locator("#diagram-title")).to_contain_text("第 3 步之后（共 4 步）")
    page.locator("a[rel=prev]").click()
    page.locator("a[rel=prev]").click()
    expect(page.locator("#diagram-title")).to_contain_text("第 1 步之后")
    expect(page.locator("a[rel=prev]")).to_have_count(0)
    expect(diagram.locator(".djs-element.active[data-element-id=dm_review]")).to_have_count(1)
    expect(page.locator("#data-title")).to_contain_text("第 1 步之后的数据")
    page.locator("a[rel=next]").click()
    page.locator("a[rel=next]").click()
    expect(page.locator("#diagram-title")).to_contain_text("第 3 步之后")
    expect(page.locator("li.shown")).to_contain_text("升级给钱副总 Qian")
    expect(diagram.locator(".djs-element.active[data-element-id=dm_review]")).to_have_count(1)
    page.evaluate("window.scrollTo(0, document.querySelector('#diagram-title').getBoundingClientRect().top + window.scrollY - 8)")
    shot(page, "audit-step")

    # the evidence bundle, checked offline
    with page.expect_download() as download:
        page.locator("a", has_text="下载证据包").click()
    path = tmp_path / "evidence.tar"
    download.value.save_as(path)
    nowhere = tmp_path / "nowhere" / "none.sqlite3"
    done = bpm("verify", "--bundle", str(path), database=nowhere)
    assert done.returncode == 0, done.stderr
    assert f"ok   {instance_id} (4 steps)" in done.stdout
    data = path.read_bytes()
    log = f"instances/{instance_id}/log.jsonl"
    bad = tmp_path / "one-byte-changed.tar"
    bad.write_bytes(flipped(data, offset_of(data, log) + data[offset_of(data, log):].index(b"vp.qian") + 1))
    done = bpm("verify", "--bundle", str(bad), database=nowhere)
    assert done.returncode == 1
    assert re.search(rf"{log}: step \d \(\w+\) was changed", done.stderr), done.stderr


def test_an_instance_page_fits_a_phone(chromium, live):
    """At 390 px the instance page — facts, diagram, data, history — scrolls only downwards."""
    instance_id = escalated(live, "C-B01")
    context = chromium.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN", base_url=live.url)
    try:
        page = context.new_page()
        sign_in(page, "audit.han")
        for url in (f"/instances/{instance_id}", f"/instances/{instance_id}?step=2"):
            page.goto(url)
            expect(page.locator("section.history")).to_be_visible()
            widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert widths[0] <= widths[1], (url, widths)
    finally:
        context.close()
