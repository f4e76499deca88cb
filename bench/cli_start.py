"""Benchmark: how long a `bpm` command takes from the shell, start-up and imports included.

Each command runs `--runs` times as a fresh process (`python -m bpm ...` in the checkout's root,
as a developer runs it); the median and the fastest wall-clock time are reported, in seconds, and
the median CPU time (user + system, of the child process): on a machine shared with other work the
CPU time is the steadier figure, the wall-clock time is what a person waits. With
`--against REV` the same commands also run in an export of that git revision (`git archive`, into
a temp folder), interleaved run by run with this checkout's, so both sides see the same load.

Usage: .venv/bin/python bench/cli_start.py [--runs N] [--against REV] [--json]

The database is a fresh SQLite file made by `bpm init --demo` in a temp folder (BPM_DATABASE_URL),
with one contract_review started by rep.wang (its review waits in dm.zhou's inbox).
Two floors are measured too: `python -c pass` and `python -c "import sqlalchemy.orm"` (what any
command reading the database must load).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COMMANDS = [
    ("bpm --help", ["--help"]),
    ("bpm tasks --as rep.wang", ["tasks", "--as", "rep.wang"]),
    ("bpm tasks --as dm.zhou (one task)", ["tasks", "--as", "dm.zhou"]),
    ("bpm definitions", ["definitions"]),
    ("bpm incidents", ["incidents"]),
    ("bpm instances --as rep.wang", ["instances", "--as", "rep.wang"]),
    ("bpm instance ID --as rep.wang", ["instance", "{instance}", "--as", "rep.wang"]),
]
CONTRACT = {"customer": "C-A01", "amount": 200000, "quote_price": 100, "price": 92,
            "quote_payment_terms": "30% deposit", "payment_terms": "30% deposit",
            "quote_delivery_date": "2026-12-20", "delivery_date": "2026-12-20"}
FLOORS = [
    ("python -c pass", ["-c", "pass"]),
    ("python -c 'import sqlalchemy.orm'", ["-c", "import sqlalchemy.orm"]),
]


def _export(rev: str, into: Path) -> Path:
    """The tree of `rev` unpacked under `into` (no .git, no vendor assets: the CLI needs neither)."""
    archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _once(root: Path, argv: list[str], env: dict, module: bool = True) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds) of one run of the command as a fresh process."""
    command = [sys.executable, *(["-m", "bpm"] if module else []), *argv]
    cpu, began = _cpu(), time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took, cpu = time.perf_counter() - began, _cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} (in {root}) failed: {done.stderr.decode()[-500:]}")
    return took, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--against", metavar="REV", help="also time this git revision, side by side")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bpm_cli_start_"))
    env = {**os.environ, "BPM_DATABASE_URL": f"sqlite:///{work / 'cli.sqlite3'}", "PYTHONDONTWRITEBYTECODE": "",
           "BPM_TIMEZONE": os.environ.get("BPM_TIMEZONE", "Asia/Shanghai")}
    subprocess.run([sys.executable, "-m", "bpm", "init", "--demo"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    started = subprocess.run([sys.executable, "-m", "bpm", "start", "contract_review", "--as", "rep.wang",
                              "--data", json.dumps(CONTRACT)],
                             cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    instance = started.stdout.strip().splitlines()[-1]
    sides = {"this checkout": ROOT}
    if args.against:
        before = work / "before"
        before.mkdir()
        sides[f"at {args.against}"] = _export(args.against, before)

    rows = []
    jobs = [(name, argv, True) for name, argv in COMMANDS] + [(name, argv, False) for name, argv in FLOORS]
    for name, argv, module in jobs:
        argv = [a.replace("{instance}", instance) for a in argv]
        times: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
        for side, root in sides.items():  # one untimed run each: bytecode compiled, files cached
            _once(root, argv, env, module)
        for _ in range(args.runs):
            for side, root in sides.items():
                times[side].append(_once(root, argv, env, module))
        for side in sides if module else ["this checkout"]:
            wall, cpu = [t[0] for t in times[side]], [t[1] for t in times[side]]
            rows.append({"command": name, "side": side, "median_s": round(statistics.median(wall), 3),
                         "fastest_s": round(min(wall), 3), "cpu_median_s": round(statistics.median(cpu), 3),
                         "runs": args.runs})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'command':<40} {'side':<22} {'median s':>9} {'fastest s':>10} {'CPU median s':>13}")
    for r in rows:
        print(f"{r['command']:<40} {r['side']:<22} {r['median_s']:>9.3f} {r['fastest_s']:>10.3f}"
              f" {r['cpu_median_s']:>13.3f}")


if __name__ == "__main__":
    main()
