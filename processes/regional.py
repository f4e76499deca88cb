"""The regional expense cap (区域管理费用管控, seed 002 三 1): a region's expenses are limited to 0.3 %
of its collections (区域费用以区域回款额的0.3%为限), filed by the regional manager and approved by the
general manager (区域经理备案总经理审批执行); the regional manager's own travel is paid as spent
(其中区域经理出差费用实报实销).

The rate and the categories paid as spent are the decision table `regional_expense_cap`'s
(bpmn/regional_expense_cap.dmn); the arithmetic is here:

- the region is the filing regional manager's (engine.records.region_of: his office is the region);
- the region's collections of the month are the money received in that month on the orders its
  people raised (the order chain's "order" records, engine.records.in_region; counted by
  engine.reports.collections, the same count the capital-in-use figure uses) *(choice: 回款 is
  money in, deposits and balances, whether or not the order is settled yet)*; the day of a
  payment is its `received_on`, a day of the company's calendar (China time: a bank notice booked
  at 01:00 on 1 December is December's, engine.clock.local_date), as the filing's month is;
- the cap is collections × rate; the filing's lines count against it except those paid as spent,
  and so do the region's earlier filings of the same month that were not rejected *(choice: a
  month's cap is not renewed by filing twice)*;
- over the cap the filing needs a reason (`over_cap_reason`): without one it is refused with a
  sentence next to that field, and nothing starts.

Every filing is kept as the business record "regional_expense" (key: its number; ref:
"REGION/YYYY-MM"), its status following the process: filed, approved, rejected, paid.
"""
from __future__ import annotations

import calendar
import secrets
from datetime import date
from typing import Any

from engine import clock, records, reports
from engine.runtime import InvalidInput

from .amounts import CENT, money, number

KIND = "regional_expense"


def assign_filing_number() -> str:
    """"FY-YYYYMMDD-" and ten hex digits (费用); the date is the company's day of the engine's present."""
    return f"FY-{clock.local_date().strftime('%Y%m%d')}-{secrets.token_hex(5)}"


def _month(month: Any) -> tuple[date, date]:
    """The first and last day of a "YYYY-MM" month (the form's pattern has checked its shape)."""
    try:
        year, number_ = (int(part) for part in str(month).split("-"))
        first = date(year, number_, 1)
    except ValueError:
        raise InvalidInput("the month %(month)r is not a month such as 2026-11", {"month": "not a month"},
                           month=month) from None
    return first, date(year, number_, calendar.monthrange(year, number_)[1])


def _exempt(categories: Any) -> set[str]:
    return {c.strip() for c in str(categories or "").split(",") if c.strip()}


def _filed_before(ref: str, filing_no: str) -> float:
    """What the region's other filings of the month count against the cap (not the rejected)."""
    total = 0.0
    for record in records.referring(KIND, ref):
        if record["key"] != filing_no and record["data"].get("status") != "rejected":
            total += number(record["data"].get("counted_total")) or 0.0
    return total


def check_regional_expenses(filing_no: str, month: str, lines: list, initiator: str, cap_rate: Any,
                            exempt_categories: Any = "", over_cap_reason: Any = None) -> dict:
    """Service: the filing against the region's cap for its month; keeps the filing's record."""
    region = records.region_of(initiator)
    if region is None:
        raise InvalidInput("%(user)s is not in a region: a region's expenses are filed by its regional manager",
                           {"month": "no region"}, user=initiator)
    first, last = _month(month)
    rate = number(cap_rate)
    if rate is None or rate < 0:
        raise ValueError(f"the decision table gave the cap rate {cap_rate!r}, not a number")
    exempt = _exempt(exempt_categories)
    lines = [dict(line) for line in lines or [] if isinstance(line, dict)]
    counted = sum(number(l.get("amount")) or 0.0 for l in lines if l.get("category") not in exempt)
    as_spent = sum(number(l.get("amount")) or 0.0 for l in lines if l.get("category") in exempt)
    collected = reports.collections(records.in_region("order", region), first, last)
    cap = round(collected * rate, 2)
    ref = f"{region}/{first.strftime('%Y-%m')}"
    before = _filed_before(ref, filing_no)
    month_total = before + counted
    within = month_total <= cap + CENT
    reason = over_cap_reason.strip() if isinstance(over_cap_reason, str) else ""
    if not within and not reason:
        raise InvalidInput(
            "the region's expenses counted against the cap for %(month)s would be %(total)s, over the cap of "
            "%(cap)s (%(rate)s of the %(collected)s collected that month) by %(over)s: say why in the reason "
            "for going over the cap", {"over_cap_reason": "required over the cap"},
            month=first.strftime("%Y-%m"), total=money(month_total), cap=money(cap),
            rate=f"{rate * 100:g} %", collected=money(collected), over=money(month_total - cap))
    result = {"filing_no": filing_no, "region": region, "month": first.strftime("%Y-%m"),
              "collections": money(collected), "cap_rate": rate, "cap": money(cap),
              "counted_total": money(counted), "paid_as_spent": money(as_spent),
              "total": money(counted + as_spent), "filed_before": money(before),
              "month_total": money(month_total), "within_cap": within,
              "over_by": money(max(0.0, month_total - cap))}
    _publish(result, lines, "filed", initiator, reason or None)
    return result


def _publish(filing: dict, lines: list, status: str, initiator: str, reason: Any) -> None:
    data = {**filing, "lines": lines, "status": status, "filed_by": initiator, "over_cap_reason": reason}
    records.publish_record(KIND, filing["filing_no"], data, ref=f"{filing['region']}/{filing['month']}")


def publish_filing(filing: dict, lines: list, status: str, initiator: str, over_cap_reason: Any = None) -> str:
    """Service: republish the filing's record with `status` (approved, rejected, paid)."""
    _publish(filing, lines, status, initiator, over_cap_reason)
    return status
