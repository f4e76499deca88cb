"""The demo customers: the credit list a deployment starts from (客户信用等级一览表) and the archive
cards (客户档案), seeded by `bpm init --demo`.

The credit list lives in the database (engine.credit): the sales secretary group keeps it monthly
through the credit_review process, and the processes read it there — the `customer` form lookup
here and the `credit_level` service (processes/orders.py). `CUSTOMERS` below is only what the demo
list starts from (`DEMO_CREDIT_LIST`), with the contact and address an order is usually delivered
to (an order carries its own delivery facts, typed by the rep). The confidential rest of a card —
phones, characteristics, family situation, notes — lives only in the archive (engine.customers,
seeded from `DEMO_CARDS`), which nothing in processes/ reads: instance data is never a back door to
the card. Demo data; a real deployment reads the same shapes from its ERP.
"""
from __future__ import annotations

from typing import Any

from engine import credit

# id -> customer record.  `credit` is the level the demo list starts with: "A", "B", "C", or None
# for a customer not yet rated. The processes read the level from the database, never from here.
CUSTOMERS: dict[str, dict[str, Any]] = {
    "C-A01": {
        "name": "广州华鼎建材贸易有限公司",
        "name_en": "Guangzhou Huading Building Materials Trading Co., Ltd.",
        "contact": "刘建国",
        "address": "广州市天河区黄埔大道西 268 号华鼎大厦 12 楼",
        "credit": "A",
    },
    "C-B01": {
        "name": "佛山市顺德区恒信装饰工程有限公司",
        "name_en": "Foshan Shunde Hengxin Decoration Engineering Co., Ltd.",
        "contact": "陈美玲",
        "address": "佛山市顺德区大良街道南国东路 55 号",
        "credit": "B",
    },
    "C-C01": {
        "name": "南宁市桂通石材经销部",
        "name_en": "Nanning Guitong Stone Distribution",
        "contact": "黄志强",
        "address": "南宁市江南区星光大道 213 号桂通建材市场 B 区 18 号",
        "credit": "C",
    },
    "C-N01": {
        "name": "东莞市新禾家居有限公司",
        "name_en": "Dongguan Xinhe Home Furnishing Co., Ltd.",
        "contact": "周晓东",
        "address": "东莞市南城街道宏图路 96 号",
        "credit": None,  # new customer, not yet rated: treated as C with prepayment
    },
}

# The confidential part of the demo cards, and the rep who serves each customer (C-N01, new, is
# not yet assigned: the department manager assigns it).
_CONFIDENTIAL: dict[str, dict[str, Any]] = {
    "C-A01": {
        "rep": "rep.wang",
        "phones": ["020-8562 3107", "138 2240 7781"],
        "contacts": [{"name": "刘建国", "title": "采购经理 Purchasing manager", "phone": "138 2240 7781"},
                     {"name": "马丽", "title": "财务 Accounts", "phone": "020-8562 3109"}],
        "characteristics": "大型建材贸易商，年采购量稳定；重视交期，价格敏感度中等。",
        "family": "刘总已婚，一子在广州读大学；喜好围棋。",
        "notes": "每年三月集中备货；2026 年起要求电子对账单。",
    },
    "C-B01": {
        "rep": "rep.feng",
        "phones": ["0757-2238 6410"],
        "contacts": [{"name": "陈美玲", "title": "总经理 General manager", "phone": "139 2260 1185"}],
        "characteristics": "装饰工程公司，按项目采购，付款随工程进度。",
        "family": "陈总与丈夫共同经营公司。",
        "notes": "偏好芝麻灰与黄锈石；曾因运输破损退货一次。",
    },
    "C-C01": {
        "rep": "rep.liu",
        "phones": ["0771-5316 882"],
        "contacts": [{"name": "黄志强", "title": "店主 Owner", "phone": "135 0771 6620"}],
        "characteristics": "石材经销部，小批量多批次，资金周转偏紧。",
        "family": "黄老板夫妇经营，女儿在读高中。",
        "notes": "信用 C 级：货款两周后到账，需跟催。",
    },
    "C-N01": {
        "rep": None,
        "phones": ["0769-2281 5093"],
        "contacts": [{"name": "周晓东", "title": "采购 Purchasing", "phone": "0769-2281 5093"}],
        "characteristics": "新客户，家居卖场；首单试样。",
        "family": "",
        "notes": "未评级：按 C 级处理并须全额预付。",
    },
}

DEMO_CARDS: list[dict[str, Any]] = [
    {"id": customer_id, "name": record["name"], "address": record["address"],
     "credit_level": record["credit"], **_CONFIDENTIAL[customer_id]}
    for customer_id, record in CUSTOMERS.items()
]


DEMO_CREDIT_LIST: list[dict[str, Any]] = [
    {"id": customer_id, "name": record["name"], "level": record["credit"]}
    for customer_id, record in CUSTOMERS.items()
]


def is_customer(value: Any) -> bool:
    """The `customer` form lookup: the value is the id of a customer on the credit list (in the
    database, read in the command that checks the form)."""
    return isinstance(value, str) and credit.is_listed(value)
