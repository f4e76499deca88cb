"""The customer list (客户档案) with the credit levels the sales secretary group keeps monthly
(客户信用等级一览表). Demo data; a real deployment reads the same shape from its ERP."""
from __future__ import annotations

from typing import Any

# id -> customer record.  `credit` is "A", "B", "C", or None for a customer not yet rated.
CUSTOMERS: dict[str, dict[str, Any]] = {
    "C-A01": {
        "name": "广州华鼎建材贸易有限公司",
        "name_en": "Guangzhou Huading Building Materials Trading Co., Ltd.",
        "contact": "刘建国",
        "phone": "020-8562 3107",
        "address": "广州市天河区黄埔大道西 268 号华鼎大厦 12 楼",
        "credit": "A",
    },
    "C-B01": {
        "name": "佛山市顺德区恒信装饰工程有限公司",
        "name_en": "Foshan Shunde Hengxin Decoration Engineering Co., Ltd.",
        "contact": "陈美玲",
        "phone": "0757-2238 6410",
        "address": "佛山市顺德区大良街道南国东路 55 号",
        "credit": "B",
    },
    "C-C01": {
        "name": "南宁市桂通石材经销部",
        "name_en": "Nanning Guitong Stone Distribution",
        "contact": "黄志强",
        "phone": "0771-5316 882",
        "address": "南宁市江南区星光大道 213 号桂通建材市场 B 区 18 号",
        "credit": "C",
    },
    "C-N01": {
        "name": "东莞市新禾家居有限公司",
        "name_en": "Dongguan Xinhe Home Furnishing Co., Ltd.",
        "contact": "周晓东",
        "phone": "0769-2281 5093",
        "address": "东莞市南城街道宏图路 96 号",
        "credit": None,  # new customer, not yet rated: treated as C with prepayment
    },
}


def is_customer(value: Any) -> bool:
    """The `customer` form lookup: the value is the id of a known customer."""
    return isinstance(value, str) and value in CUSTOMERS


def customer(customer_id: str) -> dict[str, Any] | None:
    """The customer's record (a copy), or None."""
    found = CUSTOMERS.get(customer_id)
    return dict(found, id=customer_id) if found else None
