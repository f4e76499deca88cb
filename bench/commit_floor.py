"""Benchmark: the floor under a command's transaction — a bare `BEGIN; INSERT ×k; COMMIT` loop on
PostgreSQL (psycopg, no SQLAlchemy; `synchronous_commit` on, as the engine runs, and off, for
comparison only) and on SQLite (WAL, synchronous=NORMAL, as engine.store sets it), and one
`SELECT 1` round trip on PostgreSQL. Tells how much of a command's time the database's commit
(the WAL flush) and its round trips take, whatever the engine does.

Usage: .venv/bin/python bench/commit_floor.py [--postgres URL] [--n 300]
A table `bpm_commit_floor_<random>` is made in the PostgreSQL database and dropped at the end.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("BPM_TEST_POSTGRES_URL"), metavar="URL")
    parser.add_argument("--n", type=int, default=300, help="transactions per measurement")
    args = parser.parse_args()
    n = args.n
    if args.postgres:
        import psycopg
        table = f"bpm_commit_floor_{uuid.uuid4().hex[:8]}"
        c = psycopg.connect(args.postgres)
        try:
            print("PostgreSQL", c.execute("SHOW server_version").fetchone()[0], "synchronous_commit",
                  c.execute("SHOW synchronous_commit").fetchone()[0], "fsync", c.execute("SHOW fsync").fetchone()[0])
            c.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, v text)")
            c.commit()
            began = time.perf_counter()
            for _ in range(n):
                c.execute("SELECT 1").fetchone()
            c.commit()
            print(f"  SELECT 1 round trip: {(time.perf_counter() - began) * 1000 / n:.3f} ms")
            for sync in ("on", "off"):
                c.execute(f"SET synchronous_commit = {sync}")
                c.commit()
                for k in (1, 11):
                    began = time.perf_counter()
                    for _ in range(n):
                        for _ in range(k):
                            c.execute(f"INSERT INTO {table} (v) VALUES (%s)", ("x" * 100,))
                        c.commit()
                    print(f"  synchronous_commit={sync}: {k:>2} INSERT + COMMIT: "
                          f"{(time.perf_counter() - began) * 1000 / n:.3f} ms")
        finally:
            c.rollback()
            c.execute(f"DROP TABLE IF EXISTS {table}")
            c.commit()
            c.close()
    with tempfile.TemporaryDirectory() as folder:
        s = sqlite3.connect(os.path.join(folder, "floor.sqlite3"), isolation_level=None)
        s.execute("PRAGMA journal_mode=WAL")
        s.execute("PRAGMA synchronous=NORMAL")
        s.execute("CREATE TABLE p (id INTEGER PRIMARY KEY, v TEXT)")
        print("SQLite", sqlite3.sqlite_version, "WAL, synchronous=NORMAL")
        for k in (1, 11):
            began = time.perf_counter()
            for _ in range(n):
                s.execute("BEGIN IMMEDIATE")
                for _ in range(k):
                    s.execute("INSERT INTO p (v) VALUES (?)", ("x" * 100,))
                s.execute("COMMIT")
            print(f"  {k:>2} INSERT + COMMIT: {(time.perf_counter() - began) * 1000 / n:.3f} ms")
        s.close()


if __name__ == "__main__":
    main()
