"""The serialised state is SpiffWorkflow's stock form, byte for byte: engine.state walks the tasks
and the plain task data itself (faster than the serializer's registry), and every state hash in
every log is of the stock form — so the two must agree on every state the engine makes."""
from __future__ import annotations

import importlib.util
import types
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from engine import audit, state
from engine.runtime import Runtime

from .test_pruning import Loop, restored
from .test_runtime import T0, deploy

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def compared(monkeypatch):
    """Every state the engine serialises is also serialised the stock way and compared."""
    seen = []
    fast = state.dump_state

    def checked(workflow, counter):
        text = fast(workflow, counter)
        assert text == state.stock_dump_state(workflow, counter)
        seen.append(len(text))
        return text
    monkeypatch.setattr(state, "dump_state", checked)
    return seen


def _bench_verify():
    spec = importlib.util.spec_from_file_location("bench_verify", ROOT / "bench" / "verify.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("process", ["order_to_settlement", "contract_review"])
def test_every_state_of_a_process_run_is_the_stock_form(compared, tmp_path, process):
    """The order (services, the DMN, scripts, a message, parallel paths) and the contract review,
    built as bench/verify.py builds them, and then verified (every step replayed and serialised)."""
    from engine.store import Instance, Store
    from processes import LOOKUPS, SERVICES
    path = tmp_path / "form.sqlite3"
    _bench_verify().build(path, 2, lambda line: None, process)
    made = len(compared)
    store = Store(f"sqlite:///{path}")
    rt = Runtime(store, SERVICES, lookups=LOOKUPS)
    audit.forget_verdicts()
    with store.read() as s:
        for row in s.query(Instance):
            assert audit.verify(s, row.id, rt.script_engine).ok
    store.dispose()
    assert made >= 8 and len(compared) >= 2 * made


def test_a_rework_loop_through_a_subprocess_with_its_timer_is_the_stock_form(compared, sqlite_store):
    deploy(sqlite_store, "rework_sub.bpmn")
    runtime = Runtime(sqlite_store)
    loop = Loop(runtime, runtime.start("rework_sub", "rep.wang", {}, at=T0))
    for n in range(1, 4):
        loop.revise(n)
        loop.review("approve" if n == 3 else "reject")
    assert loop.view.status == "completed" and len(compared) >= 7


def test_data_beyond_plain_json_is_converted_as_the_registry_converts_it(sqlite_store):
    """Dates, sets, tuples, decimals, and values SpiffWorkflow's serializer drops from the internal
    and workflow data (callables, modules), at the top of the data and nested."""
    deploy(sqlite_store, "rework_sub.bpmn")
    runtime = Runtime(sqlite_store)
    view = runtime.start("rework_sub", "rep.wang", {}, at=T0)
    workflow, _ = restored(sqlite_store, view.id)
    odd = {"when": datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc), "day": date(2026, 1, 2),
           "span": timedelta(hours=3), "set": {1, 2}, "pair": (1, "a"), "money": Decimal("1.50"),
           "fn": len, "module": types, "nested": {"fn": print, "list": [{"module": types, "x": 1}, (2, 3)],
                                                  "when": [datetime(2027, 5, 6)]}}
    for task in workflow.get_tasks():
        task.data = {**task.data, **odd, "name": task.task_spec.name}
        task.internal_data = {**task.internal_data, "odd": dict(odd)}
    workflow.data = dict(odd)
    _same(workflow)
    for task in workflow.get_tasks():  # callables and modules as dict values of the converted parts
        # (internal and workflow data; task data is written as it is): dropped, not written
        task.data = {"x": 1, "nested": {"list": [{"y": 2}]}}
        task.internal_data = {"fn": len, "z": [{"m": types, "y": 1}], "d": {"fn": print}}
    workflow.data = {"fn": len, "nested": {"m": types, "w": 3}}
    assert '"fn"' not in state.stock_dump_state(workflow, 7)
    _same(workflow)
    for value in odd.values():  # one by one: those json can write give a state, the others fail alike
        for task in workflow.get_tasks():
            task.data = {"v": value, "nested": [{"v": value, "fn": len}, (value,)]}
            task.internal_data = {"v": value}
        workflow.data = {"v": value, "module": types}
        _same(workflow)


def _same(workflow) -> None:
    try:
        stock = state.stock_dump_state(workflow, 7)
    except TypeError as exc:  # (json cannot write a value the registry leaves as it is)
        with pytest.raises(TypeError, match=str(exc)):
            state.dump_state(workflow, 7)
    else:
        assert state.dump_state(workflow, 7) == stock
