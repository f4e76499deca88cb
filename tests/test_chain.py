"""The processes together, as the regulations chain them, with no record written by hand: a
contract approved by 总经办 lets an order through (001 二、2(5)); the order's shipments bound a
return (000 退发货, 004 退换货); the return's credit note is bound by the order's prices; and every
instance's record is whole. Each process's own tests write the other processes' records straight
into the table; this one proves the shapes they publish are the shapes the others read."""
from __future__ import annotations

import pytest
from sqlalchemy import select

import processes
from engine import audit, versions
from engine.runtime import InvalidInput, Runtime
from engine.store import BusinessRecord, Instance

from .conftest import contract
from .test_orders import SLAB, contract_order, deposit, line, produce, ship
from .test_processes import APPROVE, BPMN, T0, Clock, do, waiting


@pytest.fixture
def rt(store):
    versions.deploy(store, [BPMN], actor="design.yang", at=T0)
    return Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)


def kept(store, kind: str, key: str) -> dict:
    with store.read() as s:
        return s.get(BusinessRecord, (kind, key)).data


def test_contract_to_order_to_return_through_the_processes_alone(rt, store):
    clock = Clock()
    review = rt.start("contract_review", "rep.wang", contract(), at=clock.now)  # C-B01: 500 × 520
    contract_no = review.data["contract_no"]
    order = contract_order(contract_no, lines=[line(SLAB, 200, 520)])
    with pytest.raises(InvalidInput, match=f"there is no contract {contract_no}"):  # in review: not yet
        rt.start("order_to_settlement", "rep.wang", order, at=clock())
    review = do(rt, review, "dm_review", "dm.zhou", APPROVE, at=clock())
    with pytest.raises(InvalidInput, match="contract_no|contract"):  # the manager alone is not enough
        rt.start("order_to_settlement", "rep.wang", order, at=clock())
    review = do(rt, review, "go_approval", "gmo.tang", APPROVE, at=clock())
    assert kept(store, "contract", contract_no)["status"] == "approved"

    view = rt.start("order_to_settlement", "rep.wang", order, at=clock())
    assert waiting(view) == ["confirm_deposit"]  # an approved contract: no further approval
    assert view.data["amount"] == 104000 and view.data["contract_no"] == contract_no
    with pytest.raises(InvalidInput, match="more than the 300 contract"):  # 500 in the contract, 200 taken
        rt.start("order_to_settlement", "rep.wang", contract_order(contract_no, lines=[line(SLAB, 301, 520)]),
                 at=clock())
    view = produce(rt, deposit(rt, view, clock), clock)
    view = ship(rt, view, clock, [(1, 150)])  # a partial shipment
    order_no = view.data["order_no"]
    assert [l["shipped"] for l in kept(store, "order", order_no)["lines"]] == [150]

    claim = {"customer": "C-B01", "order_no": order_no, "reason": "quality", "kind": "return",
             "lines": [{"product": SLAB[0], "spec": SLAB[1], "quantity": 151}],
             "description": "表面有裂纹，客户拒收", "attachments": ["crack-1.jpg"]}
    with pytest.raises(InvalidInput) as refused:  # more than was shipped
        rt.start("return_request", "rep.wang", claim, at=clock())
    assert "lines/0/quantity" in refused.value.fields
    with pytest.raises(InvalidInput) as refused:  # the order is not C-A01's
        rt.start("return_request", "rep.wang", {**claim, "customer": "C-A01"}, at=clock())
    assert "order_no" in refused.value.fields
    back = rt.start("return_request", "rep.wang", {**claim, "lines": [{**claim["lines"][0], "quantity": 12}]},
                    at=clock())
    returned = kept(store, "return", back.data["request_no"])
    assert (returned["order_no"], returned["value"], returned["status"]) == (order_no, 12 * 520, "requested")
    complaints = [r for r in _records(store, "complaint") if r.ref == order_no]
    assert len(complaints) == 1  # a quality claim is a complaint from the moment it is filed

    with store.read() as s:
        for instance_id in s.scalars(select(Instance.id)):
            assert audit.verify(s, instance_id, rt.script_engine).ok, instance_id


def _records(store, kind: str) -> list[BusinessRecord]:
    with store.read() as s:
        return list(s.scalars(select(BusinessRecord).where(BusinessRecord.kind == kind)))
