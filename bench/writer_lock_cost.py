"""What SQLite's writer lock file (engine.store.WriterQueue, `<database>-writer.lock`) costs an
uncontended write transaction: N one-statement write transactions on a fresh SQLite file with
and without the lock file, in alternating batches, one thread; µs per transaction, median of
the batches.

Usage: .venv/bin/python bench/writer_lock_cost.py [--transactions 1000] [--batches 6]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from engine.store import Store, migrate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='bpm_lock_cost_')}/cost.sqlite3")
    migrate(store)
    queue = store.writers
    assert queue is not None, "BPM_SQLITE_WRITER_QUEUE=0 is set"
    path = queue.lock_path
    timings: dict[bool, list[float]] = {True: [], False: []}
    for batch in range(args.batches):
        for on in (True, False) if batch % 2 == 0 else (False, True):
            queue.lock_path = path if on else None
            began = time.perf_counter()
            for _ in range(args.transactions):
                with store.transaction() as conn:
                    conn.execute(text("UPDATE setting SET value = '1' WHERE key = 'none'"))
            timings[on].append((time.perf_counter() - began) / args.transactions * 1e6)
    for on in (False, True):
        print(f"{'with' if on else 'without':7} the lock file: {statistics.median(timings[on]):6.1f} µs per write "
              f"transaction (batches: {', '.join(f'{x:.0f}' for x in timings[on])})")


if __name__ == "__main__":
    main()
