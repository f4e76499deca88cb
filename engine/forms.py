"""Form schemas: JSON Schema (2020-12) with the engine's keywords, and the check of submitted data.

Keywords beyond the standard: `x-lookup` (the value must be known to a named lookup that
`processes/` registers, e.g. `customer`), `x-not-before: "today"` (a date not before the present
day, by the engine clock), `x-title-zh` (Chinese title, ignored here). Every error is reported
by field path, in one sentence, so a page can show it next to the field.

A lookup is called with the field's value and answers True/None (accepted), False ("… is not a
known NAME"), a sentence (refused, with that sentence, at the field) or a dict of sentences by
path below the field ({"0/quantity": "…"} for a list of rows). A lookup that takes a keyword
`form` also gets the whole form as it will stand: the data the step is shown with (the
instance's data, read-only context included) with the submission over it — so a check can
compare a field with the order it names or the value the instance computed. Lookups run inside
the command (`engine.records.find` works there) and change nothing.

A form is the whole list of what its step may write (`undeclared`): a field it does not declare,
a read-only field (shown for context, kept by the engine) or an engine field such as `initiator`
is refused by name, at every level of nesting. An object schema that lists `properties` is
closed unless it says otherwise itself (`additionalProperties`, `patternProperties`).
"""
from __future__ import annotations

import copy
import inspect
import re
from contextvars import ContextVar
from datetime import date
from typing import Any, Callable, Mapping

from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import SchemaError, ValidationError

from . import clock

Lookup = Callable[..., Any]  # (value[, form=...]) -> bool | None | sentence | {sub path: sentence}
# jsonschema validators are frozen: the lookups of the current check, and the form as it will
# stand (shown data and submission), travel beside them.
_lookups: ContextVar[Mapping[str, Lookup]] = ContextVar("bpm_form_lookups", default={})
_document: ContextVar[tuple[Mapping, Mapping]] = ContextVar("bpm_form_document", default=({}, {}))


class FormError(ValueError):
    """Submitted data breaks its form; `fields` maps a field path ("lines/0/quantity") to a sentence."""

    def __init__(self, form: str, fields: dict[str, str]):
        self.form = form
        self.fields = fields
        listed = "; ".join(f"{path or '(form)'}: {message}" for path, message in fields.items())
        super().__init__(f"the data does not satisfy form {form}: {listed}")


def _wants_form(lookup: Lookup) -> bool:
    try:
        return "form" in inspect.signature(lookup).parameters
    except (TypeError, ValueError):
        return False


def _x_lookup(validator, lookup_name, instance, schema):
    lookup = _lookups.get().get(lookup_name)
    if lookup is None:
        yield ValidationError(f"no lookup {lookup_name!r} is registered to check this value")
        return
    if _wants_form(lookup):
        shown, submitted = _document.get()
        answer = lookup(instance, form={**copy.deepcopy(dict(shown)), **copy.deepcopy(dict(submitted))})
    else:
        answer = lookup(instance)
    if answer is False:
        yield ValidationError(f"{instance!r} is not a known {lookup_name}")
    elif isinstance(answer, str) and answer:
        yield ValidationError(answer)
    elif isinstance(answer, dict):
        for where, sentence in answer.items():
            parts = [int(p) if p.isdigit() else p for p in str(where).split("/") if p != ""]
            yield ValidationError(str(sentence), path=parts)


def _x_not_before(validator, bound, instance, schema):
    if not isinstance(instance, str):
        return
    try:
        value = date.fromisoformat(instance[:10])
    except ValueError:
        return  # `format: date` reports it
    if bound == "today":
        limit = clock.now().date()
    else:
        limit = date.fromisoformat(bound)
    if value < limit:
        yield ValidationError(f"{instance} is in the past; the earliest allowed date is {limit.isoformat()}")


_BpmValidator = validators.extend(Draft202012Validator, {
    "x-lookup": _x_lookup,
    "x-not-before": _x_not_before,
})
_FORMATS = FormatChecker()


def check_schema(schema: Any) -> str | None:
    """None if `schema` is a usable form, else one sentence saying why not."""
    if not isinstance(schema, dict):
        return "a form must be a JSON object (a JSON Schema)"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        return f"invalid JSON Schema at {where}: {exc.message}"
    return None


def _paths(error: ValidationError) -> list[str]:
    """Where to show an error; a missing required field is shown at the field itself."""
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        # jsonschema reports each missing property as its own error; find the one it names.
        missing = [name for name in error.validator_value if name not in error.instance]
        named = [name for name in missing if repr(name) in error.message] or missing[:1]
        return ["/".join(parts + [name]) for name in named]
    return ["/".join(parts)]


def _sentence(error: ValidationError) -> str:
    if error.validator == "required":
        return "this field is required"
    if error.validator == "enum":
        return f"must be one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "minItems" and error.validator_value == 1:
        return "needs at least one entry"
    simple = {
        "exclusiveMinimum": "must be greater than {v}",
        "minimum": "must be at least {v}",
        "maximum": "must be at most {v}",
        "exclusiveMaximum": "must be less than {v}",
        "type": "must be of type {v}",
        "format": "is not a valid {v}",
        "minLength": "must not be empty" if error.validator_value == 1 else "must have at least {v} characters",
        "maxLength": "must have at most {v} characters",
        "const": "must be {v}",
    }.get(error.validator)
    if simple:
        return simple.format(v=error.validator_value)
    return error.message


# Set by the engine alone (the starter of an instance); no submission writes them, form or not.
ENGINE_FIELDS = ("initiator",)
NOT_DECLARED = "this form has no such field, so it cannot be written here"
READ_ONLY = "this field is read-only: the engine keeps it"
ENGINE_FIELD = "this field is set by the engine and cannot be written"


def _open_to(schema: Mapping, key: str) -> bool:
    """Whether an object schema itself admits `key` beyond its listed properties."""
    if any(re.search(pattern, key) for pattern in (schema.get("patternProperties") or {})):
        return True
    extra = schema.get("additionalProperties", False)
    return extra is not False and extra is not None


def undeclared(schema: Mapping | None, data: Any, path: str = "") -> dict[str, str]:
    """Field path -> sentence for every value in `data` its form does not let the step write.

    None (no form): any object, except the engine's own fields."""
    if schema is None:
        if isinstance(data, dict):
            return {name: ENGINE_FIELD for name in ENGINE_FIELDS if name in data}
        return {}
    found: dict[str, str] = {}
    if isinstance(data, dict) and isinstance(schema.get("properties"), dict):
        props = schema["properties"]
        for key, value in data.items():
            where = f"{path}/{key}" if path else str(key)
            field = props.get(key)
            if not path and key in ENGINE_FIELDS:
                found[where] = ENGINE_FIELD  # even where a form shows or (wrongly) lists it
            elif not isinstance(field, dict):
                if not _open_to(schema, key):
                    found[where] = NOT_DECLARED
            elif field.get("readOnly"):
                found[where] = READ_ONLY
            else:
                found.update(undeclared(field, value, where))
    elif isinstance(data, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(data):
            found.update(undeclared(schema["items"], value, f"{path}/{i}" if path else str(i)))
    return found


def validate(form: str, schema: dict, data: Any, lookups: Mapping[str, Lookup] | None = None,
             shown: Mapping | None = None) -> dict:
    """Return the data the form accepts or raise `FormError` (undeclared and read-only fields
    included: the form is the whole list of what may be written). `shown`: the data the step is
    shown with (a task's data), for lookups that read the whole form."""
    if not isinstance(data, dict):
        raise FormError(form, {"": "the data must be a JSON object"})
    refused = undeclared(schema, data)
    if refused:
        raise FormError(form, refused)
    submitted = data
    validator = _BpmValidator(schema, format_checker=_FORMATS)
    token = _lookups.set(lookups or {})
    document = _document.set((shown or {}, submitted))
    try:
        errors = sorted(validator.iter_errors(submitted),
                        key=lambda e: (list(map(str, e.absolute_path)), e.message))
    finally:
        _document.reset(document)
        _lookups.reset(token)
    fields: dict[str, str] = {}
    for error in errors:
        if error.validator in ("allOf", "anyOf", "oneOf") and error.context:
            for sub in error.context:
                for path in _paths(sub):
                    fields.setdefault(path, _sentence(sub))
            continue
        for path in _paths(error):
            fields.setdefault(path, _sentence(error))
    if fields:
        raise FormError(form, fields)
    return copy.deepcopy(submitted)


def needs_decision(schema: dict | None) -> bool:
    """An approval form: it asks for a decision."""
    return bool(schema) and "decision" in (schema.get("properties") or {})
