"""CSV files that people open in a spreadsheet program: one writer for every CSV the product gives
out (the SLA report, an instance's history), which keeps a cell from being run as a formula.

A customer's name, a task's title or a comment typed as `=HYPERLINK(...)` or `@SUM(...)` would be
a live formula once the auditor double-clicks the file (CSV injection). Such a cell is written with
a leading apostrophe — the spreadsheet's own "this is text" mark — so it shows as typed and runs
nothing. Numbers, including negative ones, are left as they are.
"""
from __future__ import annotations

import csv
import io
import re
from typing import Any, Iterable

# what a spreadsheet reads as the start of a formula (tab and carriage return too: some programs
# strip them and then see the next character)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def cell(value: Any) -> Any:
    """`value` as a CSV cell that a spreadsheet shows and never runs."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START) or _NUMBER.fullmatch(value):
        return value
    return "'" + value


def text(header: Iterable[Any], rows: Iterable[Iterable[Any]], line_end: str = "\n") -> str:
    """The header and the rows as CSV text, every cell through `cell`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_end)
    writer.writerow([cell(v) for v in header])
    writer.writerows([cell(v) for v in row] for row in rows)
    return out.getvalue()
