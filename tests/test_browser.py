"""The approvers' pages in a real browser (Chromium, headless, through Playwright) against a live
server (tests/browser_server.py): signing in, starting a contract review from its form, the
department manager's claim–reject–approve in the inbox and task pages, the language switch and
the drawn diagram with its current step marked.

Playwright's own browser download does not work here: the tests drive the system's Chromium
(BPM_BROWSER, default /usr/bin/chromium). Without it they are skipped, except in CI (CI=true),
where they must run. Each run refreshes the screenshots in docs/screenshots/ (1280×800) when a
Chinese font is installed (fonts-noto-cjk; .ci/run installs it).
"""
from __future__ import annotations

import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from engine import clock
from engine.store import HumanTask

from . import browser_server

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
BROWSER = os.environ.get("BPM_BROWSER", "/usr/bin/chromium")
BROWSER = shutil.which(BROWSER) or BROWSER  # a bare name is looked up on PATH
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
TIMEOUT_MS = 10_000

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the package is in requirements.txt
    sync_playwright = expect = None

CONTRACT = {  # priced below the quote: department manager, then the VP of sales
    "customer": "C-B01", "amount": "240000", "quote_price": "520", "price": "480",
    "payment_terms": "30% 定金，发货前付清", "quote_payment_terms": "30% 定金，发货前付清",
}
LINE = {"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": "500", "unit_price": "480"}


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"CI must run the browser tests: {reason}")
    pytest.skip(reason)


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chromium():
    if sync_playwright is None:
        _unavailable("playwright is not installed")
    if not (os.path.isfile(BROWSER) and os.access(BROWSER, os.X_OK)):
        _unavailable(f"no Chromium at {BROWSER} (set BPM_BROWSER or apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=BROWSER, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    server = browser_server.start(tmp_path_factory.mktemp("browser"))
    yield server
    server.stop()


@pytest.fixture
def open_page(chromium, live):
    """open_page() -> a page in a fresh browser context (own cookies), Chinese by default, that
    fails the test on any JavaScript error."""
    contexts, errors = [], []

    def make(locale: str = "zh-CN", viewport: dict | None = None):
        context = chromium.new_context(viewport=viewport or VIEWPORT, locale=locale, base_url=live.url)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, "JavaScript errors: " + "; ".join(errors)


def _has_chinese_font() -> bool:
    import subprocess
    try:
        listed = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(listed.strip())


# Without a CJK font Chromium draws the Chinese pages as empty boxes: keep the committed pictures.
CHINESE_FONT = _has_chinese_font()


def shot(page, name: str) -> None:
    """Refresh docs/screenshots/NAME.png (only where Chinese can be drawn: apt-get install fonts-noto-cjk)."""
    if not CHINESE_FONT:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def sign_in(page, username: str, password: str = "demo") -> None:
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.locator("form.stack button[type=submit]").click()


def open_tasks(live, instance_id: str) -> list[HumanTask]:
    with live.store.read() as session:
        return list(session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id)))


def the_task(live, instance_id: str, element_id: str) -> HumanTask:
    tasks = [t for t in open_tasks(live, instance_id) if t.element_id == element_id]
    assert len(tasks) == 1, [t.element_id for t in open_tasks(live, instance_id)]
    return tasks[0]


def day(offset: int) -> str:
    """A date `offset` days from today by the engine's clock (BPM_NOW when set), as the form's
    `x-not-before: today` sees it."""
    return (clock.now().date() + timedelta(days=offset)).isoformat()


# --- signing in ---------------------------------------------------------------------------------

def test_sign_in_refuses_a_wrong_password_then_lets_the_user_in(open_page):
    page = open_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.locator("h1")).to_have_text("登录")
    shot(page, "login")

    sign_in(page, "dm.zhou", "not-the-password")
    expect(page.locator("p.flash-error[role=alert]")).to_have_text("用户名或密码错误。")
    expect(page.locator("#username")).to_have_value("dm.zhou")
    expect(page.locator("#password")).to_have_value("")

    sign_in(page, "dm.zhou")
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("h1")).to_have_text("收件箱")
    expect(page.locator("header .user")).to_contain_text("周经理")


def test_language_switch_changes_the_labels_and_is_kept(open_page):
    page = open_page()
    page.goto("/login")
    expect(page.locator("h1")).to_have_text("登录")
    expect(page.locator("label[for=username]")).to_have_text("用户名")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")

    page.locator("form.lang button[value=en]").click()
    expect(page.locator("h1")).to_have_text("Sign in")
    expect(page.locator("label[for=username]")).to_have_text("Username")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("form.lang button[value=en]")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("form.lang button[value=zh_CN]")).to_have_attribute("aria-pressed", "false")
    colours = [page.locator(f"form.lang button[value={v}]").evaluate("b => getComputedStyle(b).backgroundColor")
               for v in ("en", "zh_CN")]
    assert colours[0] != colours[1]  # the active one is seen to be, not only told to a screen reader

    sign_in(page, "rep.wang")  # the choice outlives the new session of the sign-in
    expect(page.locator("h1")).to_have_text("Inbox")
    expect(page.locator("header nav")).to_contain_text("Start a process")

    page.locator("form.lang button[value=zh_CN]").click()
    expect(page).to_have_url(re.compile(r"/$"))  # back on the same page
    expect(page.locator("h1")).to_have_text("收件箱")
    expect(page.locator("header nav")).to_contain_text("发起流程")


# --- a contract review from the start form to the next approver ----------------------------------

def test_contract_review_is_started_rejected_without_reason_then_approved(open_page, live):
    # rep.wang starts a contract review; a delivery date in the past comes back marked
    rep = open_page()
    sign_in(rep, "rep.wang")
    rep.locator("header nav a[href='/start']").click()
    expect(rep.locator("h1")).to_have_text("发起流程")
    shot(rep, "start_list")
    rep.locator("a[href='/start/contract_review']").click()
    expect(rep).to_have_url(re.compile(r"/start/contract_review$"))

    for name, value in CONTRACT.items():
        rep.fill(f"#f-{name}", value)
    past = day(-7)
    rep.fill("#f-delivery_date", past)
    rep.fill("#f-quote_delivery_date", day(60))
    rep.locator("fieldset[data-rows=lines] button.add-row").click()
    for name, value in LINE.items():
        rep.fill(f"#f-lines-0-{name}", value)
    rep.fill("#f-note", "老客户，批量折扣")
    rep.evaluate("window.scrollTo(0, 0)")
    shot(rep, "start")
    rep.locator("button[name=action][value=start]").click()

    field = rep.locator("#field-delivery_date")
    expect(field).to_have_class(re.compile(r"\bhas-error\b"))
    expect(field.locator(".field-error")).to_contain_text(past)
    expect(rep.locator("#f-delivery_date")).to_have_attribute("aria-invalid", "true")
    expect(rep.locator("div.flash-error[role=alert]")).to_contain_text("未发起")
    for name, value in CONTRACT.items():  # what was typed is kept
        expect(rep.locator(f"#f-{name}")).to_have_value(value)
    expect(rep.locator("#f-delivery_date")).to_have_value(past)
    for name, value in LINE.items():
        expect(rep.locator(f"#f-lines-0-{name}")).to_have_value(value)
    expect(rep.locator("#f-note")).to_have_value("老客户，批量折扣")
    assert rep.locator(".field-error").count() == 1  # only the date is wrong

    rep.fill("#f-delivery_date", day(60))
    rep.locator("button[name=action][value=start]").click()
    expect(rep).to_have_url(re.compile(r"/instances/[^/]+$"))
    expect(rep.locator("ul.flashes")).to_contain_text("业务部经理审核")
    instance_id = rep.url.rsplit("/", 1)[1]
    review = the_task(live, instance_id, "dm_review")

    # dm.zhou finds it in the inbox, claims it and opens it
    dm = open_page()
    sign_in(dm, "dm.zhou")
    row = dm.locator("table.inbox tbody tr").filter(has=dm.locator(f"a[href='/tasks/{review.id}']"))
    expect(row).to_have_count(1)
    expect(row).to_contain_text("C-B01")
    expect(row).to_contain_text("240,000")
    expect(row).to_contain_text(live.runtime.instance(instance_id).business_key)  # the contract no. HT-…
    shot(dm, "inbox")
    row.locator("button", has_text="认领").click()
    expect(dm.locator("ul.flashes")).to_contain_text("业务部经理审核")
    expect(row).to_contain_text("dm.zhou")
    expect(row.locator("button", has_text="取消认领")).to_be_visible()
    row.locator(f"a[href='/tasks/{review.id}']").last.click()
    expect(dm).to_have_url(re.compile(rf"/tasks/{review.id}$"))
    expect(dm.locator("h1")).to_have_text("业务部经理审核")

    # "reject" without a comment: the comment is marked, the decision kept
    decision = dm.locator("#field-decision input[type=radio][name=decision]")
    dm.check("#field-decision input[value=reject]")
    dm.locator("button[name=action][value=complete]").click()
    comment = dm.locator("#field-comment")
    expect(comment).to_have_class(re.compile(r"\bhas-error\b"))
    expect(comment.locator(".field-error")).to_be_visible()
    expect(dm.locator("#f-comment")).to_have_attribute("aria-invalid", "true")
    expect(decision).to_have_count(2)
    expect(dm.locator("#field-decision input[value=reject]")).to_be_checked()
    expect(dm.locator("#field-decision input[value=approve]")).not_to_be_checked()
    expect(dm.locator("div.flash-error[role=alert]")).to_contain_text("未提交")
    assert the_task(live, instance_id, "dm_review").id == review.id  # nothing happened
    comment.scroll_into_view_if_needed()
    shot(dm, "task_error")

    # approve with a comment: the task goes to the VP of sales
    dm.check("#field-decision input[value=approve]")
    dm.fill("#f-comment", "同意，批量折扣在授权内")
    dm.locator("button[name=action][value=complete]").click()
    expect(dm).to_have_url(re.compile(r"/$"))
    expect(dm.locator("ul.flashes")).to_contain_text("下一步")
    expect(dm.locator(f"a[href='/tasks/{review.id}']")).to_have_count(0)
    approval = the_task(live, instance_id, "vp_approval")

    vp = open_page()
    sign_in(vp, "vp.qian")
    row = vp.locator("table.inbox tbody tr").filter(has=vp.locator(f"a[href='/tasks/{approval.id}']"))
    expect(row).to_have_count(1)
    expect(row).to_contain_text("C-B01")
    row.locator(f"a[href='/tasks/{approval.id}']").last.click()
    expect(vp.locator(".history")).to_contain_text("同意，批量折扣在授权内")


# --- the diagram -------------------------------------------------------------------------------

def test_instance_diagram_marks_the_step_waiting_now(open_page, live):
    view = live.runtime.start("contract_review", "rep.wang", {
        "customer": "C-A01", "amount": 184000, "quote_price": 100, "price": 92,
        "payment_terms": "30% deposit", "delivery_date": day(30),
        "quote_payment_terms": "30% deposit", "quote_delivery_date": day(30),
        "lines": [{"product": "芝麻白花岗岩板", "quantity": 2000, "unit_price": 92}]})
    review = the_task(live, view.id, "dm_review")
    live.runtime.complete(review.id, "dm.zhou", {"decision": "approve", "comment": "可以"})

    page = open_page()
    sign_in(page, "rep.wang")
    page.goto(f"/instances/{view.id}")
    diagram = page.locator("#diagram")
    expect(diagram.locator("svg").first).to_be_visible()
    active = diagram.locator(".djs-element.active")
    expect(active).to_have_count(1)
    expect(active).to_have_attribute("data-element-id", "vp_approval")
    expect(diagram.locator(".djs-element.completed[data-element-id=dm_review]")).to_have_count(1)
    expect(diagram.locator(".djs-element.overdue")).to_have_count(0)
    # the marker is drawn: the task's shape takes the "waiting now" stroke of app.css
    stroke = active.locator(".djs-visual > :first-child").evaluate(
        "el => getComputedStyle(el).strokeWidth")
    assert stroke == "4px"
    expect(page.locator("ul.steps li.step-active")).to_have_count(1)
    page.locator("#diagram-title").scroll_into_view_if_needed()
    shot(page, "instance")


# --- the inbox on a phone -------------------------------------------------------------------------

PHONE = {"width": 390, "height": 844}


def test_the_inbox_fits_a_390px_phone_without_sideways_scrolling(open_page, live):
    for i, (customer, price) in enumerate([("C-A01", 100), ("C-B01", 520), ("C-C01", 88)]):
        live.runtime.start("contract_review", "rep.wang", {
            "customer": customer, "amount": price * 1000 * (i + 1), "quote_price": price, "price": price,
            "payment_terms": "30% 定金，发货前付清", "quote_payment_terms": "30% 定金，发货前付清",
            "delivery_date": day(40), "quote_delivery_date": day(40),
            "lines": [{"product": "芝麻灰花岗岩板 600x600x20", "quantity": 1000 * (i + 1), "unit_price": price}]})
    for locale, heading in (("zh-CN", "收件箱"), ("en", "Inbox")):
        page = open_page(locale, PHONE)
        sign_in(page, "dm.zhou")
        expect(page.locator("h1")).to_have_text(heading)
        rows = page.locator("table.inbox tbody tr")
        assert rows.count() >= 3
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{locale}: the inbox is {width} px wide on a 390 px screen"
        first = rows.first
        # each row still shows what to act on: its step, its due time and its claim button, on screen
        for part in ("td.step a", "td.due", "td.actions button"):
            box = first.locator(part).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, (locale, part, box)
        if locale == "zh-CN":
            shot(page, "inbox-phone")
