"""A live server for the browser tests: the web app on a temporary SQLite database with the demo
organisation and the company's processes deployed, served by werkzeug's threaded server in a daemon thread.

`python -m tests.browser_server` serves it in the foreground (to look at the pages by hand).
"""
from __future__ import annotations

import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[1]
TRANSLATIONS = ROOT / "web" / "translations"
VENDOR = ROOT / "web" / "static" / "vendor"
VIEWER = VENDOR / "bpmn-js" / "bpmn-navigated-viewer.production.min.js"


def compile_catalogs(out: Path) -> Path:
    """The .po files compiled into `out`, as `pybabel compile -d web/translations` does."""
    for po in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"):
        target = out / po.parent.parent.name / "LC_MESSAGES"
        target.mkdir(parents=True, exist_ok=True)
        with po.open("rb") as source, (target / "messages.mo").open("wb") as mo:
            write_mo(mo, read_po(source))
    return out


@dataclass
class LiveServer:
    url: str
    store: object
    runtime: object
    _server: object
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.store.dispose()


def start(folder: Path) -> LiveServer:
    """Migrate and seed a database in `folder`, deploy bpmn/, serve the app; returns when it answers."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    import processes
    from engine import access, versions
    from engine.runtime import Runtime
    from engine.store import Store, migrate
    from web import create_app

    store = Store(f"sqlite:///{folder / 'bpm.sqlite3'}")
    migrate(store)
    with store.write() as session:
        access.seed_demo(session)
        from engine import credit
        from processes.customers import DEMO_CREDIT_LIST
        credit.seed(session, DEMO_CREDIT_LIST, datetime(2026, 11, 1, tzinfo=timezone.utc))
    versions.deploy(store, [ROOT / "bpmn"], actor="design.yang")
    runtime = Runtime(store, processes.SERVICES, lookups=processes.LOOKUPS)

    catalogs = compile_catalogs(folder / "translations")
    app = create_app(runtime, {"SECRET_KEY": "browser-tests", "BABEL_TRANSLATION_DIRECTORIES": str(catalogs),
                               "VENDOR_DIR": str(VENDOR)})

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs) -> None:  # no line per request in the test output
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="bpm-live-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url + "/login", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return LiveServer(url, store, runtime, server, thread)


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        live = start(Path(tmp))
        print(f"serving {live.url} (demo users, password 'demo'); Ctrl-C to stop")
        try:
            live._thread.join()
        except KeyboardInterrupt:
            live.stop()
