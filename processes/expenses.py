"""Travel and expense claims (差旅费报销): the arithmetic of seed 001 业务部管理制度 费用 that needs code.

The figures are the decision tables' (`bpmn/hotel_cap.dmn`, `shared_room.dmn`,
`travel_allowance.dmn`), evaluated by the process before `assess_claim` runs and passed to it;
this module applies them to the lines of one claim and says, line by line, why a line was cut:

- **Flights** (二 4): a flight line is paid in full only when the superior approved the flight
  before the trip (`flight_preapproved`); otherwise at the train fare of the same route, which the
  line must give (`train_fare`).
- **Hotels** (2 (1)–(3)): per night, at most the grade's cap (the top of its range: the section is
  headed 住宿费用最高标准 *(choice)*); on an in-city trip at most 80 and only with the superior's
  approval beforehand, else nothing; a room shared by two staff of the same sex below manager is
  claimed once, by one of them naming the other (`shared_with`), at most `share_rate` (80 %) of the
  two people's caps per night; a room of one's own on such a trip at most half of that, so that
  two single rooms cost no more than the shared one *(choice: the seed says they 应 share)*.
- **Allowance** (3, 3.1–3.4): `allowance_rate` (30 per person per day; 0 in the city or when a
  business unit hosted the traveller) × days counted from the ticket times by halves around 12:00:
  the outbound day is a whole day when the ticket leaves at or before 12:00, else a half; the
  return day a whole day when the ticket arrives after 12:00, else a half; the days between whole.
  A trip out and back on one day counts once: a whole day if it spans 12:00, else a half
  *(choice: the seed does not speak of one-day trips)*.
- **One claim per receipt** (二 6 the shared taxi: 交通费仅能由一人代表申报; 2 (3) the shared room:
  仅由一人代申报): every line carries its receipt number (票据号), kept as the business record
  "expense_receipt" (key claim/receipt, ref the receipt number). A receipt another claim already
  holds — not rejected, not withdrawn — is refused, naming the line and the claim that holds it;
  so a taxi shared by several travellers, or a shared room, is paid to one claim only. The
  claim also holds each receipt as the record "expense_receipt_hold" keyed by the receipt number
  alone (engine.records.claim): two claims naming one receipt filed at the same instant on
  PostgreSQL cannot both pass the check above, the second to commit is refused by that key
  ("receipt … is already claimed by BX-…") and nothing of it is written. A receipt dropped from the
  claim, or a rejected claim's, is released (engine.records.release); a paid claim's stays held.

`assess_claim` refuses bad input with one sentence naming the line's field (`InvalidInput`); the
engine then changes nothing and the claim form stays open.
"""
from __future__ import annotations

import re
import secrets
from datetime import datetime, time
from typing import Any

from engine import clock, records
from engine.runtime import InvalidInput

from .amounts import CENT, money as _money, number as _number, shown as _shown

RECEIPT = "expense_receipt"
HOLD = "expense_receipt_hold"
_l = str  # marks a refusal's template for the web's catalogs (babel.cfg: -k _l); pages translate it
TAKEN = _l("receipt %(key)s is already claimed by %(holder)s: a receipt is claimed once")
NOON = time(12, 0)
_TICKET_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?")


def assign_claim_number() -> str:
    """"BX-YYYYMMDD-" and ten hex digits (报销), the date the company's day of the engine's present."""
    return f"BX-{clock.local_date().strftime('%Y%m%d')}-{secrets.token_hex(5)}"


# --- form lookup ---------------------------------------------------------------------------------

def back_after_departure(value: Any, form: dict) -> str | None:
    """Lookup on the trip's `return_on`: not before `depart_on` (both ISO dates, the form's format)."""
    leaving = form.get("depart_on")
    if isinstance(value, str) and isinstance(leaving, str) and value[:10] < leaving[:10]:
        return f"must be on or after the day of departure, {leaving[:10]}"
    return None


# --- allowance days ------------------------------------------------------------------------------

def _ticket_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or not _TICKET_TIME.fullmatch(value.strip()):
        raise InvalidInput("a ticket time is a date and a time, as 2026-11-24 08:30",
                           {field: "a date and time, as 2026-11-24 08:30"})
    return datetime.fromisoformat(value.strip().replace(" ", "T"))


def allowance_days(departure_at: Any, return_at: Any) -> float:
    """Days of allowance from the outbound ticket's departure and the return ticket's arrival
    (001 费用 3.1–3.3; see the module)."""
    out = _ticket_time(departure_at, "departure_at")
    back = _ticket_time(return_at, "return_at")
    if back <= out:
        raise InvalidInput("the return ticket (%(back)s) must arrive after the outbound ticket leaves (%(out)s)",
                           {"return_at": "after the departure"}, back=return_at, out=departure_at)
    if back.date() == out.date():
        return 1.0 if out.time() <= NOON < back.time() else 0.5
    first = 1.0 if out.time() <= NOON else 0.5
    last = 1.0 if back.time() > NOON else 0.5
    return first + last + (back.date() - out.date()).days - 1


# --- receipts ------------------------------------------------------------------------------------

def _holder(receipt_no: str, claim_no: str) -> str | None:
    """The other claim that holds `receipt_no` (not rejected, not withdrawn), or None."""
    for record in records.referring(RECEIPT, receipt_no):
        data = record["data"]
        if data.get("claim_no") != claim_no and data.get("status") not in ("rejected", "withdrawn"):
            return str(data.get("claim_no"))
    return None


def _keep_receipts(claim_no: str, claimant: str, receipts: list[str], earlier: list[str], status: str) -> None:
    for receipt_no in receipts:
        records.publish_record(RECEIPT, f"{claim_no}/{receipt_no}",
                               {"claim_no": claim_no, "receipt_no": receipt_no, "claimant": claimant,
                                "status": status}, ref=receipt_no)
        if status == "rejected":
            records.release(HOLD, receipt_no)
        else:
            records.claim(HOLD, receipt_no, {"claim_no": claim_no, "claimant": claimant, "status": status},
                          taken=TAKEN)
    for receipt_no in earlier:
        if receipt_no not in receipts:
            records.release(HOLD, receipt_no)
            records.publish_record(RECEIPT, f"{claim_no}/{receipt_no}",
                                   {"claim_no": claim_no, "receipt_no": receipt_no, "claimant": claimant,
                                    "status": "withdrawn"}, ref=receipt_no)


def mark_receipts(claim_no: str, claimant: str, receipts: list, status: str) -> list:
    """Service at the end of a claim: its receipts become "paid", or "rejected" — then another
    claim may take them (the companion who should have claimed the shared taxi, say)."""
    if status not in ("paid", "rejected"):
        raise ValueError(f"a claim's receipts end paid or rejected, not {status!r}")
    _keep_receipts(claim_no, claimant, [str(r) for r in receipts or []], [], status)
    return list(receipts or [])


# --- the claim -----------------------------------------------------------------------------------

GRADE_LABEL = {"manager": "manager", "senior": "senior", "staff": "staff"}
GRADE_ZH = {"manager": "业务经理级", "senior": "高级业务级", "staff": "业务人员"}


def _range(low: Any, high: Any) -> str:
    return f"{_shown(float(low))}–{_shown(float(high))}" if _number(low) else _shown(float(high))


def _hotel(line: dict, i: int, *, grade: str, in_city: bool, stay_preapproved: bool, own_cap: float,
           own_cap_low: float, share_room: bool, share_rate: float, companion_cap: float,
           companion_name: str) -> tuple[float, str, str]:
    """(refunded, the reason of a cut in English, in Chinese) for one hotel line."""
    nights = _number(line.get("nights"))
    amount = float(line["amount"])
    if nights is None or nights < 1 or not float(nights).is_integer():
        raise InvalidInput("line %(line)s: a hotel line gives its number of nights (a whole number, 1 or more)",
                           {f"receipts/{i}/nights": "a whole number of nights, 1 or more"}, line=i + 1)
    nights = int(nights)
    per_night = amount / nights
    who = companion_name or "the companion"
    if in_city:
        if not stay_preapproved:
            return 0.0, (f"in-city stay {_shown(per_night)}/day not refunded: an in-city stay needs the "
                         f"superior's approval beforehand (001 费用 2(2))"), (
                    f"市区内住宿 {_shown(per_night)} 元/天不予报销：市区内住宿须事前经上级领导同意（001 费用 2(2)）")
        cap, why, why_zh = own_cap, f"in-city cap {_shown(own_cap)}", f"市区内住宿不得高于 {_shown(own_cap)} 元/天"
    elif share_room:
        shared = round(share_rate * (own_cap + companion_cap), 2)
        rate = _shown(share_rate * 100)
        if str(line.get("shared_with") or "").strip():
            cap = shared
            why = (f"room shared with {who}: {rate} % of the two caps "
                   f"{_shown(own_cap)} + {_shown(companion_cap)} = {_shown(cap)}")
            why_zh = (f"与 {who} 同住一房：不超过二人住宿标准合计（{_shown(own_cap)} + {_shown(companion_cap)}）"
                      f"之 {rate}% = {_shown(cap)}")
        else:
            cap = round(shared / 2, 2)
            why = (f"a room of one's own on a trip with {who} (same sex, below manager), "
                   f"who should share: half the shared room's {_shown(shared)} ({rate} % of "
                   f"{_shown(own_cap)} + {_shown(companion_cap)})")
            why_zh = (f"与同性别同事 {who} 同时出差应同住一房：单独住宿按同住标准 {_shown(shared)}"
                      f"（{_shown(own_cap)} + {_shown(companion_cap)} 之 {rate}%）的一半")
    else:
        cap = own_cap
        why = f"{GRADE_LABEL.get(grade, grade)} cap {_range(own_cap_low, own_cap)}"
        why_zh = f"{GRADE_ZH.get(grade, grade)}标准 {_range(own_cap_low, own_cap)} 元/天"
    if per_night <= cap + CENT:
        return amount, "", ""
    allowed = _money(cap * nights)
    trip = "an in-city trip" if in_city else f"a {GRADE_LABEL.get(grade, grade)} trip"
    trip_zh = "市区内出差" if in_city else f"{GRADE_ZH.get(grade, grade)}出差"
    return (float(allowed), f"hotel {_shown(per_night)}/day on {trip} cut to {_shown(cap)}: {why}",
            f"{trip_zh}住宿 {_shown(per_night)} 元/天核减至 {_shown(cap)}：{why_zh}")


def assess_claim(claim_no: str, claimant: str, lines: list, departure_at: str, return_at: str,
                 grade: str, in_city: bool, flight_preapproved: bool, stay_preapproved: bool,
                 own_cap: float, own_cap_low: float, share_room: bool, share_rate: float,
                 companion_cap: float, companion_name: str = "", companion_grade: str = "none",
                 allowance_rate: float = 0, allowance_rule: str = "",
                 earlier_receipts: list | None = None) -> dict:
    """Each line with what is refunded and why a cut was made, the allowance, the totals; the
    receipts kept as records (see the module)."""
    if not isinstance(lines, list) or not lines:
        raise InvalidInput("a claim lists at least one receipt", {"receipts": "at least one receipt"})
    days = allowance_days(departure_at, return_at)
    seen: dict[str, int] = {}
    assessed: list[dict] = []
    for i, line in enumerate(lines):
        receipt_no = str(line.get("receipt_no") or "").strip()
        if receipt_no in seen:
            raise InvalidInput("line %(line)s: receipt %(receipt)s is already line %(first)s of this claim",
                               {f"receipts/{i}/receipt_no": "already on this claim"}, line=i + 1,
                               receipt=receipt_no, first=seen[receipt_no] + 1)
        seen[receipt_no] = i
        holder = _holder(receipt_no, claim_no)
        if holder is not None:
            where = {f"receipts/{i}/receipt_no": f"already claimed by {holder}"}
            if line.get("kind") == "taxi":
                raise InvalidInput("line %(line)s: receipt %(receipt)s is already claimed by %(holder)s: a shared "
                                   "taxi is claimed by one traveller only (001 费用 二6)", where, line=i + 1,
                                   receipt=receipt_no, holder=holder)
            if line.get("kind") == "hotel":
                raise InvalidInput("line %(line)s: receipt %(receipt)s is already claimed by %(holder)s: a shared "
                                   "room is claimed by one traveller only (001 费用 2(3))", where, line=i + 1,
                                   receipt=receipt_no, holder=holder)
            raise InvalidInput("line %(line)s: receipt %(receipt)s is already claimed by %(holder)s: a receipt "
                               "is claimed once", where, line=i + 1, receipt=receipt_no, holder=holder)
        amount = float(line["amount"])
        allowed, reason, reason_zh = amount, "", ""
        kind = line.get("kind")
        if kind == "flight" and not flight_preapproved:
            fare = _number(line.get("train_fare"))
            if fare is None:
                raise InvalidInput("line %(line)s: a flight without prior approval is paid at the train fare: "
                                   "give the train fare of the same route", {f"receipts/{i}/train_fare":
                                   "the train fare of the route (no prior approval for a flight)"}, line=i + 1)
            if fare < amount - CENT:
                allowed = fare
                reason = (f"flight {_shown(amount)} without prior approval paid at the train fare "
                          f"{_shown(fare)} (001 费用 二4)")
                reason_zh = f"飞机票 {_shown(amount)} 未经事前批准，按火车票价 {_shown(fare)} 报销（001 费用 二4）"
        elif kind == "hotel":
            allowed, reason, reason_zh = _hotel(line, i, grade=grade, in_city=in_city, stay_preapproved=stay_preapproved,
                                     own_cap=float(own_cap), own_cap_low=float(own_cap_low or 0),
                                     share_room=bool(share_room), share_rate=float(share_rate or 0),
                                     companion_cap=float(companion_cap or 0), companion_name=companion_name)
        assessed.append({**line, "allowed": _money(allowed), "cut": _money(amount - allowed), "reason": reason,
                         "reason_zh": reason_zh})
    allowance = _money(days * float(allowance_rate or 0))
    claimed = _money(sum(float(line["amount"]) for line in lines))
    refund = _money(sum(float(line["allowed"]) for line in assessed))
    _keep_receipts(claim_no, claimant, list(seen), [str(r) for r in earlier_receipts or []], "claimed")
    return {"lines": assessed, "claimed": claimed, "refund_lines": refund, "allowance_days": days,
            "allowance": allowance,
            "allowance_reason": f"{_shown(days)} day(s) × {_shown(float(allowance_rate or 0))}: {allowance_rule}",
            "total": _money(refund + allowance), "receipts": list(seen),
            "cuts": [f"line {i + 1}: {a['reason']}" for i, a in enumerate(assessed) if a["reason"]],
            "cuts_zh": [f"第 {i + 1} 行：{a['reason_zh']}" for i, a in enumerate(assessed) if a["reason_zh"]]}
