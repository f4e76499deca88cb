"""The engine's refusals and failures: each carries one sentence a person can act on.

Kept apart from engine.runtime (which re-exports them) so that a read — the inbox, the instances
page, a CLI command — can refuse without importing the executor (SpiffWorkflow, forms, scripts).
"""
from __future__ import annotations

from typing import Any


class EngineError(Exception):
    """A refused or failed command; `str()` is the sentence to show, in English.

    `template % params` is that sentence; a page shows `template` translated (the templates are
    extracted into the web's message catalogs, see babel.cfg) with the same `params`."""
    status = "refused"

    def __init__(self, template: str, **params: Any):
        self.template = template
        self.params = params
        super().__init__(template % params if params else template)


class NotFound(EngineError):
    status = "not_found"


class Forbidden(EngineError):
    status = "forbidden"


class Conflict(EngineError):
    """The task or instance changed under the caller (already done, held by someone else)."""
    status = "conflict"


class InvalidInput(EngineError):
    """Bad input; `fields` maps a form field path to what is wrong with it, when a form said so."""
    status = "invalid"

    def __init__(self, template: str, fields: dict[str, str] | None = None, **params: Any):
        super().__init__(template, **params)
        self.fields = fields or {}


class FormRejected(InvalidInput):
    """Data that breaks its task's or start event's form; `fields` names every problem."""


class CommandFailed(EngineError):
    """A script or service failed; the command was rolled back and an incident recorded."""
    status = "failed"

    def __init__(self, template: str, incident_id: int | None, instance_id: str | None = None, **params: Any):
        super().__init__(template, **params)
        self.incident_id = incident_id
        self.instance_id = instance_id
