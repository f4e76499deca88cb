"""The approvers' pages: the inbox (my tasks and the ones I may claim), a task with its form,
starting a process, an instance with its diagram, and notifications.

Pages are drawn on the server; every change goes through `engine.runtime.Runtime`, which
checks who may do what. The inbox reads only the human-task projection, never an instance's
state.
"""
from __future__ import annotations

import functools
import math
import threading
import uuid
from collections import namedtuple
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request,
                   url_for)
from babel import numbers as babel_numbers
from flask_babel import format_decimal, format_percent, format_timedelta, get_locale, gettext as _, ngettext
from flask_login import current_user, login_required
from sqlalchemy import func, select

from engine import access, clock, notifications
from engine import inbox as engine_inbox
from engine.inbox import InboxQuery, SORT_KEYS
from engine.runtime import EngineError, FormRejected, InvalidInput, NotFound
from engine.store import Definition, HumanTask, User, UserRole
from engine.views import ENGINE_KEYS

from . import forms, http_status, runtime, views, zone, zone_name
from .auth import safe_next

bp = Blueprint("inbox", __name__)

VIEWER = "bpmn-js/bpmn-navigated-viewer.production.min.js"


@bp.before_request
@login_required
def _signed_in() -> None:
    """Every page of this blueprint needs a signed-in user."""


def _me() -> str:
    return current_user.username


def _lang() -> str:
    """The page's language, looked up once per request (the inbox asks for every row)."""
    lang = g.get("page_lang")
    if lang is None:
        lang = g.page_lang = str(get_locale() or "zh_CN")
    return lang


def said(exc: EngineError) -> str:
    """The engine's sentence in the page's language: its template translated, then filled in
    (a role by its name in that language)."""
    params = {k: role_name(v) if k == "role" else v for k, v in exc.params.items()}
    return _(exc.template, **params)


@bp.errorhandler(EngineError)
def _refused(exc: EngineError):
    return render_template("error.html", message=said(exc), status=http_status(exc)), http_status(exc)


# --- what every page shows ----------------------------------------------------------------------

@bp.app_context_processor
def _header() -> dict:
    unread = current_user.unread if current_user.is_authenticated else 0
    return {"unread_count": unread, "forms": forms, "role_name": role_name}


@bp.app_template_filter("pick")
def pick(text: str | None) -> str:
    """'中文 / English' (the diagrams' names) in the page's language."""
    if not text:
        return ""
    zh, sep, en = str(text).partition(" / ")
    if not sep:
        return str(text)
    return zh.strip() if _lang().startswith("zh") else en.strip()


@bp.app_template_filter("when")
def when(value: datetime | str | None) -> str:
    """An instant in the company's time zone (config BPM_TIMEZONE, from the environment's
    BPM_TIMEZONE, default Asia/Shanghai), as engine.clock writes it for the command line too."""
    return clock.local_text(value, zone_name())


@bp.app_template_filter("money")
def money(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "—"  # kept before input was checked (engine/inputs.py); never a 500 for the page
    locale = g.get("page_locale")
    if locale is None:  # looked up once per request: the inbox formats an amount per row
        locale = g.page_locale = get_locale()
    return format_cny(value, str(locale))


def format_cny(value: int | float, locale: str) -> str:
    """What `babel.numbers.format_currency(value, "CNY", locale=locale)` gives, 5-10 times faster
    where the locale's pattern allows (the inbox formats an amount per row)."""
    affixes = _cny_affixes(locale)
    if affixes is None:
        return babel_numbers.format_currency(value, "CNY", locale=locale)
    # as Babel rounds (the decimal value of the float's shortest repr, half to even)
    amount = Decimal(repr(float(value))).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
    prefix, suffix = affixes
    return f"{'-' if amount.is_signed() else ''}{prefix}{abs(amount):,.2f}{suffix}"


@functools.lru_cache(maxsize=16)
def _cny_affixes(locale: str) -> tuple[str, str] | None:
    """The currency sign before and after the number in `locale`, when the locale writes money as
    "<sign>1,234,567.89<sign>" (zh_CN and en do); None: let Babel format every amount."""
    sample = babel_numbers.format_currency(1234567.895, "CNY", locale=locale)
    negative = babel_numbers.format_currency(-2.5, "CNY", locale=locale)
    prefix, found, suffix = sample.partition("1,234,567.90")
    if not found or negative != f"-{prefix}2.50{suffix}":
        return None
    return prefix, suffix


@bp.app_template_global()
def show(field: dict, value: Any) -> str:
    """A value as read-only text, by its schema."""
    if value is None or value == "":
        return "—"
    if "enum" in field:
        return forms.enum_label(field, value, _lang())
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if isinstance(value, (int, float)):
        if field.get("x-format") == "percent":
            return format_percent(value, "#,##0.##%")
        return money(value) if forms.is_money(field) else format_decimal(value)
    if isinstance(value, str) and field.get("format") == "date-time":
        try:
            return when(value)
        except ValueError:
            return value
    if isinstance(value, dict):  # a structure with no schema: its fields, never JSON
        return "; ".join(f"{k}: {show({}, v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(show(field.get("items") or {}, v) for v in value)
    return str(value)


@bp.app_template_global()
def lateness(due: datetime | None, at: datetime | None) -> str:
    """How long after `due` the instant `at` was, in words of the page's language ("4 hours")."""
    if due is None or at is None:
        return "—"
    return format_timedelta(max(at - due, timedelta(0)), add_direction=False)


def role_name(role: str | None) -> str:
    names = access.ROLES.get(role or "")
    if not names:
        return role or ""
    return names[0] if _lang().startswith("zh") else names[1]


# --- reads of the engine's tables that the engine has no call for (yet) --------------------------

_deployed_cache: dict[str, tuple[int, dict]] = {}
_deployed_lock = threading.Lock()


def _deployed_forms() -> dict[str, list[dict]]:
    """Form name -> its schemas in all deployed versions; read again only after a deploy."""
    return _deployed()["forms"]


def _deployed() -> dict:
    """What the pages need of the deployed definitions (processes, forms), checked against the
    newest definition once per request and read again only after a deploy."""
    if "bpm_deployed" not in g:
        g.bpm_deployed = _deployed_uncached()
    return g.bpm_deployed


def _deployed_uncached() -> dict:
    store = runtime().store
    with store.read() as session:
        newest = session.scalar(select(func.max(Definition.id))) or 0
        cached = _deployed_cache.get(store.url)
        if cached is not None and cached[0] == newest:
            return cached[1]
        found: dict[str, list[dict]] = {}
        names: dict[str, str] = {}
        for process_id, name, schemas in session.execute(
                select(Definition.process_id, Definition.name, Definition.forms).order_by(Definition.version)):
            names[process_id] = name  # the newest version's name
            for form, schema in (schemas or {}).items():
                found.setdefault(form, []).append(schema)
    # forms that ask only for a decision in every deployed version: approvable in bulk
    quick = {form for form, schemas in found.items() if all(forms.decision_only(s) for s in schemas)}
    deployed = {"forms": found, "processes": sorted(names.items()), "quick": quick}
    with _deployed_lock:
        _deployed_cache[store.url] = (newest, deployed)
    return deployed


def _quick_approvable(form: str | None) -> bool:
    """The task's form asks only for a decision in every deployed version (bulk approve)."""
    return form in _deployed()["quick"]


def _titles(process_id: str) -> dict[str, dict]:
    """Data field -> its schema, from the forms of a process, to title an instance's data."""
    found: dict[str, dict] = {}
    for name, schemas in _deployed_forms().items():
        if name.startswith(process_id + "."):
            for schema in schemas:
                for key, field in forms.properties(schema).items():
                    found.setdefault(key, field)
    return found


def _processes() -> list[tuple[str, str]]:
    """(process id, name) of every deployed process, read again only after a deploy."""
    return _deployed()["processes"]


def _process_name(process_id: str) -> str:
    return dict(_processes()).get(process_id) or process_id


def colleagues(role: str | None, me: str | None = None, office_scope: str = "") -> list[tuple[str, str]]:
    """Active users holding `role` (within `office_scope` if given), but `me`: whom a task can be
    delegated to, or a customer given to (the engine decides; this only lists)."""
    if not role:
        return []
    with runtime().store.read() as session:
        query = (select(User.username, User.display_name)
                 .join(UserRole, UserRole.username == User.username)
                 .where(UserRole.role_id == role, User.active.is_(True))
                 .order_by(User.username))
        if me:
            query = query.where(User.username != me)
        if office_scope:
            query = query.where(User.office_id == office_scope)
        return [(r.username, r.display_name) for r in session.execute(query)]


def _task_labels(ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """Task id -> (how to name it in a message, its form), for the tasks the signed-in user may
    open (access.may_open_task); any other is named by its id only, so nothing of it is revealed."""
    who = current_user.person
    with runtime().store.read() as session:
        rows = session.execute(select(HumanTask.id, HumanTask.name, HumanTask.business_key, HumanTask.form,
                                      HumanTask.role, HumanTask.assignee, HumanTask.office_scope)
                               .where(HumanTask.id.in_(ids)))
        return {r.id: (" · ".join(x for x in (r.business_key, pick(r.name)) if x), r.form) for r in rows
                if access.may_open_task(who, r.role, r.assignee, r.office_scope)}


# --- the inbox ------------------------------------------------------------------------------------

def _column_labels() -> dict[str, str]:
    return {"process": _("Process"), "business_key": _("Business key"), "customer": _("Customer"),
            "amount": _("Amount"), "step": _("Step"), "assignee": _("Holder"),
            "created": _("Created"), "due": _("Due")}


# Named tuples, not dicts: Jinja reads `row.url` as an attribute first, which a tuple answers at once.
_InboxRow = namedtuple("_InboxRow", "task due_class mine quick url process step amount created due open_to "
                                   "escalated")
_Words = namedtuple("_Words", "select claim unclaim delegate overdue soon quick quick_title")


@bp.get("/")
def inbox():
    errors: dict[str, str] = {}
    try:
        query = InboxQuery.from_args(request.args)
    except InvalidInput as exc:
        errors, query = exc.fields, None
    page, now = None, clock.now()
    with runtime().store.read() as session:
        if query is not None:
            page = engine_inbox.search(session, current_user.person, query, now)
        saved = engine_inbox.saved_filters(session, _me())
        # who each escalated task came from, by name ("escalated from 周经理"): one read per page
        froms = {t.escalated_from for t in page.tasks if t.escalated_from} if page else set()
        names = {r.username: r.display_name for r in session.execute(
            select(User.username, User.display_name).where(User.username.in_(froms)))} if froms else {}
    current = query or InboxQuery()

    def sort_url(key: str) -> str:
        desc = not current.desc if current.sort == key else False
        return url_for("inbox.inbox", **current.replace(sort=key, desc=desc, page=1).to_args())

    def page_url(number: int) -> str:
        """Next and previous pages by position (as fast deep in the list as at its top); the first
        page plainly."""
        if page is not None and number == page.page + 1 and page.next_after:
            return url_for("inbox.inbox", **current.replace(page=number, after=page.next_after).to_args())
        if page is not None and number == page.page - 1 and number > 1 and page.prev_before:
            return url_for("inbox.inbox", **current.replace(page=number, before=page.prev_before).to_args())
        return url_for("inbox.inbox", **current.replace(page=number).to_args())

    # Every row's words and links are made here, each distinct one once per page: translating or
    # building a URL per cell would cost more than the search itself (docs/benchmarks.md, "The inbox").
    processes = _processes()
    process_names = {pid: pick(name) for pid, name in processes}
    open_to: dict[str | None, str] = {}
    tasks_url = url_for("inbox.inbox") + "tasks/"
    rows, me = [], _me()
    escalated = {who: _("escalated from %(user)s", user=name) for who, name in names.items()}
    for task in page.tasks if page else []:
        if task.assignee is None and task.role not in open_to:
            open_to[task.role] = _("open to %(role)s", role=role_name(task.role))
        rows.append(_InboxRow(
            task, engine_inbox.due_soon(task, now), task.assignee == me, _quick_approvable(task.form),
            tasks_url + task.id, process_names.get(task.process_id, task.process_id), pick(task.name),
            money(task.amount) if task.amount is not None else "—", when(task.created),
            when(task.due) if task.due else "—", open_to.get(task.role) if task.assignee is None else None,
            escalated.get(task.escalated_from) if task.escalated_from else None))
    words = _Words(_("Select"), _("Claim"), _("Unclaim"), _("Delegate"), _("overdue"), _("due soon"),
                   _("decision only"), _("Needs only a decision: can be approved in bulk"))
    return render_template(
        "inbox.html", page=page, rows=rows, words=words, query=current, args=request.args, errors=errors,
        columns=_column_labels(), sort_keys=SORT_KEYS, sort_url=sort_url, page_url=page_url,
        saved=saved, processes=processes, here=request.full_path.rstrip("?"),
        filter_args=current.to_args(),
    ), (400 if errors else 200)


@bp.post("/filters")
def save_filter():
    args = {k: v for k, v in request.form.items() if k in InboxQuery.__dataclass_fields__
            and k != "page" and v != ""}
    try:
        args = InboxQuery.from_args(args).replace(page=1).to_args()
        with runtime().store.write() as session:
            engine_inbox.save_filter(session, _me(), request.form.get("name", ""), args)
    except InvalidInput as exc:
        flash(_("The filter was not saved: %(why)s", why=forms.error_text(
            next(iter(exc.fields.values()), said(exc)))), "error")
    else:
        flash(_("Filter “%(name)s” saved.", name=request.form.get("name", "").strip()), "success")
    return redirect(url_for("inbox.inbox", **args))


@bp.post("/filters/delete")
def delete_filter():
    with runtime().store.write() as session:
        engine_inbox.delete_filter(session, _me(), request.form.get("name", ""))
    flash(_("Filter “%(name)s” deleted.", name=request.form.get("name", "")), "success")
    return redirect(_back())


def _back(default: str | None = None) -> str:
    return safe_next(request.form.get("next")) or default or url_for("inbox.inbox")


def _task_command(command, task_id: str, done, to: str, refused_to: str | None = None):
    """Run one of the engine's task commands as the signed-in user: say what happened (or the
    engine's refusal, in the page's language) and go to `to` (`refused_to` when refused)."""
    try:
        task = command(task_id, _me())
    except EngineError as exc:
        flash(said(exc), "error")
        return redirect(refused_to or to)
    flash(done(task), "success")
    return redirect(to)


@bp.post("/tasks/<task_id>/claim")
def claim(task_id: str):
    return _task_command(runtime().claim, task_id,
                         lambda task: _("You hold “%(task)s” now.", task=pick(task.name)), _back())


@bp.post("/tasks/<task_id>/unclaim")
def unclaim(task_id: str):
    return _task_command(runtime().unclaim, task_id,
                         lambda task: _("“%(task)s” is open to its role again.", task=pick(task.name)), _back())


@bp.post("/tasks/bulk")
def bulk():
    """Claim or approve the ticked tasks: first a page that lists them and asks (nothing changes),
    then, confirmed, one command each, and one line saying what happened ("3 claimed, 1 refused: …")."""
    ids = list(dict.fromkeys(request.form.getlist("task")))
    action = request.form.get("action")
    if not ids:
        flash(_("Tick the tasks first."), "error")
        return redirect(_back())
    if action not in ("claim", "approve"):
        abort(400)
    known = _task_labels(ids)
    if request.form.get("confirm") != "1":
        count = len(ids)
        return render_template(
            "bulk_confirm.html", ids=ids, action=action, known=known, back=_back(),
            needs_more={i for i, (_, form) in known.items() if action == "approve" and not _quick_approvable(form)},
            question=(ngettext("Claim %(num)d task?", "Claim %(num)d tasks?", count) if action == "claim"
                      else ngettext("Approve %(num)d task?", "Approve %(num)d tasks?", count)),
            button=(ngettext("Claim %(num)d task", "Claim %(num)d tasks", count) if action == "claim"
                    else ngettext("Approve %(num)d task", "Approve %(num)d tasks", count)))
    done, refused = 0, []
    for task_id in ids:
        label, form = known.get(task_id, (task_id, None))
        try:
            if action == "claim":
                runtime().claim(task_id, _me())
            elif task_id in known and not _quick_approvable(form):
                refused.append(_("%(task)s: its form asks for more than a decision; open it to answer.",
                                 task=label))
                continue
            else:
                runtime().complete(task_id, _me(), {"decision": "approve"})
            done += 1
        except EngineError as exc:
            refused.append(_("%(task)s: %(why)s", task=label, why=said(exc)))
    if not refused:
        flash(_("%(done)d claimed.", done=done) if action == "claim" else _("%(done)d approved.", done=done),
              "success")
    else:
        why = "; ".join(refused)
        flash(_("%(done)d claimed, %(refused)d refused: %(why)s", done=done, refused=len(refused), why=why)
              if action == "claim" else
              _("%(done)d approved, %(refused)d refused: %(why)s", done=done, refused=len(refused), why=why),
              "error")
    return redirect(_back())


# --- a task ---------------------------------------------------------------------------------------

def _task_page(page, values: dict, errors: dict[str, str] | None = None,
               status: int = 200, message: str | None = None, reply: dict | None = None):
    """The task page (engine.views.TaskPage); `reply` is a refused reply to draw again:
    {"values": ..., "errors": field -> sentence}."""
    detail = page.detail
    task, schema = detail["task"], detail["schema"]
    errors = errors or {}
    may_act = detail.get("may_act", True)
    return render_template(
        "task.html", task=task, detail=detail, schema=schema, values=values, errors=errors,
        reply_values=(reply or {}).get("values", {}), reply_errors=(reply or {}).get("errors", {}),
        unplaced=forms.unplaced(schema, values, errors), message=message, may_act=may_act,
        process_name=_process_name(task.process_id),
        history=page.steps, comments=page.comments, people=page.people, titles=_titles(task.process_id),
        step_url=lambda n: url_for("inbox.instance", instance_id=task.instance_id, step=n) + f"#step-{n}",
        colleagues=colleagues(task.role, _me(), task.office_scope) if may_act else [], request_id=_request_id(),
        due_class=engine_inbox.due_soon(task, clock.now()), mine=task.assignee == _me(),
    ), status


def _request_id() -> str:
    """The id a form page carries so that it acts once: a double click or the page sent again
    answers with the first result (engine.runtime, "exactly once"). A page drawn again after a
    refusal keeps its id: nothing was done under it."""
    return request.form.get("request_id") or uuid.uuid4().hex


def _edit_rows(schema: dict | None, submitted: dict) -> bool:
    """Add or remove a row, or just redraw (Enter in a field): True if the page is only redrawn."""
    if "add_row" in request.form:
        forms.add_row(schema, submitted, request.form["add_row"])
        return True
    if "remove_row" in request.form:
        forms.remove_row(schema, submitted, request.form["remove_row"])
        return True
    return "refresh" in request.form


@bp.get("/tasks/<task_id>")
def task(task_id: str):
    page = views().task_page(task_id, _me())
    detail = page.detail
    return _task_page(page, forms.initial(detail["schema"], detail["data"], detail["draft"]))


@bp.post("/tasks/<task_id>")
def act(task_id: str):
    rt = runtime()
    try:
        page = views().task_page(task_id, _me())
    except EngineError:
        # The page sent again after its first sending did the task: say so, act no more.
        first = rt.answered(_me(), request.form.get("request_id"), "complete")
        if first is None or request.form.get("action") != "complete":
            raise
        _flash_next(first, _("This form was already submitted; it was done once."))
        return redirect(url_for("inbox.inbox"))
    detail = page.detail
    schema = detail["schema"]
    submitted = forms.parse(schema, request.form)

    def values() -> dict:
        return forms.with_context(schema, submitted, detail["data"])
    if _edit_rows(schema, submitted):
        return _task_page(page, values())
    action = request.form.get("action")
    try:
        if action == "draft":
            rt.save_draft(task_id, _me(), submitted)
            flash(_("Draft saved; nothing was submitted."), "success")
            return redirect(url_for("inbox.task", task_id=task_id))
        if action != "complete":
            abort(400)
        view = rt.complete(task_id, _me(), submitted, request_id=request.form.get("request_id") or None)
    except InvalidInput as exc:
        # A form's errors are listed by field; a domain service's refusal (processes/) is one
        # sentence naming what was wrong, shown as it is, with its field marked.
        return _task_page(page, values(), forms.errors_by_name(exc.fields), 422,
                          _("Nothing was submitted: please correct the marked fields.")
                          if exc.fields and isinstance(exc, FormRejected) else said(exc))
    except EngineError as exc:
        return _task_page(page, values(), status=http_status(exc), message=said(exc))
    _flash_next(view, _("“%(task)s” is done.", task=pick(detail["task"].name)))
    return redirect(url_for("inbox.inbox"))


def _flash_next(view, done: str) -> None:
    """Say what happened and where the instance went next."""
    waiting = [f"{pick(t.name)} ({t.assignee or role_name(t.role)})" for t in view.tasks]
    if view.status != "running":
        flash(done + " " + _("The process is finished."), "success")
    elif waiting:
        flash(done + " " + _("Next: %(steps)s.", steps="; ".join(waiting)), "success")
    else:
        flash(done, "success")


@bp.post("/tasks/<task_id>/delegate")
def delegate(task_id: str):
    to = request.form.get("to", "")
    try:
        task = runtime().delegate(task_id, _me(), to, request.form.get("note", ""))
    except EngineError as exc:
        fields = getattr(exc, "fields", None) or {}
        flash(forms.error_text(next(iter(fields.values()))) if fields else said(exc), "error")
        return redirect(url_for("inbox.task", task_id=task_id) + "#delegate")
    flash(_("“%(task)s” is with %(user)s now.", task=pick(task.name), user=to), "success")
    return redirect(url_for("inbox.inbox"))


@bp.post("/tasks/<task_id>/hand-back")
def hand_back(task_id: str):
    """The superior an overdue task was escalated to returns it to the one who had it."""
    return _task_command(runtime().hand_back, task_id,
                         lambda task: _("“%(task)s” is back with %(user)s.", task=pick(task.name), user=task.assignee),
                         url_for("inbox.inbox"), refused_to=url_for("inbox.task", task_id=task_id))


@bp.post("/tasks/<task_id>/reply")
def reply(task_id: str):
    """The reply to the superior (复命, within 4 hours): in progress and expected by a time, or
    cannot be finished and why. The engine decides who may and what is valid; a refusal is drawn
    next to its field, with what was entered kept."""
    values = {"kind": request.form.get("kind", ""), "expected_by": request.form.get("expected_by", "").strip(),
              "reason": request.form.get("reason", "")}
    rt = runtime()
    try:
        rt.reply(task_id, _me(), values["kind"], expected_by=_local_instant(values["expected_by"]),
                 reason=values["reason"] or None)
    except InvalidInput as exc:
        page = views().task_page(task_id, _me())
        detail = page.detail
        field = next(iter(exc.fields), "kind")
        return _task_page(page, forms.initial(detail["schema"], detail["data"], detail["draft"]), status=422,
                          reply={"values": values, "errors": {field: said(exc)}})
    except EngineError as exc:
        flash(said(exc), "error")
        return redirect(url_for("inbox.task", task_id=task_id) + "#reply")
    superior = current_user.person.superior
    flash(_("Your reply was sent to %(user)s.", user=superior) if superior
          else _("Your reply was recorded; you have no superior to tell."), "success")
    return redirect(url_for("inbox.task", task_id=task_id))


def _local_instant(text: str) -> str | datetime | None:
    """A time from the page's datetime-local field (the company's time zone, BPM_TIMEZONE) as an
    aware instant; anything else goes to the engine as it is, to be refused in words."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return text
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone())
    return value


@bp.post("/tasks/<task_id>/comments")
def comment(task_id: str):
    try:
        runtime().comment(task_id, _me(), request.form.get("body", ""))
    except InvalidInput:
        flash(_("Write something first."), "error")
    else:
        flash(_("Comment added."), "success")
    return redirect(url_for("inbox.task", task_id=task_id) + "#comments")


# --- starting a process -----------------------------------------------------------------------------

@bp.get("/start")
def start_list():
    return render_template("start_list.html", processes=views().startable(_me()))


def _startable(process_id: str) -> dict:
    found = next((p for p in views().startable(_me()) if p["process_id"] == process_id), None)
    if found is None:
        raise NotFound(_("You cannot start “%(process)s”.", process=process_id))
    return found


def _start_page(process: dict, values: dict, errors: dict | None = None, status: int = 200,
                message: str | None = None):
    errors = errors or {}
    return render_template("start_form.html", process=process, schema=process["schema"],
                           values=values, errors=errors, message=message, request_id=_request_id(),
                           unplaced=forms.unplaced(process["schema"], values, errors)), status


@bp.get("/start/<process_id>")
def start_form(process_id: str):
    process = _startable(process_id)
    return _start_page(process, forms.initial(process["schema"], {}))


@bp.post("/start/<process_id>")
def start(process_id: str):
    process = _startable(process_id)
    schema = process["schema"]
    submitted = forms.parse(schema, request.form)
    if _edit_rows(schema, submitted):
        return _start_page(process, submitted)
    try:
        view = runtime().start(process_id, _me(), submitted, version=process.get("version"),
                               request_id=request.form.get("request_id") or None)
    except InvalidInput as exc:
        return _start_page(process, submitted, forms.errors_by_name(exc.fields), 422,
                           _("Nothing was started: please correct the marked fields.")
                           if exc.fields and isinstance(exc, FormRejected) else said(exc))
    except EngineError as exc:
        return _start_page(process, submitted, status=http_status(exc), message=said(exc))
    _flash_next(view, _("Started %(what)s.", what=view.business_key or pick(process["name"])))
    return redirect(url_for("inbox.instance", instance_id=view.id))


# --- an instance ------------------------------------------------------------------------------------

def _viewer_installed() -> bool:
    return (Path(current_app.config["VENDOR_DIR"]) / VIEWER).is_file()


@bp.get("/instances/<instance_id>")
def instance(instance_id: str):
    """The instance now, or — `?step=N` — as it was after step N (the diagram, the data), by exact
    replay of its log (engine.views.steps)."""
    page = views().instance_page(instance_id, viewer=_me())
    view, steps = page.view, page.steps
    at = request.args.get("step", type=int)
    if at is not None and not (1 <= at <= len(steps) and page.replayed):
        abort(404)
    shown = steps[at - 1] if at is not None else None
    marks = shown.marks.as_json() if shown is not None else page.now.as_json()
    data = shown.after if shown is not None else view.data
    titles = _titles(view.process_id)

    def step_url(number: int) -> str:
        return url_for("inbox.instance", instance_id=instance_id, step=number) + f"#step-{number}"
    return render_template(
        "instance.html", view=view, page=page, history=steps, verdict=page.verdict,
        process_name=_process_name(view.process_id), comments=page.comments, xml=page.xml,
        markers=marks, names=page.names, viewer=_viewer_installed(), titles=titles,
        data={k: v for k, v in data.items() if k not in ENGINE_KEYS and not forms.hidden(titles.get(k))},
        shown=shown, step_url=step_url, people=page.people,
        may_export=access.may_export_evidence(current_user.person),
        now=clock.now(), due_soon=engine_inbox.due_soon,
    )


# --- notifications ------------------------------------------------------------------------------

def notice_text(item: dict) -> str:
    """A notice in the page's language, from what it was made of; a notice from before those
    were kept shows its stored words (both languages)."""
    p = item.get("params")
    if not p:
        return item["message"]
    name = pick(p.get("name"))
    kind = item["kind"]
    if kind == "assigned":
        return _("Assigned to you: %(name)s", name=name)
    if kind == "reminder":
        return _("Reminder, due soon: %(name)s", name=name)
    if kind == "escalated":
        return _("Escalated to you (overdue with %(holder)s): %(name)s", holder=p.get("holder") or "-", name=name)
    if kind == "escalated_away":
        return _("Your overdue task was escalated to %(to)s: %(name)s", to=p.get("to") or "-", name=name)
    if kind == "returned":
        return _("Returned to you: %(name)s", name=name)
    if kind == "reply_in_progress":
        return _("%(by)s replies: in progress, expected by %(expected)s: %(name)s",
                 by=p.get("by"), expected=when(p.get("expected_by")) or "-", name=name)
    if kind == "reply_cannot_finish":
        return _("%(by)s replies: cannot finish, because %(reason)s: %(name)s",
                 by=p.get("by"), reason=p.get("reason") or "-", name=name)
    return item["message"]


@bp.get("/notifications")
def notifications_page():
    """The user's notices, each in the page's language and linked to where it leads now: the task
    while they may open it, else its instance if they may see it, else no link."""
    with runtime().store.read() as session:
        items = notifications.for_user(session, _me(), limit=100)
        notifications.leads_to(session, current_user.person, items)
    for item in items:
        item["text"] = notice_text(item)
    return render_template("notifications.html", items=items)


@bp.post("/notifications/read")
def notifications_read():
    ids = [int(i) for i in request.form.getlist("id") if i.isdigit()] or None
    with runtime().store.write() as session:
        notifications.mark_read(session, _me(), ids)
    return redirect(_back(url_for("inbox.notifications_page")))
