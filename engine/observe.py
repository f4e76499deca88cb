"""Who is told how long each command took: listeners registered by the process that serves
metrics (web.ops); the engine itself imports no metrics library."""
from __future__ import annotations

import time
from functools import wraps
from typing import Callable

_listeners: list[Callable[[str, float, bool], None]] = []


def on_command(listener: Callable[[str, float, bool], None]) -> None:
    """Call `listener(command, seconds, succeeded)` after each command of this process."""
    if listener not in _listeners:
        _listeners.append(listener)


def _measure(command: str, call):
    if not _listeners:
        return call()
    started, ok = time.perf_counter(), False
    try:
        result = call()
        ok = True
        return result
    finally:
        seconds = time.perf_counter() - started
        for listener in _listeners:
            listener(command, seconds, ok)


def timed(method):
    """Decorates Runtime._unit_of_work(self, command, ...): its duration goes to the listeners."""
    @wraps(method)
    def run(self, command: str, *args, **kwargs):
        return _measure(command, lambda: method(self, command, *args, **kwargs))
    return run


def named(command: str):
    """Decorates a method that is one command of its own (Runtime._start): timed as `command`."""
    def decorate(method):
        @wraps(method)
        def run(*args, **kwargs):
            return _measure(command, lambda: method(*args, **kwargs))
        return run
    return decorate
