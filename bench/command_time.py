"""Benchmark: where one command's time goes on the database — each statement's time (through
SQLAlchemy's cursor events, the engine's prepared statements included: client and server side, the
round trip), the COMMIT's (the dialect's `do_commit`), and the rest (Python: SpiffWorkflow,
serialising, the driver), for contract reviews run in process on this tree (start + three
completes per review), with the wall and CPU time per command.

Usage: .venv/bin/python bench/command_time.py pg|sqlite [INSTANCES]
pg: on BPM_TEST_POSTGRES_URL's server (default the local `test` database's), in a throw-away
database made and dropped here.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]  # (bench/processes.py)
sys.path.insert(0, str(BENCH.parent))

from sqlalchemy import create_engine, event, text  # noqa: E402

import processes  # noqa: E402
from engine import access, credit, versions  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from engine.store import Store, migrate  # noqa: E402

sys.path.append(str(BENCH))
from pg_statements import CONTRACT, STEPS, T0  # noqa: E402


def _instance(runtime: Runtime) -> None:
    view = runtime.start("contract_review", "rep.wang", CONTRACT, at=T0)
    for element, user, data in STEPS:
        view = runtime.complete(next(t for t in view.tasks if t.element_id == element).id, user, data, at=T0)
    assert view.status == "completed", view.status


def measure(url: str, kind: str, instances: int) -> None:
    store = Store(url)
    migrate(store)
    with store.write() as session:
        access.seed_demo(session)
        credit.seed(session, processes.customers.DEMO_CREDIT_LIST, T0)
    versions.deploy(store, [BENCH.parent / "bpmn"], at=T0)
    runtime = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
    for _ in range(5):
        _instance(runtime)
    times: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    began_at: dict[int, float] = {}

    def before(conn, cursor, statement, *args) -> None:
        began_at[id(conn)] = time.perf_counter()

    def after(conn, cursor, statement, *args) -> None:
        key = " ".join(statement.split()[:4])[:70]
        times[key] += time.perf_counter() - began_at.pop(id(conn))
        counts[key] += 1

    event.listen(store.engine, "before_cursor_execute", before)
    event.listen(store.engine, "after_cursor_execute", after)
    committing = [0.0]
    do_commit = store.engine.dialect.do_commit

    def timed_commit(dbapi_connection) -> None:
        began = time.perf_counter()
        do_commit(dbapi_connection)
        committing[0] += time.perf_counter() - began

    store.engine.dialect.do_commit = timed_commit
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(instances):
        _instance(runtime)
    commands = instances * 4
    wall = (time.perf_counter() - wall) * 1000 / commands
    cpu = (time.process_time() - cpu) * 1000 / commands
    store.dispose()
    print(f"{kind}: {commands} commands; per command: wall {wall:.2f} ms, CPU {cpu:.2f} ms; "
          f"{sum(counts.values()) / commands:.2f} statements taking {sum(times.values()) * 1000 / commands:.3f} ms; "
          f"COMMIT {committing[0] * 1000 / commands:.3f} ms")
    for key in sorted(times, key=times.get, reverse=True)[:25]:
        print(f"{times[key] * 1000 / commands:8.3f} ms/command {counts[key] / commands:5.2f}/command "
              f"{times[key] * 1e6 / counts[key]:8.0f} µs each  {key}")


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    instances = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    if kind == "sqlite":
        measure(f"sqlite:///{tempfile.mkdtemp(prefix='bpm_command_time_')}/bench.sqlite3", kind, instances)
        return
    server = (os.environ.get("BPM_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test")
    admin = create_engine(server.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    name = f"bpm_command_time_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        measure(admin.url.set(database=name).render_as_string(hide_password=False), "postgresql", instances)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
