"""The process designer's pages (role designer, engine.access.may_design): processes with their
versions, running instances and incidents (/design), one process with its drafts, downloads,
uploads, deploy, migration dry run and model tests (/design/<process>), and the modeller
(/design/<process>/edit: bpmn-js, dmn-js, a form's preview as the approver sees it).

The rules are the engine's: drafts (engine.drafts), lint (engine.lint), deploy
(engine.versions.deploy_files), migration (engine.migration), model tests (engine.modeltests),
foreign extensions kept on save (engine.foreign.keep_extensions). These pages only show them.
(`lint` and `migration` are imported as `linting` and `moving`: the views of those names are routes.)
"""
from __future__ import annotations

import json
from typing import Mapping

from flask import (Blueprint, Response, flash, jsonify, redirect, render_template, request, url_for)
from flask_babel import gettext as _
from flask_login import current_user, login_required

from engine import access, drafts, foreign, lint as linting, migration as moving, modeltests
from engine.definitions import DefinitionError
from engine.runtime import EngineError, InvalidInput

from . import http_status, runtime
from .inbox import said

bp = Blueprint("designer", __name__, url_prefix="/design")

FORMS_FOLDER = "forms/"


def _store():
    return runtime().store


@bp.before_request
@login_required
def _designer_only():
    """Every page and endpoint here is the designer's (engine.access.may_design)."""
    if not access.may_design(current_user.person):
        from . import _refusal  # (web/__init__ registers this blueprint)
        return _refusal(403, _("The process designer's pages are for the role designer."))
    return None


@bp.app_context_processor
def _nav() -> dict:
    shown = current_user.is_authenticated and access.may_design(current_user.person)
    return {"design_page": shown}


@bp.errorhandler(EngineError)
def _refused(exc: EngineError):
    status = http_status(exc)
    if request.path.endswith(("/save", "/lint")):  # the modeller's JSON endpoints
        return jsonify({"error": said(exc), "fields": getattr(exc, "fields", {})}), status
    return render_template("error.html", message=said(exc), status=status), status


# --- reading the query: which files are meant -----------------------------------------------------

def _number(raw: str | None, what: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise InvalidInput("%(what)s must be a whole number, not %(value)s", what=what, value=raw[:40])
    return int(raw)


def _source(process_id: str, args: Mapping) -> tuple[dict, dict[str, str]]:
    """The version or draft the query names (`version=N` or `draft=K`; the newest version when
    neither) as {"version": N} or {"draft": K}, and its files."""
    draft = _number(args.get("draft"), "draft")
    if draft is not None:
        return {"draft": draft}, drafts.draft_files(_store(), process_id, draft)
    version, files = drafts.version_files(_store(), process_id, _number(args.get("version"), "version"))
    return {"version": version}, files


def _base_version(process_id: str, source: dict) -> int | None:
    if "version" in source:
        return source["version"]
    for d in drafts.drafts(_store(), process_id):
        if d.number == source.get("draft"):
            return d.based_on_version
    return None


def _files_bytes(files: Mapping[str, str]) -> dict[str, bytes]:
    return {name: text.encode("utf-8") for name, text in files.items()}


def _form_name(name: str) -> str:
    """Where a form file sits in a version's files: forms/<name>."""
    base = name.rsplit("/", 1)[-1]
    return base if base.endswith((".bpmn", ".dmn")) else FORMS_FOLDER + base


# --- the pages -------------------------------------------------------------------------------------

@bp.get("")
def index():
    return render_template("design.html", processes=drafts.overview(_store()))


@bp.get("/<process_id>")
def process(process_id: str):
    found = drafts.overview(_store(), process_id)
    if not found:
        return render_template("error.html", message=_("There is no process %(process)s.", process=process_id),
                               status=404), 404
    return _process_page(found[0])


def _process_page(summary, status: int = 200, **shown):
    return render_template("design_process.html", p=summary,
                           incidents=drafts.open_incidents(_store(), summary.process_id), **shown), status


@bp.get("/<process_id>/download")
def download(process_id: str):
    source, files = _source(process_id, request.args)
    label = f"v{source['version']}" if "version" in source else f"draft{source['draft']}"
    return Response(drafts.zipped(files), mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{process_id}-{label}.zip"'})


@bp.get("/<process_id>/file")
def file(process_id: str):
    """One file of a version or draft, as it is stored."""
    _, files = _source(process_id, request.args)
    name = request.args.get("file", "")
    if name not in files:
        raise InvalidInput("there is no file %(name)s here", name=name[:200])
    kind = "application/json" if name.endswith(".json") else "application/xml"
    return Response(files[name], mimetype=kind, headers={
        "Content-Disposition": f'attachment; filename="{name.rsplit("/", 1)[-1]}"'})


@bp.post("/upload")
def upload():
    """Uploaded files become a new draft: of the process named, on top of a version's or draft's
    other files when the form says which (`version`/`draft`), else of these files alone."""
    process_id = (request.form.get("process_id") or "").strip()
    uploaded = [f for f in request.files.getlist("files") if f and f.filename]
    found = drafts.overview(_store(), process_id) if process_id and len(process_id) <= 200 else []

    def refuse(message: str, field: str = "files"):
        """The page the form was on, the sentence next to the field that was wrong; 400."""
        errors = {field: message + " " + _("Nothing was saved.")}
        if found:
            return _process_page(found[0], 400, upload_errors=errors)
        return render_template("design.html", processes=drafts.overview(_store()), upload_errors=errors,
                               upload_process=process_id), 400

    if not process_id:
        return refuse(_("Name the process the files belong to."), "process_id")
    if not uploaded:
        return refuse(_("Choose one or more .bpmn, .dmn or .json files to upload."))
    files: dict[str, str] = {}
    source = None
    if request.form.get("version") or request.form.get("draft"):
        source, files = _source(process_id, request.form)
    for item in uploaded:
        name = item.filename.replace("\\", "/").rsplit("/", 1)[-1]
        data = item.read(drafts.MAX_FILE_BYTES + 1)
        try:
            files[_form_name(name)] = drafts.check_file(_form_name(name), data)
        except InvalidInput as exc:
            return refuse(said(exc))
    try:
        number = drafts.save_draft(_store(), process_id, files, current_user.username,
                                   based_on=_base_version(process_id, source) if source else None)
    except InvalidInput as exc:
        return refuse(said(exc), "process_id" if "process id" in exc.template else "files")
    flash(_("Saved as draft %(number)s.", number=number), "success")
    return redirect(url_for("designer.process", process_id=process_id) + "#drafts")


@bp.post("/<process_id>/deploy")
def deploy(process_id: str):
    """Deploy a draft: refused, with the lint's findings, when the lint finds errors."""
    number = _number(request.form.get("draft"), "draft")
    if number is None:
        raise InvalidInput("choose a draft to deploy")
    drafts.draft_files(_store(), process_id, number)  # NotFound first
    summary = drafts.overview(_store(), process_id)[0]
    try:
        results = drafts.deploy_draft(_store(), process_id, number, current_user.username)
    except drafts.DraftRefused as exc:
        return _process_page(summary, 422, findings=exc.findings, refused_draft=number)
    except DefinitionError as exc:
        return _process_page(summary, 422, problems=[str(p) for p in exc.problems], refused_draft=number)
    for result in results:
        if result.status == "deployed":
            flash(_("%(process)s version %(version)s deployed.", process=result.process_id,
                    version=result.version), "success")
        else:
            flash(_("%(process)s is unchanged: its version %(version)s has these files.",
                    process=result.process_id, version=result.version), "success")
    return redirect(url_for("designer.process", process_id=process_id))


@bp.post("/<process_id>/migration")
def migration(process_id: str):
    """The migration dry run between two versions, and (with `apply`) the migration of those that can."""
    if not drafts.overview(_store(), process_id):
        raise InvalidInput("there is no process %(process)s", process=process_id)
    source = _number(request.form.get("from"), "from")
    target = _number(request.form.get("to"), "to")
    if source is None or target is None:
        raise InvalidInput("choose the version to migrate from and the one to migrate to")
    apply = request.form.get("apply") == "1"
    run = moving.migrate if apply else moving.plan
    moves = run(_store(), process_id, source, target, current_user.username)
    if apply:
        moved = sum(1 for m in moves if m.can_move)
        flash(_("%(count)s instances moved from version %(source)s to %(target)s.", count=moved,
                source=source, target=target), "success")
    return _process_page(drafts.overview(_store(), process_id)[0], moves=moves, move_from=source,
                         move_to=target, applied=apply)


@bp.post("/<process_id>/tests")
def tests(process_id: str):
    """The model tests of a draft (its files) or a deployed version."""
    summary = drafts.overview(_store(), process_id)
    if not summary:
        raise InvalidInput("there is no process %(process)s", process=process_id)
    number = _number(request.form.get("draft"), "draft")
    try:
        if number is not None:
            results = modeltests.run_cases(_files_bytes(drafts.draft_files(_store(), process_id, number)), process_id)
            tested = _("draft %(number)s", number=number)
        else:
            version = _number(request.form.get("version"), "version")
            results = modeltests.run_deployed(_store(), process_id, version, current_user.username)
            tested = _("version %(version)s", version=version) if version else _("the newest version")
    except DefinitionError as exc:  # files that do not deploy cannot be tested
        return _process_page(summary[0], 422, problems=[_("The model tests could not run: the files do not deploy.")]
                             + [str(p) for p in exc.problems])
    return _process_page(summary[0], cases=results, tested=tested)


# --- the modeller ----------------------------------------------------------------------------------

def _editable_names(files: Mapping[str, str]) -> list[str]:
    order = {".bpmn": 0, ".dmn": 1, ".json": 2}
    return sorted(files, key=lambda n: (order.get("." + n.rsplit(".", 1)[-1], 3), n))


@bp.route("/<process_id>/edit", methods=["GET", "POST"])
def edit(process_id: str):
    source, files = _source(process_id, request.args)
    names = _editable_names(files)
    name = request.args.get("file") or next((n for n in names if n.endswith(".bpmn")), names[0] if names else "")
    if name not in files:
        raise InvalidInput("there is no file %(name)s here", name=name[:200])
    text = files[name]
    preview = problem = None
    if name.endswith(".json"):
        if request.method == "POST":  # the preview of the text typed, not yet saved
            text = request.form.get("text", "")
        try:
            preview = json.loads(text)
            if not isinstance(preview, dict):
                preview, problem = None, _("The form is not a JSON object.")
        except ValueError as exc:
            problem = _("The form is not JSON: %(problem)s", problem=str(exc))
    elif request.method == "POST":
        return render_template("error.html", message=_("This page cannot be used that way."), status=405), 405
    query = {"version": source["version"]} if "version" in source else {"draft": source["draft"]}
    data = {"xml": text, "file": name, "kind": name.rsplit(".", 1)[-1], "base": source,
            "save": url_for("designer.save", process_id=process_id),
            "lint": url_for("designer.lint", process_id=process_id),
            "process": url_for("designer.process", process_id=process_id),
            "edit": url_for("designer.edit", process_id=process_id),
            "roles": sorted(_roles()), "forms": sorted(n.rsplit("/", 1)[-1] for n in files if n.endswith(".json")
                                                       and not n.endswith(".data.json")),
            "decisions": _decisions(files)}
    return render_template("design_edit.html", process_id=process_id, source=source, query=query, names=names,
                           name=name, text=text, data=data, preview=preview, problem=problem,
                           is_labels=name.endswith(".data.json"))


def _roles() -> list[str]:
    with _store().read() as session:
        return list(access.known_roles(session))


def _decisions(files: Mapping[str, str]) -> list[str]:
    """The decision ids of the DMN files beside the diagram, offered for a business rule task."""
    import re
    found: list[str] = []
    for name, text in files.items():
        if name.endswith(".dmn"):
            found += re.findall(r"<(?:\w+:)?decision\b[^>]*\bid=\"([^\"]+)\"", text)
    return sorted(set(found))


def _edited(process_id: str, payload) -> tuple[dict, dict[str, str], str]:
    """The files of the version or draft edited, with the one file changed as posted: a BPMN
    file keeps the foreign extensions bpmn-js dropped (engine.foreign.keep_extensions)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("text"), str) \
            or not isinstance(payload.get("file"), str) or not isinstance(payload.get("base"), dict):
        raise InvalidInput("send a JSON object with file, text and base")
    base = {k: str(v) for k, v in payload["base"].items() if k in ("version", "draft")}
    source, files = _source(process_id, base)
    name, text = payload["file"], payload["text"]
    if name not in files:
        raise InvalidInput("there is no file %(name)s here", name=name[:200])
    text = drafts.check_file(name, text.encode("utf-8"))
    if name.endswith(".bpmn"):
        try:
            text = foreign.keep_extensions(files[name].encode("utf-8"), text.encode("utf-8")).decode("utf-8")
        except ValueError as exc:
            raise InvalidInput("%(name)s cannot be saved: %(problem)s", name=name, problem=str(exc)) from None
    files[name] = text
    return source, files, name


@bp.post("/<process_id>/save")
def save(process_id: str):
    """Save the edited file with the other files of its version or draft as a new draft (JSON)."""
    source, files, name = _edited(process_id, request.get_json(silent=True))
    number = drafts.save_draft(_store(), process_id, files, current_user.username,
                               based_on=_base_version(process_id, source))
    return jsonify({"number": number, "message": _("Saved as draft %(number)s.", number=number),
                    "edit": url_for("designer.edit", process_id=process_id, draft=number, file=name)})


@bp.post("/<process_id>/lint")
def lint(process_id: str):
    """The lint's findings for the files as edited (not saved), as JSON."""
    _, files, _name = _edited(process_id, request.get_json(silent=True))
    findings = linting.lint(_store(), _files_bytes(files), current_user.username)
    return jsonify({"findings": [f.as_json() for f in findings]})


@bp.post("/<process_id>/save-form")
def save_form(process_id: str):
    """A form file's text from the form editor, saved as a new draft (a plain page form)."""
    source, files = _source(process_id, request.form)
    name = request.form.get("file", "")
    if name not in files:
        raise InvalidInput("there is no file %(name)s here", name=name[:200])
    try:
        files[name] = drafts.check_file(name, request.form.get("text", "").encode("utf-8"))
    except InvalidInput as exc:
        flash(said(exc) + " " + _("Nothing was saved."), "error")
        return redirect(url_for("designer.edit", process_id=process_id, file=name, **source))
    number = drafts.save_draft(_store(), process_id, files, current_user.username,
                               based_on=_base_version(process_id, source))
    flash(_("Saved as draft %(number)s.", number=number), "success")
    return redirect(url_for("designer.edit", process_id=process_id, draft=number, file=name))
