"""The serialised forms: a deployed spec (stored once per version) and an instance's state
(stored per instance *without* the spec), with the hash that the log chains.
"""
from __future__ import annotations

import hashlib
import json
from types import ModuleType
from typing import Any

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, TaskConverter, WorkflowConverter
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.task import Task

STATE_FORMAT = 1


class _WorkflowWithoutSpec(BpmnWorkflowConverter):
    """Leaves the process spec out of the instance; it is restored from the cached version."""

    fast = True  # (the tasks and plain data walked here: `_tasks_to_dict`; False: SpiffWorkflow's way)

    def to_dict(self, workflow: BpmnWorkflow) -> dict:
        registry = self.registry
        if self.fast and _TASKS_ARE_STOCK and not registry._encoder_mode:
            dct = {
                "data": _converted(registry.clean(workflow.data), registry),
                "correlations": workflow.correlations,
                "last_task": str(workflow.last_task.id) if workflow.last_task is not None else None,
                "success": workflow.success,
                "completed": workflow.completed,
                "tasks": _tasks_to_dict(workflow, registry),
                "root": str(workflow.task_tree.id),
            }
        else:
            dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct: dict, spec: BpmnProcessSpec | None = None,
                  subprocess_specs: dict | None = None) -> BpmnWorkflow:
        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], _uuid, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(_uuid(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


def _tasks_to_dict(workflow: BpmnWorkflow, registry) -> dict:
    """`WorkflowConverter.to_dict`'s "tasks" — each task as SpiffWorkflow's TaskConverter.to_dict
    makes it, typename added — without the registry's dispatch for every task: a state is
    serialised after every command and every replayed step, and the dispatch was a third of it.
    It must give the stock dictionary exactly (the state hashes in every log are of the stock
    form): tests/test_state_form.py compares the two on every state of an order, a contract
    review and a rework loop through a subprocess, and on data the registry converts or drops."""
    out = {}
    convert = registry.convert
    for key, task in workflow.tasks.items():
        name = str(key)
        if type(task) is not Task:
            out[name] = convert(task)
            continue
        parent = task.workflow.tasks.get(task._parent)
        if parent is None:
            data, delta = task.data, {}
        else:
            before, after = parent.data, task.data
            data = {}
            delta = {"updates": {k: after[k] for k in after if k not in before or after[k] != before[k]},
                     "deletions": [k for k in before if k not in after]}
        internal = task.internal_data
        out[name] = {
            "id": name if task.id is key else str(task.id),
            "parent": str(task._parent) if parent is not None else None,
            "children": [str(child) for child in task._children],
            "last_state_change": task.last_state_change,
            "state": task.state,
            "task_spec": task.task_spec.name,
            "triggered": task.triggered,
            "internal_data": _converted(internal, registry),
            "data": data,
            "delta": delta,
            "typename": "Task",
        }
    return out


_PLAIN = (str, int, float, bool, type(None))


def _converted(value: Any, registry) -> Any:
    """`registry.convert(value)` (DefaultRegistry: callables and modules dropped from every dict,
    registered types made dictionaries) with the plain JSON values, the bulk of task data, walked
    here instead of through the registry's dispatch; anything else goes the registry's way."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {k: _converted(v, registry) for k, v in value.items()
                if not callable(v) and not isinstance(v, ModuleType)}
    if kind is list:
        return [_converted(item, registry) for item in value]
    return registry.convert(value)


def _uuid(value: str):
    from uuid import UUID
    return UUID(value)


class _StockWorkflowWithoutSpec(_WorkflowWithoutSpec):
    """The same form made SpiffWorkflow's way throughout (`stock_dump_state`)."""
    fast = False


def _registry(converter: type = _WorkflowWithoutSpec):
    config = dict(SPIFF_CONFIG)
    config[BpmnWorkflow] = converter
    return BpmnWorkflowSerializer.configure(config)


_REGISTRY = _registry()
_STOCK_REGISTRY = _registry(_StockWorkflowWithoutSpec)
# The fast path above stands for the stock task converter only (a configured one goes the stock way).
_TASKS_ARE_STOCK = (SPIFF_CONFIG.get(Task) is TaskConverter and _REGISTRY.typenames.get(Task) == "Task"
                    and WorkflowConverter.to_dict.__qualname__ == "WorkflowConverter.to_dict")
# The stock converter, kept for the spec alone (its task spec converters are shared).
_SPEC_REGISTRY = BpmnWorkflowSerializer.configure(SPIFF_CONFIG)


def dump_spec(spec: BpmnProcessSpec, subprocess_specs: dict[str, BpmnProcessSpec]) -> str:
    return json.dumps({
        "spec": _SPEC_REGISTRY.convert(spec),
        "subprocess_specs": {name: _SPEC_REGISTRY.convert(s) for name, s in subprocess_specs.items()},
    }, sort_keys=True, ensure_ascii=False)


def load_spec(text: str) -> tuple[BpmnProcessSpec, dict[str, BpmnProcessSpec]]:
    dct = json.loads(text)
    spec = _SPEC_REGISTRY.restore(dct["spec"])
    subs = {name: _SPEC_REGISTRY.restore(s) for name, s in dct["subprocess_specs"].items()}
    return spec, subs


def stock_dump_state(workflow: BpmnWorkflow, task_counter: int) -> str:
    """`dump_state` through SpiffWorkflow's own task converter (what the fast path must equal)."""
    return _dump(workflow, task_counter, _STOCK_REGISTRY)


def dump_state(workflow: BpmnWorkflow, task_counter: int) -> str:
    """The instance's state as compact JSON.

    Keys are not sorted: SpiffWorkflow restores tasks in the order they were written, a child's
    data being a delta on its parent's. Execution is deterministic, so the order is too.
    """
    return _dump(workflow, task_counter)


def _dump(workflow: BpmnWorkflow, task_counter: int, registry=_REGISTRY) -> str:
    dct = registry.convert(workflow)
    return json.dumps({"format": STATE_FORMAT, "counter": task_counter, "workflow": dct},
                      ensure_ascii=False, separators=(",", ":"))


def load_state(text: str, spec: BpmnProcessSpec,
               subprocess_specs: dict[str, BpmnProcessSpec]) -> tuple[BpmnWorkflow, int]:
    dct = json.loads(text)
    workflow = _REGISTRY.restore(dct["workflow"], spec=spec, subprocess_specs=subprocess_specs)
    return workflow, dct["counter"]


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
