"""Web forms drawn from the JSON Schemas of forms/: field order and widgets, titles in the page's
language, and the posted fields turned back into JSON by the schema (numbers, booleans, rows).

Field names in the page follow the JSON path with "-" between the parts: `customer`,
`lines-0-quantity`. A hidden field named like the array (`lines`) and one per row (`lines-0`)
mark that the array and each row were on the page, so an empty row survives a round trip.
The engine checks the data; this module only gives it the right types.
"""
from __future__ import annotations

import copy
import math
import re
from typing import Any, Iterable, Mapping

SEP = "-"
# Filled by the person acting on the step, never carried over from the previous approver.
APPROVAL_FIELDS = ("decision", "comment")
TRUE_WORDS = ("true", "on", "1", "yes")


# --- reading a schema ------------------------------------------------------------------------

def name_of(prefix: str, key: str | int) -> str:
    return f"{prefix}{SEP}{key}" if prefix else str(key)


def properties(schema: Mapping | None) -> dict[str, dict]:
    return dict((schema or {}).get("properties") or {})


def ordered_fields(schema: Mapping | None) -> list[tuple[str, dict]]:
    """The properties in the order of `x-ui.order`, then the others in schema order."""
    props = properties(schema)
    order = [n for n in ((schema or {}).get("x-ui") or {}).get("order") or [] if n in props]
    order += [n for n in props if n not in order]
    return [(n, props[n]) for n in order]


def kind(field: Mapping) -> str:
    """The JSON type a field holds ('string' when the schema does not say)."""
    t = field.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if t is None and "enum" in field:
        values = field["enum"]
        if values and all(isinstance(v, bool) for v in values):
            return "boolean"
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return "number"
    return t or "string"


def is_money(field: Mapping) -> bool:
    """Money is a number in CNY (docs/conventions.md): named so in its title, or by x-ui."""
    if kind(field) not in ("number", "integer"):
        return False
    return field.get("x-ui") == "money" or field.get("format") == "money" or \
        "CNY" in str(field.get("title", ""))


def widget(field: Mapping, ui_widget: str | None = None, editable: bool = True) -> str:
    """How to draw the field: readonly, rows, list, group, radio, select, checkbox, textarea,
    date, money, integer, number or text."""
    if not editable or field.get("readOnly"):
        return "readonly"
    t = kind(field)
    if t == "array":
        return "rows" if kind(field.get("items") or {}) == "object" else "list"
    if t == "object":
        return "group"
    if "enum" in field:
        return "radio" if ui_widget == "radio" else "select"
    if t == "boolean":
        return "checkbox"
    if t in ("number", "integer"):
        return "money" if is_money(field) else t
    if field.get("format") == "date":
        return "date"
    if ui_widget == "textarea":
        return "textarea"
    return "text"


def ui_widgets(schema: Mapping | None) -> dict[str, str]:
    return dict((((schema or {}).get("x-ui") or {}).get("widgets")) or {})


def title(field: Mapping, lang: str, fallback: str = "") -> str:
    if lang.startswith("zh") and field.get("x-title-zh"):
        return field["x-title-zh"]
    return field.get("title") or field.get("x-title-zh") or fallback


def hidden(field: Mapping | None) -> bool:
    """A data field kept for the engine or a script (`"x-hidden": true` in the process's label
    table, forms/<process>.data.json), never shown as the instance's data."""
    return bool(field) and bool(field.get("x-hidden"))


def visible_changes(changes: list, titles: Mapping[str, Mapping]) -> list:
    """The (key, before, after) of a step's changes that are shown: hidden fields left out."""
    return [c for c in changes if not hidden(titles.get(c[0]))]


def enum_options(field: Mapping, lang: str) -> list[tuple[Any, str]]:
    titles = field.get("x-enum-titles-zh" if lang.startswith("zh") else "x-enum-titles") or \
        field.get("x-enum-titles") or {}
    return [(v, titles.get(str(v), str(v))) for v in field.get("enum") or []]


def enum_label(field: Mapping, value: Any, lang: str) -> str:
    return dict((str(v), label) for v, label in enum_options(field, lang)).get(str(value), str(value))


def is_required(schema: Mapping | None, name: str) -> bool:
    return name in ((schema or {}).get("required") or [])


def decision_only(schema: Mapping | None) -> bool:
    """An approval form that asks for nothing but the decision, so 'approve' is a whole answer."""
    if not schema:
        return False
    decision = properties(schema).get("decision")
    if not decision or "approve" not in (decision.get("enum") or []):
        return False
    return set(schema.get("required") or []) <= {"decision"}


# --- from the posted form to JSON -------------------------------------------------------------

# What people type inside a number and a number is read without: spaces, thousands separators,
# the currency sign (receipts read amounts the same way).
SEPARATORS = re.compile(r"[\s,，¥￥]")


def _number(raw: str, integer: bool) -> Any:
    """A number from what was typed (thousands separators and a currency sign allowed); the
    text itself when it is not one, so the engine can say so next to the field and the page
    can show it again."""
    text = SEPARATORS.sub("", raw)
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return raw
    if not math.isfinite(value):
        return raw
    return int(value) if value.is_integer() else value


def _scalar(field: Mapping, raw: str | None) -> tuple[bool, Any]:
    """(present, value) of one posted scalar."""
    if raw is None:
        return False, None
    t = kind(field)
    text = raw.replace("\r\n", "\n").strip()
    if text == "":
        return False, None
    if t in ("number", "integer"):
        return True, _number(text, t == "integer")
    if t == "boolean":
        return True, text.lower() in TRUE_WORDS
    return True, text


def _indices(form: Mapping, name: str) -> list[int]:
    pattern = re.compile(rf"^{re.escape(name)}{SEP}([0-9]{{1,6}})(?:{SEP}|$)")
    found = {int(m.group(1)) for key in form.keys() if (m := pattern.match(key))}
    return sorted(found)


def _value(field: Mapping, form: Mapping, name: str) -> tuple[bool, Any]:
    t = kind(field)
    if t == "object":
        return True, parse_object(field, form, name)
    if t == "array":
        items = field.get("items") or {}
        rows = _indices(form, name)
        if not rows and name not in form:
            return False, None
        values = []
        for i in rows:
            present, value = _value(items, form, name_of(name, i))
            if kind(items) == "object":
                values.append(value)
            elif present:  # an empty entry of a list (a file name not given) is nothing, not ""
                values.append(value)
        if not values and kind(items) != "object":
            return False, None  # nothing listed: nothing stored
        return True, values
    if t == "boolean" and "enum" not in field:
        return True, (form.get(name) or "").strip().lower() in TRUE_WORDS  # unchecked boxes send nothing
    return _scalar(field, form.get(name))


def parse_object(schema: Mapping, form: Mapping, prefix: str = "") -> dict:
    data: dict = {}
    for key, field in properties(schema).items():
        if field.get("readOnly"):
            continue  # context for the reader; the engine never takes it from a submission
        present, value = _value(field, form, name_of(prefix, key))
        if present:
            data[key] = value
    return data


def parse(schema: Mapping | None, form: Mapping) -> dict:
    """The JSON a posted form stands for, by the schema; read-only fields are left out."""
    return parse_object(schema or {}, form)


# --- editing rows without JavaScript ----------------------------------------------------------

def _locate(schema: Mapping, data: dict, name: str) -> tuple[list | None, dict]:
    """The list in `data` that the array field `name` holds, and its items' schema."""
    field: Mapping = {"type": "object", "properties": properties(schema)}
    holder: Any = data
    for part in name.split(SEP):
        if kind(field) == "object" and isinstance(holder, dict):
            field = properties(field).get(part) or {}
            if not field or field.get("readOnly") or kind(field) not in ("object", "array"):
                return None, {}
            holder = holder.setdefault(part, [] if kind(field) == "array" else {})
        elif kind(field) == "array" and isinstance(holder, list) and _row_number(part) is not None \
                and int(part) < len(holder):
            field, holder = field.get("items") or {}, holder[int(part)]
        else:
            return None, {}
    if kind(field) == "array" and isinstance(holder, list):
        return holder, field.get("items") or {}
    return None, {}


def _row_number(text: str) -> int | None:
    """A row index as a page writes it (ASCII digits, a sensible size), or None."""
    return int(text) if re.fullmatch(r"[0-9]{1,6}", text) else None


def add_row(schema: Mapping | None, data: dict, name: str) -> bool:
    """Append an empty row to the array field `name` (e.g. 'lines'); False if there is none."""
    rows, items = _locate(schema or {}, data, name)
    if rows is None:
        return False
    rows.append({} if kind(items) == "object" else "")
    return True


def remove_row(schema: Mapping | None, data: dict, row_name: str) -> bool:
    """Remove the row `row_name` (e.g. 'lines-2'); False if there is no such row."""
    name, _, index = row_name.rpartition(SEP)
    if _row_number(index) is None:
        return False
    rows, _ = _locate(schema or {}, data, name)
    if rows is None or int(index) >= len(rows):
        return False
    del rows[int(index)]
    return True


# --- values to show, errors by field ----------------------------------------------------------

def with_context(schema: Mapping | None, submitted: dict, data: Mapping) -> dict:
    """The submitted values plus the read-only fields, which always come from the instance."""
    values = copy.deepcopy(submitted)
    for key, field in properties(schema).items():
        if field.get("readOnly") and key in data:
            values[key] = copy.deepcopy(data[key])
    return values


def initial(schema: Mapping | None, data: Mapping, draft: Mapping | None = None) -> dict:
    """What an untouched form shows: the draft if one was saved, else what the instance knows
    (but never a previous approver's decision), else the schema's defaults."""
    values: dict = {}
    for key, field in properties(schema).items():
        if field.get("readOnly"):
            if key in data:
                values[key] = copy.deepcopy(data[key])
        elif draft is not None:
            if key in draft:
                values[key] = copy.deepcopy(draft[key])
        elif key not in APPROVAL_FIELDS and key in data:
            values[key] = copy.deepcopy(data[key])
        elif "default" in field:
            values[key] = copy.deepcopy(field["default"])
    return values


def field_names(schema: Mapping | None, values: Mapping | None = None, prefix: str = "") -> set[str]:
    """Every name the page has a place for (to find errors that belong to no drawn field)."""
    names = set()
    for key, field in properties(schema).items():
        name = name_of(prefix, key)
        names.add(name)
        value = (values or {}).get(key)
        if kind(field) == "object":
            names |= field_names(field, value if isinstance(value, dict) else {}, name)
        elif kind(field) == "array" and isinstance(value, list):
            items = field.get("items") or {}
            for i, row in enumerate(value):
                names.add(name_of(name, i))
                if kind(items) == "object":
                    names |= field_names(items, row if isinstance(row, dict) else {}, name_of(name, i))
    return names


def errors_by_name(fields: Mapping[str, str]) -> dict[str, str]:
    """The engine's errors ('lines/0/quantity': message) keyed by the page's field names."""
    return {path.replace("/", SEP): message for path, message in fields.items()}


def unplaced(schema: Mapping | None, values: Mapping, errors: Mapping[str, str]) -> dict[str, str]:
    names = field_names(schema, values)
    return {name: message for name, message in errors.items() if name not in names}


def rows_of(value: Any) -> list:
    return value if isinstance(value, list) else []


def display_number(value: Any) -> str:
    """A number as typed back into an input: 200000 rather than 200000.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def flatten(items: Iterable[tuple[str, Any]]) -> list[tuple[str, str]]:
    """Query parameters as hidden inputs (saved-filter and bulk forms carry the current URL)."""
    return [(k, "" if v is None else str(v)) for k, v in items]


# --- the engine's field messages in the page's language ---------------------------------------

def _messages():
    from flask_babel import gettext as _
    types = {"number": _("a number"), "integer": _("a whole number"), "string": _("text"),
             "array": _("a list"), "object": _("a group of fields"), "boolean": _("yes or no")}
    return [
        (r"this field is required", lambda m: _("This field is required.")),
        (r"this form has no such field, so it cannot be written here",
         lambda m: _("This form has no such field, so it cannot be written here.")),
        (r"this field is read-only: the engine keeps it",
         lambda m: _("This field is read-only: the engine keeps it.")),
        (r"this field is set by the engine and cannot be written",
         lambda m: _("This field is set by the engine and cannot be written.")),
        (r"must not be empty", lambda m: _("This field is required.")),
        (r"needs at least one entry", lambda m: _("Add at least one row.")),
        (r"must be one of (.+)", lambda m: _("Choose one of the offered values.")),
        (r"must be greater than (\S+)", lambda m: _("Must be greater than %(v)s.", v=m[1])),
        (r"must be at least (\S+)", lambda m: _("Must be at least %(v)s.", v=m[1])),
        (r"must be at most (\S+)", lambda m: _("Must be at most %(v)s.", v=m[1])),
        (r"must be less than (\S+)", lambda m: _("Must be less than %(v)s.", v=m[1])),
        (r"must be of type (\w+)", lambda m: _("Must be %(what)s.", what=types.get(m[1], m[1]))),
        (r"is not a valid date", lambda m: _("Not a valid date (YYYY-MM-DD).")),
        (r"must have at least (\d+) characters", lambda m: _("Needs at least %(v)s characters.", v=m[1])),
        (r"must have at most (\d+) characters", lambda m: _("At most %(v)s characters.", v=m[1])),
        (r"'(.*)' is not a known (\w+)", lambda m: _("%(value)s is not a known %(what)s.",
                                                      value=m[1], what=m[2])),
        (r"(\S+) is in the past; the earliest allowed date is (\S+)",
         lambda m: _("%(value)s is in the past; the earliest allowed date is %(v)s.",
                     value=m[1], v=m[2])),
        # returns against real orders (processes/returns.py)
        (r"there is no order (\S+)", lambda m: _("There is no order %(order)s.", order=m[1])),
        (r"order (\S+) is not an order of customer (\S+)",
         lambda m: _("Order %(order)s is not an order of customer %(customer)s.", order=m[1], customer=m[2])),
        (r"order (\S+) has no line (.+)", lambda m: _("Order %(order)s has no line %(goods)s.",
                                                      order=m[1], goods=m[2])),
        (r"at most (\S+) can be returned: order (\S+) shipped (\S+) of (.+) and other returns claim (\S+)",
         lambda m: _("At most %(left)s can be returned: order %(order)s shipped %(shipped)s of %(goods)s "
                     "and other returns claim %(claimed)s.",
                     left=m[1], order=m[2], shipped=m[3], goods=m[4], claimed=m[5])),
        (r"must be (\S+), the total of the lines \(quantity × unit price\)",
         lambda m: _("Must be %(v)s, the total of the lines (quantity × unit price).", v=m[1])),
        (r"must be at most (\S+), the value of the returned goods",
         lambda m: _("Must be at most %(v)s, the value of the returned goods.", v=m[1])),
        # travel and expense claims (processes/expenses.py)
        (r"must be on or after the day of departure, (\S+)",
         lambda m: _("Must be on or after the day of departure, %(v)s.", v=m[1])),
        (r"a date and time, as (\S+ \S+)", lambda m: _("A date and time, as %(v)s.", v=m[1])),
        (r"after the departure", lambda m: _("Must be after the outbound ticket leaves.")),
        (r"at least one receipt", lambda m: _("Add at least one receipt.")),
        (r"already on this claim", lambda m: _("This receipt is already on this claim.")),
        (r"already claimed by (\S+)", lambda m: _("Already claimed by %(claim)s.", claim=m[1])),
        (r"a whole number of nights, 1 or more", lambda m: _("A whole number of nights, 1 or more.")),
        (r"the train fare of the route \(no prior approval for a flight\)",
         lambda m: _("The train fare of the same route (the flight was not approved beforehand).")),
    ]


def error_text(message: str) -> str:
    """A field message of the engine (English, by jsonschema keyword) in the page's language;
    a message it does not know is shown as it is."""
    for pattern, say in _messages():
        found = re.fullmatch(pattern, message.strip())
        if found:
            return say(found)
    return message
