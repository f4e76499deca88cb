"""Password guessers against other users' page times: the sign-in rate limit, measured.

One real server (waitress, 8 threads, as `bpm serve`) in a subprocess on a free port, on a fresh
SQLite file with the demo organisation. A signed-in user (dm.zhou) loads the inbox page `GET /`
R times one after another: first alone, then while G threads (default 16) post wrong passwords to
`/login` as fast as the server answers (half of them for dm.zhou, half for made-up names), each
thread with its own session and CSRF token, all from 127.0.0.1. Run twice: with the sign-in limits
as shipped, and with them raised out of reach (BPM_SIGNIN_LIMIT_USER/ADDRESS = 1000000 per minute),
which is the code before the limit. Reports the page's p50/p95/max, and the guessers' answers.

Usage: .venv/bin/python bench/signin.py [--guessers G] [--requests R] [--json]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One kept-alive connection with a cookie jar of one cookie (the session)."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookie = ""

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, str]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        reply = self.conn.getresponse()
        text = reply.read().decode("utf-8", "replace")
        cookie = reply.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return reply.status, text

    def csrf(self) -> str:
        _, page = self.request("GET", "/login")
        return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def serve(port: int, database: str, limits: str | None) -> subprocess.Popen:
    env = {**os.environ, "BPM_DATABASE_URL": f"sqlite:///{database}", "BPM_SECRET_KEY": "bench"}
    if limits:
        env["BPM_SIGNIN_LIMIT_USER"] = env["BPM_SIGNIN_LIMIT_ADDRESS"] = limits
    subprocess.run([PYTHON, "-m", "bpm", "init", "--demo"], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    server = subprocess.Popen([PYTHON, "-m", "bpm", "serve", "--port", str(port)], env=env, cwd=ROOT,
                              stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def signed_in(port: int) -> Browser:
    """dm.zhou, signed in before any guessing (afterwards his address is refused, as it should be)."""
    me = Browser(port)
    token = me.csrf()
    status, _ = me.request("POST", "/login", {"csrf_token": token, "username": "dm.zhou", "password": "demo"})
    assert status == 302, status
    return me


def page_times(me: Browser, requests: int) -> list[float]:
    for _ in range(10):  # warm-up
        me.request("GET", "/")
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        status, _ = me.request("GET", "/")
        times.append(time.perf_counter() - t0)
        assert status == 200, status
    return times


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1)}


def run(limits: str | None, guessers: int, requests: int) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        server = serve(port, str(Path(folder) / "bench.sqlite3"), limits)
        try:
            me = signed_in(port)
            alone = page_times(me, requests)
            # The guessers run in their own process, so they do not share this one's GIL with
            # the measuring client (only the server's CPU, as real guessers would).
            guessers_process = subprocess.Popen([PYTHON, __file__, "--guess", str(port), "--guessers",
                                                 str(guessers)], stdout=subprocess.PIPE, text=True)
            time.sleep(2.0)
            under_attack = page_times(me, requests)
            guessers_process.terminate()
            answers = json.loads(guessers_process.communicate(timeout=60)[0] or "{}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"limits": limits or "as shipped (10 per 15 minutes per user, 30 per address)",
            "page_alone": summary(alone), "page_with_guessers": summary(under_attack),
            "guesser_answers": dict(sorted(answers.items()))}


def guess(port: int, guessers: int) -> None:
    """G threads posting wrong passwords until terminated; prints the answers' statuses as JSON."""
    import signal
    stop = threading.Event()
    answers: Counter = Counter()
    lock = threading.Lock()

    def one(n: int) -> None:
        b = Browser(port)
        token = b.csrf()
        i = 0
        while not stop.is_set():
            name = "dm.zhou" if n % 2 == 0 else f"guess{n}-{i}"
            try:
                status, _ = b.request("POST", "/login", {"csrf_token": token, "username": name,
                                                          "password": f"wrong{i}"})
            except OSError:
                return
            with lock:
                answers[status] += 1
            i += 1
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(guessers)]
    for t in threads:
        t.start()
    while not stop.is_set():
        stop.wait(0.2)
    for t in threads:
        t.join(timeout=10)
    print(json.dumps(dict(answers)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guessers", type=int, default=16)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--guess", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.guess:
        return guess(args.guess, args.guessers)
    results = [run(None, args.guessers, args.requests),
               run("1000000 per minute", args.guessers, args.requests)]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"limits: {r['limits']}")
        print(f"  GET / alone:                {r['page_alone']}")
        print(f"  GET / with {args.guessers} guessers:     {r['page_with_guessers']}")
        print(f"  guessers' answers:          {r['guesser_answers']}")


if __name__ == "__main__":
    main()
