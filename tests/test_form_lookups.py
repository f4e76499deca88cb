"""Form lookups (engine.forms `x-lookup`): what a lookup may answer and what it may see."""
from __future__ import annotations

import pytest

from engine import forms

SCHEMA = {
    "type": "object",
    "properties": {
        "customer": {"type": "string", "x-lookup": "customer"},
        "order_no": {"type": "string", "x-lookup": "order"},
        "lines": {"type": "array", "x-lookup": "lines",
                  "items": {"type": "object", "properties": {"quantity": {"type": "number"}}}},
        "amount": {"type": "number", "x-lookup": "cap"},
    },
}
LOOKUPS = {
    "customer": lambda value: value == "C-A01",  # the old form: a yes or no
    "order": lambda value, form: None if value == f"SO-{form.get('customer')}" else f"there is no order {value}",
    "lines": lambda value: {f"{i}/quantity": "too many" for i, line in enumerate(value) if line["quantity"] > 5},
    "cap": lambda value, form: None if value <= form["limit"] else f"must be at most {form['limit']}",
}


def check(data: dict, shown: dict | None = None) -> dict[str, str]:
    with pytest.raises(forms.FormError) as refused:
        forms.validate("f.json", SCHEMA, data, LOOKUPS, shown)
    return refused.value.fields


def test_a_lookup_answers_yes_no_a_sentence_or_sentences_by_row():
    assert forms.validate("f.json", SCHEMA, {"customer": "C-A01", "order_no": "SO-C-A01",
                                             "lines": [{"quantity": 5}]}, LOOKUPS) is not None
    assert check({"customer": "C-B01"}) == {"customer": "'C-B01' is not a known customer"}
    assert check({"customer": "C-A01", "order_no": "SO-9"}) == {"order_no": "there is no order SO-9"}
    assert check({"lines": [{"quantity": 1}, {"quantity": 6}]}) == {"lines/1/quantity": "too many"}


def test_a_lookup_with_a_form_parameter_sees_the_shown_data_under_the_submission():
    shown = {"limit": 100, "amount": 1}
    assert forms.validate("f.json", SCHEMA, {"amount": 100}, LOOKUPS, shown) == {"amount": 100}
    assert check({"amount": 101}, shown) == {"amount": "must be at most 100"}
