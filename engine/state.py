"""The serialised forms: a deployed spec (stored once per version) and an instance's state
(stored per instance *without* the spec), with the hash that the log chains.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

STATE_FORMAT = 1


class _WorkflowWithoutSpec(BpmnWorkflowConverter):
    """Leaves the process spec out of the instance; it is restored from the cached version."""

    def to_dict(self, workflow: BpmnWorkflow) -> dict:
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


def _uuid(value: str):
    from uuid import UUID
    return UUID(value)


def _registry():
    config = dict(SPIFF_CONFIG)
    config[BpmnWorkflow] = _WorkflowWithoutSpec
    return BpmnWorkflowSerializer.configure(config)


_REGISTRY = _registry()
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


def dump_state(workflow: BpmnWorkflow, task_counter: int) -> str:
    """The instance's state as compact JSON.

    Keys are not sorted: SpiffWorkflow restores tasks in the order they were written, a child's
    data being a delta on its parent's. Execution is deterministic, so the order is too.
    """
    dct = _REGISTRY.convert(workflow)
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
