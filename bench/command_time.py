"""Benchmark: where one command's time goes on the database — each statement's time (through
SQLAlchemy's cursor events, the engine's prepared statements included: client and server side, the
round trip), the COMMIT's, and the rest (Python: SpiffWorkflow, serialising, the driver), for
contract reviews run in process on this tree (start + three completes per review).

Usage: .venv/bin/python bench/command_time.py pg|sqlite [INSTANCES]   (pg: BPM_TEST_POSTGRES_URL or
the local server's `test` database; a throw-away database is made and dropped)
"""
import os, sys, time, uuid, tempfile
from pathlib import Path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from collections import defaultdict
from sqlalchemy import create_engine, text, event
import processes
from engine import access, credit, versions
from engine.runtime import Runtime
from engine.store import Store, migrate
sys.path.append(str(Path(__file__).resolve().parent))
from pg_statements import CONTRACT, STEPS, T0


def _instance(rt):
    view = rt.start("contract_review", "rep.wang", CONTRACT, at=T0)
    for element, user, data in STEPS:
        view = rt.complete(next(t for t in view.tasks if t.element_id == element).id, user, data, at=T0)
    assert view.status == "completed"

kind = sys.argv[1]
if kind == "pg":
    name = f"bpm_prof_{uuid.uuid4().hex[:8]}"
    admin = create_engine((os.environ.get("BPM_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test").replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as c: c.execute(text(f'CREATE DATABASE "{name}"'))
    url = str(admin.url.set(database=name).render_as_string(hide_password=False))
else:
    url = f"sqlite:///{tempfile.mkdtemp()}/p.sqlite3"
try:
    s = Store(url); migrate(s)
    with s.write() as session:
        access.seed_demo(session); credit.seed(session, processes.customers.DEMO_CREDIT_LIST, T0)
    versions.deploy(s, [Path(__file__).resolve().parent.parent / "bpmn"], at=T0)
    rt = Runtime(s, processes.SERVICES, lookups=processes.LOOKUPS)
    for _ in range(5): _instance(rt)
    times = defaultdict(float); counts = defaultdict(int); st = {}
    def before(conn, cur, stmt, params, ctx, many):
        st[id(conn)] = time.perf_counter()
    def after(conn, cur, stmt, params, ctx, many):
        k = " ".join(stmt.split()[:4])[:70]
        times[k] += time.perf_counter() - st.pop(id(conn)); counts[k] += 1
    event.listen(s.engine, "before_cursor_execute", before)
    event.listen(s.engine, "after_cursor_execute", after)
    ct = [0.0, 0]
    orig = s.engine.dialect.do_commit
    def do_commit(dbapi_conn):
        t = time.perf_counter(); orig(dbapi_conn); ct[0] += time.perf_counter() - t; ct[1] += 1
    s.engine.dialect.do_commit = do_commit
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    t = time.perf_counter(); t0 = time.process_time()
    for _ in range(n): _instance(rt)
    cmds = n * 4
    wall = (time.perf_counter()-t)*1000/cmds; cpu = (time.process_time()-t0)*1000/cmds
    print(kind, "ms/command wall", round(wall,2), "cpu", round(cpu,2))
    tot = sum(times.values())
    print("statements ms/command", round(tot*1000/cmds, 3), "count/command", round(sum(counts.values())/cmds,2))
    print("commit ms/command", round(ct[0]*1000/cmds, 3))
    for k in sorted(times, key=times.get, reverse=True)[:25]:
        print(f"{times[k]*1000/cmds:8.3f} ms/cmd {counts[k]/cmds:5.2f}/cmd {times[k]*1e6/counts[k]:8.0f} us each  {k}")
    s.dispose()
finally:
    if kind == "pg":
        with admin.connect() as c: c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
