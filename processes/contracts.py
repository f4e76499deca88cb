"""Services of contract review (合同评审, seed 001 二、2): contract numbers (合同编号).

The number is given when the rep submits the contract, before any review, so that the
department manager, the VP or GM, 总经办 and the rep filing the signed contract all speak of the
same contract, and the order chain can refer to it (the "contract" business record's key).

The contract's amount is what its lines add up to (Σ quantity × unit price): the lookup
`amount_of_lines` refuses a typed amount that differs, since the amount decides what is a major
contract (重大合同) and so who must confirm it.
"""
from __future__ import annotations

import secrets
from typing import Any

from engine import clock

from .amounts import CENT, number as _number, shown


def assign_contract_number() -> str:
    """"HT-YYYYMMDD-" (合同) and ten hex digits (40 random bits: at 1,000 a day two
    numbers of one day are alike about once in two million days; six digits were, on 3 % of days);
    the date is the engine's present (`engine.clock`)."""
    return f"HT-{clock.now().strftime('%Y%m%d')}-{secrets.token_hex(5)}"


def amount_of_lines(value: Any, form: dict) -> str | None:
    """Lookup on a contract's `amount`: it must equal the total of its `lines` (quantity × unit
    price), to the cent; a contract whose lines are not all priced is left to the form's own checks."""
    amount, lines = _number(value), form.get("lines")
    if amount is None or not isinstance(lines, list) or not lines:
        return None
    total = 0.0
    for line in lines:
        quantity, price = (_number(line.get(k)) if isinstance(line, dict) else None
                           for k in ("quantity", "unit_price"))
        if quantity is None or price is None:
            return None
        total += quantity * price
    if abs(amount - total) >= CENT:
        return f"must be {shown(total)}, the total of the lines (quantity × unit price)"
    return None
