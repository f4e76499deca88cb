"""Cost of one script or expression: the old in-process path (`evaluate_here`/`execute_here`, what
every call did before the sandbox processes) against the public path now (the fast path, or a
round trip to a sandbox process). Median of 7 x 2,000 calls, in microseconds.

Usage: .venv/bin/python bench/sandbox.py
"""
from __future__ import annotations

import statistics
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine import sandbox  # noqa: E402
from engine.scripts import SandboxedEnvironment  # noqa: E402

DATA = {"amount": 50, "decision": "approve", "items": [1, 2, 3]}
CASES = [
    ("condition", "eval", "decision == 'approve' and amount >= 10"),
    ("script", "exec", "total = amount * 2"),
    ("call", "eval", "len(items) > 2"),
    ("loop", "exec", "total = sum(i * 2 for i in items)"),
]


def main() -> None:
    env = SandboxedEnvironment()
    env.evaluate("len(items)", dict(DATA))  # start a sandbox process before timing
    for label, mode, source in CASES:
        before = env.evaluate_here if mode == "eval" else env.execute_here
        now = env.evaluate if mode == "eval" else env.execute
        fast = (sandbox.fast_eval if mode == "eval" else sandbox.fast_exec)(source, dict(DATA))
        path = "sandbox process" if fast is sandbox.NOT_FAST else "fast path"

        def per_call(run) -> float:
            times = timeit.repeat(lambda: run(source, dict(DATA)), number=2000, repeat=7)
            return statistics.median(times) / 2000 * 1e6

        print(f"{label:9} {source:40} before {per_call(before):7.1f} µs   now {per_call(now):7.1f} µs ({path})")


if __name__ == "__main__":
    main()
