"""Orders on file for tests of processes that refer to them (returns): "order" business records
(engine.records, the shape of brief records.md) written straight into the table, as if the order
chain had published them — so these tests do not depend on how order_to_settlement gets there."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import delete, insert

from engine.store import BusinessRecord

# The order the return tests name: 12 slabs of 爵士白 at 800 were ordered by C-A01 earlier (the
# quantities leave room for several returns of 12 in one test).
ORDER_NO = "SO-20261102-4c1d9e"
LINES = [{"product": "爵士白大理石板", "spec": "800x800x18", "quantity": 100, "unit_price": 800, "shipped": 60},
         {"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 200, "unit_price": 260, "shipped": 0}]


def put_order(store, order_no: str = ORDER_NO, customer: str = "C-A01", lines: list[dict] | None = None, *,
              status: str = "shipped", at: datetime = datetime(2026, 11, 2, 2, 0, tzinfo=timezone.utc)) -> dict:
    """Keep `order_no` as the "order" record of `customer` (replacing an earlier one); its data."""
    lines = [dict(line) for line in (LINES if lines is None else lines)]
    amount = sum(line["quantity"] * line["unit_price"] for line in lines)
    data = {"order_no": order_no, "customer": customer, "contract_no": None, "amount": amount, "lines": lines,
            "deposit": 0, "paid": 0, "balance": amount, "status": status}
    with store.engine.begin() as conn:
        conn.execute(delete(BusinessRecord).where(BusinessRecord.kind == "order", BusinessRecord.key == order_no))
        conn.execute(insert(BusinessRecord).values(
            kind="order", key=order_no, ref=None, customer=customer, data=data,
            instance_id="00000000-0000-4000-8000-0000000000aa", process_id="order_to_settlement",
            revision=1, updated_at=at))
    return data
