"""CSV files given out (engine/spreadsheet.py): a cell a spreadsheet would run as a formula is
written as text; numbers and ordinary text are left exactly as they were."""
from __future__ import annotations

import csv
import io

import pytest

from engine import evidence, spreadsheet


@pytest.mark.parametrize("typed", ['=HYPERLINK("http://evil.example","账单")', "+1+2", "-2+3", "@SUM(A1:A9)",
                                   "\t=1+1", "\r=1+1"])
def test_a_formula_typed_into_a_field_is_shown_as_text(typed):
    assert spreadsheet.cell(typed) == "'" + typed


@pytest.mark.parametrize("value", ["-1.50", "+3", "1e5", "-0.25", "华南大区", "C-B01", "", 42, -7, None, 2.5])
def test_numbers_and_plain_text_stay_as_they_are(value):
    assert spreadsheet.cell(value) == value


def test_the_history_csv_of_an_instance_neutralises_a_formula_in_any_column():
    rows = [{"step": 1, "at": "2026-11-23T09:00:00+08:00", "actor": "rep.wang", "command": "start",
             "task": "=cmd|' /C calc'!A0", "change": {"customer": "=1+1"}, "hash": "ab"}]
    table = list(csv.reader(io.StringIO(evidence.history_csv(rows))))
    assert table[0] == list(evidence.HISTORY_COLUMNS)
    assert table[1][4] == "'=cmd|' /C calc'!A0"
    assert table[1][5] == '{"customer": "=1+1"}'   # a JSON object starts with "{": nothing to run
