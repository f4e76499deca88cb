"""The instances page in a real browser at a phone's width (390 px): one card per instance, no
horizontal scrolling, and the link to the instance works."""
from __future__ import annotations

from .conftest import contract
from .test_browser import TIMEOUT_MS, chromium, live, sign_in  # noqa: F401 (fixtures)


def test_the_instances_page_fits_a_phone(chromium, live):
    view = live.runtime.start("contract_review", "rep.wang", contract(customer="C-A01"))
    context = chromium.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN", base_url=live.url)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        sign_in(page, "rep.wang")
        page.goto("/instances?customer=C-A01")
        link = page.locator(f'a[href="/instances/{view.id}"]')
        assert link.is_visible()
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"
        cell = page.locator("table.instances tbody td").first.bounding_box()
        assert cell["width"] > 300  # a card: each cell a full-width line, not a squeezed column
        link.click()
        page.wait_for_url(f"**/instances/{view.id}")
    finally:
        context.close()
