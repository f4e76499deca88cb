"""Services of the order chain (订货—发运—结算): order numbers, credit levels, stock reservation."""
from __future__ import annotations

import secrets
from typing import Any

from engine import clock, credit



def assign_order_number() -> str:
    """"SO-YYYYMMDD-" and ten hex digits (40 random bits: at 1,000 a day two
    numbers of one day are alike about once in two million days; six digits were, on 3 % of days);
    the date is the engine's present (`engine.clock`)."""
    return f"SO-{clock.now().strftime('%Y%m%d')}-{secrets.token_hex(5)}"


def credit_level(customer: str) -> str:
    """The customer's level on the credit list in the database (engine.credit, kept monthly by the
    sales secretary group through credit_review): "A", "B", "C", or "unknown" (not listed or not
    rated). Read once, when the order starts; the order keeps it in its data."""
    return credit.level_of(customer) or "unknown"


def reserve_stock(order_no: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Reserve the ordered quantities for shipping; returns the reservation the warehouse picks from."""
    if not isinstance(lines, list) or not lines:
        raise ValueError("an order needs at least one line to reserve stock for")
    reserved = [{"product": line.get("product"), "spec": line.get("spec"), "quantity": line.get("quantity")}
                for line in lines]
    return {"reservation_no": f"RS-{order_no}", "reserved": True, "lines": reserved}
