"""Where scripts and expressions run: a pool of child processes under hard limits of CPU time,
wall time and memory, and the in-process fast path for expressions proven cheap before they run.

Why processes: a script's C loop (`sum(iter(int, 1))`, `10**(10**8)`) holds the GIL, so no
thread of the server can stop it or even run beside it; a child process with `RLIMIT_CPU` and
`RLIMIT_AS` set in it is stopped by the kernel, and the parent, which only waits on a pipe (GIL
released), kills it at the wall-time limit and starts another one. The parent sends the task
data (pickle: the parent is trusted) and reads back JSON (never pickle: the child runs hostile
code), whose size is bounded, so nothing the child sends can cost the parent more than reading
it. "Now" travels with each request (`engine.clock` in the parent: the command's logged time),
so a replay gives the same results.

The fast path (`fast_eval`, `fast_exec`): most conditions are `decision == "approve"` or
`amount >= 1000000`. An expression built only of names, constants, comparisons, boolean and
conditional operators, subscripts and displays, plus `+ - * / // %` through guards that admit
only numbers of bounded size (and `+` of bounded strings and lists), cannot run for longer or
allocate more than its own length times the size of its data allows; it runs in-process. A
script made only of `name = <such an expression>` lines likewise, with its results' sizes
checked before they become data — and of `try:` blocks of such lines with one `except
NameError:` of such lines (an optional field read), when the `try` part names nothing the pool's
builtins define (so a name missing here is missing there too). Anything else, and any value a
guard does not admit, goes to the pool: the fast path never decides an outcome the pool would
decide differently.

Settings (environment variables, read at each call): `BPM_SCRIPT_CPU_SECONDS` (default 2),
`BPM_SCRIPT_WALL_SECONDS` (default 5), `BPM_SCRIPT_MEMORY_MB` (default 256, on top of the
child's own interpreter), `BPM_SCRIPT_WORKERS` (most child processes at once, default 4).
"""
from __future__ import annotations

import ast
import atexit
import json
import math
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from types import CodeType
from typing import Any

__all__ = ["Limits", "ScriptLimitExceeded", "SandboxUnavailable", "limits", "run", "fast_eval",
           "fast_exec", "NOT_FAST"]

ROOT = Path(__file__).resolve().parent.parent
MAX_REPLY_BYTES = 16 * 1024 * 1024   # what a child may send back (task data after a script)
_MAX_REPLY_NODES = 2_000_000         # values in a reply, so shared sublists cannot blow up
_MAX_ERROR_TEXT = 2000
_TAG = "__bpm_t"                     # marks values JSON has no type for (tuples, dates, ...)
_JOBS_PER_CHILD = 10_000             # then a fresh process: whatever a script left behind goes


# --- settings -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 2
    wall_seconds: float = 5.0
    memory_mb: int = 256
    workers: int = 4


def _setting(name: str, default: float, kind=float, low: float = 1) -> Any:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not value >= low:
        raise ValueError(f"{name}={raw!r} must be at least {low}")
    return value


def limits() -> Limits:
    return Limits(cpu_seconds=_setting("BPM_SCRIPT_CPU_SECONDS", 2, int),
                  wall_seconds=_setting("BPM_SCRIPT_WALL_SECONDS", 5.0, float, 0.1),
                  memory_mb=_setting("BPM_SCRIPT_MEMORY_MB", 256, int, 16),
                  workers=_setting("BPM_SCRIPT_WORKERS", 4, int))


class ScriptLimitExceeded(Exception):
    """A script or expression went over a limit and was stopped; `reason` is one sentence."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind      # "cpu", "time", "memory", "size", "crash"
        self.reason = reason


class SandboxUnavailable(RuntimeError):
    """No child process could be started (the machine is out of processes or memory)."""


# --- the wire: JSON with tags for what JSON cannot hold ------------------------------------------

class _TooBig(Exception):
    pass


class _Unencodable(Exception):
    pass


def encode(value: Any, budget: list[int] | None = None, depth: int = 0) -> Any:
    """`value` as JSON-ready data; dicts that JSON cannot hold, tuples, sets, dates and Decimals
    become tagged objects. Raises _TooBig beyond _MAX_REPLY_NODES values (a list holding itself
    twice, twenty times over, is small in memory and huge on the wire)."""
    if budget is None:
        budget = [_MAX_REPLY_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig()
    if depth > 500:
        raise _Unencodable("is nested more than 500 levels deep")
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is list:
        return [encode(item, budget, depth + 1) for item in value]
    if kind is dict:
        if _TAG not in value and all(type(k) is str for k in value):
            return {k: encode(v, budget, depth + 1) for k, v in value.items()}
        return {_TAG: "dict", "v": [[encode(k, budget, depth + 1), encode(v, budget, depth + 1)]
                                    for k, v in value.items()]}
    if kind is tuple or kind is set or kind is frozenset:
        return {_TAG: kind.__name__, "v": [encode(item, budget, depth + 1) for item in value]}
    if kind is datetime or kind is date or kind is dtime:
        return {_TAG: kind.__name__, "v": value.isoformat()}
    if kind is timedelta:
        return {_TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if kind is timezone:
        offset = value.utcoffset(None)
        return {_TAG: "timezone", "v": [offset.days, offset.seconds, offset.microseconds]}
    if kind is Decimal:
        return {_TAG: "Decimal", "v": str(value)}
    raise _Unencodable(f"is a {kind.__name__}")


_DECODERS = {
    "dict": lambda v: {k: item for k, item in v},
    "tuple": tuple, "set": set, "frozenset": frozenset,
    "datetime": datetime.fromisoformat, "date": date.fromisoformat, "time": dtime.fromisoformat,
    "timedelta": lambda v: timedelta(*v), "timezone": lambda v: timezone(timedelta(*v)),
    "Decimal": Decimal,
}


def _decode_hook(obj: dict) -> Any:
    tag = obj.get(_TAG)
    if tag is None or len(obj) != 2 or "v" not in obj:
        return obj
    return _DECODERS[tag](obj["v"])


def decode(text: bytes) -> Any:
    return json.loads(text, object_hook=_decode_hook)


# --- the child process ------------------------------------------------------------------------

_HEADER = struct.Struct(">I")


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _vm_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def child_main() -> None:
    """The child's loop: one request in, one reply out, until the parent closes the pipe."""
    import resource

    from . import clock, scripts

    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is for the parent, which ends us
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)     # over the CPU limit: the kernel ends us
    requests, replies = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0), os.dup2(devnull, 1)          # nothing else may write on the reply pipe
    memory = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory:
        ceiling = _vm_bytes() + memory
        resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    environment = scripts.SandboxedEnvironment()
    _write_all(replies, b"R")
    while True:
        header = _read_exact(requests, _HEADER.size)
        if header is None:
            return
        body = _read_exact(requests, _HEADER.unpack(header)[0])
        if body is None:
            return
        mode, source, context, external, now, cpu = pickle.loads(body)
        del body
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = math.ceil(usage.ru_utime + usage.ru_stime + cpu)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.getrlimit(resource.RLIMIT_CPU)[1]))
        reply = _serve(environment, scripts, clock, mode, source, context, external, now)
        _write_all(replies, _HEADER.pack(len(reply)) + reply)


def _serve(environment, scripts, clock, mode, source, context, external, now) -> bytes:
    try:
        try:
            with clock.fixed_now(now):
                if mode == "eval":
                    result = {"ok": True, "value": environment.evaluate_here(source, context, external)}
                else:
                    environment.execute_here(source, context, external)
                    result = {"ok": True, "data": context}
            try:
                result[("value" if mode == "eval" else "data")] = encode(
                    result["value" if mode == "eval" else "data"])
            except _TooBig:
                return b'{"ok": false, "limit": "size"}'
            except _Unencodable as err:
                what = "the expression's value" if mode == "eval" else "the script's data"
                raise TypeError(f"{what} {err}, which cannot leave the sandbox") from None
            reply = json.dumps(result).encode("ascii")
            result = None
            if len(reply) > MAX_REPLY_BYTES:
                return b'{"ok": false, "limit": "size"}'
            return reply
        except MemoryError:
            return b'{"ok": false, "limit": "memory"}'
        except RecursionError as err:
            return json.dumps({"ok": False, "error": _describe_error(scripts, err)}).encode("ascii")
        except BaseException as err:  # a script can raise anything it can reach
            return json.dumps({"ok": False, "error": _describe_error(scripts, err)}).encode("ascii")
    except MemoryError:
        return b'{"ok": false, "limit": "memory"}'


def _describe_error(scripts, err: BaseException) -> dict:
    text = str(err)
    if len(text) > _MAX_ERROR_TEXT:
        text = text[:_MAX_ERROR_TEXT] + "…"
    refused = isinstance(err, scripts.ScriptRefused)
    return {"type": type(err).__name__, "text": text, "refused": refused,
            "reason": err.reason[:_MAX_ERROR_TEXT] if refused else None,
            "lineno": err.lineno if refused else None,
            "line": scripts._script_line(err),
            "loop": isinstance(err, scripts.LoopBudgetExceeded)}


_BOOT = ("import sys; sys.path.insert(0, sys.argv[2]); "
         "from engine.sandbox import child_main; child_main()")


class _Child:
    def __init__(self, memory_mb: int):
        self.memory_mb = memory_mb
        self.jobs = 0
        # Nothing of the server's settings (database URL, secret key) reaches the child, and
        # string hashing is the same in every child, so a set iterates alike in a replay.
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0",
                       "LANG": "C.UTF-8"}
        if os.environ.get("PYTHONPATH"):
            environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(memory_mb * 1024 * 1024), str(ROOT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True, bufsize=0, env=environment, cwd="/")
        self.requests = self.proc.stdin.fileno()
        self.replies = self.proc.stdout.fileno()
        if self._read(1, time.monotonic() + 60) != b"R":
            self.kill()
            raise SandboxUnavailable("the script sandbox process did not start")

    def _read(self, size: int, deadline: float) -> bytes | None:
        """`size` bytes, None at end of file; raises TimeoutError at `deadline`."""
        chunks, left = [], size
        while left:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([self.replies], [], [], wait)[0]:
                raise TimeoutError()
            chunk = os.read(self.replies, min(left, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def ask(self, request: bytes, deadline: float) -> bytes | None:
        _write_all(self.requests, request)
        header = self._read(_HEADER.size, deadline)
        if header is None:
            return None
        size = _HEADER.unpack(header)[0]
        if size > MAX_REPLY_BYTES + 1024:
            raise OverflowError()
        return self._read(size, deadline)

    def kill(self) -> int | None:
        try:
            self.proc.kill()
        except OSError:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None

    def exit_status(self) -> int | None:
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None


class _Pool:
    """Child processes shared by every thread of this process, started when first needed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._idle: list[_Child] = []
        self._count = 0
        self._pid = os.getpid()

    def acquire(self, memory_mb: int, most: int) -> _Child:
        with self._cond:
            if self._pid != os.getpid():  # forked: the children belong to the parent process
                self._idle, self._count, self._pid = [], 0, os.getpid()
            while True:
                for child in self._idle:
                    if child.memory_mb == memory_mb:
                        self._idle.remove(child)
                        return child
                if self._idle and self._count >= most:  # one with another memory limit: replace it
                    stale = self._idle.pop()
                    self._count -= 1
                    stale.kill()
                if self._count < most:
                    self._count += 1
                    break
                self._cond.wait()
        try:
            return _Child(memory_mb)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def release(self, child: _Child) -> None:
        with self._cond:
            self._idle.append(child)
            self._cond.notify()

    def discard(self, child: _Child) -> int | None:
        status = child.kill()
        with self._cond:
            self._count -= 1
            self._cond.notify()
        return status

    def close(self) -> None:
        with self._cond:
            if self._pid != os.getpid():  # forked: the idle children are the parent's to end
                self._idle, self._count, self._pid = [], 0, os.getpid()
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for child in idle:
            child.kill()


_pool = _Pool()
atexit.register(_pool.close)


def run(mode: str, source: str, context: dict, external: dict | None, now: datetime,
        limit: Limits | None = None) -> dict:
    """Run `source` in a child: the child's reply ({"ok": True, "value"/"data": ...} or
    {"ok": False, "error": {...}}), or ScriptLimitExceeded."""
    limit = limit or limits()
    try:
        body = pickle.dumps((mode, source, context, external or {}, now, limit.cpu_seconds),
                            protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        raise TypeError(f"the task data cannot be handed to the script sandbox ({err})") from None
    request = _HEADER.pack(len(body)) + body
    del body
    for attempt in (1, 2):
        child = _pool.acquire(limit.memory_mb, limit.workers)
        deadline = time.monotonic() + limit.wall_seconds
        try:
            reply = child.ask(request, deadline)
        except BrokenPipeError:  # it died while idle (killed from outside): once more, on a new one
            _pool.discard(child)
            if attempt == 2:
                raise SandboxUnavailable("the script sandbox process ended before it could run the script")
            continue
        except TimeoutError:
            _pool.discard(child)
            raise ScriptLimitExceeded("time", f"exceeded the {limit.wall_seconds:g} s time limit, so it was "
                                              f"stopped") from None
        except OverflowError:
            _pool.discard(child)
            raise _size_exceeded() from None
        except BaseException:
            _pool.discard(child)
            raise
        if reply is None:
            status = _pool.discard(child)
            if status == -signal.SIGXCPU or status == -signal.SIGKILL:
                raise ScriptLimitExceeded("cpu", f"exceeded the {limit.cpu_seconds} s CPU limit, so it was stopped")
            raise ScriptLimitExceeded("crash", f"ended its sandbox process (exit status {status}); it may have "
                                               f"exceeded the {limit.memory_mb} MB memory limit")
        result = decode(reply)
        child.jobs += 1
        if "limit" in result or child.jobs >= _JOBS_PER_CHILD:
            _pool.discard(child)  # after a MemoryError nothing in it is to be trusted to have room
        else:
            _pool.release(child)
        if result.get("limit") == "memory":
            raise ScriptLimitExceeded("memory", f"exceeded the {limit.memory_mb} MB memory limit, so it was stopped")
        if result.get("limit") == "size":
            raise _size_exceeded()
        return result
    raise AssertionError("unreachable")


def _size_exceeded() -> ScriptLimitExceeded:
    return ScriptLimitExceeded("size", f"produced more than {MAX_REPLY_BYTES // (1024 * 1024)} MB of data, so it "
                                       f"was stopped")


# --- the fast path ------------------------------------------------------------------------------

NOT_FAST = object()
_MAX_FAST_BITS = 10_000       # integers a guard admits (about 3,000 digits)
_MAX_FAST_LEN = 100_000       # strings and lists `+` may build
_MAX_FAST_NODES = 100_000     # values a fast script may leave in the data


class _Bail(Exception):
    """A guard met a value it does not admit: the pool decides."""


_NUMBERS = (int, float, bool)


def _number(value: Any) -> bool:
    kind = type(value)
    if kind is int:
        return value.bit_length() <= _MAX_FAST_BITS
    return kind is float or kind is bool


def _numbers(a: Any, b: Any) -> None:
    if not (_number(a) and _number(b)):
        raise _Bail()


def _add(a: Any, b: Any) -> Any:
    kind = type(a)
    if (kind is str or kind is list or kind is tuple) and type(b) is kind:
        if len(a) + len(b) > _MAX_FAST_LEN:
            raise _Bail()
        return a + b
    _numbers(a, b)
    return a + b


def _sub(a: Any, b: Any) -> Any:
    _numbers(a, b)
    return a - b


def _mul(a: Any, b: Any) -> Any:
    _numbers(a, b)
    if type(a) is int and type(b) is int and a.bit_length() + b.bit_length() > _MAX_FAST_BITS:
        raise _Bail()
    return a * b


def _div(a: Any, b: Any) -> Any:
    _numbers(a, b)
    return a / b


def _floordiv(a: Any, b: Any) -> Any:
    _numbers(a, b)
    return a // b


def _mod(a: Any, b: Any) -> Any:
    _numbers(a, b)  # never a string on the left: that is %-formatting, with widths of any size
    return a % b


_GUARDS = {"_add_": _add, "_sub_": _sub, "_mul_": _mul, "_div_": _div, "_floordiv_": _floordiv,
           "_mod_": _mod, "_NameError_": NameError}  # (the scope has no builtins: `except NameError` names it so)
_BINOPS = {ast.Add: "_add_", ast.Sub: "_sub_", ast.Mult: "_mul_", ast.Div: "_div_",
           ast.FloorDiv: "_floordiv_", ast.Mod: "_mod_"}
# Every node type an admitted expression may hold; anything else (calls, attributes,
# comprehensions, lambdas, f-strings, `**`, `<<`, starred items, `:=`) sends it to the pool.
_ALLOWED = frozenset({
    ast.Expression, ast.Name, ast.Load, ast.Constant, ast.Compare, ast.BoolOp, ast.And, ast.Or,
    ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.IfExp, ast.Subscript, ast.Slice, ast.Tuple,
    ast.List, ast.Dict, ast.Set, ast.BinOp, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
    ast.In, ast.NotIn, ast.Is, ast.IsNot, *_BINOPS,
})


class _Guarded(ast.NodeTransformer):
    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        guard = ast.Name(_BINOPS[type(node.op)], ast.Load())
        return ast.copy_location(ast.Call(guard, [node.left, node.right], []), node)


def _admitted(node: ast.AST) -> bool:
    for child in ast.walk(node):
        if type(child) not in _ALLOWED:
            return False
        if isinstance(child, ast.Dict) and None in child.keys:  # {**spread}
            return False
        if isinstance(child, ast.Compare) and any(isinstance(op, (ast.Is, ast.IsNot)) for op in child.ops):
            # Identity differs between the data here and its copy in a child: only `is None` and
            # the like mean the same in both.
            operands = [child.left, *child.comparators]
            if len(child.ops) != 1 or not any(isinstance(o, ast.Constant) and (o.value is None or type(o.value) is bool)
                                              for o in operands):
                return False
    return True


def _fast_statement(statement: ast.stmt) -> bool:
    """`name = <admitted expression>`, or `pass`."""
    return isinstance(statement, ast.Pass) or (
        isinstance(statement, ast.Assign) and len(statement.targets) == 1
        and isinstance(statement.targets[0], ast.Name) and _admitted(ast.Expression(statement.value)))


def _fast_try(statement: ast.Try) -> bool:
    """`try: <fast statements> except NameError: <fast statements>` (no `as`, `else`, `finally`),
    whose `try` part names nothing the pool's builtins define: a NameError here is then one there
    too (here the scope has no builtins; there a missing name may be a builtin, which would not
    raise). The usual form of "this field, if the form had it": `try: x = y except NameError: x = None`."""
    if statement.orelse or statement.finalbody or len(statement.handlers) != 1:
        return False
    handler = statement.handlers[0]
    if not (isinstance(handler.type, ast.Name) and handler.type.id == "NameError" and handler.name is None):
        return False
    if not all(_fast_statement(s) for s in (*statement.body, *handler.body)):
        return False
    builtins = _pool_builtins()
    return not any(isinstance(node, ast.Name) and node.id in builtins
                   for s in statement.body for node in ast.walk(s))


@lru_cache(maxsize=1)
def _pool_builtins() -> frozenset[str]:
    """The names a script in the pool finds without the task data (engine.scripts' builtins)."""
    from . import scripts
    return frozenset(scripts._make_builtins())


@lru_cache(maxsize=8192)
def _fast_code(source: str, mode: str) -> tuple[CodeType, tuple[str, ...]] | None:
    """Compiled guarded code and the names a script assigns, or None: not for the fast path."""
    try:
        if mode == "eval":
            tree = ast.parse(source.strip(), "<bpmn-fast>", "eval")
            if not _admitted(tree):
                return None
            assigned: tuple[str, ...] = ()
        else:
            tree = ast.parse(source, "<bpmn-fast>", "exec")
            names = []
            for statement in tree.body:
                if isinstance(statement, ast.Try):
                    if not _fast_try(statement):
                        return None
                    names += [s.targets[0].id for s in (*statement.body, *statement.handlers[0].body)
                              if isinstance(s, ast.Assign)]
                elif not _fast_statement(statement):
                    return None
                elif isinstance(statement, ast.Assign):
                    names.append(statement.targets[0].id)
            assigned = tuple(dict.fromkeys(names))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id.startswith("_"):
                return None
        for node in ast.walk(tree):
            if isinstance(node, ast.Try):
                node.handlers[0].type = ast.Name("_NameError_", ast.Load())
        tree = ast.fix_missing_locations(_Guarded().visit(tree))
        return compile(tree, "<bpmn-fast>", mode), assigned
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


_NO_BUILTINS: dict = {}


def _scope(context: dict, external: dict | None) -> dict:
    scope = {**external, **context} if external else dict(context)
    scope.update(_GUARDS)   # after the data: a key "_add_" in the data cannot replace a guard
    scope["__builtins__"] = _NO_BUILTINS
    return scope


def fast_eval(source: str, context: dict, external: dict | None = None) -> Any:
    """The expression's value, or NOT_FAST when the pool must evaluate it."""
    compiled = _fast_code(source, "eval") if type(source) is str else None
    if compiled is None:
        return NOT_FAST
    try:
        return eval(compiled[0], _scope(context, external))
    except Exception:  # a guard bailed, or an error the pool will word as it always does
        return NOT_FAST


def _bounded(value: Any, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise _Bail()
    kind = type(value)
    if kind is list or kind is tuple:
        for item in value:
            _bounded(item, budget)
    elif kind is dict:
        for item in value.values():
            _bounded(item, budget)


def fast_exec(source: str, context: dict, external: dict | None = None) -> dict | Any:
    """The values a script of `name = expression` lines (and `try:` blocks of them with `except
    NameError:`) assigns, not yet stored, or NOT_FAST."""
    if external:
        return NOT_FAST
    compiled = _fast_code(source, "exec") if type(source) is str else None
    if compiled is None:
        return NOT_FAST
    code, assigned = compiled
    scope = _scope(context, None)
    wanted = set(assigned)
    try:
        exec(code, scope)
        # In the order the names are in now (new ones as they were first bound, which after a
        # NameError may differ from the source's): the order the pool's run leaves them in.
        results = {name: value for name, value in scope.items() if name in wanted}
        budget = [_MAX_FAST_NODES]
        for value in results.values():
            _bounded(value, budget)
    except Exception:
        return NOT_FAST
    return results
