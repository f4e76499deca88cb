"""The sandbox in which BPMN scripts, conditions, timer and DMN expressions run, and the registry
through which service tasks reach Python callables.

The rules (what a script may name, reach and store) are checked here, in the caller's process,
so refusals read the same everywhere; the code then runs either in-process when `engine.sandbox`
proves it cheap, or in one of `engine.sandbox`'s child processes under hard limits of CPU time,
wall time and memory (`SandboxedEnvironment.evaluate_here`/`execute_here` run there).
"""
from __future__ import annotations

import ast
import contextvars
import json
import operator
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from types import CodeType, TracebackType
from typing import Any, Literal

from RestrictedPython import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import RestrictingNodeTransformer
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine.python_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment
from SpiffWorkflow.exceptions import SpiffWorkflowException

from . import clock, determinism, sandbox
from .sandbox import ScriptLimitExceeded

__all__ = ["ScriptRefused", "ScriptError", "ScriptLimitExceeded", "check_code", "SandboxedScriptEngine",
           "SandboxedEnvironment"]

# Compiled code carries this file name so a traceback can be searched for the script's own line.
_FILENAME = "<bpmn-script>"
_CACHE_SIZE = 8192
_MAX_DEPTH = 200
# Loop steps one script or expression may take (each turn of a `while`, each item a `for` or a
# comprehension draws, each number of a `range`): a loop without end stops with an incident
# instead of holding a worker for ever.
MAX_LOOP_STEPS = 1_000_000


class ScriptRefused(Exception):
    """A script or expression uses something the sandbox forbids (message = one clear sentence)."""

    def __init__(self, reason: str, lineno: int | None = None):
        super().__init__(reason if lineno is None else f"{reason} (line {lineno})")
        self.reason = reason
        self.lineno = lineno


# --- what scripts may not name or reach ---------------------------------------------------------

# Names that have no legitimate use in a script, so even mentioning them is refused at deploy.
_FORBIDDEN_NAMES = frozenset({
    "open", "eval", "exec", "compile", "globals", "locals", "vars", "breakpoint", "memoryview",
    "classmethod", "staticmethod", "super", "setattr", "delattr", "exit", "quit", "reload",
    "execfile", "hasattr",
})
# Builtins that are dangerous to call but are also plausible task-data names ("type", "input"),
# so only calling them is refused statically; at run time they are stubs that refuse the call.
_FORBIDDEN_CALLS = frozenset({"type", "object", "property", "input", "help", "dir", "id"})

# Attributes without a leading underscore that still lead to frames, code, globals or the
# format machinery; everything starting with "_" is refused as well.
_FORBIDDEN_ATTRS = frozenset({
    "format", "format_map", "vformat", "get_field", "get_value", "mro", "func_globals",
    "func_code", "func_closure", "func_defaults", "im_func", "im_self", "im_class",
})
_FORBIDDEN_ATTR_PREFIXES = ("gi_", "f_", "tb_", "cr_", "ag_", "co_", "func_", "im_")


def _attribute_refusal(name: str) -> str | None:
    if name.startswith("_") or name in _FORBIDDEN_ATTRS or name.startswith(_FORBIDDEN_ATTR_PREFIXES):
        return f"access to attribute {name!r} is not allowed"
    return None


class _Checker(ast.NodeVisitor):
    """Our own deploy-time rules, run before RestrictedPython so refusals read as one sentence."""

    def __init__(self) -> None:
        self.found: list[tuple[int, int, str]] = []

    def _refuse(self, lineno: int, col: int, reason: str) -> None:
        self.found.append((lineno, col, reason))

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        names = ", ".join(alias.name for alias in node.names)
        what = f"import {names}" if isinstance(node, ast.Import) else f"from {node.module or '.'} import {names}"
        self._refuse(node.lineno, node.col_offset, f"import statements are not allowed ({what!r})")

    visit_ImportFrom = visit_Import

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._refuse(node.lineno, node.col_offset, "class definitions are not allowed")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if name.startswith("_") and name != "_":
            self._refuse(node.lineno, node.col_offset, f"name {name!r} is not allowed")
        elif name in _FORBIDDEN_NAMES and not isinstance(node.ctx, ast.Store):
            self._refuse(node.lineno, node.col_offset, f"name {name!r} is not allowed")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        reason = _attribute_refusal(node.attr)
        if reason:
            # The attribute's own position, so a chain reports its first offender.
            self._refuse(node.end_lineno or node.lineno, (node.end_col_offset or 0) - len(node.attr), reason)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in _FORBIDDEN_CALLS:
                self._refuse(func.lineno, func.col_offset, f"calling {func.id!r} is not allowed")
            elif func.id == "getattr" and len(node.args) >= 2:
                attr = node.args[1]
                if isinstance(attr, ast.Constant) and isinstance(attr.value, str):
                    reason = _attribute_refusal(attr.value)
                    if reason:
                        self._refuse(attr.lineno, attr.col_offset, reason)
        self.generic_visit(node)

    def _check_arg_name(self, node: ast.AST, name: str | None) -> None:
        if name and name.startswith("_") and name != "_":
            self._refuse(node.lineno, node.col_offset, f"name {name!r} is not allowed")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._check_arg_name(node, node.name)
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        self._check_arg_name(node, node.arg)


class ScriptError(Exception):
    """An error raised inside a sandbox process, carried back by its type's name and its text;
    `from_sandbox` makes a subclass of that name, so reports read as they did in-process."""

    _classes: dict[str, type] = {}

    @classmethod
    def from_sandbox(cls, error: dict) -> Exception:
        if error.get("refused"):
            err: Exception = ScriptRefused(error["reason"], error.get("lineno"))
        elif error.get("loop"):
            err = LoopBudgetExceeded()
        else:
            name = error.get("type") or "ScriptError"
            if not (name.isidentifier() and len(name) <= 60):
                name = "ScriptError"
            kind = cls._classes.get(name)
            if kind is None:
                kind = cls._classes.setdefault(name, type(name, (cls,), {"__module__": "sandbox"}))
            err = kind(error.get("text") or "")
        err.script_line = error.get("line")
        return err


class LoopBudgetExceeded(RuntimeError):
    """A script or expression took more than MAX_LOOP_STEPS loop steps."""

    def __init__(self) -> None:
        super().__init__(f"the script took more than {MAX_LOOP_STEPS:,} loop steps, so it was stopped "
                         f"(a loop that never ends?)")


_steps_left: contextvars.ContextVar[list[int]] = contextvars.ContextVar("bpm_script_steps")


def _step() -> None:
    left = _steps_left.get(None)
    if left is not None:
        left[0] -= 1
        if left[0] < 0:
            raise LoopBudgetExceeded()


def _budget_iter(obj: Any):
    """RestrictedPython's `_getiter_` (every `for` and comprehension): one step per item."""
    for item in obj:
        _step()
        yield item


def _budget_range(*args: int) -> range:
    numbers = range(*args)
    left = _steps_left.get(None)
    if left is not None and len(numbers) > max(left[0], 0):
        raise LoopBudgetExceeded()
    return numbers


class _Budgeted(RestrictingNodeTransformer):
    """RestrictedPython's rules, plus one step of the loop budget at the top of every `while`
    body (the only loop that does not draw its items through `_getiter_`)."""

    def visit_While(self, node: ast.While) -> ast.AST:
        node = super().visit_While(node)
        step = ast.Expr(ast.Call(ast.Name("_step_", ast.Load()), [], []))
        node.body.insert(0, ast.copy_location(step, node.body[0]))
        ast.fix_missing_locations(node)
        return node


def _run_budgeted(run: Callable[[], Any]) -> Any:
    token = _steps_left.set([MAX_LOOP_STEPS])
    try:
        return run()
    finally:
        _steps_left.reset(token)


def _rp_refusal(message: str) -> tuple[int | None, str]:
    """RestrictedPython reports 'Line 3: Nonlocal statements are not allowed.'; split it."""
    head, sep, rest = message.partition(": ")
    if sep and head.startswith("Line "):
        try:
            return int(head[5:]), rest.rstrip(".")
        except ValueError:
            pass
    return None, message.rstrip(".")


@lru_cache(maxsize=_CACHE_SIZE)
def _compile(source: str, mode: str) -> tuple[CodeType | None, int | None, str | None]:
    """(code, None, None) or (None, line, reason); cached so each distinct text compiles once."""
    if not isinstance(source, str):
        return None, None, f"the {'expression' if mode == 'eval' else 'script'} is not text"
    try:
        # Expressions from BPMN/DMN XML often carry the indentation of the element around them.
        tree = ast.parse(source.strip() if mode == "eval" else source, _FILENAME, mode)
    except SyntaxError as err:
        return None, err.lineno, f"syntax error on line {err.lineno}: {err.msg}"
    checker = _Checker()
    checker.visit(tree)
    if checker.found:
        lineno, _col, reason = min(checker.found)
        return None, lineno, reason
    compiler = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    result = compiler(tree, filename=_FILENAME, policy=_Budgeted)
    if result.errors:
        lineno, reason = _rp_refusal(result.errors[0])
        return None, lineno, reason
    return result.code, None, None


def _compiled(source: str, mode: str) -> CodeType:
    code, lineno, reason = _compile(source, mode)
    if code is None:
        if reason.startswith("syntax error"):
            # The sentence already names the line; keep it for the error report all the same.
            refusal = ScriptRefused(reason)
            refusal.lineno = lineno
            raise refusal
        raise ScriptRefused(reason, lineno)
    return code


def check_code(source: str, mode: Literal["exec", "eval"]) -> str | None:
    """Static check done at deploy time: None if the code compiles under the sandbox rules,
    else one clear sentence naming what is wrong, e.g. "line 2: name '__import__' is not allowed"."""
    if mode not in ("exec", "eval"):
        raise ValueError(f"mode must be 'exec' or 'eval', not {mode!r}")
    code, lineno, reason = _compile(source, mode)
    if code is not None:
        return None
    if lineno is None or reason.startswith("syntax error"):
        return reason
    return f"line {lineno}: {reason}"


# --- run-time guards ------------------------------------------------------------------------------

def _clock_now(tz=None) -> datetime:
    instant = clock.now()
    return instant if tz is None else instant.astimezone(tz)


def _clock_utcnow() -> datetime:
    return clock.now()


def _clock_today_datetime() -> datetime:
    return clock.now()


def _clock_today_date() -> date:
    return clock.now().date()


def _clock_attribute(obj: Any, name: str) -> Any:
    """Any date or datetime (class or instance) reaches the clock through these names, and
    `some_date.today()` is as much a clock read as `date.today()`; route them all to `clock`."""
    cls = obj if isinstance(obj, type) else type(obj)
    if not issubclass(cls, date):
        return None
    if issubclass(cls, datetime):
        return {"now": _clock_now, "utcnow": _clock_utcnow, "today": _clock_today_datetime}[name]
    return _clock_today_date if name == "today" else None


_CLOCK_NAMES = frozenset({"now", "utcnow", "today"})
_NO_DEFAULT = object()


def _guarded_getattr(obj: Any, name: Any, default: Any = _NO_DEFAULT) -> Any:
    if type(name) is not str:
        raise ScriptRefused("attribute names must be strings")
    reason = _attribute_refusal(name)
    if reason:
        raise ScriptRefused(reason)
    if name in _CLOCK_NAMES:
        redirected = _clock_attribute(obj, name)
        if redirected is not None:
            return redirected
    if default is _NO_DEFAULT:
        return getattr(obj, name)
    return getattr(obj, name, default)


def _guarded_write(obj: Any) -> Any:
    # Only the containers that task data is made of may be changed in place.
    if isinstance(obj, (dict, list)):
        return obj
    raise ScriptRefused(f"changing a {type(obj).__name__} object is not allowed; only dicts and lists can be modified")


_INPLACE_OPS = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "|=": operator.ior, "^=": operator.ixor, "&=": operator.iand,
    "@=": operator.imatmul,
}


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    return _INPLACE_OPS[op](target, value)


def _apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


class _DiscardPrint:
    """`print` in a script is a no-op: scripts have no console, and output must not leak anywhere."""

    def __init__(self, _getattr_: Any = None) -> None:
        pass

    def _call_print(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __call__(self) -> str:
        return ""


class _RefusedBuiltin:
    """Stands in for a builtin that scripts may not call, so the refusal names it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ScriptRefused(f"calling {self.name!r} is not allowed")

    def __repr__(self) -> str:
        return f"<forbidden {self.name}>"


def _now() -> datetime:
    """The present as the engine sees it (aware UTC), never the machine's clock."""
    return clock.now()


_SAFE_BUILTINS = (
    len, min, max, sum, sorted, reversed, round, abs, any, all, str, int, float, bool, dict, list,
    tuple, set, frozenset, range, enumerate, zip, map, filter, isinstance, divmod, pow, slice,
    repr, chr, ord, iter, next, callable,
    Exception, ArithmeticError, AssertionError, AttributeError, IndexError, KeyError, LookupError,
    NameError, NotImplementedError, OverflowError, RuntimeError, StopIteration, TypeError,
    ValueError, ZeroDivisionError,
)


def _make_builtins() -> dict[str, Any]:
    names: dict[str, Any] = {obj.__name__: obj for obj in _SAFE_BUILTINS}
    names.update({"True": True, "False": False, "None": None})
    names.update({
        "Decimal": Decimal, "datetime": datetime, "date": date, "timedelta": timedelta,
        "timezone": timezone, "now": _now, "getattr": _guarded_getattr,
    })
    names.update({name: _RefusedBuiltin(name) for name in _FORBIDDEN_CALLS})
    names["range"] = _budget_range
    # The hooks RestrictedPython's rewritten code calls.
    names.update({
        "_getattr_": _guarded_getattr,
        "_getitem_": operator.getitem,
        "_getiter_": _budget_iter,
        "_step_": _step,
        "_write_": _guarded_write,
        "_inplacevar_": _inplacevar,
        "_apply_": _apply,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_print_": _DiscardPrint,
        "_print": _DiscardPrint(),
    })
    return names


# --- task data stays JSON ---------------------------------------------------------------------------

_SCALARS = frozenset({str, int, float, bool, type(None)})


class _Unstorable(Exception):
    """A value that cannot be task data; `path` collects the keys on the way out (innermost first)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
        self.path: list[Any] = []


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Return `value` as JSON-friendly data, converting dates and Decimals; containers are fixed
    in place so references held elsewhere in the data see the same result."""
    if depth > _MAX_DEPTH:
        raise _Unstorable(f"is nested more than {_MAX_DEPTH} levels deep (does it contain itself?)")
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                raise _Unstorable(f"has the key {key!r}; keys in task data must be strings")
            if type(item) in _SCALARS:
                continue
            try:
                converted = _jsonable(item, depth + 1)
            except _Unstorable as err:
                err.path.append(key)
                raise
            if converted is not item:
                value[key] = converted
        return value
    if isinstance(value, (list, tuple)):
        items = value if isinstance(value, list) else list(value)
        for index, item in enumerate(items):
            if type(item) in _SCALARS:
                continue
            try:
                converted = _jsonable(item, depth + 1)
            except _Unstorable as err:
                err.path.append(index)
                raise
            if converted is not item:
                items[index] = converted
        return items
    if type(value) in _SCALARS:
        return value
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _Unstorable(f"is the Decimal {value}, which JSON cannot hold")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset)):
        raise _Unstorable("holds a set, which cannot be stored in task data; convert it with list()")
    if isinstance(value, timedelta):
        raise _Unstorable("holds a timedelta, which cannot be stored in task data; "
                          "store .total_seconds() or an ISO 8601 duration string")
    raise _Unstorable(f"holds a {type(value).__name__}, which cannot be stored in task data")


def _make_storable(context: dict) -> None:
    for name, value in context.items():
        if type(value) in _SCALARS:
            continue
        try:
            converted = _jsonable(value)
        except _Unstorable as err:
            path = err.path[::-1]
            trail = "".join(f"[{key!r}]" for key in path[:6]) + ("[...]" if len(path) > 6 else "")
            where = f"variable {name}{trail}" if trail else f"variable {name!r}"
            raise TypeError(f"{where} {err.reason}") from None
        if converted is not value:
            context[name] = converted


# --- the environment and the engine -----------------------------------------------------------------

class SandboxedEnvironment(BasePythonScriptEngineEnvironment):
    """Runs RestrictedPython-compiled code against task data with the sandbox's builtins.

    Helpers live in `__builtins__`, not in the globals, so task data may shadow them and nothing
    of theirs is left behind in the data.
    """

    def __init__(self) -> None:
        super().__init__({})
        self.builtins = _make_builtins()

    def evaluate(self, expression, context, external_context=None):
        _compiled(expression, "eval")  # the rules, here: refusals read the same on either path
        value = sandbox.fast_eval(expression, context, external_context)
        if value is not sandbox.NOT_FAST:
            return value
        reply = sandbox.run("eval", expression, context, external_context, clock.now())
        if not reply["ok"]:
            raise ScriptError.from_sandbox(reply["error"])
        return reply["value"]

    def execute(self, script, context, external_context=None):
        _compiled(script, "exec")
        external_context = external_context or {}
        clash = set(external_context).intersection(context)
        if clash:
            raise ValueError(f"task data has variable(s) {sorted(clash)} that clash with names the engine provides")
        results = sandbox.fast_exec(script, context, external_context)
        if results is not sandbox.NOT_FAST:
            try:
                _make_storable(results)
            except TypeError:
                results = sandbox.NOT_FAST  # the pool words the refusal, with its line
        if results is not sandbox.NOT_FAST:
            context.update(results)
            return True
        reply = sandbox.run("exec", script, context, external_context, clock.now())
        if not reply["ok"]:
            raise ScriptError.from_sandbox(reply["error"])
        self._take(context, reply["data"])
        return True

    @staticmethod
    def _take(context: dict, data: dict) -> None:
        """Make `context` (the task's own dict, which SpiffWorkflow holds) what the script left,
        in the same order of names as running it here would."""
        context.clear()
        context.update(data)

    # --- run in the sandbox process (engine.sandbox.child_main) ---

    def evaluate_here(self, expression, context, external_context=None):
        code = _compiled(expression, "eval")
        # Names must be globals (generator expressions cannot see eval's locals), and setting
        # __builtins__ must not touch the task data: hence a fresh dict per evaluation.
        if external_context:
            scope = {**external_context, **context}
        else:
            scope = dict(context)
        scope["__builtins__"] = self.builtins
        return _run_budgeted(lambda: eval(code, scope))

    def execute_here(self, script, context, external_context=None):
        code = _compiled(script, "exec")
        external_context = external_context or {}
        clash = set(external_context).intersection(context)
        if clash:
            raise ValueError(f"task data has variable(s) {sorted(clash)} that clash with names the engine provides")
        # Scripts cannot bind "_" names, so any that appear are RestrictedPython's temporaries;
        # ones already in the data belong to someone else and stay.
        kept = {name for name in context if name.startswith("_")}
        context.update(external_context)
        context["__builtins__"] = self.builtins
        try:
            _run_budgeted(lambda: exec(code, context))
        finally:
            self._clean(context, external_context, kept)
        _make_storable(context)
        return True

    @staticmethod
    def _clean(context: dict, external_context: Mapping[str, Any], kept: set[str]) -> None:
        # Same rule as SpiffWorkflow's TaskDataEnvironment: functions do not become data.
        doomed = [name for name, value in context.items()
                  if (name.startswith("_") and name not in kept) or callable(value) or name in external_context]
        doomed.append("__builtins__")
        for name in doomed:
            context.pop(name, None)

    def call_service(self, context, **kwargs):
        raise NotImplementedError("service calls go through SandboxedScriptEngine.call_service")


def _task_label(task: Any) -> str:
    spec = task.task_spec
    return getattr(spec, "bpmn_name", None) or spec.name


def _script_line(err: BaseException) -> int | None:
    line = getattr(err, "script_line", None)  # carried back from a sandbox process
    tb: TracebackType | None = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _describe(err: BaseException) -> str:
    if isinstance(err, (ScriptRefused, ScriptLimitExceeded)):
        return err.reason
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class SandboxedScriptEngine(PythonScriptEngine):
    """A PythonScriptEngine whose scripts and expressions run in the sandbox, and whose service
    tasks call the registered `services` (name -> callable taking the parameters as keywords)."""

    def __init__(self, services: Mapping[str, Callable[..., Any]] | None = None):
        super().__init__(environment=SandboxedEnvironment())
        self.services: dict[str, Callable[..., Any]] = dict(services or {})

    def validate(self, expression):
        # DMN calls this for every rule it evaluates; parse each distinct text only once.
        error = _syntax_error(expression)
        if error is not None:
            raise SyntaxError(*error)

    def evaluate(self, task, expression, external_context=None):
        try:
            return self.environment.evaluate(expression, task.data, external_context)
        except SpiffWorkflowException as err:
            err.add_note(f"Error evaluating expression '{expression}'")
            raise
        except Exception as err:
            raise WorkflowTaskException(
                f"expression {expression!r} of task {_task_label(task)!r}: {_describe(err)}",
                task=task, exception=err) from err

    def execute(self, task, script, external_context=None):
        try:
            return self.environment.execute(script, task.data, external_context)
        except Exception as err:
            raise self.create_task_exec_exception(task, script, err) from err

    def create_task_exec_exception(self, task, script, err):
        if isinstance(err, SpiffWorkflowException):
            return super().create_task_exec_exception(task, script, err)
        if isinstance(err, ScriptRefused) and err.lineno is not None:
            line = err.lineno
        else:
            line = _script_line(err)
        message = f"script of task {_task_label(task)!r}: {_describe(err)}"
        error_line = None
        if line:
            if f"line {line}" not in message:
                message += f" (line {line})"
            lines = script.splitlines() if isinstance(script, str) else []
            error_line = lines[line - 1] if 0 < line <= len(lines) else None
        return WorkflowTaskException(message, task=task, exception=err, line_number=line, error_line=error_line)

    def call_service(self, task, operation_name=None, operation_params=None, **kwargs):
        """Called by SpiffWorkflow's ServiceTask, which json-loads what this returns."""
        label = _task_label(task)
        service = self.services.get(operation_name)
        if service is None:
            raise WorkflowTaskException(
                f"service task {label!r} names the service {operation_name!r}, which is not registered",
                task=task)
        params = {name: param["value"] for name, param in (operation_params or {}).items()}

        def call() -> Any:
            # Normalised before determinism records it, so the log holds exactly what the data gets.
            result = service(**params)
            try:
                return json.loads(json.dumps(result))
            except (TypeError, ValueError) as err:
                raise TypeError(f"the service returned a value that is not JSON-serialisable ({err})") from None

        try:
            result = determinism.call_service(operation_name, call)
        except Exception as err:
            if _is_refusal(err):
                raise  # a domain service refused its input in a sentence: a refusal, not an incident
            raise WorkflowTaskException(
                f"service task {label!r}: service {operation_name!r} failed: {_describe(err)}",
                task=task, exception=err) from err
        return json.dumps(result)


def _is_refusal(err: BaseException) -> bool:
    """A service raised one of the engine's refusals (runtime.InvalidInput, Conflict, ...): the
    command is refused with its sentence and nothing is written, as for a form error."""
    from .runtime import EngineError, CommandFailed  # (engine.runtime imports this module lazily)
    return isinstance(err, EngineError) and not isinstance(err, CommandFailed)


@lru_cache(maxsize=_CACHE_SIZE)
def _syntax_error(expression: str) -> tuple | None:
    try:
        ast.parse(expression)
    except SyntaxError as err:
        return (err.msg, (err.filename, err.lineno, err.offset, err.text))
    return None
