"""The company's own code: service tasks and form lookups registered with the engine by name.

`SERVICES` are called by service tasks (`spiffworkflow:serviceTaskOperator id="NAME"`);
`LOOKUPS` check form fields marked `"x-lookup": "NAME"`. The engine adds its own services
(`superior_of`).
"""
from __future__ import annotations

from typing import Any, Callable

from . import customers, notices, order_chain, orders

SERVICES: dict[str, Callable[..., Any]] = {
    "assign_order_number": orders.assign_order_number,
    "credit_level": orders.credit_level,
    "reserve_stock": orders.reserve_stock,
    "price_order": order_chain.price_order,
    "book_deposit": order_chain.book_deposit,
    "book_payment": order_chain.book_payment,
    "record_shipment": order_chain.record_shipment,
    "check_reconciliation": order_chain.check_reconciliation,
    "publish_order": order_chain.publish_order,
    "send_notice": notices.send_notice,
    "record_complaint": notices.record_complaint,
}

LOOKUPS: dict[str, Callable[[Any], bool]] = {
    "customer": customers.is_customer,
}
