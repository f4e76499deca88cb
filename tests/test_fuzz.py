"""Schemathesis over /api/openapi.json, in-process through the WSGI app: every operation the
document describes (new routes are picked up from it), as three roles, with valid and invalid
input and with ids of real tasks and instances; no answer may be a 5xx, and each answer must be
what the document says (status, content type, body schema).

Issue 8's "Done when": at least 5,000 requests, 0 responses with status 5xx. Bounded in time:
BPM_FUZZ_REQUESTS (default 5,400) is split evenly over operations and roles.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS

from engine import versions
from engine.runtime import Runtime
from processes import LOOKUPS, SERVICES

from .conftest import DATA, POSTGRES_URL

ROOT = DATA.parent.parent
ROLES = ("rep.wang", "dm.zhou", "fin.chu")   # a sales rep, a manager, finance
REQUESTS = int(os.environ.get("BPM_FUZZ_REQUESTS", "5400"))
CONTRACT = {"customer": "C-A01", "amount": 200000, "quote_price": 100, "price": 92,
            "payment_terms": "30% deposit, balance on delivery", "delivery_date": "2099-12-20",
            "quote_payment_terms": "30% deposit, balance on delivery", "quote_delivery_date": "2099-12-20"}


NESTED: list = []
for _ in range(1000):
    NESTED = [NESTED]
HOSTILE = [None] * 6 + ["a\x00b", "\ud800", "名" * 10_001, "c" * 201, float("nan"), float("inf"), -float("inf"),
                        10 ** 30, 1e300, NESTED]


def _checks():
    """Schemathesis's own checks, by name (they differ between versions a little)."""
    wanted = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
              "response_schema_conformance", "response_headers_conformance")
    found = {c.__name__: c for c in CHECKS.get_all()}
    return [found[name] for name in wanted if name in found]


@pytest.fixture
def fuzzed_app(store):
    from web import create_app
    versions.deploy(store, [ROOT / "bpmn"])
    versions.deploy(store, [DATA / "runtime" / "approval.bpmn"])
    return create_app(Runtime(store, SERVICES, lookups=LOOKUPS),
                      {"TESTING": True, "BPM_SIGNIN_LIMIT_USER": "100000 per minute",
                       "BPM_SIGNIN_LIMIT_ADDRESS": "100000 per minute"})


# conftest's `store`, on one database only: PostgreSQL when the run has one (CI does; it refuses
# more than SQLite: NUL, sizes), else SQLite.
@pytest.mark.parametrize("store", ["postgresql" if POSTGRES_URL else "sqlite"], indirect=True)
def test_schemathesis_finds_no_server_error(fuzzed_app):
    client = fuzzed_app.test_client()
    tokens = {}
    for who in ROLES:
        reply = client.post("/api/v1/tokens", json={"username": who, "password": "demo"})
        tokens[who] = {"Authorization": f"Bearer {reply.json['token']}"}
    # Real things for the ids in paths: instances and tasks each role can see or act on.
    ids: dict[str, list[str]] = {"task_id": [], "instance_id": [], "process_id": [], "token_id": [],
                                 "name": ["payment_received"]}
    for _ in range(3):
        for process, data in (("contract_review", CONTRACT), ("approval", {"amount": 5})):
            started = client.post(f"/api/v1/processes/{process}/instances", headers=tokens["rep.wang"],
                                  json={"data": data}).json
            ids["instance_id"].append(started["id"])
            ids["task_id"] += [t["id"] for t in started["tasks"]]
    for who in ROLES:
        ids["task_id"] += [t["id"] for t in client.get("/api/v1/tasks", headers=tokens[who]).json["tasks"]]
        ids["token_id"] += [t["id"] for t in client.get("/api/v1/tokens", headers=tokens[who]).json]
    ids["process_id"] = ["contract_review", "approval", "order_to_settlement", "return_request"]

    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", fuzzed_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    per_case = max(1, REQUESTS // (len(operations) * len(ROLES)))
    checks = _checks()
    statuses: Counter = Counter()
    failures: list[str] = []
    sent = 0
    timing: Counter = Counter()
    started_at = time.perf_counter()

    for operation in operations:
        revoking = operation.method.upper() == "DELETE" and "token" in operation.path
        strategy = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                             operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        names = [p for p in ids if "{" + p + "}" in operation.path]

        # Each generated request is sent as each of the three roles (generating costs more than
        # answering), mostly with the role's real token, sometimes with what schemathesis made up.
        @settings(max_examples=per_case, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy, real=st.lists(st.booleans(), min_size=2, max_size=2), data=st.data())
        def run(case, real, data):
            nonlocal sent
            for name, pick in zip(names, real):
                if pick and ids[name] and isinstance(case.path_parameters, dict):
                    case.path_parameters[name] = data.draw(st.sampled_from(ids[name]))
            if revoking and case.path_parameters.get("token_id") in ids["token_id"]:
                return  # revoking the tokens this run signs in with would end the run
            made_up = "Authorization" in (case.headers or {}) and data.draw(st.integers(0, 9)) == 0
            # Issue 8's hostile values, which schemathesis does not make up: into the body's data
            # (or the body), and into a path parameter.
            hostile = data.draw(st.sampled_from(HOSTILE))
            if hostile is not None and isinstance(case.body, dict):
                target = case.body["data"] if isinstance(case.body.get("data"), dict) else case.body
                keys = sorted(target) or ["note"]
                target[data.draw(st.sampled_from(keys + ["amount", "customer", "name"]))] = hostile
            if names and isinstance(case.path_parameters, dict) and data.draw(st.integers(0, 19)) == 0:
                case.path_parameters[names[0]] = data.draw(st.sampled_from(["a\x00b", "x" * 300]))
            # NaN and Infinity are not JSON as `requests` writes it: sent as the text Python's json
            # writes (and Flask reads) through the test client, checked for status and shape only.
            raw = isinstance(hostile, float) and not math.isfinite(hostile) and isinstance(case.body, dict)
            for who in ROLES:
                headers = {**(case.headers or {}), **({} if made_up else tokens[who])}
                where = f"{operation.method.upper()} {operation.path} as {who}"
                t0 = time.perf_counter()
                if raw:
                    reply = client.open("/api" + quote(case.formatted_path), method=case.method,
                                        query_string=case.query, headers=headers,
                                        data=json.dumps(case.body), content_type="application/json")
                    timing["call"] += time.perf_counter() - t0
                    sent += 1
                    statuses[reply.status_code // 100 * 100] += 1
                    body = reply.get_json(silent=True)
                    if reply.status_code >= 500 or not (isinstance(body, dict) and "error" in body
                                                        or reply.status_code < 300):
                        failures.append(f"{where} with {hostile}: {reply.status_code} {reply.data[:300]!r}")
                    continue
                response = case.call(headers=headers)
                timing["call"] += time.perf_counter() - t0
                sent += 1
                statuses[response.status_code // 100 * 100] += 1
                if response.status_code >= 500:
                    failures.append(f"{where}: {response.status_code} {response.text[:300]}")
                    continue
                t0 = time.perf_counter()
                try:
                    case.validate_response(response, checks=checks)
                except (Exception, BaseExceptionGroup) as exc:  # the document does not say what the API does
                    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
                    failures.append(f"{where}: {' | '.join(lines[1:5])[:400]}")
                timing["checks"] += time.perf_counter() - t0
        run()

    elapsed = time.perf_counter() - started_at
    print(f"\nschemathesis: {sent} requests in {elapsed:.0f} s over {len(operations)} operations "
          f"x {len(ROLES)} roles; by status class: {dict(sorted(statuses.items()))}; "
          f"{timing['call']:.0f} s in the app, {timing['checks']:.0f} s in the checks")
    if os.environ.get("BPM_FUZZ_REPORT"):
        with open(os.environ["BPM_FUZZ_REPORT"], "w", encoding="utf-8") as report:
            report.write("\n".join(sorted(set(failures))))
    assert failures == [], "\n".join(sorted(set(failures))[:40])
    assert statuses[500] == 0
    assert sent >= min(REQUESTS, 5000) * 0.9, sent
