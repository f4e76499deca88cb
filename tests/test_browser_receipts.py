"""Finance's receipts page (到账登记) in a real browser (Chromium through Playwright, see
tests/test_browser.py for how the browser is found and skipped): fin.chu finds an order awaiting
its balance, is refused an overpayment and a receipt without a voucher next to the field, records
a partial and then the full receipt, and the order closes once its amounts are reconciled from the
inbox.

The steps before the balance falls due (deposit, production, shipping) are the runtime's, as in
tests/test_processes.py; everything from the receipts on goes through the pages: finance's, then
the sales rep's reconciliation from their inboxes.
"""
from __future__ import annotations

import re
from datetime import timedelta

from engine import clock

from .test_browser import (  # noqa: F401 (fixtures)
    chromium, day, expect, live, open_page, open_tasks, sign_in)
from .test_processes import Clock, deposit_to_dispatch, order
from .test_receipts import kept


def an_order_awaiting_its_balance(live):
    """A credit-A order of 120,000 (deposit 36,000 in), shipped: 84,000 due; its record kept."""
    steps = Clock(clock.now() - timedelta(days=20))
    view = live.runtime.start("order_to_settlement", "rep.wang",
                              order("C-A01", 120000, delivery_date=day(30)), at=steps.now)
    view = deposit_to_dispatch(live.runtime, view, steps)
    assert view.tasks == [] and view.data["balance"] == 84000
    kept(live.store, view, "awaiting_payment")
    return view


def test_finance_records_a_partial_then_the_full_receipt_and_the_order_closes(open_page, live):
    view = an_order_awaiting_its_balance(live)
    order_no = view.data["order_no"]

    fin = open_page()
    sign_in(fin, "fin.chu")
    fin.locator("header nav a[href='/receipts']").click()
    expect(fin.locator("h1")).to_contain_text("到账登记")
    fin.fill("#search-customer", "C-A01")
    fin.fill("#search-amount", "84000")
    fin.locator("form[role=search] button[type=submit]").click()
    row = fin.locator("#orders tbody tr", has_text=order_no)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("待收款")
    row.locator("a").click()
    expect(fin.locator("#order-balance")).to_have_text("¥84,000.00")
    expect(fin.locator("#receipt-order_no")).to_have_value(order_no)
    expect(fin.locator("#receipt-received_on")).to_have_value(day(0))

    # more than the balance, and no voucher: both said next to their fields, nothing booked
    fin.fill("#receipt-amount", "90000")
    fin.locator("#receipt-form button[type=submit]").click()
    expect(fin.locator("#receipt-amount-error")).to_contain_text("超过订单")
    expect(fin.locator("#receipt-voucher-error")).to_have_text("请填写银行到账的凭证号。")
    expect(fin.locator("#receipt-amount")).to_have_attribute("aria-invalid", "true")
    expect(fin.locator("#receipt-amount")).to_have_value("90000")
    assert live.runtime.instance(view.id).data["paid"] == 36000

    # part of the balance
    fin.fill("#receipt-amount", "30000")
    fin.fill("#receipt-voucher", "BK-1203-11")
    fin.locator("#receipt-form button[type=submit]").click()
    expect(fin.locator("ul.flashes")).to_contain_text(f"已登记订单 {order_no} 到账 ¥30,000.00（凭证号 BK-1203-11）。")
    expect(fin.locator("#order-balance")).to_have_text("¥54,000.00")
    expect(fin.locator("#receipts tbody tr")).to_have_count(2)  # the deposit and this receipt
    expect(fin.locator("#receipts tbody tr").last).to_contain_text("BK-1203-11")

    # the rest
    fin.fill("#receipt-amount", "54000")
    fin.fill("#receipt-voucher", "BK-1203-12")
    fin.locator("#receipt-form button[type=submit]").click()
    expect(fin.locator("ul.flashes")).to_contain_text("¥54,000.00")
    expect(fin.locator("#order-balance")).to_have_text("¥0.00")
    expect(fin.locator("#receipts tbody tr")).to_have_count(3)
    paid = live.runtime.instance(view.id).data
    assert (paid["paid"], paid["balance"]) == (120000, 0)

    # finance reconciles the amounts received from the inbox; the order closes
    (reconcile,) = [t for t in open_tasks(live, view.id) if t.element_id == "reconcile"]
    fin.locator("header nav a[href='/']").first.click()
    fin.locator(f"a[href='/tasks/{reconcile.id}']").last.click()
    expect(fin).to_have_url(re.compile(rf"/tasks/{reconcile.id}$"))
    fin.fill("#f-confirmed_total", "120000")
    fin.fill("#f-reconciled_on", day(0))
    fin.locator("button[name=action][value=complete]").click()
    expect(fin).to_have_url(re.compile(r"/$"))

    # the rep confirms the same total (001 二 3(5)): then the order closes
    assert live.runtime.instance(view.id).status == "running"  # finance alone does not close it
    (rep_task,) = [t for t in open_tasks(live, view.id) if t.element_id == "reconcile_rep"]
    rep = open_page()
    sign_in(rep, "rep.wang")
    rep.locator(f"a[href='/tasks/{rep_task.id}']").last.click()
    expect(rep).to_have_url(re.compile(rf"/tasks/{rep_task.id}$"))
    rep.fill("#f-rep_confirmed_total", "120000")
    rep.fill("#f-rep_reconciled_on", day(0))
    rep.locator("button[name=action][value=complete]").click()
    expect(rep).to_have_url(re.compile(r"/$"))
    assert live.runtime.instance(view.id).status == "completed"
    assert open_tasks(live, view.id) == []

    # settled: one more receipt is refused next to the order number
    fin.goto(f"/receipts?order={order_no}")
    fin.fill("#receipt-amount", "1")
    fin.fill("#receipt-voucher", "BK-1203-13")
    fin.locator("#receipt-form button[type=submit]").click()
    expect(fin.locator("#receipt-order_no-error")).to_contain_text(order_no)
    assert live.runtime.instance(view.id).data["paid"] == 120000
