"""The company's own code: service tasks and form lookups registered with the engine by name.

`SERVICES` are called by service tasks (`spiffworkflow:serviceTaskOperator id="NAME"`);
`LOOKUPS` check form fields marked `"x-lookup": "NAME"` (engine.forms: True, or a sentence). The engine adds its own services
(`superior_of`).
"""
from __future__ import annotations

from typing import Any, Callable

from . import contracts, customers, expenses, notices, order_chain, orders, regional, returns, targets

SERVICES: dict[str, Callable[..., Any]] = {
    "assign_order_number": orders.assign_order_number,
    "assign_contract_number": contracts.assign_contract_number,
    "credit_level": orders.credit_level,
    "reserve_stock": orders.reserve_stock,
    "price_order": order_chain.price_order,
    "book_deposit": order_chain.book_deposit,
    "book_payment": order_chain.book_payment,
    "record_shipment": order_chain.record_shipment,
    "check_reconciliation": order_chain.check_reconciliation,
    "publish_order": order_chain.publish_order,
    "send_notice": notices.send_notice,
    "notify_role_holders": notices.notify_role_holders,
    "record_complaint": notices.record_complaint,
    "assign_request_number": returns.assign_request_number,
    "claim_return": returns.claim,
    "assign_filing_number": regional.assign_filing_number,
    "check_regional_expenses": regional.check_regional_expenses,
    "publish_filing": regional.publish_filing,
    "assign_claim_number": expenses.assign_claim_number,
    "assess_claim": expenses.assess_claim,
    "mark_receipts": expenses.mark_receipts,
    # monthly targets (bpmn/monthly_target.bpmn)
    "target_plan": targets.target_plan,
    "region_split": targets.region_split,
    "assess_figure": targets.assess_figure,
    "assess_change": targets.assess_change,
    "target_progress": targets.target_progress,
    "record_target_result": targets.record_target_result,
}

LOOKUPS: dict[str, Callable[..., Any]] = {
    "customer": customers.is_customer,
    "amount_of_lines": contracts.amount_of_lines,
    "shipped_order": returns.shipped_order,
    "returnable_lines": returns.returnable_lines,
    "credit_within_value": returns.credit_within_value,
    "back_after_departure": expenses.back_after_departure,
}
