"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json."""
from __future__ import annotations

from engine import instances
from engine.inbox import SCOPES, SORT_KEYS


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {str(code): {"$ref": f"#/components/responses/{name}"} for code, name in (
    (400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"),
    (409, "Conflict"), (413, "TooLarge"), (422, "Unprocessable"), (429, "TooMany"))}


def _op(summary: str, responses: dict, *, body: dict | None = None, params: list | None = None,
        codes=(400, 401, 403, 404, 409, 422)) -> dict:
    # Every request may be refused as bad (a NUL anywhere, say); one with a body as too large.
    codes = sorted(set(codes) | {400} | ({413} if body is not None else set()))
    op = {"summary": summary, "responses": {**responses, **{str(c): ERRORS[str(c)] for c in codes}}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


DATA_BODY = {"type": "object", "properties": {"data": {"type": "object"}}}
# Exactly once (engine.runtime, "exactly once"): the same key again answers with the first result.
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^\\S(.*\\S)?$"},
    "description": "Any id of the caller's choosing (e.g. a UUID): sent again with the same request "
                   "(after a lost reply), it answers with the first result and changes nothing; with "
                   "different content, 409. Keys are the caller's own and kept for 24 hours."}


def _instance_params() -> list[dict]:
    text = {"type": "string"}
    return [
        {"name": "scope", "in": "query", "schema": {"enum": list(instances.SCOPES)},
         "description": "took_part (default; auditors: all), started, all (auditors only)"},
        {"name": "q", "in": "query", "schema": {**text, "maxLength": instances.MAX_Q},
         "description": "free text, any case, within business key, customer, initiator and process name"},
        *({"name": n, "in": "query", "schema": text} for n in ("process", "business_key", "customer")),
        {"name": "actor", "in": "query", "schema": text, "description": "a user who took part in it"},
        {"name": "started_from", "in": "query", "schema": {"type": "string", "format": "date"},
         "description": "first day, in the deployment's time zone"},
        {"name": "started_to", "in": "query", "schema": {"type": "string", "format": "date"},
         "description": "last day (inclusive), in the deployment's time zone"},
        {"name": "status", "in": "query", "schema": {"enum": list(instances.STATUSES)}},
        *({"name": n, "in": "query", "schema": {"type": "boolean"}} for n in ("overdue", "breach", "incident")),
        {"name": "sort", "in": "query", "schema": {"enum": list(instances.SORT_KEYS)}},
        {"name": "desc", "in": "query", "schema": {"type": "boolean"}, "description": "default true: newest first"},
        {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                       "maximum": instances.MAX_PER_PAGE}},
        {"name": "after", "in": "query", "schema": text, "description": "a previous reply's next_after"},
        {"name": "before", "in": "query", "schema": text, "description": "a previous reply's prev_before"},
    ]


def document() -> dict:
    task_id, instance_id = _path_param("task_id"), _path_param("instance_id")
    inbox_params = [
        {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 200},
         "description": "free text, any case, within business key, customer, step name and process id"},
        {"name": "process", "in": "query", "schema": {"type": "string"}},
        {"name": "customer", "in": "query", "schema": {"type": "string"}},
        {"name": "overdue", "in": "query", "schema": {"type": "boolean"}},
        {"name": "amount_min", "in": "query", "schema": {"type": "number"}},
        {"name": "amount_max", "in": "query", "schema": {"type": "number"}},
        {"name": "scope", "in": "query", "schema": {"enum": list(SCOPES)}},
        {"name": "sort", "in": "query", "schema": {"enum": list(SORT_KEYS)}},
        {"name": "desc", "in": "query", "schema": {"type": "boolean"}},
        {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
        {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
        {"name": "after", "in": "query", "schema": {"type": "string"},
         "description": "the page after this position (a previous reply's next_after); page then only numbers it"},
        {"name": "before", "in": "query", "schema": {"type": "string"},
         "description": "the page before this position (a previous reply's prev_before)"},
    ]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Branch BPM API", "version": "1",
                 "description": "Start processes, work the task inbox, complete forms, read instances "
                                "and their hash-chained history. Errors: {error, fields}."},
        "servers": [{"url": "/api"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/v1/tokens": {"post": {**_op("Exchange username and password for a bearer token",
                                          {"201": _json({"type": "object", "properties": {
                                              "token": {"type": "string"}, "username": {"type": "string"},
                                              "id": {"type": "string"}, "expires_at": {"type": "string"}}},
                                              "Created")},
                                          body={"type": "object", "required": ["username", "password"],
                                                "properties": {"username": {"type": "string"},
                                                               "password": {"type": "string"}}},
                                          codes=(400, 401, 429)), "security": []},
                           "get": _op("The caller's bearer tokens (ids, not the tokens), newest first",
                                      {"200": _json({"type": "array", "items": _ref("Token")})},
                                      codes=(401,))},
            "/v1/tokens/{token_id}": {"delete": _op(
                "Revoke one of the caller's tokens: it stops working at once",
                {"200": _json(_ref("Token"))}, params=[_path_param("token_id")], codes=(401, 403, 404))},
            "/v1/me": {"get": _op("Who the caller is", {"200": _json(_ref("Me"))}, codes=(401,))},
            "/v1/processes": {"get": _op("Processes the caller may start, with their start forms",
                                         {"200": _json({"type": "array", "items": _ref("Startable")})},
                                         codes=(401,))},
            "/v1/processes/{process_id}/instances": {"post": _op(
                "Start an instance", {"201": _json(_ref("Instance"), "Created")}, body=DATA_BODY,
                params=[_path_param("process_id"), IDEMPOTENCY_KEY])},
            "/v1/processes/{process_id}/migration": {
                "get": _op("The dry run of moving the running instances of one version to another "
                           "(designers): for each, whether it can move, where its waiting tokens land, or why "
                           "not; changes nothing", {"200": _json({"type": "array", "items": _ref("Move")})},
                           params=[_path_param("process_id"),
                                   *({"name": n, "in": "query", "required": True,
                                      "schema": {"type": "integer", "minimum": 1}} for n in ("from", "to"))],
                           codes=(400, 401, 403, 404)),
                "post": _op("Move those that can, each in its own transaction as one logged step "
                            "(command migrate); the others stay where they are, with the reason",
                            {"200": _json({"type": "array", "items": _ref("Move")})},
                            body={"type": "object", "required": ["from", "to"], "properties": {
                                "from": {"type": "integer", "minimum": 1}, "to": {"type": "integer", "minimum": 1}}},
                            params=[_path_param("process_id")], codes=(400, 401, 403, 404))},
            "/v1/processes/{process_id}/drafts": {
                "get": _op("The process's drafts, oldest first (designers; 403 otherwise)",
                           {"200": _json({"type": "array", "items": _ref("DraftSummary")})},
                           params=[_path_param("process_id")], codes=(401, 403)),
                "post": _op("Save files as the process's next draft (not deployed); each file is checked as "
                            "BPMN or DMN XML or a JSON object, 400 naming the file otherwise",
                            {"201": _json({"type": "object", "required": ["process_id", "number"], "properties": {
                                "process_id": {"type": "string"}, "number": {"type": "integer"}}}, "Created")},
                            body={"type": "object", "required": ["files"], "properties": {
                                "files": {"type": "object", "additionalProperties": {"type": "string"}},
                                "based_on_version": {"type": "integer", "minimum": 1}}},
                            params=[_path_param("process_id")], codes=(400, 401, 403, 404))},
            "/v1/processes/{process_id}/drafts/{number}": {"get": _op(
                "One draft with its files, by name", {"200": _json({"type": "object", "properties": {
                    "process_id": {"type": "string"}, "number": {"type": "integer"},
                    "files": {"type": "object", "additionalProperties": {"type": "string"}}}})},
                params=[_path_param("process_id"), _path_param("number")], codes=(400, 401, 403, 404))},
            "/v1/processes/{process_id}/drafts/{number}/deploy": {"post": _op(
                "Deploy a draft as the process's next version after the lint; 422 with the lint's findings "
                "(rule, severity, file, line, element_id, message, fix) when it finds an error",
                {"200": _json({"type": "array", "items": {"type": "object"}})},
                params=[_path_param("process_id"), _path_param("number")], codes=(400, 401, 403, 404, 422))},
            "/v1/processes/{process_id}/model-tests": {"post": _op(
                "Run the model tests attached to a deployed version of the process (its "
                "<process_id>.cases.json; the newest version unless the body names one) on a throwaway "
                "database; for designers (403 otherwise), 404 for no such process or version",
                {"200": _json({"type": "object", "required": ["results", "passed"], "properties": {
                    "process_id": {"type": "string"}, "version": {"type": ["integer", "null"]},
                    "passed": {"type": "boolean"},
                    "results": {"type": "array", "items": _ref("ModelTestResult")}}})},
                body={"type": "object", "properties": {"version": {"type": "integer", "minimum": 1}}},
                params=[_path_param("process_id")], codes=(400, 401, 403, 404, 422))},
            "/v1/tasks": {"get": _op("The caller's inbox: held tasks and tasks open to their roles",
                                     {"200": _json(_ref("InboxPage"))}, params=inbox_params,
                                     codes=(400, 401))},
            "/v1/tasks/{task_id}": {"get": _op("A task with its form, data and draft",
                                               {"200": _json(_ref("TaskDetail"))}, params=[task_id],
                                               codes=(401, 403, 404, 409))},
            "/v1/tasks/{task_id}/claim": {"post": _op("Take a task", {"200": _json(_ref("Task"))},
                                                      params=[task_id])},
            "/v1/tasks/{task_id}/unclaim": {"post": _op("Give a task back to its role",
                                                        {"200": _json(_ref("Task"))}, params=[task_id])},
            "/v1/tasks/{task_id}/complete": {"post": _op(
                "Submit the task's form; 422 with every error by field, nothing changed",
                {"200": _json(_ref("Instance"))}, body=DATA_BODY, params=[task_id, IDEMPOTENCY_KEY])},
            "/v1/tasks/{task_id}/draft": {"put": _op("Save form data without submitting",
                                                     {"200": _json({"type": "object"})}, body=DATA_BODY,
                                                     params=[task_id])},
            "/v1/tasks/{task_id}/delegate": {"post": _op(
                "Hand the task to a colleague of the same role", {"200": _json(_ref("Task"))},
                body={"type": "object", "required": ["to"], "properties": {
                    "to": {"type": "string"}, "note": {"type": "string"}}}, params=[task_id])},
            "/v1/tasks/{task_id}/hand-back": {"post": _op(
                "Return an escalated task to its previous holder", {"200": _json(_ref("Task"))},
                params=[task_id])},
            "/v1/tasks/{task_id}/reply": {"post": _op(
                "Reply to one's superior on a task (复命, within 4 hours): in progress with the time it "
                "is expected to be done by, or cannot finish with the reason. The superior is notified; "
                "the first reply gives the task a fresh due window; 400 with a sentence when the kind, "
                "time or reason is wrong", {"200": _json(_ref("Task"))},
                body={"type": "object", "required": ["kind"], "properties": {
                    "kind": {"type": "string", "enum": ["in_progress", "cannot_finish"]},
                    "expected_by": {"type": "string", "format": "date-time"},
                    "reason": {"type": "string"}}}, params=[task_id])},
            "/v1/tasks/{task_id}/comments": {"post": _op(
                "Comment on a task", {"201": _json({"type": "object"}, "Created")},
                body={"type": "object", "required": ["body"], "properties": {"body": {"type": "string"}}},
                params=[task_id])},
            "/v1/instances": {"get": _op(
                "The instances the caller may see — took part in (default), started, or for auditors all "
                "(their default; 403 for anyone else) — filtered, searched by free text over business "
                "key, customer, initiator and process name, sorted and paged by position; 400 naming a "
                "bad parameter", {"200": _json(_ref("InstancePage"))}, params=_instance_params(),
                codes=(400, 401, 403))},
            "/v1/instances/{instance_id}": {"get": _op("An instance: status, data, open tasks, comments",
                                                       {"200": _json(_ref("Instance"))},
                                                       params=[instance_id], codes=(401, 403, 404))},
            "/v1/instances/{instance_id}/history": {"get": _op(
                "The instance's log: step, time, actor, command, data, hash",
                {"200": _json({"type": "array", "items": _ref("HistoryEntry")})}, params=[instance_id],
                codes=(401, 403, 404))},
            "/v1/instances/{instance_id}/bundle": {"get": _op(
                "The instance's evidence bundle: a tar file of its log, the definition version's files, "
                "state hashes, the verification result and a manifest of SHA-256s; `bpm verify --bundle` "
                "checks it without the database. For auditors; anyone else gets 404, as for no such instance",
                {"200": {"description": "OK", "content": {"application/x-tar": {
                    "schema": {"type": "string", "contentMediaType": "application/x-tar"}}}}},
                params=[instance_id], codes=(401, 404))},
            "/v1/messages/{name}": {"post": _op(
                "Deliver a message (a payment notice) to the waiting instance; 403 unless the caller "
                "holds a role the message allows (payment_received: finance, bank_feed); 400 without "
                "the correlation keys the process declares; 404 when no instance waits for it",
                {"200": _json({"type": "object", "properties": {
                    "delivered_to": {"type": "array", "items": {"type": "string"}}}})},
                body={"type": "object", "properties": {"data": {"type": "object"},
                                                       "correlation": {"type": "object"}}},
                params=[_path_param("name"), IDEMPOTENCY_KEY])},
            "/v1/orders": {"get": _op(
                "Finance's order search for receipts (the \"order\" business records: order_no, customer, "
                "amount, paid, balance, status...), awaiting payment first; 403 unless the caller is finance",
                {"200": _json({"type": "array", "items": {"type": "object"}})},
                params=[{"name": "order_no", "in": "query", "schema": {"type": "string"},
                         "description": "the start of the order number"},
                        {"name": "customer", "in": "query", "schema": {"type": "string"}},
                        {"name": "amount", "in": "query", "schema": {"type": "string"},
                         "description": "the order's amount or its balance"}],
                codes=(400, 401, 403))},
            **_archive_paths(),
            **_report_paths(),
            "/v1/credit-list": {"get": _op(
                "The credit list (客户信用等级一览表): each customer's level (A, B, C or null: not rated) and "
                "the day it holds from, and the changes of level, newest first, each with its approver, "
                "reason and credit_review instance (sales secretaries, managers, finance, auditor)",
                {"200": _json({"type": "object", "properties": {
                    "customers": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string"}, "name": {"type": "string"},
                        "level": {"type": ["string", "null"]}, "since": {"type": "string"}}}},
                    "changes": {"type": "array", "items": {"type": "object", "properties": {
                        "customer": {"type": "string"}, "at": {"type": "string"},
                        "approved_by": {"type": "string"}, "from": {"type": ["string", "null"]},
                        "to": {"type": "string"}, "reason": {"type": "string"},
                        "instance_id": {"type": ["string", "null"]}}}}}})},
                params=[{"name": "customer", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                      "maximum": 1000}}],
                codes=(400, 401, 403, 404))},
            "/v1/regions/{region_id}/capital": {"get": _op(
                "A region's capital in use (区域资金占用, seed 002 二) today: retail customers' goods unpaid, "
                "stock made and not yet shipped, overdue contract receivables (each overdue order listed), "
                "the limit (7 % of the year's collections) and over_by (+ over, − under); its regional "
                "manager, the VP of sales and the general manager",
                {"200": _json({"type": "object", "properties": {
                    "region": {"type": "string"}, "name": {"type": "string"}, "as_of": {"type": "string"},
                    "retail_goods": {"type": "number"}, "stock": {"type": "number"},
                    "overdue_receivables": {"type": "number"}, "capital_in_use": {"type": "number"},
                    "year_collections": {"type": "number"}, "rate": {"type": "number"},
                    "limit": {"type": "number"}, "over_by": {"type": "number"}, "over": {"type": "boolean"},
                    "overdue_orders": {"type": "array", "items": {"type": "object"}}}})},
                params=[_path_param("region_id")], codes=(401, 403, 404))},
            "/v1/lint": {"post": _lint_op()},
            "/v1/notifications": {"get": _op("The caller's notifications, newest first",
                                             {"200": _json({"type": "array", "items": {"type": "object"}})},
                                             codes=(401,))},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "session": {"type": "apiKey", "in": "cookie", "name": "session"}},
            "responses": {name: _json(_ref("Error"), text) for name, text in (
                ("BadRequest", "Bad input"), ("Unauthorized", "Not signed in"),
                ("Forbidden", "Not allowed"), ("NotFound", "Unknown"),
                ("Conflict", "Already done, or changed by someone else meanwhile"),
                ("Unprocessable", "The form's rules are broken (fields name each problem), or a script "
                                  "or service failed on this data: nothing changed, an incident records it"),
                ("TooMany", "Too many failed sign-ins for this user or address; wait"),
                ("TooLarge", "The request body is larger than the server takes (BPM_MAX_CONTENT_LENGTH)"))},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "fields"], "properties": {
                    "error": {"type": "string"}, "fields": {"type": "object",
                                                            "additionalProperties": {"type": "string"}},
                    "incident": {"type": "integer"}}},
                "Move": {"type": "object", "required": ["id", "can_move", "reason", "tokens_to", "from_version",
                                                        "to_version", "moved"], "properties": {
                    "id": {"type": "string", "description": "the instance"},
                    "can_move": {"type": "boolean"},
                    "reason": {"type": ["string", "null"], "description": "why it cannot move; null when it can"},
                    "tokens_to": {"type": "array", "items": {"type": "string"},
                                  "description": "element ids of the target version where its waiting tokens land"},
                    "from_version": {"type": "integer"}, "to_version": {"type": "integer"},
                    "moved": {"type": "boolean", "description": "false in a dry run"}}},
                "Token": {"type": "object", "required": ["id", "created_at", "expires_at", "active"],
                          "properties": {"id": {"type": "string"}, "created_at": {"type": "string"},
                                         "expires_at": {"type": ["string", "null"]},
                                         "revoked_at": {"type": ["string", "null"]},
                                         "active": {"type": "boolean"}}},
                "Finding": {"type": "object", "properties": {
                    "rule": {"type": "string", "description": "deploy, dmn-cell, unwritten-variable, unread-field, "
                                                              "no-default, unreachable, no-way-out"},
                    "severity": {"enum": ["error", "warning"]}, "file": {"type": "string"},
                    "line": {"type": ["integer", "null"]}, "element_id": {"type": ["string", "null"]},
                    "message": {"type": "string"}, "fix": {"type": ["string", "null"]}}},
                "Me": {"type": "object", "properties": {"username": {"type": "string"},
                                                        "roles": {"type": "array", "items": {"type": "string"}},
                                                        "unread": {"type": "integer"}}},
                "Task": {"type": "object", "required": ["id", "instance_id", "process_id", "name", "role",
                                                        "assignee", "due"], "properties": {
                    "id": {"type": "string"}, "instance_id": {"type": "string"},
                    "process_id": {"type": "string"}, "name": {"type": "string"},
                    "element_id": {"type": "string"}, "role": {"type": ["string", "null"]},
                    "assignee": {"type": ["string", "null"]}, "due": {"type": ["string", "null"]},
                    "created": {"type": "string"}, "form": {"type": ["string", "null"]},
                    "business_key": {"type": ["string", "null"]}, "customer": {"type": ["string", "null"]},
                    "amount": {"type": ["number", "null"]},
                    "office_scope": {"type": "string", "description":
                                     "the office or region whose people may take the task while it is open; "
                                     "empty: anyone with the role"},
                    "escalated_from": {"type": ["string", "null"], "description":
                                       "who held the task before an escalation moved it to its assignee"}}},
                "InboxPage": {"type": "object", "properties": {
                    "tasks": {"type": "array", "items": _ref("Task")}, "total": {"type": "integer"},
                    "page": {"type": "integer"}, "per_page": {"type": "integer"}, "pages": {"type": "integer"},
                    "next_after": {"type": ["string", "null"]}, "prev_before": {"type": ["string", "null"]}}},
                "InstanceRow": {"type": "object", "required": ["id", "process_id", "status", "initiator"],
                                "properties": {
                    "id": {"type": "string"}, "process_id": {"type": "string"}, "process_name": {"type": "string"},
                    "version": {"type": "integer"}, "business_key": {"type": ["string", "null"]},
                    "customer": {"type": ["string", "null"]}, "amount": {"type": ["number", "null"]},
                    "status": {"enum": list(instances.STATUSES)}, "initiator": {"type": "string"},
                    "started": {"type": "string", "format": "date-time"},
                    "changed": {"type": "string", "format": "date-time"},
                    "steps": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "element_id": {"type": "string"},
                        "assignee": {"type": ["string", "null"]}, "role": {"type": ["string", "null"]},
                        "due": {"type": ["string", "null"]}}}},
                    "overdue": {"type": "boolean"}, "breach": {"type": "boolean"}, "incident": {"type": "boolean"}}},
                "InstancePage": {"type": "object", "properties": {
                    "instances": {"type": "array", "items": _ref("InstanceRow")}, "total": {"type": "integer"},
                    "more": {"type": "boolean", "description": "more match than total (counted up to 1,000; Next goes on by position)"},
                    "scope": {"enum": list(instances.SCOPES)},
                    "page": {"type": "integer"}, "per_page": {"type": "integer"}, "pages": {"type": "integer"},
                    "next_after": {"type": ["string", "null"]}, "prev_before": {"type": ["string", "null"]}}},
                "TaskDetail": {"type": "object", "properties": {
                    "task": _ref("Task"), "form": {"type": ["string", "null"]},
                    "schema": {"type": ["object", "null"]}, "data": {"type": "object"},
                    "draft": {"type": ["object", "null"]}, "may_act": {"type": "boolean"},
                    "may_reply": {"type": "boolean"}, "reply_restarted": {"type": "boolean"},
                    "last_reply": {"type": ["object", "null"]}}},
                "Instance": {"type": "object", "required": ["id", "process_id", "version", "status", "data",
                                                            "tasks"], "properties": {
                    "id": {"type": "string"}, "process_id": {"type": "string"}, "version": {"type": "integer"},
                    "status": {"enum": ["running", "completed", "cancelled", "error"]},
                    "data": {"type": "object"}, "tasks": {"type": "array", "items": _ref("Task")}}},
                "DraftSummary": {"type": "object", "required": ["process_id", "number", "files"], "properties": {
                    "process_id": {"type": "string"}, "number": {"type": "integer"},
                    "based_on_version": {"type": ["integer", "null"]}, "author": {"type": "string"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "files": {"type": "array", "items": {"type": "string"}}}},
                "ModelTestResult": {"type": "object", "required": ["name", "passed", "problems", "path"],
                                    "properties": {
                    "name": {"type": "string"}, "passed": {"type": "boolean"},
                    "problems": {"type": "array", "items": {"type": "string"},
                                 "description": "one sentence each, e.g. step 2: expected task 'vp_approval', found 'gm_approval'"},
                    "path": {"type": "array", "items": {"type": "string"},
                             "description": "the human tasks the instance met, by element id, in order"}}},
                "Startable": {"type": "object", "properties": {
                    "process_id": {"type": "string"}, "version": {"type": "integer"},
                    "name": {"type": "string"}, "form": {"type": ["string", "null"]},
                    "schema": {"type": ["object", "null"]}}},
                **_ARCHIVE_SCHEMAS,
                **_REPORT_SCHEMAS,
                "HistoryEntry": {"type": "object", "properties": {
                    "seq": {"type": "integer"}, "at": {"type": "string"}, "actor": {"type": "string"},
                    "command": {"type": "string"}, "task_id": {"type": ["string", "null"]},
                    "element_id": {"type": ["string", "null"]}, "data": {"type": ["object", "null"]},
                    "reply": {"type": ["object", "null"], "description": "a reply's kind, expected_by, "
                                                                         "reason and to (the superior)"},
                    "hash": {"type": "string"}}},
            },
        },
    }


# --- customer archives (客户档案) ------------------------------------------------------------------

_ARCHIVE_SCHEMAS = {
    "CustomerCard": {"type": "object", "required": ["id", "name", "revision", "history", "basis"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "address": {"type": "string"},
        "phones": {"type": "array", "items": {"type": "string"}},
        "contacts": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "title": {"type": "string"}, "phone": {"type": "string"}}}},
        "characteristics": {"type": "string"}, "family": {"type": "string"},
        "credit_level": {"type": ["string", "null"]}, "notes": {"type": "string"},
        "rep": {"type": ["string", "null"]}, "revision": {"type": "integer"},
        "updated_at": {"type": "string"}, "updated_by": {"type": "string"},
        "history": {"type": "array", "items": {"type": "object", "properties": {
            "revision": {"type": "integer"}, "at": {"type": "string"}, "by": {"type": "string"},
            "changes": {"type": "object"}}}},
        "basis": {"type": "string", "description": "why the caller may read it: role:…, head:…, rep or grant"},
        "grant": {"type": ["object", "null"]}, "may_edit": {"type": "boolean"}}},
    "ArchiveRead": {"type": "object", "properties": {
        "id": {"type": "integer"}, "at": {"type": "string"}, "reader": {"type": "string"},
        "customer": {"type": "string"}, "allowed": {"type": "boolean"}, "basis": {"type": ["string", "null"]},
        "grant_id": {"type": ["integer", "null"]}, "door": {"enum": ["web", "api", "cli"]}}},
}


def _lint_op() -> dict:
    op = _op("Lint BPMN, DMN and form files (designers): every problem deploy refuses (severity error) "
             "and what would fail only when a token gets there (warning), each at its file, line and "
             "element, with a fix where one is obvious; 400 without files or with a file that is not "
             "a .bpmn/.dmn (XML) or .json file",
             {"200": _json({"type": "object", "properties": {
                 "findings": {"type": "array", "items": _ref("Finding")}}})},
             body={"type": "object", "required": ["files"], "properties": {
                 "files": {"type": "object", "additionalProperties": {"type": "string"},
                           "description": "file name -> its text"}}},
             codes=(400, 401, 403))
    # Multipart (one part per file, named `files`) is taken too; described in words, since a
    # schema of binary parts is not something a JSON client or the fuzzer reads usefully.
    op["description"] = "Also takes multipart/form-data: one part per file, each named files."
    return op


def _archive_paths() -> dict:
    customer = _path_param("customer_id")
    by_customer = {"name": "customer", "in": "query", "schema": {"type": "string"}}
    return {
        "/v1/customers": {
            "get": _op("Customer ids, with names where the caller may read the card",
                       {"200": _json({"type": "array", "items": {"type": "object"}})}, codes=(401,)),
            "post": _op("Build a new customer card (the department manager; a sales rep, who then serves the "
                        "customer); its creation is the first change in its history; an id in use is a 409",
                        {"201": _json({"type": "object", "properties": {
                            "id": {"type": "string"}, "revision": {"type": "integer"},
                            "changes": {"type": "object"}}}, "Created")},
                        body={"type": "object", "required": ["id", "name"], "properties": {
                            "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9-]{0,19}$"},
                            **{f: {"type": "string"} for f in ("name", "address", "characteristics", "family",
                                                               "notes")},
                            "phones": {"type": "array", "items": {"type": "string"}},
                            "contacts": {"type": "array", "items": {"type": "object", "properties": {
                                k: {"type": "string"} for k in ("name", "title", "phone")}}},
                            "rep": {"type": ["string", "null"]}}},
                        codes=(400, 401, 403, 409))},
        "/v1/customers/{customer_id}": {
            "get": _op("A customer's archive card with its change history (every read recorded; "
                       "403 unless the caller's post, the customer they serve or a grant allows it)",
                       {"200": _json(_ref("CustomerCard"))}, params=[customer], codes=(400, 401, 403, 404)),
            "patch": _op("Change fields of a card (reps for their customers, the department manager for all); "
                         "each change kept with who and when",
                         {"200": _json({"type": "object", "properties": {
                             "id": {"type": "string"}, "revision": {"type": "integer"},
                             "changes": {"type": "object"}}})},
                         body={"type": "object", "required": ["changes"], "properties": {
                             "changes": {"type": "object"}, "revision": {"type": "integer"}}},
                         params=[customer], codes=(400, 401, 403, 404, 409))},
        "/v1/archive-reads": {"get": _op(
            "The record of archive reads, newest first (auditor, general manager)",
            {"200": _json({"type": "array", "items": _ref("ArchiveRead")})},
            params=[by_customer, {"name": "limit", "in": "query",
                                  "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            codes=(400, 401, 403))},
        "/v1/archive-grants": {"get": _op(
            "The general manager's grants of archive access, newest first (auditor, general manager)",
            {"200": _json({"type": "array", "items": {"type": "object"}})}, params=[by_customer],
            codes=(400, 401, 403))},
    }


_REPORT_SCHEMAS = {
    "SlaGroup": {"type": "object", "properties": {
        "key": {"type": "array", "items": {"type": "string"},
                "description": "the group: [process_id], [process_id, element_id], [username], [office_id] "
                               "or [YYYY-MM]; '-' for a task nobody held (or a holder without an office)"},
        "label": {"type": "string"}, "filters": {"type": "object", "description": "the query that lists its breaches"},
        "count": {"type": "integer"}, "done": {"type": "integer"}, "still_open": {"type": "integer"},
        "withdrawn": {"type": "integer"},
        "median_late_seconds": {"type": ["integer", "null"],
                                "description": "from the due time until done (or now, while open)"}}},
    "SlaBreach": {"type": "object", "properties": {
        **{k: {"type": "string"} for k in ("instance_id", "process_id", "process", "task_id", "element_id", "step")},
        **{k: {"type": ["string", "null"]} for k in ("business_key", "customer", "holder", "holder_name", "office",
                                                      "escalated_to", "done_at")},
        "id": {"type": "integer"}, "due_at": {"type": "string"}, "breached_at": {"type": "string"},
        "state": {"enum": ["done", "open", "withdrawn"]}, "late_seconds": {"type": ["integer", "null"]}}},
}


def _report_paths() -> dict:
    filters = [{"name": name, "in": "query", "schema": schema, "description": text} for name, schema, text in (
        ("process", {"type": "string"}, "a process id"),
        ("step", {"type": "string"}, "an element id (with process: one step)"),
        ("person", {"type": "string"}, "the holder's username; '-' for tasks nobody held"),
        ("office", {"type": "string"}, "the holder's office id; '-' for none"),
        ("month", {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}, "of the due time, company time zone"),
        ("since", {"type": "string", "format": "date"}, "first day of the due time (company time zone)"),
        ("until", {"type": "string", "format": "date"}, "last day of the due time (company time zone)"))]
    by = {"name": "by", "in": "query", "schema": {"enum": ["process", "step", "person", "office", "month"],
                                                  "default": "process"}}
    return {
        "/v1/reports/sla": {"get": _op(
            "The SLA breach report (auditor): breaches grouped by process, step, person, office or month, "
            "with counts and median lateness",
            {"200": _json({"type": "object", "properties": {
                "by": {"type": "string"}, "filters": {"type": "object"},
                "groups": {"type": "array", "items": _ref("SlaGroup")}}})},
            params=[by, *filters], codes=(400, 401, 403))},
        "/v1/reports/sla/breaches": {"get": _op(
            "The breaches of one group of the SLA report (its filters), latest due first (auditor)",
            {"200": _json({"type": "object", "properties": {
                "total": {"type": "integer"}, "breaches": {"type": "array", "items": _ref("SlaBreach")}}})},
            params=filters, codes=(400, 401, 403))},
    }
