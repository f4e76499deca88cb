"""The script sandbox: real BPMN script, service and gateway tasks, `check_code`, and direct calls."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from xml.sax.saxutils import escape, quoteattr

import pytest
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState

from engine import clock, determinism
from engine.scripts import SandboxedEnvironment, SandboxedScriptEngine, ScriptRefused, check_code

PINNED = datetime(2026, 3, 14, 9, 26, 53, tzinfo=timezone.utc)

_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    id="defs" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="proc" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="work"/>
"""
_TAIL = """    <bpmn:sequenceFlow id="f1" sourceRef="work" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


def _workflow(task_xml: str, engine: SandboxedScriptEngine, data: dict | None = None) -> BpmnWorkflow:
    parser = SpiffBpmnParser()
    parser.add_bpmn_str((_HEAD + task_xml + _TAIL).encode(), "test.bpmn")
    workflow = BpmnWorkflow(parser.get_spec("proc"))
    workflow.script_engine = engine
    if data:
        workflow.get_tasks(spec_name="start")[0].data.update(data)
    return workflow


def run_script(script: str, data: dict | None = None, engine: SandboxedScriptEngine | None = None) -> dict:
    task = f'<bpmn:scriptTask id="work" name="Compute total"><bpmn:script>{escape(script)}</bpmn:script></bpmn:scriptTask>\n'
    workflow = _workflow(task, engine or SandboxedScriptEngine(), data)
    workflow.do_engine_steps()
    assert workflow.is_completed()
    return workflow.last_task.data


def run_service(service: str, params: dict[str, str], engine: SandboxedScriptEngine, data: dict | None = None) -> dict:
    parameters = "".join(
        f'<spiffworkflow:parameter id={quoteattr(name)} type="str" value={quoteattr(expr)}/>'
        for name, expr in params.items())
    task = f"""<bpmn:serviceTask id="work" name="Check credit">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id={quoteattr(service)} resultVariable="credit">
          <spiffworkflow:parameters>{parameters}</spiffworkflow:parameters>
        </spiffworkflow:serviceTaskOperator>
      </bpmn:extensionElements>
    </bpmn:serviceTask>
"""
    workflow = _workflow(task, engine, data)
    workflow.do_engine_steps()
    assert workflow.is_completed()
    return workflow.last_task.data


def refused(script: str, data: dict | None = None) -> str:
    """Run `script` in a real script task and return the error the engine raises."""
    with pytest.raises(WorkflowTaskException) as caught:
        run_script(script, data)
    return caught.value.args[0]


# --- normal scripts work ------------------------------------------------------------------------

ORDER = {"order": {"id": "SO-1", "lines": [
    {"sku": "A", "quantity": 2, "unit_price": 3.5},
    {"sku": "B", "quantity": 1, "unit_price": 10},
]}, "count": 1}


def test_ordinary_script_in_a_script_task():
    data = run_script("""
lines = order['lines']
total = sum(l['quantity'] * l['unit_price'] for l in lines)
order['lines'].append({'sku': 'C', 'quantity': 0, 'unit_price': 0})
order['total'] = total
count += 1
skus = [l['sku'].lower() for l in lines if l['quantity']]
by_sku = {l['sku']: l['quantity'] for l in lines}
first, (second, third) = 1, (2, 3)
for i, line in enumerate(lines):
    line['no'] = i + 1
label = f"{order['id']}: {total:.2f} for {len(lines)} lines"
if total > 10:
    size = 'large'
else:
    size = 'small'
def double(v):
    return v * 2
doubled = double(total)
del third
""", json.loads(json.dumps(ORDER)))
    assert data["total"] == 17.0
    assert data["order"]["total"] == 17.0
    assert [line["sku"] for line in data["order"]["lines"]] == ["A", "B", "C"]
    assert data["order"]["lines"][2]["no"] == 3
    assert data["count"] == 2
    assert data["skus"] == ["a", "b"]
    assert data["by_sku"] == {"A": 2, "B": 1, "C": 0}
    assert (data["first"], data["second"]) == (1, 2) and "third" not in data
    assert data["label"] == "SO-1: 17.00 for 3 lines"
    assert data["size"] == "large" and data["doubled"] == 34.0
    # Functions and the sandbox's own names never become task data.
    assert "double" not in data and "__builtins__" not in data
    assert not any(name.startswith("_") for name in data)
    json.dumps(data)


def test_script_values_are_stored_as_json():
    with clock.fixed_now(PINNED):
        data = run_script("due = now() + timedelta(hours=4)\nprice = Decimal('2.50') * 3\nn = Decimal('4')\npair = (1, 2)")
    assert data["due"] == "2026-03-14T13:26:53+00:00"
    assert data["price"] == 7.5 and data["n"] == 4 and data["pair"] == [1, 2]


def test_unstorable_value_is_refused_with_its_path():
    message = refused("x = {'a': [1, {'b': {1, 2}}]}")
    assert "script of task 'Compute total'" in message
    assert "variable x['a'][1]['b'] holds a set" in message


def test_print_is_a_no_op():
    assert run_script("print('hello', 1)\nx = 1")["x"] == 1


def test_gateway_condition_in_bpmn():
    gateway = """<bpmn:exclusiveGateway id="work" default="f1"/>
    <bpmn:sequenceFlow id="high" sourceRef="work" targetRef="big">
      <bpmn:conditionExpression>amount &gt;= 1000000</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:endEvent id="big"/>
"""
    for amount, expected in ((2_000_000, "big"), (5, "end")):
        workflow = _workflow(gateway, SandboxedScriptEngine(), {"amount": amount})
        workflow.do_engine_steps()
        assert workflow.is_completed()
        assert workflow.get_tasks(spec_name=expected)[0].state == TaskState.COMPLETED
        other = "end" if expected == "big" else "big"
        assert all(t.state != TaskState.COMPLETED for t in workflow.get_tasks(spec_name=other))


def test_evaluate_expressions_directly():
    env = SandboxedEnvironment()
    assert env.evaluate("amount >= 1000000", {"amount": 1_000_000}) is True
    assert env.evaluate('"PT4H"', {}) == "PT4H"
    assert env.evaluate("'A'", {}) == "A"
    assert env.evaluate("credit_level in ('A','B')", {"credit_level": "B"}) is True
    assert env.evaluate("any(l > limit for l in amounts)", {"amounts": [1, 5], "limit": 4}) is True
    assert env.evaluate("\n      amount > 1\n    ", {"amount": 2}) is True  # as XML element text
    # DMN passes the input value as an external context.
    assert env.evaluate("dmninputexpr > 3", {}, external_context={"dmninputexpr": 5}) is True
    data = {"a": 1, "_meta": "kept"}
    env.execute("b = a + 1\nfor _ in range(2):\n    a += 0", data)
    assert data == {"a": 1, "b": 2, "_meta": "kept"}


_DMN = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="dmn" name="DRD" namespace="http://camunda.org/schema/1.0/dmn">
  <decision id="credit" name="Credit level">
    <decisionTable id="table">
      <input id="in1" label="Amount"><inputExpression id="ie1" typeRef="integer"><text>amount</text></inputExpression></input>
      <input id="in2" label="Country"><inputExpression id="ie2" typeRef="string"><text>country</text></inputExpression></input>
      <output id="out1" name="level" typeRef="string"/>
      <rule id="r1"><inputEntry id="e11"><text>&gt;= 1000</text></inputEntry><inputEntry id="e12"><text>'NL'</text></inputEntry>
        <outputEntry id="o1"><text>'A'</text></outputEntry></rule>
      <rule id="r2"><inputEntry id="e21"><text>? &lt; 1000</text></inputEntry><inputEntry id="e22"><text></text></inputEntry>
        <outputEntry id="o2"><text>'B'</text></outputEntry></rule>
      <rule id="r3"><inputEntry id="e31"><text></text></inputEntry><inputEntry id="e32"><text></text></inputEntry>
        <outputEntry id="o3"><text>'C'</text></outputEntry></rule>
    </decisionTable>
  </decision>
</definitions>
"""


def test_dmn_business_rule_task():
    task = """<bpmn:businessRuleTask id="work" name="Decide level">
      <bpmn:extensionElements><spiffworkflow:calledDecisionId>credit</spiffworkflow:calledDecisionId></bpmn:extensionElements>
    </bpmn:businessRuleTask>
"""
    for amount, country, level in ((5000, "NL", "A"), (5, "DE", "B"), (5000, "DE", "C")):
        parser = SpiffBpmnParser()
        parser.add_bpmn_str((_HEAD + task + _TAIL).encode(), "test.bpmn")
        parser.add_dmn_str(_DMN.encode(), "test.dmn")
        workflow = BpmnWorkflow(parser.get_spec("proc"), parser.get_subprocess_specs("proc"))
        workflow.script_engine = SandboxedScriptEngine()
        workflow.get_tasks(spec_name="start")[0].data.update(amount=amount, country=country)
        workflow.do_engine_steps()
        assert workflow.last_task.data["level"] == level


def test_task_data_may_shadow_helper_names():
    data = run_script("kind = type + '!'\nd = date", {"type": "express", "date": "2026-01-01"})
    assert data["kind"] == "express!" and data["d"] == "2026-01-01"


# --- escapes are refused --------------------------------------------------------------------------

@pytest.mark.parametrize("source, mode, forbidden", [
    ("().__class__.__base__.__subclasses__()", "eval", "'__class__'"),
    ("__import__('os')", "eval", "name '__import__' is not allowed"),
    ("import os", "exec", "import os"),
    ("from os import path", "exec", "from os import path"),
    ("open('/etc/passwd')", "eval", "name 'open' is not allowed"),
    ("getattr(x, '__class__')", "eval", "attribute '__class__' is not allowed"),
    ("'{0.__class__}'.format(1)", "eval", "attribute 'format' is not allowed"),
    ("'{x.__globals__}'.format_map(d)", "eval", "attribute 'format_map' is not allowed"),
    ("(x for x in [1]).gi_frame", "eval", "attribute 'gi_frame' is not allowed"),
    ("g.gi_code", "eval", "attribute 'gi_code' is not allowed"),
    ("type(1)", "eval", "calling 'type' is not allowed"),
    ("type('X', (), {})", "eval", "calling 'type' is not allowed"),
    ("eval('1')", "eval", "'eval'"),
    ("globals()", "eval", "name 'globals' is not allowed"),
    ("vars()", "eval", "name 'vars' is not allowed"),
    ("input()", "eval", "calling 'input' is not allowed"),
    ("breakpoint()", "eval", "name 'breakpoint' is not allowed"),
    ("class A:\n    pass", "exec", "class definitions are not allowed"),
    ("f'{x.__class__}'", "eval", "attribute '__class__' is not allowed"),
])
def test_check_code_refuses(source, mode, forbidden):
    message = check_code(source, mode)
    assert message is not None and forbidden in message
    assert message.startswith("line 1: ")


def test_check_code_reports_line_and_syntax():
    assert check_code("x = 1\ny = __import__('os')", "exec") == "line 2: name '__import__' is not allowed"
    assert check_code("x = = 1", "exec").startswith("syntax error on line 1: ")
    assert check_code("total = sum(l['q'] * l['p'] for l in lines)", "exec") is None
    assert check_code("getattr(x, '_' + '_class__')", "eval") is None  # computed: refused at run time


def test_subclasses_walk_refused_in_script_task():
    message = refused("x = 1\nclasses = ().__class__.__base__.__subclasses__()")
    assert message.startswith("script of task 'Compute total': access to attribute '__class__' is not allowed (line 2)")


@pytest.mark.parametrize("script, forbidden", [
    ("import os", "import statements are not allowed ('import os')"),
    ("m = __import__('os')", "name '__import__' is not allowed"),
    ("f = open('/etc/passwd')", "name 'open' is not allowed"),
    ("c = getattr(1, '__class__')", "access to attribute '__class__' is not allowed"),
    ("s = '{0.__class__}'.format(1)", "access to attribute 'format' is not allowed"),
    ("s = '{0.__class__}'.format_map({})", "access to attribute 'format_map' is not allowed"),
    ("fr = (x for x in [1]).gi_frame", "access to attribute 'gi_frame' is not allowed"),
    ("t = type(1)", "calling 'type' is not allowed"),
])
def test_static_refusals_in_script_task(script, forbidden):
    message = refused(script)
    assert message.startswith(f"script of task 'Compute total': {forbidden} (line 1)")


@pytest.mark.parametrize("script, forbidden", [
    ("c = getattr(1, '_' + '_class__')", "access to attribute '__class__' is not allowed"),
    ("f = getattr('{0.__class__}', 'for' + 'mat')", "access to attribute 'format' is not allowed"),
    ("g = (x for x in [1])\nfr = getattr(g, 'gi_' + 'frame')", "access to attribute 'gi_frame' is not allowed"),
    ("fn = (lambda: 0)\nx = getattr(fn, 'f_' + 'globals', None)", "access to attribute 'f_globals' is not allowed"),
    ("t = type\nx = t(1)", "calling 'type' is not allowed"),
    ("d = now()\nd.year = 1", "changing a datetime object is not allowed"),
])
def test_runtime_refusals_in_script_task(script, forbidden):
    message = refused(script)
    line = script.count("\n") + 1
    assert message.startswith(f"script of task 'Compute total': {forbidden}")
    assert f"(line {line})" in message


def test_refusal_is_a_workflow_task_exception_wrapping_script_refused():
    engine = SandboxedScriptEngine()
    with pytest.raises(WorkflowTaskException) as caught:
        run_script("x = 1\ny = getattr(x, '_' + '_class__')", engine=engine)
    err = caught.value
    assert err.error_type == "ScriptRefused"
    assert err.line_number == 2 and err.error_line == "y = getattr(x, '_' + '_class__')"
    assert err.task_spec.bpmn_name == "Compute total"


def test_direct_environment_refuses_with_script_refused():
    env = SandboxedEnvironment()
    with pytest.raises(ScriptRefused, match="'__class__'"):
        env.evaluate("getattr(1, '_' + '_class__')", {})
    with pytest.raises(ScriptRefused, match="'__subclasses__'|'__class__'"):
        env.evaluate("().__class__.__base__.__subclasses__()", {})


def test_ordinary_runtime_error_names_task_and_line():
    message = refused("a = 1\nb = a / 0")
    assert message.startswith("script of task 'Compute total': ZeroDivisionError: division by zero (line 2)")


# --- the loop budget ----------------------------------------------------------------------------

@pytest.mark.parametrize("script", [
    "while True:\n    x = 1",
    "n = 0\nwhile n >= 0:\n    n += 1",
    "xs = [1, 2]\nfor x in xs:\n    xs.append(x)",
    "total = sum(i for i in range(10 ** 9))",
    "rows = [[i, j] for i in range(2000) for j in range(2000)]",
])
def test_a_loop_without_end_is_stopped(script):
    message = refused(script)
    assert "took more than 1,000,000 loop steps" in message, message


def test_loops_within_the_budget_run_and_each_run_has_its_own_budget():
    env = SandboxedEnvironment()
    for _ in range(3):  # 3 x 600,000 steps: more than one budget in all, within it each time
        ctx = {}
        env.execute("n = 0\nwhile n < 300000:\n    n += 1\nt = sum(i for i in range(300000))", ctx)
        assert ctx["n"] == 300000 and ctx["t"] == sum(range(300000))
    assert env.evaluate("len([x for x in range(1000)])", {}) == 1000


# --- the clock ------------------------------------------------------------------------------------

def test_date_helpers_read_the_engine_clock():
    env = SandboxedEnvironment()
    with clock.fixed_now(PINNED):
        for expr in ("datetime.now()", "datetime.utcnow()", "datetime.today()", "now()",
                     "now().now()", "datetime(2000, 1, 1).now()", "getattr(datetime, 'now')()"):
            assert env.evaluate(expr, {}) == PINNED, expr
        assert env.evaluate("datetime.now(timezone(timedelta(hours=8)))", {}) == PINNED
        assert env.evaluate("date.today()", {}) == PINNED.date()
        assert env.evaluate("date(2000, 1, 1).today()", {}) == PINNED.date()


def test_script_task_sees_pinned_clock():
    with clock.fixed_now(PINNED):
        data = run_script("stamp = datetime.now().isoformat()\nday = str(date.today())")
    assert data == {"stamp": PINNED.isoformat(), "day": "2026-03-14"}


# --- service tasks ----------------------------------------------------------------------------------

def test_service_call_goes_through_registry_and_is_recorded():
    calls = []

    def credit_check(customer, amount):
        calls.append((customer, amount))
        return {"level": "A", "limit": amount * 2}

    engine = SandboxedScriptEngine(services={"credit_check": credit_check})
    ctx = determinism.CommandContext(instance_id="inst-1", at=PINNED)
    with determinism.command_context(ctx):
        data = run_service("credit_check", {"customer": "customer['id']", "amount": "amount"}, engine,
                           {"customer": {"id": "C7"}, "amount": 100})
    assert data["credit"] == {"level": "A", "limit": 200}
    assert calls == [("C7", 100)]
    assert ctx.service_results == [{"service": "credit_check", "result": {"level": "A", "limit": 200}}]

    # Replay plays the recorded result back without calling the service.
    replay = determinism.CommandContext(instance_id="inst-1", at=PINNED, replaying=True,
                                        service_results=list(ctx.service_results))
    with determinism.command_context(replay):
        data = run_service("credit_check", {"customer": "customer['id']", "amount": "amount"}, engine,
                           {"customer": {"id": "C7"}, "amount": 100})
    assert data["credit"] == {"level": "A", "limit": 200}
    assert len(calls) == 1


def test_unknown_service_is_refused():
    engine = SandboxedScriptEngine(services={"credit_check": lambda **kw: 1})
    with pytest.raises(WorkflowTaskException) as caught:
        run_service("foo", {}, engine)
    assert caught.value.args[0] == "service task 'Check credit' names the service 'foo', which is not registered"


def test_failing_service_names_task_and_service():
    def broken(**kw):
        raise ConnectionError("timed out")

    engine = SandboxedScriptEngine(services={"broken": broken})
    with pytest.raises(WorkflowTaskException) as caught:
        run_service("broken", {}, engine)
    assert caught.value.args[0] == "service task 'Check credit': service 'broken' failed: ConnectionError: timed out"


# --- speed ------------------------------------------------------------------------------------------

def test_compiled_code_is_cached():
    from engine.scripts import _compile
    env = SandboxedEnvironment()
    env.evaluate("amount >= 1000000 and 'cache-probe'", {"amount": 1})
    before = _compile.cache_info().hits
    for _ in range(100):
        env.evaluate("amount >= 1000000 and 'cache-probe'", {"amount": 1})
    assert _compile.cache_info().hits - before == 100
