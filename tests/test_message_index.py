"""Messages found by index (issue 12 item 3): the correlation keys a process declares for a message
are rows (message_key) written with the wait, and a delivery looks its instance up there instead
of restoring every waiting instance. Restores are counted through `engine.state.load_state`."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import func, select, update

from engine import state, versions
from engine.runtime import Forbidden, NotFound, Runtime, key_value
from engine.store import Instance, MessageKey, MessageWait, Store, migrate

from .conftest import DATA, snapshot

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
MESSAGE_KEYS_REVISION = "0018"  # engine/migrations/versions/0018_message_keys.py
GOODS = "goods_arrived"  # tests/data/runtime/keyed_wait.bpmn: correlation "shipment_no, warehouse"


@pytest.fixture
def restores(monkeypatch):
    """How many times a workflow state is restored (each instance a delivery looks at costs one)."""
    counted = {"n": 0}
    real = state.load_state

    def counting(*args, **kwargs):
        counted["n"] += 1
        return real(*args, **kwargs)
    monkeypatch.setattr(state, "load_state", counting)
    return counted


def deploy(store):
    versions.deploy(store, [DATA / "runtime" / "keyed_wait.bpmn"], actor="design.yang", at=T0)


def start(rt, shipment, warehouse="W1"):
    return rt.start("keyed_wait", "fin.chu", {"shipment_no": shipment, "warehouse": warehouse}, at=T0)


def waits_of(store, instance_id) -> list[str]:
    with store.read() as s:
        return list(s.scalars(select(MessageWait.message).where(MessageWait.instance_id == instance_id)))


def keys_of(store, instance_id) -> dict[str, str]:
    with store.read() as s:
        return {k.key: k.value for k in s.scalars(select(MessageKey).where(MessageKey.instance_id == instance_id))}


def clone_waiting(store, template_id: str, count: int) -> None:
    """`count` more instances waiting as `template_id` waits (shipment B-0 ... in warehouse W1),
    written in SQL: starting 10,000 takes minutes. Their state stays the template's: a delivery
    that restored them would find the template's data — the index is the only way to them."""
    i_, m_, k_ = Instance.__table__, MessageWait.__table__, MessageKey.__table__
    with store.transaction() as conn:
        row = dict(conn.execute(select(i_).where(i_.c.id == template_id)).mappings().one())
        wait = dict(conn.execute(select(m_).where(m_.c.instance_id == template_id)).mappings().one())
        keys = [dict(k) for k in conn.execute(select(k_).where(k_.c.instance_id == template_id)).mappings()]
        for start_at in range(0, count, 2000):
            instances, waits, rows = [], [], []
            for n in range(start_at, min(count, start_at + 2000)):
                instance_id, wait_id = str(uuid.uuid4()), str(uuid.uuid4())
                instances.append({**row, "id": instance_id})
                waits.append({**wait, "id": wait_id, "instance_id": instance_id})
                rows += [{**k, "wait_id": wait_id, "instance_id": instance_id,
                          "value": f"B-{n}" if k["key"] == "shipment_no" else k["value"]} for k in keys]
            conn.execute(i_.insert(), instances)
            conn.execute(m_.insert(), waits)
            if rows:
                conn.execute(k_.insert(), rows)


def test_a_wait_writes_its_declared_keys_and_they_go_when_it_ends(store):
    deploy(store)
    rt = Runtime(store)
    view = start(rt, "S-1", "W1")
    assert waits_of(store, view.id) == [GOODS]
    assert keys_of(store, view.id) == {"shipment_no": "S-1", "warehouse": "W1"}
    rt.message(GOODS, {"crates": 3}, {"shipment_no": "S-1", "warehouse": "W1"}, actor="fin.chu",
               at=T0 + timedelta(minutes=1))
    assert waits_of(store, view.id) == [] and keys_of(store, view.id) == {}
    assert [t.element_id for t in rt.instance(view.id).tasks] == ["check"]


def test_a_message_with_10000_waiting_reaches_the_right_instance_and_restores_no_other(store, restores):
    deploy(store)
    rt = Runtime(store)
    first, right, last = (start(rt, s) for s in ("S-1", "S-2", "S-3"))
    clone_waiting(store, first.id, 10_000)
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(MessageWait)) == 10_003
    others = {i: snapshot(store, i) for i in (first.id, last.id)}
    restores["n"] = 0

    assert rt.message(GOODS, {"crates": 3}, {"shipment_no": "S-2", "warehouse": "W1"}, actor="fin.chu",
                      at=T0 + timedelta(minutes=1)) == [right.id]
    assert restores["n"] == 1  # the command's own restore of the right instance; no other looked at
    view = rt.instance(right.id)
    assert [t.element_id for t in view.tasks] == ["check"] and view.data["goods"] == {"crates": 3}
    assert {i: snapshot(store, i) for i in others} == others
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(MessageWait)) == 10_002

    # a clone is found by its own key too, by the index alone
    restores["n"] = 0
    (clone,) = rt.message(GOODS, {}, {"shipment_no": "B-7777", "warehouse": "W1"}, at=T0 + timedelta(minutes=2))
    assert restores["n"] == 1 and clone not in (first.id, right.id, last.id)
    assert keys_of(store, clone) == {}


def test_a_message_whose_keys_match_nobody_is_refused_restoring_nothing(store, restores):
    deploy(store)
    rt = Runtime(store)
    view = start(rt, "S-1", "W1")
    clone_waiting(store, view.id, 50)
    before = snapshot(store, view.id)
    restores["n"] = 0
    for correlation in ({"shipment_no": "S-404", "warehouse": "W1"},   # no such shipment
                        {"shipment_no": "S-1", "warehouse": "W2"}):    # its shipment, another warehouse
        with pytest.raises(NotFound, match="no instance is waiting for message 'goods_arrived' with "):
            rt.message(GOODS, {}, correlation, actor="fin.chu", at=T0 + timedelta(minutes=1))
    assert restores["n"] == 0
    assert snapshot(store, view.id) == before


def test_the_sender_roles_and_required_keys_still_hold(store):
    deploy(store)
    rt = Runtime(store)
    view = start(rt, "S-1", "W1")
    before = snapshot(store, view.id)
    with pytest.raises(Forbidden, match="rep.wang may not send message goods_arrived: only"):
        rt.message(GOODS, {}, {"shipment_no": "S-1", "warehouse": "W1"}, actor="rep.wang", at=T0)
    with pytest.raises(Exception, match="needs correlation warehouse"):
        rt.message(GOODS, {}, {"shipment_no": "S-1"}, actor="fin.chu", at=T0)
    assert snapshot(store, view.id) == before


def test_a_key_value_longer_than_the_column_is_found_by_its_digest(store):
    deploy(store)
    rt = Runtime(store)
    long_no = "S-" + "9" * 300
    view = start(rt, long_no, "W1")
    assert keys_of(store, view.id)["shipment_no"] == key_value(long_no) != long_no
    assert rt.message(GOODS, {}, {"shipment_no": long_no, "warehouse": "W1"}, actor="fin.chu",
                      at=T0 + timedelta(minutes=1)) == [view.id]


def unkey(store) -> None:
    """The waits as migration 0017 leaves those it finds: `keyed` false, no key rows."""
    with store.transaction() as conn:
        conn.execute(MessageKey.__table__.delete())
        conn.execute(update(MessageWait.__table__).values(keyed=False))


def test_waits_from_before_the_upgrade_are_keyed_at_their_messages_first_delivery(store, restores):
    deploy(store)
    rt = Runtime(store)
    views = [start(rt, s) for s in ("S-1", "S-2", "S-3")]
    unkey(store)
    with pytest.raises(Forbidden):  # a refused sender writes nothing, not even the keys
        rt.message(GOODS, {}, {"shipment_no": "S-2", "warehouse": "W1"}, actor="rep.wang", at=T0)
    with store.read() as s:
        assert s.scalars(select(MessageWait.keyed)).all() == [False, False, False]
    restores["n"] = 0
    assert rt.message(GOODS, {}, {"shipment_no": "S-2", "warehouse": "W1"}, actor="fin.chu",
                      at=T0 + timedelta(minutes=1)) == [views[1].id]
    assert restores["n"] == 3 + 1  # each waiting instance keyed once, then the delivery itself
    assert keys_of(store, views[0].id) == {"shipment_no": "S-1", "warehouse": "W1"}
    with store.read() as s:
        assert s.scalars(select(MessageWait.keyed)).all() == [True, True]
    restores["n"] = 0
    assert rt.message(GOODS, {}, {"shipment_no": "S-3", "warehouse": "W1"}, actor="fin.chu",
                      at=T0 + timedelta(minutes=2)) == [views[2].id]
    assert restores["n"] == 1


def _alembic(store: Store, verb: str, revision: str) -> None:
    from engine import store as store_module
    from pathlib import Path
    config = Config()
    config.set_main_option("script_location", str(Path(store_module.__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", store.url.replace("%", "%%"))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, verb)(config, revision)


def test_the_migration_leaves_existing_waits_to_be_keyed_and_they_are_found(sqlite_store):
    """Down to the revision before message keys and up again on a database with instances
    waiting: the upgrade marks them not keyed, and their message still reaches the right one."""
    store = sqlite_store
    deploy(store)
    rt = Runtime(store)
    views = [start(rt, s) for s in ("S-1", "S-2")]
    _alembic(store, "downgrade", f"{MESSAGE_KEYS_REVISION}-1")
    migrate(store)
    with store.read() as s:
        assert s.scalars(select(MessageWait.keyed)).all() == [False, False]
        assert s.scalar(select(func.count()).select_from(MessageKey)) == 0
    assert rt.message(GOODS, {}, {"shipment_no": "S-1", "warehouse": "W1"}, actor="fin.chu",
                      at=T0 + timedelta(minutes=1)) == [views[0].id]
    assert keys_of(store, views[1].id) == {"shipment_no": "S-2", "warehouse": "W1"}
