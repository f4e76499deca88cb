"""The CLI starts cheaply: `import bpm.cli` and `bpm --help` load no engine module, and a read
such as `bpm tasks` loads the database layer but not the executor (SpiffWorkflow, jsonschema,
lxml) nor the web stack (Flask, Werkzeug). Each check runs in a fresh interpreter."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("flask", "werkzeug", "SpiffWorkflow", "jsonschema", "lxml", "sqlalchemy", "alembic", "engine.runtime",
         "engine.store", "sqlalchemy.dialects.postgresql")


def _loaded_after(code: str, env: dict | None = None) -> set[str]:
    """The modules of HEAVY that are in sys.modules after running `code`."""
    probe = (f"import sys\n{code}\nimport json\n"
             f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, env=env,
                          check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_imports_no_engine_web_or_database_module():
    assert _loaded_after("import bpm.cli") == set()


def test_help_builds_the_parser_without_importing_the_engine():
    code = ("import contextlib, io\nfrom bpm.cli import build_parser\n"
            "for argv in (['--help'], ['sla-report', '--as', 'x', '--by', 'process', '--help']):\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "        build_parser().parse_args(argv)\n"
            "    if argv == ['--help']:\n"
            "        import json; print(json.dumps(sorted(m for m in %r if m in sys.modules)))\n" % (HEAVY,))
    done = subprocess.run([sys.executable, "-c", "import sys\n" + code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert json.loads(done.stdout.splitlines()[0]) == []


def test_the_inbox_command_reads_without_the_executor_or_the_web(tmp_path):
    import os
    env = {**os.environ, "BPM_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}"}
    subprocess.run([sys.executable, "-m", "bpm", "init", "--demo"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    loaded = _loaded_after("from bpm.cli import main\nassert main(['tasks', '--as', 'rep.wang']) == 0", env)
    assert loaded == {"sqlalchemy", "engine.store"}


def test_errors_of_modules_imported_late_are_still_one_sentence(tmp_path, capsys, monkeypatch):
    """A refusal raised by an engine module the CLI imported lazily (deploy's DefinitionError,
    an EngineError from the executor) still prints one sentence and exits 1."""
    from bpm.cli import main
    monkeypatch.setenv("BPM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    assert main(["init"]) == 0
    bad = tmp_path / "bad.bpmn"
    bad.write_text("<not bpmn", encoding="utf-8")
    capsys.readouterr()
    assert main(["deploy", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.bpmn" in err and "Traceback" not in err and "unexpected" not in err
    assert main(["start", "no_such_process", "--as", "rep.wang"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bpm start: ") and "unexpected" not in err and len(err.strip().splitlines()) == 1


def test_a_postgresql_store_gives_the_partial_indexes_their_where():
    """The models name PostgreSQL's WHERE of a partial index only once a PostgreSQL engine is made
    (a SQLite process never imports that dialect): the DDL then has it, as the migrations do."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex

    from engine.store import Base, Store
    Store("postgresql://nobody@127.0.0.1:1/none")  # (no connection is opened)
    ddl = {ix.name: str(CreateIndex(ix).compile(dialect=postgresql.dialect()))
           for table in ("human_task", "log_entry") for ix in Base.metadata.tables[table].indexes}
    assert ddl["ix_human_task_open_order"].endswith("WHERE assignee IS NULL")
    assert ddl["ix_human_task_customer_open_order"].endswith("WHERE assignee IS NULL")
    assert ddl["ix_log_entry_completion"].endswith("WHERE command = 'complete'")
    assert "WHERE" not in ddl["ix_human_task_held_order"]
