"""Benchmark: what a request id (exactly once) costs — contract_review starts without an id, with
a fresh id each, and sent again with an id already answered (a replay), interleaved in rounds;
the median round is reported, in ms per start.

Usage: .venv/bin/python bench/once.py [--postgres URL] [--starts N] [--rounds R]

SQLite by default (a fresh file in a temp dir); with --postgres a throw-away database is made on
that server and dropped at the end.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import processes  # noqa: E402
from engine import access, versions  # noqa: E402
from engine.runtime import Runtime  # noqa: E402
from engine.store import Store, migrate  # noqa: E402

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
CONTRACT = {"customer": "C-B01", "amount": 260000, "quote_price": 520, "price": 520,
            "payment_terms": "30% 定金，发货前付清", "delivery_date": "2027-01-15",
            "quote_payment_terms": "30% 定金，发货前付清", "quote_delivery_date": "2027-01-15",
            "lines": [{"product": "芝麻灰花岗岩板", "spec": "600x600x20", "quantity": 500, "unit_price": 520}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--starts", type=int, default=100, help="starts per kind and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    admin = None
    if args.postgres:
        from sqlalchemy import create_engine, text
        name = f"bpm_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.postgres.replace("postgresql://", "postgresql+psycopg://", 1),
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/once.sqlite3"
    store = Store(url)
    try:
        migrate(store)
        with store.write() as session:
            access.seed_demo(session)
            from engine import credit
            credit.seed(session, processes.customers.DEMO_CREDIT_LIST, T0)  # the customer lookup reads it
        versions.deploy(store, [ROOT / "bpmn"], at=T0)
        rt = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)
        rt.start("contract_review", "rep.wang", CONTRACT, at=T0)  # warm the caches
        ms: dict[str, list[float]] = {"plain": [], "keyed": [], "replay": []}
        for r in range(args.rounds):
            for kind in ms:
                t = time.perf_counter()
                for i in range(args.starts):
                    key = None if kind == "plain" else f"{r}-{i}"  # replay: the keys keyed just used
                    rt.start("contract_review", "rep.wang", CONTRACT, at=T0, request_id=key)
                ms[kind].append((time.perf_counter() - t) / args.starts * 1000)
        print(f"{store.engine.dialect.name}, {args.rounds} rounds of {args.starts} starts each (median ms per start):")
        for kind, values in ms.items():
            print(f"  {kind:6s} {statistics.median(values):6.2f}")
    finally:
        store.dispose()
        if admin is not None:
            from sqlalchemy import text
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
