"""Services of contract review (合同评审, seed 001 二、2): contract numbers (合同编号).

The number is given when the rep submits the contract, before any review, so that the
department manager, the VP or GM, 总经办 and the rep filing the signed contract all speak of the
same contract, and the order chain can refer to it (the "contract" business record's key).
"""
from __future__ import annotations

import secrets

from engine import clock


def assign_contract_number() -> str:
    """"HT-YYYYMMDD-" (合同) and six hex digits; the date is the engine's present (`engine.clock`)."""
    return f"HT-{clock.now().strftime('%Y%m%d')}-{secrets.token_hex(3)}"
