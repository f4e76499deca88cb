"""The `bpm` command line: the public names of CLI.md, with `--json`, exit codes and one-line errors.

Exit status: 0 done; 1 refused or failed, one sentence on stderr; 2 bad usage (argparse).

Start-up is kept cheap: parsing the arguments imports nothing of the engine, and each engine
module is imported when a command first uses it (`_Module`), so `bpm --help` loads no database
layer and `bpm tasks` no SpiffWorkflow, forms or web stack (tests/test_cli_imports.py).
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from engine import clock  # (the standard library only)
from engine.errors import EngineError  # (no imports at all)

if TYPE_CHECKING:
    from engine.runtime import Runtime
    from engine.store import Store

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _Module:
    """An engine module imported when one of its names is first used, not when the CLI starts:
    the engine's modules pull in SQLAlchemy, SpiffWorkflow, jsonschema and lxml (~0.5 s), which
    `bpm --help` needs none of and `bpm tasks` only the first of."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


access, credit, customers, foreign, inbox, instances, migration, reports, timers, versions = (
    _Module(f"engine.{name}") for name in ("access", "credit", "customers", "foreign", "inbox", "instances",
                                           "migration", "reports", "timers", "versions"))


def migrate(store: Store) -> None:
    """engine.store.migrate, imported when called (Alembic is only needed then)."""
    from engine.store import migrate as upgrade
    upgrade(store)


def _raised(exc: BaseException, module: str, name: str) -> bool:
    """`exc` is a `module.name`. A module never imported cannot have raised its exception, so
    one not yet in sys.modules is not imported just to say no."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(exc, getattr(loaded, name))


class Refused(Exception):
    """A bad input caught by the command line itself."""


# --- helpers ---------------------------------------------------------------------------------

def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    source = "--data"
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise Refused(f"cannot read {what} file {path}: {exc.strerror}") from None
        source = str(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(f"{source} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _correlation(pairs: list[str] | None) -> dict[str, str]:
    result = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise Refused(f"--correlation {pair!r} is not KEY=VALUE")
        result[key] = value
    return result


def _store() -> Store:
    from engine.store import Store
    return Store()


def _runtime(store: Store) -> Runtime:
    from engine.runtime import Runtime
    from processes import LOOKUPS, SERVICES
    return Runtime(store, SERVICES, lookups=LOOKUPS)


def _script_engine(store: Store):
    """The script engine of a runtime on `store` (a process of `bpm verify --all --jobs N`)."""
    return _runtime(store).script_engine


def _views(store: Store):
    from engine.views import Views
    return Views(store, _runtime(store).script_engine)


def _print(args, data: Any, text: Callable[[], str]) -> None:
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        out = text()
        if out:
            print(out)


def _t(value) -> str:
    """A time as the pages write it: in the deployment's zone (BPM_TIMEZONE), engine.clock.local_text.
    --json keeps ISO 8601 instants."""
    return clock.local_text(value) if value else "-"


def _task_line(t: dict) -> str:
    holder = t["assignee"] or f"(role {t['role']})"
    due = f" due {_t(t['due'])}" if t["due"] else ""
    return f"{t['id']}  {t['process_id']}  {t['name']}  {holder}{due}"


# --- commands --------------------------------------------------------------------------------

def cmd_init(args) -> None:
    store = _store()
    migrate(store)
    with store.write() as session:
        access.seed_roles(session)
        added = access.seed_demo(session) if args.demo else 0
        cards = listed = 0
        if args.demo:
            from processes.customers import DEMO_CARDS, DEMO_CREDIT_LIST
            cards = customers.seed_cards(session, DEMO_CARDS, clock.now())
            listed = credit.seed(session, DEMO_CREDIT_LIST, clock.now())
            access.set_demo_mode(session, True)  # the sign-in page lists the demo users
    folders = [p for p in (PROJECT_ROOT / "bpmn",) if any(p.glob("*.bpmn"))]
    deployed = versions.deploy(store, folders) if folders else []  # as the operator
    result = {"database": store.url.split("@")[-1], "demo_users_added": added, "demo_cards_added": cards,
              "demo_credit_list_added": listed, "deployed": [d.as_json() for d in deployed]}
    users = access.demo_users() if args.demo else []
    if args.demo:
        result["demo_users"] = [{k: u[k] for k in ("username", "name", "role", "office")} for u in users]
    _print(args, result, lambda: "\n".join(
        [f"database ready: {result['database']}"]
        + ([f"demo organisation: {added} users added",
            f"demo customer archive: {cards} cards added",
            f"demo credit list: {listed} customers added"] if args.demo else [])
        + [f"{d.process_id} v{d.version} {d.status}"
           + (f" (same content as version {d.same_as})" if d.same_as is not None else "") for d in deployed]
        + (_demo_sign_in(users) if args.demo else [])))
    _print_notices(args, "init", deployed)


def _columns(text: str) -> int:
    """How many terminal columns `text` takes (a Chinese character takes two)."""
    import unicodedata
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _demo_sign_in(users: list[dict]) -> list[str]:
    """Whom to sign in as: each demo user with their name, role and office, and the password."""
    rows = [(u["username"], u["name"], f"{u['role_zh']} {u['role_en']}", u["office_name"]) for u in users]
    widths = [max(_columns(r[i]) for r in rows) for i in range(3)]
    return ([f"demo sign-in: every demo user's password is '{access.DEMO_PASSWORD}'"]
            + ["  " + "  ".join(cell + " " * (widths[i] - _columns(cell)) for i, cell in enumerate(r[:3]))
               + "  " + r[3] for r in rows])


def cmd_deploy(args) -> None:
    from engine.definitions import DefinitionError
    store = _store()
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise Refused(f"{missing[0]}: no such file or folder")
    from engine.modeltests import CasesFailed
    try:
        if args.executable or args.lane_role:
            lane_roles = {}
            for pair in args.lane_role:
                lane, _, role = pair.partition("=")
                if not lane.strip() or not role.strip():
                    raise Refused(f"--lane-role {pair}: write LANE=ROLE, a lane's id or name and a role")
                lane_roles[lane.strip()] = role.strip()
            try:
                with foreign.Marking(args.paths, args.executable, lane_roles) as marked:
                    try:
                        deployed = versions.deploy(store, marked.paths, actor=args.actor,
                                                   require_tests=args.require_tests)
                    except DefinitionError as exc:
                        raise DefinitionError([marked.original(p) for p in exc.problems]) from None
            except ValueError as exc:
                raise Refused(str(exc)) from None
        else:
            deployed = versions.deploy(store, args.paths, actor=args.actor, require_tests=args.require_tests)
    except CasesFailed as exc:
        for process_id, results in sorted(exc.failed.items()):
            for result in results:
                for problem in result.problems:
                    print(f"bpm deploy: {process_id}: FAIL {result.name}: {problem}", file=sys.stderr)
        raise
    _print(args, [d.as_json() for d in deployed],
           lambda: "\n".join(d.sentence() for d in deployed))
    _print_notices(args, "deploy", deployed)


def cmd_lint(args) -> None:
    """Every finding on stdout, one a line (FILE:LINE: ELEMENT_ID: [rule] message (fix: …)); exit
    1 if deploy would refuse the files (an error), 0 if there are only warnings or none."""
    from engine import lint
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise Refused(f"{missing[0]}: no such file or folder")
    findings = lint.lint(_store(), args.paths, actor=args.actor)
    _print(args, [f.as_json() for f in findings], lambda: "\n".join(
        f"{f.file}:{f.line or 0}: {f.element_id or '-'}: [{f.rule}] {f.message}"
        + (f" (fix: {f.fix})" if f.fix else "") for f in findings))
    if any(f.severity == "error" for f in findings):
        raise LintFailed()


class LintFailed(Exception):
    """`bpm lint` found an error: the findings are printed already; exit 1."""


def _print_notices(args, command: str, deployed) -> None:
    """Notices (formless user tasks) go to stderr, so stdout stays one line per process."""
    if not args.json:
        for d in deployed:
            for notice in d.notices:
                print(f"bpm {command}: {d.process_id}: notice: {notice}", file=sys.stderr)


def cmd_migrate(args) -> None:
    """The running instances of PROCESS_ID on version --from moved to --to, those that can (engine.migration);
    with --dry-run only whether each can move, where its tokens land, or why not."""
    store = _store()
    if args.dry_run:
        moves = migration.plan(store, args.process_id, args.from_version, args.to_version, actor=args.actor)
    else:
        moves = migration.migrate(store, args.process_id, args.from_version, args.to_version, actor=args.actor)

    def line(m) -> str:
        done = ("moved" if m.moved else "not moved") if not args.dry_run else ("yes" if m.can_move else "no")
        return "  ".join([m.instance_id, done, ", ".join(m.tokens_to) or "-", m.reason or "-"])

    def text() -> str:
        head = "instance  can move  tokens to  reason" if args.dry_run else "instance  outcome  tokens at  reason"
        verb = "could move" if args.dry_run else "moved"
        count = sum(1 for m in moves if (m.can_move if args.dry_run else m.moved))
        return "\n".join([head, *(line(m) for m in moves),
                          f"{count} of {len(moves)} running instance(s) of {args.process_id} v{args.from_version} "
                          f"{verb} to v{args.to_version}"])
    _print(args, [m.as_json() for m in moves], text)


def cmd_test_model(args) -> None:
    """The model tests of a deployed process (engine.modeltests): a line per case, exit 1 if any fails."""
    import time
    from engine import modeltests
    store = _store()
    began = time.perf_counter()
    results = modeltests.run_deployed(store, args.process_id, args.version, actor=args.actor)
    seconds = time.perf_counter() - began
    failed = [r for r in results if not r.passed]
    _print(args, {"process_id": args.process_id, "version": args.version, "passed": not failed,
                  "seconds": round(seconds, 3), "results": [r.as_json() for r in results]},
           lambda: "\n".join(
               [line for r in results for line in
                [f"{'PASS' if r.passed else 'FAIL'}  {r.name}", *(f"      {p}" for p in r.problems)]]
               + [f"{args.process_id}: {len(results) - len(failed)} of {len(results)} case(s) passed "
                  f"in {seconds:.2f} s" if results else f"{args.process_id} has no model tests "
                  f"(write them in forms/{args.process_id}{modeltests.CASES_SUFFIX})"]))
    if failed:
        raise Refused(f"{len(failed)} of {len(results)} case(s) failed: " + ", ".join(repr(r.name) for r in failed))


def cmd_definitions(args) -> None:
    rows = versions.listing(_store())
    _print(args, rows, lambda: "\n".join(
        f"{r['process_id']}  v{r['version']}  {r['name']}  {_t(r['deployed_at'])}" for r in rows))


def cmd_start(args) -> None:
    data = _json_arg(args.data, "data")
    view = _runtime(_store()).start(args.process_id, args.user, data, request_id=args.request_id)
    _print(args, {"id": view.id, "process_id": view.process_id, "version": view.version,
                  "status": view.status, "tasks": [t.as_json() for t in view.tasks]},
           lambda: view.id)


def cmd_tasks(args) -> None:
    store = _store()
    with store.read() as session:
        who = _user(session, args.user)
        rows = [t.as_json() for t in inbox.tasks_for(session, who)]
    _print(args, rows, lambda: "\n".join(_task_line(t) for t in rows) or "no tasks")


def cmd_instances(args) -> None:
    """The instances USER may see (took part in; started; for auditors all), as the instances page
    finds them; times in the deployment's zone (BPM_TIMEZONE)."""
    given = {"scope": args.scope, "q": args.q, "process": args.process, "business_key": args.business_key,
             "customer": args.customer, "actor": args.actor, "started_from": args.started_from,
             "started_to": args.started_to, "status": args.status, "overdue": "1" if args.overdue else None,
             "breach": "1" if args.breach else None, "incident": "1" if args.incident else None,
             "sort": args.sort, "desc": {True: "1", False: "0"}.get(args.desc), "page": args.page,
             "per_page": args.per_page, "after": args.after, "before": args.before}
    query = instances.InstanceQuery.from_args({k: str(v) for k, v in given.items() if v is not None})
    zone = instances.zone()
    with _store().read() as session:
        page = instances.search(session, _user(session, args.user), query, clock.now(), zone)

    def shown(value) -> str:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    def line(r) -> str:
        steps = "; ".join(f"{s.name.split(' / ')[-1]} ({s.assignee or 'role ' + (s.role or '?')})" for s in r.steps)
        flags = [f for f in ("overdue", "breach", "incident") if getattr(r, f)]
        return "  ".join([r.id, f"{r.process_id} v{r.version}", r.business_key or "-", r.customer or "-", r.status,
                          r.initiator, shown(r.started), steps or "-"] + ([",".join(flags)] if flags else []))

    def text() -> str:
        count = f"more than {page.total}" if page.more else str(page.total)
        footer = f"{count} instance(s) ({page.scope}), page {page.page}" + (
            f"; next page: --page {page.page + 1} --after {page.next_after}" if page.next_after else "")
        return "\n".join([line(r) for r in page.rows] + [footer])
    _print(args, page.as_json(), text)


def cmd_claim(args) -> None:
    view = _runtime(_store()).claim(args.task_id, args.user)
    _print(args, view.as_json(), lambda: f"{view.id} claimed by {view.assignee}")


def cmd_unclaim(args) -> None:
    view = _runtime(_store()).unclaim(args.task_id, args.user)
    _print(args, view.as_json(), lambda: f"{view.id} given back to role {view.role}")


def cmd_hand_back(args) -> None:
    view = _runtime(_store()).hand_back(args.task_id, args.user)
    _print(args, view.as_json(), lambda: f"{view.id} handed back to {view.assignee}")


def cmd_reply(args) -> None:
    kind = "in_progress" if args.in_progress else "cannot_finish"
    view = _runtime(_store()).reply(args.task_id, args.user, kind, expected_by=args.expected, reason=args.reason)
    due = _t(view.due) if view.due else "none"
    _print(args, view.as_json(), lambda: f"{view.id} reply recorded ({kind}); due {due}")


def cmd_draft(args) -> None:
    runtime = _runtime(_store())
    if args.data is not None:
        runtime.save_draft(args.task_id, args.user, _json_arg(args.data, "data"))
    draft = runtime.draft(args.task_id, args.user)
    _print(args, draft, lambda: json.dumps(draft, ensure_ascii=False) if draft is not None else "no draft")


def cmd_complete(args) -> None:
    data = _json_arg(args.data, "data")
    view = _runtime(_store()).complete(args.task_id, args.user, data, request_id=args.request_id)
    _print(args, view.as_json(), lambda: "\n".join(
        [f"instance {view.id} {view.status}"] + [_task_line(t.as_json()) for t in view.tasks]))


def cmd_message(args) -> None:
    data = _json_arg(args.data, "data")
    ids = _runtime(_store()).message(args.name, data, _correlation(args.correlation), actor=args.actor,
                                     request_id=args.request_id)
    _print(args, {"delivered_to": ids}, lambda: "delivered to " + ", ".join(ids))


def cmd_worker(args) -> None:
    runtime = _runtime(_store())
    now = clock.parse_instant(args.now, "--now") if args.now else None
    if args.once:
        result = timers.run_once(runtime, now)
        _print(args, result.as_json(), lambda: "\n".join(
            [f"fired timers of {len(result.fired)} instance(s)"]
            + [f"started {i} (timer start event)" for i in result.started]
            + [f"failed {i}: {m}" for i, m in result.failed.items()]))
        if result.failed:
            raise Refused(f"{len(result.failed)} timer(s) failed; see `bpm incidents`")
        return
    if now is not None:
        raise Refused("--now only makes sense with --once")
    how = (f"a pass every {args.interval} s" if runtime.store.is_sqlite
           else "woken by LISTEN bpm_timers, a pass at least every 5 s")
    print(f"timer worker running ({how}); Ctrl-C stops it", file=sys.stderr, flush=True)
    import signal

    def _stop(*_) -> None:  # SIGTERM (from `bpm serve`, systemd) ends it as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        timers.run_forever(runtime, args.interval)
    except KeyboardInterrupt:
        pass


def cmd_instance(args) -> None:
    view = _runtime(_store()).instance(args.instance_id, viewer=args.user)
    _print(args, view.as_json(), lambda: "\n".join(
        [f"instance {view.id}", f"process {view.process_id} v{view.version}", f"status {view.status}",
         f"data {json.dumps(view.data, ensure_ascii=False)}"]
        + [f"task {_task_line(t.as_json())}" for t in view.tasks]
        + [f"incident {i['id']}: {i['message']}" for i in view.incidents]))


def cmd_customer(args) -> None:
    """A customer's archive card for `--as USER`, if the rules let them read it; the read is recorded."""
    card = customers.Archive(_store()).card(args.customer_id, args.user, door="cli")
    _print(args, card, lambda: "\n".join(
        [f"customer {card['id']}  {card['name']}", f"address {card['address'] or '-'}",
         f"phones {', '.join(card['phones']) or '-'}"]
        + [f"contact {c['name']}  {c['title']}  {c['phone']}" for c in card["contacts"]]
        + [f"characteristics {card['characteristics'] or '-'}", f"family {card['family'] or '-'}",
           f"credit level {card['credit_level'] or 'not rated'}", f"notes {card['notes'] or '-'}",
           f"served by {card['rep'] or '-'}", f"revision {card['revision']} ({card['updated_by']}, {_t(card['updated_at'])})",
           f"read as {card['basis']}" + (f" until {_t(card['grant']['valid_until'])}" if card["grant"] else "")]
        + [f"change {h['revision']}  {_t(h['at'])}  {h['by']}  {', '.join(sorted(h['changes']))}" for h in card["history"]]))


def cmd_credit_list(args) -> None:
    """The credit list (客户信用等级一览表) with each customer's changes of level, for `--as USER`."""
    listing = credit.CreditList(_store())
    entries = listing.entries(args.user)
    changes = listing.changes(args.user, customer=args.customer)
    if args.customer is not None:
        entries = [e for e in entries if e["id"] == args.customer]
        if not entries:
            raise Refused(f"{args.customer} is not a customer on the credit list")
    data = {"customers": entries, "changes": changes}
    _print(args, data, lambda: "\n".join(
        [f"{e['id']}  {e['level'] or '-'}  since {e['since']}  {e['name']}" for e in entries]
        + [f"change {_t(c['at'])}  {c['customer']}  {c['from'] or '-'} -> {c['to']}  approved by {c['approved_by']}"
           f"  ({c['reason'] or 'no reason given'})  instance {c['instance_id']}" for c in changes]))


def cmd_capital(args) -> None:
    """A region's capital in use (区域资金占用, seed 002 二) for `--as USER` (engine.access.may_see_capital);
    without a region, every region the user may see."""
    from engine.reports import CapitalReport
    report = CapitalReport(_store())
    ids = [args.region] if args.region else [r["id"] for r in report.visible_regions(args.user)]
    if not ids:
        raise Refused(f"{args.user} may not see the capital in use of any region: a regional manager sees his "
                      f"own, the VP of sales and the general manager every region")
    figures = [report.figure(args.user, region) for region in ids]
    _print(args, figures if not args.region else figures[0], lambda: "\n".join(
        f"{f['region']}  in use {f['capital_in_use']} (retail {f['retail_goods']}, stock {f['stock']}, "
        f"overdue receivables {f['overdue_receivables']})  limit {f['limit']} (7% of {f['year_collections']})  "
        + (f"OVER by {f['over_by']}" if f["over"] else f"under by {abs(f['over_by'])}") for f in figures))


def cmd_customer_add(args) -> None:
    """Build a new customer card as `--as USER` (the department manager, or a sales rep who then
    serves the customer); `--data` holds its fields, `name` required."""
    done = customers.Archive(_store()).create(args.customer_id, args.user, _json_arg(args.data, "data"))
    rep = (done["changes"].get("rep") or [None, None])[1]
    _print(args, done, lambda: f"customer {done['id']} created (revision {done['revision']}), "
                               f"served by {rep or 'nobody yet'}")


def _hours(seconds: int | None) -> str:
    return "-" if seconds is None else f"{seconds / 3600:.2f}"


def cmd_sla_report(args) -> None:
    """The SLA breach report for `--as USER` (the auditor): breaches grouped by --by with counts and
    median lateness (hours), or with --breaches the breaches themselves; --csv for a spreadsheet."""
    from engine import spreadsheet
    query = reports.parse_query({k: getattr(args, k) for k in reports.FILTERS}, by=args.by)
    report = reports.SlaReport(_store(), zone=clock.zone_name())   # months and days as the pages count them
    zone = clock.zone()

    def local(value) -> str:
        return value.astimezone(zone).isoformat(timespec="minutes") if value else ""

    if args.breaches:
        found = report.breaches(args.user, query)
        header = ["instance_id", "business_key", "customer", "process_id", "step_id", "holder", "escalated_to",
                  "due_at", "done_at", "state", "late_hours"]
        rows = [[b["instance_id"], b["business_key"] or "", b["customer"] or "", b["process_id"], b["element_id"],
                 b["holder"] or "", b["escalated_to"] or "", local(b["due_at"]), local(b["done_at"]), b["state"],
                 _hours(b["late_seconds"])] for b in found["breaches"]]
        data = {"total": found["total"], "breaches": [
            {**b, **{k: b[k].isoformat() if b[k] else None for k in ("due_at", "breached_at", "done_at")}}
            for b in found["breaches"]]}
    else:
        groups = report.groups(args.user, query)
        header = ["by", "key", "label", "count", "done", "still_open", "withdrawn", "median_late_hours"]
        rows = [[query.by, "/".join(g["key"]), g["label"], g["count"], g["done"], g["still_open"], g["withdrawn"],
                 _hours(g["median_late_seconds"])] for g in groups]
        data = {"by": query.by, "filters": query.filters(), "groups": groups}
    if args.csv and not args.json:
        sys.stdout.write(spreadsheet.text(header, rows))
        return
    _print(args, data, lambda: "\n".join("  ".join(str(v) for v in row) for row in [header, *rows]))


def cmd_incidents(args) -> None:
    from sqlalchemy import select

    from engine.store import Incident
    store = _store()
    with store.read() as session:
        query = select(Incident).order_by(Incident.id)
        if not args.all:
            query = query.where(Incident.status == "open")
        rows = [{"id": i.id, "instance_id": i.instance_id, "process_id": i.process_id,
                 "command": i.command, "element_id": i.element_id, "actor": i.actor,
                 "message": i.message, "status": i.status, "at": i.created_at.isoformat()}
                for i in session.scalars(query)]
    _print(args, rows, lambda: "\n".join(
        f"{r['id']}  {r['status']}  {r['process_id']}  {r['instance_id'] or '-'}  {r['message']}"
        for r in rows) or "no incidents")


def cmd_retry(args) -> None:
    result = _runtime(_store()).retry(args.incident_id, args.user)
    data = result.as_json() if hasattr(result, "as_json") else result
    _print(args, data, lambda: f"incident {args.incident_id} retried and resolved")


def _audit_steps(session, runtime: Runtime, instance_id: str, to_step: int | None = None,
                 from_checkpoint: bool = False):
    from engine import audit
    try:
        return audit.replay(session, instance_id, runtime.script_engine, to_step, from_checkpoint=from_checkpoint,
                            detail="last")
    except LookupError:
        raise Refused(f"there is no instance {instance_id}") from None


def cmd_history(args) -> None:
    """The log, one row per step, with what each step changed in the instance data (by replay)."""
    from engine import evidence
    history, replayed = _views(_store()).history(args.instance_id)
    if history and not replayed:
        print("bpm history: data changes not shown: the log does not replay (bpm verify says why)",
              file=sys.stderr)
    rows = evidence.history_rows(history, replayed)
    if args.csv:
        sys.stdout.write(evidence.history_csv(rows))
        return
    _print(args, rows, lambda: "\n".join(
        f"{r['step']:>3}  {_t(r['at'])}  {r['actor']}  {r['command']}  {r['task'] or '-'}  "
        f"{'?' if r['change'] is None else json.dumps(r['change'], ensure_ascii=False, default=str)}  {r['hash'][:16]}"
        + (f"  reply: {json.dumps(r['reply'], ensure_ascii=False)}" if r.get("reply") else "")
        for r in rows))


def cmd_replay(args) -> None:
    """Re-execute the instance from its log (up to --to) and say whether every state hash matched;
    from the latest trusted checkpoint at or before the step, unless --from-start."""
    from engine import audit
    store = _store()
    runtime = _runtime(store)
    with store.read() as session:
        try:
            steps = _audit_steps(session, runtime, args.instance_id, args.to, not args.from_start)
        except audit.ReplayFailed as exc:
            raise Refused(str(exc)) from None
    if not steps:
        raise Refused(f"instance {args.instance_id} has no step {args.to}" if args.to else
                      f"instance {args.instance_id} has no log")
    if args.to is not None and steps[-1].seq != args.to:
        raise Refused(f"instance {args.instance_id} has no step {args.to}; its log ends at step {steps[-1].seq}")
    last = steps[-1]
    bad = next((s for s in steps if not s.ok), None)
    result = {"instance_id": args.instance_id, "step": last.seq, "status": "completed" if last.completed else "running",
              "waiting": list(last.waiting), "data": last.data, "state_hash": last.replayed_hash,
              "every_hash_matched": bad is None, "first_mismatch": bad.seq if bad else None,
              "from_checkpoint": steps[0].seq if steps[0].restored else None}
    _print(args, result, lambda: "\n".join([
        f"instance {args.instance_id} at step {last.seq} ({last.command}, {_t(last.at)}, {last.actor})",
        f"status {result['status']}",
        f"waiting {', '.join(last.waiting) or '-'}",
        f"data {json.dumps(last.data, ensure_ascii=False, default=str)}",
        (f"every state hash matched ({len(steps)} steps)" if not steps[0].restored else
         f"every state hash matched (steps {steps[0].seq + 1}–{last.seq}, from the checkpoint at step "
         f"{steps[0].seq}, which the hash chain vouches for)" if last.seq > steps[0].seq else
         f"the checkpoint at step {last.seq} is the state the log holds for it") if bad is None else
        f"state hash mismatch from step {bad.seq} ({bad.command})"]))
    if bad is not None:
        raise Refused(f"replaying instance {args.instance_id}: step {bad.seq} ({bad.command}) does not "
                      f"match its logged state hash" if bad.chain_ok else
                      f"instance {args.instance_id}: the hash chain is broken at step {bad.seq}")


def cmd_verify(args) -> None:
    """Check hash chains and replay, for one instance or all; name the first bad step."""
    from concurrent.futures.process import BrokenProcessPool

    from sqlalchemy import select

    from engine import audit
    from engine.store import Instance
    if args.bundle is not None:
        if args.instance_id or args.all:
            raise Refused("--bundle checks the instances in the file: name no instance and give no --all")
        return _verify_bundle(args)
    if bool(args.instance_id) == bool(args.all):
        raise Refused("name one instance, or give --all, or --bundle FILE")
    jobs = audit.default_jobs() if args.jobs is None else args.jobs
    if jobs < 1:
        raise Refused(f"--jobs must be 1 or more, not {jobs}")
    store = _store()
    with store.read() as session:
        ids = ([args.instance_id] if args.instance_id else
               list(session.scalars(select(Instance.id).order_by(Instance.created_at, Instance.id))))
    if jobs > 1 and len(ids) > 1:
        store.dispose()  # (the processes open their own connections)
        try:
            verdicts = audit.verify_many(store.url, ids, _script_engine, jobs)
        except LookupError as exc:  # an instance deleted meanwhile
            raise Refused(str(exc)) from None
        except BrokenProcessPool:
            raise Refused(f"a verifying process ended before its instances were verified (out of memory?); "
                          f"try a smaller --jobs than {jobs}") from None
    else:
        runtime = _runtime(store)
        with store.read() as session:
            verdicts = []
            for instance_id in ids:
                try:
                    verdicts.append(audit.verify(session, instance_id, runtime.script_engine))
                except LookupError:
                    raise Refused(f"there is no instance {instance_id}") from None
    bad = [v for v in verdicts if not v.ok]
    _print(args, [{"instance_id": v.instance_id, "steps": v.steps, "ok": v.ok, "problem": v.problem}
                  for v in verdicts],
           lambda: "\n".join(f"ok   {v.instance_id} ({v.steps} steps)" if v.ok else
                             f"BAD  {v.instance_id}: {v.problem}" for v in verdicts))
    if bad:
        raise Refused(f"{len(bad)} of {len(verdicts)} instance(s) failed verification; "
                      f"first: {bad[0].instance_id}: {bad[0].problem}")


def _verify_bundle(args) -> None:
    """An evidence bundle checked offline: no database is opened (engine.evidence)."""
    from engine import evidence
    from engine.runtime import Runtime
    from engine.store import Store
    from processes import LOOKUPS, SERVICES
    path = Path(args.bundle)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Refused(f"cannot read {path}: {exc.strerror}") from None
    # A runtime on a database in memory, never used: only its script engine replays the steps.
    script_engine = Runtime(Store("sqlite://"), SERVICES, lookups=LOOKUPS).script_engine
    bundle, _ = evidence.read_bundle(data)
    verdicts = evidence.verify_bundle(data, script_engine)
    bad = [v for v in verdicts if not v.ok]
    _print(args, {"bundle": str(path), "exported_at": bundle.exported_at, "exported_by": bundle.exported_by,
                  "manifest_sha256": bundle.manifest_sha256,
                  "instances": [{"instance_id": v.instance_id, "steps": v.steps, "ok": v.ok, "problem": v.problem,
                                 "root": bundle.roots.get(v.instance_id)} for v in verdicts]},
           lambda: "\n".join(
               [f"bundle {path}: {len(verdicts)} instance(s), exported {bundle.exported_at} by "
                f"{bundle.exported_by or 'the operator'}; manifest sha256 {bundle.manifest_sha256}"]
               + [f"ok   {v.instance_id} ({v.steps} steps) root {bundle.roots.get(v.instance_id)}" if v.ok else
                  f"BAD  {v.instance_id}: {v.problem}" for v in verdicts]))
    if bad:
        raise Refused(f"{len(bad)} of {len(verdicts)} instance(s) in the bundle failed verification; "
                      f"first: {bad[0].instance_id}: {bad[0].problem}")


def cmd_bundle(args) -> None:
    """Write an evidence bundle of the instances (engine.evidence) to --out."""
    from engine import evidence
    store = _store()
    runtime = _runtime(store)
    out = Path(args.out)
    if out.is_dir():
        raise Refused(f"--out {out} is a folder; name the file to write")
    with store.read() as session:
        data = evidence.export(session, args.instance_ids, runtime.script_engine, by=access.OPERATOR)
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise Refused(f"cannot write {out}: {exc.strerror}") from None
    bundle, _ = evidence.read_bundle(data)
    _print(args, {"out": str(out), "bytes": len(data), "manifest_sha256": bundle.manifest_sha256,
                  "roots": bundle.roots},
           lambda: "\n".join([f"wrote {out} ({len(data)} bytes); manifest sha256 {bundle.manifest_sha256}"]
                             + [f"root {i} {root}" for i, root in bundle.roots.items()]))


def cmd_bench(args) -> None:
    """The benchmark suite of bench/ (a source checkout's, not part of the installed package):
    bench/run.py --all, and with --web also bench/web.py; figures as in docs/benchmarks.md."""
    import subprocess
    runner = PROJECT_ROOT / "bench" / "run.py"
    if not runner.is_file():
        raise Refused(f"the benchmarks are not here ({runner} is missing): run bpm bench from a source checkout")
    commands = [[sys.executable, str(runner), "--all", *(["--json"] if args.json else []),
                 *(["--postgres", args.postgres] if args.postgres else [])]]
    if args.web:
        commands.append([sys.executable, str(PROJECT_ROOT / "bench" / "web.py"), "all",
                         *(["--json"] if args.json else [])])
    for command in commands:
        done = subprocess.run(command, cwd=PROJECT_ROOT)
        if done.returncode != 0:
            raise Refused(f"{Path(command[1]).name} failed (exit {done.returncode})")


def _user(session, username: str) -> access.Person:
    """An active user, or one sentence saying there is none such."""
    try:
        return access.person(session, username)
    except access.UnknownUser as exc:
        raise Refused(str(exc)) from None


def cmd_token(args) -> None:
    """Bearer tokens of the JSON API: issue one for a user, list theirs, revoke one."""
    store, now = _store(), clock.now()
    with store.write() as session:
        who = _user(session, args.user)
        if args.action == "issue":
            lifetime = timedelta(hours=args.hours) if args.hours else None
            token = access.issue_token(session, who.username, now, lifetime)
            result = {"token": token, "id": access.token_id(token), "username": who.username,
                      "expires_at": (now + (lifetime or access.token_lifetime())).isoformat()}
            text = lambda: f"{token}\n(id {result['id']}, expires {_t(result['expires_at'])})"
        elif args.action == "list":
            result = [{**t, **{k: t[k].isoformat() if t[k] else None
                               for k in ("created_at", "expires_at", "revoked_at")}}
                      for t in access.tokens(session, who.username, now)]
            text = lambda: "\n".join(
                f"{t['id']}  issued {_t(t['created_at'])}  expires {_t(t['expires_at'])}  "
                + ("active" if t["active"] else "revoked" if t["revoked_at"] else "expired")
                for t in result) or "no tokens"
        else:
            if not args.token_id:
                raise Refused("name the token to revoke: bpm token revoke ID --as USER (ids: bpm token list)")
            if not access.revoke_token(session, who.username, args.token_id, now):
                raise Refused(f"{who.username} has no token {args.token_id!r} (see bpm token list --as {who.username})")
            result = {"id": args.token_id, "revoked": True}
            text = lambda: f"token {args.token_id} revoked"
    _print(args, result, text)


def cmd_password(args) -> None:
    """Set a user's password from standard input; every session of theirs ends, every token is revoked."""
    password = sys.stdin.readline().rstrip("\r\n")
    store = _store()
    with store.write() as session:
        who = _user(session, args.username)
        try:  # the rule (length, not the same again) is the engine's, as on the account page
            access.set_password(session, who.username, password, clock.now())
        except access.PasswordRefused as exc:
            raise Refused(f"{exc} (the new password is read from standard input)") from None
    _print(args, {"username": who.username, "sessions_ended": True, "tokens_revoked": True},
           lambda: f"password of {who.username} changed; their sessions ended and their tokens revoked")


def cmd_serve(args) -> None:
    """The web app (one process, or --processes N under gunicorn on PostgreSQL) and --workers
    timer worker processes it supervises (bpm/serve.py)."""
    from . import serve

    if args.processes < 1:
        raise Refused(f"--processes must be 1 or more, not {args.processes}")
    if args.workers < 0:
        raise Refused(f"--workers must be 0 or more, not {args.workers}")
    clock.zone()  # a BPM_TIMEZONE that is no zone is refused before anything starts
    store = _store()
    if args.processes > 1 and store.is_sqlite:
        raise Refused(serve.SQLITE_REFUSAL.format(n=args.processes))
    migrate(store)  # serving an old or empty database would fail on every request
    store.dispose()  # no connection of this process is carried into the forked server processes
    workers = f"{args.workers} timer worker process(es)" if args.workers else "no timer worker: run `bpm worker`"
    print(f"serving on http://{args.host}:{args.port} with {args.processes} process(es), {workers}",
          file=sys.stderr, flush=True)
    serve.serve(args.host, args.port, args.processes, args.workers, is_sqlite=store.is_sqlite)


# --- argument parsing ------------------------------------------------------------------------

class _Choices:
    """An argument's choices, a tuple of an engine module read when the argument is checked or
    its help shown, so that building the parser imports no engine module."""

    def __init__(self, module: str, name: str):
        self._module, self._name = module, name

    def _values(self) -> tuple:
        return getattr(importlib.import_module(self._module), self._name)

    def __contains__(self, value: object) -> bool:
        return value in self._values()

    def __iter__(self):
        return iter(self._values())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bpm", description="BPM engine for sales organisations")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON document")
        p.set_defaults(func=func)
        return p

    p = command("init", cmd_init, "create or migrate the database and deploy bpmn/")
    p.add_argument("--demo", action="store_true", help="also seed the demo organisation")
    p = command("serve", cmd_serve, "run the web app and a timer worker process it restarts if it dies")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="server processes (gunicorn); more than 1 needs PostgreSQL")
    p.add_argument("--workers", type=int, default=1, metavar="M",
                   help="timer worker processes to start and supervise; 0 when `bpm worker` runs elsewhere")
    p = command("deploy", cmd_deploy, "validate and deploy BPMN/DMN files or folders")
    p.add_argument("paths", nargs="+")
    p.add_argument("--as", dest="actor", help="a user with the designer role (default: the operator)")
    p.add_argument("--require-tests", action="store_true",
                   help="run each process's model tests on the files first; deploy nothing if one fails")
    p.add_argument("--executable", action="store_true",
                   help="mark every process of the files executable, as the modeller's checkbox does")
    p.add_argument("--lane-role", action="append", default=[], metavar="LANE=ROLE",
                   help="give a lane (its id or name; or a pool drawn without lanes) a role, as the "
                        "modeller's role field does; repeatable")
    p = command("test-model", cmd_test_model, "run the model tests attached to a process; exit 1 if any fails")
    p.add_argument("process_id")
    p.add_argument("--version", type=int, metavar="N", help="a deployed version (default: the newest)")
    p.add_argument("--as", dest="actor", help="a user with the designer role (default: the operator)")
    p = command("lint", cmd_lint, "check BPMN/DMN files, forms or folders: what deploy refuses (errors) and "
                                  "what would fail late (warnings); exit 1 on an error")
    p.add_argument("paths", nargs="+")
    p.add_argument("--as", dest="actor", help="a user with the designer role (default: the operator)")
    command("definitions", cmd_definitions, "list deployed processes and versions")
    p = command("migrate", cmd_migrate, "move the running instances of one version of a process to another: "
                                        "those that can, each as one logged step")
    p.add_argument("process_id")
    p.add_argument("--from", dest="from_version", type=int, required=True, metavar="N")
    p.add_argument("--to", dest="to_version", type=int, required=True, metavar="M")
    p.add_argument("--dry-run", action="store_true", help="only say which can move, where their tokens land, "
                                                          "or why not; change nothing")
    p.add_argument("--as", dest="actor", help="a user with the designer role (default: the operator)")
    request_id = dict(metavar="ID", help="act once: run again with the same ID (after a lost reply), "
                                         "it prints the first result and changes nothing")
    p = command("start", cmd_start, "start an instance")
    p.add_argument("process_id")
    p.add_argument("--as", dest="user", required=True)
    p.add_argument("--data")
    p.add_argument("--request-id", **request_id)
    p = command("tasks", cmd_tasks, "a user's inbox")
    p.add_argument("--as", dest="user", required=True)
    p = command("instances", cmd_instances, "the instances a user may see: took part in (default), started, "
                                            "or for auditors all; filtered, searched, paged")
    p.add_argument("--as", dest="user", required=True)
    p.add_argument("--scope", help="took_part, started or all (auditors only)")
    p.add_argument("--q", metavar="TEXT", help="free text within business key, customer, initiator, process name")
    p.add_argument("--process", metavar="PROCESS_ID")
    p.add_argument("--business-key", metavar="KEY")
    p.add_argument("--customer", metavar="ID")
    p.add_argument("--actor", metavar="USER", help="a user who took part")
    p.add_argument("--from", dest="started_from", metavar="DAY", help="started on or after this day (YYYY-MM-DD)")
    p.add_argument("--to", dest="started_to", metavar="DAY", help="started on or before this day (YYYY-MM-DD)")
    p.add_argument("--status", help="running, completed or cancelled")
    p.add_argument("--overdue", action="store_true", help="an open task is past its due time")
    p.add_argument("--breach", action="store_true", help="an SLA breach was recorded")
    p.add_argument("--incident", action="store_true", help="an incident is open")
    p.add_argument("--sort", help="started (default), changed or business_key")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--desc", action="store_true", default=None, help="descending (the default)")
    order.add_argument("--asc", dest="desc", action="store_false", help="ascending")
    p.add_argument("--page", metavar="N")
    p.add_argument("--per-page", metavar="N")
    p.add_argument("--after", metavar="POSITION", help="the page after this position (printed with each page)")
    p.add_argument("--before", metavar="POSITION")
    for name, func, text in (("claim", cmd_claim, "take a task"), ("unclaim", cmd_unclaim, "give a task back")):
        p = command(name, func, text)
        p.add_argument("task_id")
        p.add_argument("--as", dest="user", required=True)
    p = command("hand-back", cmd_hand_back, "return an escalated task to its previous holder")
    p.add_argument("task_id")
    p.add_argument("--as", dest="user", required=True)
    p = command("reply", cmd_reply, "reply to one's superior on a task (复命, within 4 hours): in progress "
                                    "and expected by a time, or cannot finish and why")
    p.add_argument("task_id")
    p.add_argument("--as", dest="user", required=True)
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--in-progress", action="store_true", help="still working on it; give --expected")
    kind.add_argument("--cannot-finish", action="store_true", help="it cannot be done in time; give --reason")
    p.add_argument("--expected", metavar="TIME", help="when it will be done, ISO 8601 with an offset, "
                                                      "e.g. 2026-11-27T17:00:00+08:00")
    p.add_argument("--reason", help="why it cannot be finished (or a note on the progress)")
    p = command("draft", cmd_draft, "save (with --data) or show a task's draft")
    p.add_argument("task_id")
    p.add_argument("--as", dest="user", required=True)
    p.add_argument("--data")
    p = command("complete", cmd_complete, "submit a task's form")
    p.add_argument("task_id")
    p.add_argument("--as", dest="user", required=True)
    p.add_argument("--data")
    p.add_argument("--request-id", **request_id)
    p = command("message", cmd_message, "deliver a message to the waiting instance")
    p.add_argument("name")
    p.add_argument("--data")
    p.add_argument("--correlation", action="append", metavar="KEY=VALUE")
    p.add_argument("--as", dest="actor", help="a user whose role may send it (default: the operator)")
    p.add_argument("--request-id", **request_id)
    p = command("worker", cmd_worker, "fire due timers")
    p.add_argument("--once", action="store_true")
    p.add_argument("--now")
    p.add_argument("--interval", type=float, default=0.5)
    p = command("instance", cmd_instance, "an instance's status, tasks and data")
    p.add_argument("instance_id")
    p.add_argument("--as", dest="user", help="show only what this user may see (refused otherwise)")

    p = command("customer", cmd_customer, "a customer's archive card (客户档案), if USER may read it; recorded")
    p.add_argument("customer_id")
    p.add_argument("--as", dest="user", required=True)
    p = command("credit-list", cmd_credit_list, "the credit list (客户信用等级一览表): each customer's level "
                                                "and the changes of level; for those who work with it")
    p.add_argument("--as", dest="user", required=True)
    p.add_argument("--customer", help="one customer and its changes")
    p = command("capital", cmd_capital, "a region's capital in use (区域资金占用) against its limit, 7%% of the "
                                        "year's collections; its regional manager, the VP, the general manager")
    p.add_argument("region", nargs="?", help="a region id such as south_china (default: every region you may see)")
    p.add_argument("--as", dest="user", required=True)
    p = command("customer-add", cmd_customer_add, "build a new customer card (建立客户档案卡): the department "
                                                  "manager, or a sales rep who then serves the customer")
    p.add_argument("customer_id", help="a short code such as C-D01 (kept in capitals)")
    p.add_argument("--as", dest="user", required=True)
    p.add_argument("--data", required=True, help='the card\'s fields as JSON, e.g. {"name": "…", "phones": ["…"]}')
    p = command("sla-report", cmd_sla_report, "the SLA breach report (the auditor's): breaches of the 4-hour reply "
                                              "grouped, with counts and median lateness in hours")
    p.add_argument("--by", default="process").choices = _Choices("engine.reports", "GROUPINGS")  # (set
    # after add_argument, which would format them, and so import engine.reports, to check the metavar)
    p.add_argument("--as", dest="user", required=True)
    p.add_argument("--csv", action="store_true", help="comma-separated values, with a header row")
    p.add_argument("--breaches", action="store_true", help="the breaches themselves (of the filters' group)")
    for name, text in (("process", "a process id"), ("step", "an element id"), ("person", "the holder's username"),
                       ("office", "the holder's office id"), ("month", "YYYY-MM of the due time"),
                       ("since", "first day of the due time, YYYY-MM-DD"), ("until", "last day, YYYY-MM-DD")):
        p.add_argument(f"--{name}", help=text)
    p = command("history", cmd_history, "an instance's log: step, time, actor, command, data change, hash")
    p.add_argument("instance_id")
    p.add_argument("--csv", action="store_true", help="comma-separated values, with a header row")
    p = command("replay", cmd_replay, "re-execute an instance from its log and compare every state hash")
    p.add_argument("instance_id")
    p.add_argument("--to", type=int, metavar="STEP", help="stop after this step and show the state there")
    p.add_argument("--from-start", action="store_true",
                   help="re-execute every step from step 1 (by default the replay starts at the latest "
                        "checkpoint at or before STEP whose state the hash chain vouches for)")
    p = command("verify", cmd_verify, "check hash chains and replay; exit 1 naming the first bad step")
    p.add_argument("instance_id", nargs="?")
    p.add_argument("--all", action="store_true", help="every instance")
    p.add_argument("--bundle", metavar="FILE", help="check an evidence bundle (bpm bundle) offline, without the database")
    p.add_argument("--jobs", type=int, metavar="N", help="with --all: verify in N processes at once (default: "
                                                         "the number of CPUs; output and exit code as with 1)")
    p = command("bundle", cmd_bundle, "write an evidence bundle of instances (log, definition files, state hashes, "
                                      "verification, manifest), checked offline by bpm verify --bundle")
    p.add_argument("instance_ids", nargs="+", metavar="ID")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    p = command("bench", cmd_bench, "run the benchmark suite (bench/; figures in docs/benchmarks.md)")
    p.add_argument("--postgres", metavar="URL", help="also measure the timer worker on PostgreSQL")
    p.add_argument("--web", action="store_true", help="also the web benchmarks (HTTP end to end, inbox at scale)")
    p = command("token", cmd_token, "bearer tokens of the JSON API: issue, list or revoke a user's")
    p.add_argument("action", choices=("issue", "list", "revoke"))
    p.add_argument("token_id", nargs="?", help="the token to revoke (its id, from `bpm token list`)")
    p.add_argument("--as", dest="user", required=True)
    p.add_argument("--hours", type=float, help="lifetime of an issued token (default BPM_TOKEN_LIFETIME_HOURS, 168)")
    p = command("password", cmd_password, "set a user's password (read from standard input); "
                                          "ends every session of theirs and revokes their tokens")
    p.add_argument("username")
    p = command("incidents", cmd_incidents, "failed commands waiting for a person")
    p.add_argument("--all", action="store_true", help="include resolved incidents")
    p = command("retry", cmd_retry, "run a failed command again")
    p.add_argument("incident_id", type=int)
    p.add_argument("--as", dest="user", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except LintFailed:
        return 1
    except Exception as exc:  # never a traceback to a user; the log has the details
        if _raised(exc, "engine.definitions", "DefinitionError"):
            for problem in exc.problems:
                print(str(problem), file=sys.stderr)
            return 1
        if isinstance(exc, (EngineError, Refused, clock.ClockError)) or _raised(exc, "engine.calendar",
                                                                                  "CalendarError"):
            print(f"bpm {args.command}: {exc}", file=sys.stderr)
            return 1
        logging.getLogger("bpm").debug("unexpected error", exc_info=True)
        print(f"bpm {args.command}: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
