"""Services of the order chain (订货—发运—结算): order numbers, credit levels, stock reservation."""
from __future__ import annotations

import secrets
from typing import Any

from engine import clock

from .customers import CUSTOMERS

CREDIT_LEVELS = ("A", "B", "C")


def assign_order_number() -> str:
    """"SO-YYYYMMDD-" and six hex digits; the date is the engine's present (`engine.clock`)."""
    return f"SO-{clock.now().strftime('%Y%m%d')}-{secrets.token_hex(3)}"


def credit_level(customer: str) -> str:
    """The customer's level on the credit list: "A", "B", "C", or "unknown" (not listed or not rated)."""
    record = CUSTOMERS.get(customer) if isinstance(customer, str) else None
    level = (record or {}).get("credit")
    return level if level in CREDIT_LEVELS else "unknown"


def reserve_stock(order_no: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Reserve the ordered quantities for shipping; returns the reservation the warehouse picks from."""
    if not isinstance(lines, list) or not lines:
        raise ValueError("an order needs at least one line to reserve stock for")
    reserved = [{"product": line.get("product"), "spec": line.get("spec"), "quantity": line.get("quantity")}
                for line in lines]
    return {"reservation_no": f"RS-{order_no}", "reserved": True, "lines": reserved}
