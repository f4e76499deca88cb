"""What any value from outside must be before the engine keeps it: the checks every door shares.

Web pages, the JSON API and the command line all hand data to `Runtime` (start, complete, message,
comment, delegate, draft), which asks `problems()` before anything is stored. Numbers are finite
and bounded (NaN or Infinity cannot be shown, stored on PostgreSQL, or summed), text has no NUL
(PostgreSQL refuses it) and no lone surrogate (it cannot be encoded as UTF-8), strings fit the
columns they are projected into, and nesting and size are bounded (the state is copied and
serialised recursively). A form may be stricter (`maxLength`, `maximum`); never looser.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from .store import HumanTask

MAX_DEPTH = 16             # levels of objects and arrays inside the data
MAX_ENTRIES = 5_000        # values in one piece of data, all levels together
MAX_MAGNITUDE = 10 ** 15   # a thousand trillion: above any amount or quantity of the business
MAX_TEXT = 10_000          # characters of one string (a comment, a note, a field)
MAX_KEY = 200              # characters of a field name

# Fields the engine projects into columns of the inbox (runtime._business_fields): their size.
COLUMN_FIELDS = {name: HumanTask.business_key.type.length
                 for name in ("business_key", "order_no", "contract_no", "request_no", "name")}
COLUMN_FIELDS["customer"] = HumanTask.customer.type.length


def text_problem(value: str, limit: int = MAX_TEXT) -> str | None:
    """What is wrong with one string, or None."""
    if "\x00" in value:
        return "contains a NUL character"
    if len(value) > limit:
        return f"must have at most {limit} characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a character that is not valid text (a lone surrogate)"
    return None


def number_problem(value: float | int) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number (not NaN or Infinity)"
    if abs(value) > MAX_MAGNITUDE:
        return f"must be between -{MAX_MAGNITUDE:.0e} and {MAX_MAGNITUDE:.0e}".replace("e+", "e")
    return None


def problems(data: Any, *, top_columns: bool = True) -> dict[str, str]:
    """Every problem of `data` (a JSON value) by field path ("lines/0/quantity"); empty if fit.

    Walks without recursion, so data nested far too deep is refused, not a RecursionError."""
    found: dict[str, str] = {}
    stack: list[tuple[Any, tuple, int]] = [(data, (), 0)]
    seen = 0
    while stack:
        value, path, depth = stack.pop()
        seen += 1
        where = "/".join(map(str, path))
        if seen > MAX_ENTRIES:
            found.setdefault("", f"has more than {MAX_ENTRIES} values")
            break
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            problem = number_problem(value)
        elif isinstance(value, str):
            limit = COLUMN_FIELDS.get(path[0], MAX_TEXT) if top_columns and len(path) == 1 else MAX_TEXT
            problem = text_problem(value, limit)
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                found.setdefault(where, f"is nested too deeply (more than {MAX_DEPTH} levels)")
                continue
            if isinstance(value, dict):
                for key, item in value.items():
                    key_problem = text_problem(key, MAX_KEY) if isinstance(key, str) else "is not a text key"
                    if key_problem:
                        found.setdefault("/".join(map(str, path + (repr(key)[:40],))), "name " + key_problem)
                        continue
                    stack.append((item, path + (key,), depth + 1))
            else:
                stack.extend((item, path + (i,), depth + 1) for i, item in enumerate(value))
            continue
        else:
            problem = f"is not a JSON value ({type(value).__name__})"
        if problem:
            found.setdefault(where, problem)
    return dict(sorted(found.items()))


def fits_key(value: Any, limit: int) -> bool:
    """An identifier from outside (a task id, a user name) that can be looked up at all."""
    return isinstance(value, str) and text_problem(value, limit) is None


def listed(found: dict[str, str]) -> str:
    return "; ".join(f"{path or '(data)'} {problem}" for path, problem in found.items())


def positions(args: Mapping[str, Any], known: Callable[[str], bool],
              problems: dict[str, str]) -> tuple[str | None, str | None]:
    """A list's keyset positions from its query's `after` and `before` (the inbox, the instances):
    each a position `known` accepts for this sort, or a sentence in `problems` and None; both given
    is one more sentence, and `after` wins."""
    found: dict[str, str | None] = {}
    for name in ("after", "before"):
        raw = (args.get(name) or "").strip() or None
        if raw is not None and not known(raw):
            problems[name] = "is not a position in this list (it belongs to another sort, or was changed)"
            raw = None
        found[name] = raw
    if found["after"] and found["before"]:
        problems["before"] = "give after or before, not both"
        found["before"] = None
    return found["after"], found["before"]
