"""Schemathesis over the API's own OpenAPI schema, against the real service (uvicorn on loopback), on a
SQLite store and on PostgreSQL: every operation ``/openapi.json`` lists (routes added later are covered
without touching this file), valid and invalid requests, with a live key of every scope. No request may
get a 5xx, and each answer must match the schema's declaration of it."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance

from crm.config import Paths
from crm.store.db import make_engine, upgrade_to_head
from crm.store.keys import SCOPES, create_key
from tests._service import call, running_server

# Generated requests per operation (valid and invalid ones together), after the boundary cases of the
# coverage phase. POST /v1/events answers in ~0.3-0.5 s whatever the batch (landing's contract SQL on DuckDB
# per request), so the second backend, there for what only PostgreSQL refuses (values, not shapes), gets
# fewer and no coverage phase (its cases are the same on both): the module takes ~30 s.
# CRM_SCHEMATHESIS_EXAMPLES / CRM_SCHEMATHESIS_SEED explore further by hand.
MAX_EXAMPLES = {"sqlite": 50, "postgresql": 15}
# Answers that do not (yet) match what the schema declares, each a finding to fix in the service (then to
# remove from here): "METHOD /path" -> (status, why). Only those answers skip the conformance check: the
# operation's other answers are still checked, and no answer may be a 5xx.
# (The first finding, POST /v1/messaging/send's 422 declared as a refusal only, is fixed: SendUnprocessable.)
KNOWN_MISMATCHES: dict[str, tuple[int, str]] = {}


# Finding (was a 5xx): PostgreSQL's text cannot hold NUL, and an id with a NUL character reached a query in
# POST /v1/messaging/send (player_id), POST /v1/messaging/feedback (delivery_id) and GET /v1/deliveries/{id}:
# psycopg2 raised, a 500. Fixed: the ids' patterns refuse control characters; test_nul_in_an_id_is_not_a_server_error
# keeps it fixed (set the flag back to True to mark it a known failure again).
NUL_IDS_FAIL_ON_POSTGRESQL = False  # fixed: the ids' patterns refuse control characters (a 422)


def _known_mismatch(case, response) -> bool:
    known = KNOWN_MISMATCHES.get(f"{case.operation.method.upper()} {case.operation.path}")
    if known is None or response.status_code != known[0]:
        return False
    try:
        return "detail" in response.json()  # the undeclared shape, not the declared one
    except ValueError:
        return False


def _config(backend: str, key: str) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        # a fixed seed by default: CI replays the same requests
        "seed": int(os.environ.get("CRM_SCHEMATHESIS_SEED") or 14),
        "generation": {"mode": "all", "with-security-parameters": False,
                       "allow-x00": not (backend == "postgresql" and NUL_IDS_FAIL_ON_POSTGRESQL),
                       "max-examples": int(os.environ.get("CRM_SCHEMATHESIS_EXAMPLES") or MAX_EXAMPLES[backend])},
        "phases": {"coverage": {"enabled": backend == "sqlite"}},
        # a live key of every scope on every request: the routes' own code runs, not just the 401s
        "headers": {"Authorization": f"Bearer {key}"},
    })


@pytest.fixture(scope="module")
def service(tmp_path_factory, module_store_url):
    """(base URL, a key of every scope, the store's dialect) of the service running on a fresh store."""
    paths = Paths(tmp_path_factory.mktemp("schema")).ensure()
    engine = make_engine(paths, module_store_url)
    upgrade_to_head(engine)
    _, key = create_key(engine, "schemathesis", "A", list(SCOPES))
    with running_server(paths, engine=engine) as url:
        yield url, key, engine.dialect.name
    engine.dispose()


@pytest.fixture(scope="module")
def api_schema(service):
    url, key, backend = service
    return schemathesis.openapi.from_url(url + "/openapi.json", config=_config(backend, key))


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    """schemathesis 4.32's ``from_fixture`` reads and rewrites ``item._nodeid`` to label each operation's
    run; pytest 9.2 keeps the id in ``item._id`` behind the ``nodeid`` property, so there is no
    ``_nodeid`` to read (AttributeError). Give it one (it only labels schemathesis's own reports)."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@schema.parametrize()
@settings(deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_no_server_error_and_answers_match_the_schema(case):
    response = case.call(timeout=30)
    checks = [not_a_server_error]
    if not _known_mismatch(case, response):
        checks.append(response_schema_conformance)
    case.validate_response(response, checks=checks)


NUL_REQUESTS = {
    "send": ("/v1/messaging/send", "POST", {"channel": "email", "player_id": "p\x00", "template_id": "bonus"}),
    "feedback": ("/v1/messaging/feedback", "POST",
                 {"delivery_id": "d\x00", "event": "open", "occurred_at": "2025-01-01T00:00:00Z"}),
    "delivery": ("/v1/deliveries/d%00", "GET", None),
}


@pytest.mark.parametrize("name", NUL_REQUESTS)
def test_nul_in_an_id_is_not_a_server_error(service, request, name):
    url, key, backend = service
    if backend == "postgresql" and NUL_IDS_FAIL_ON_POSTGRESQL:
        request.applymarker(pytest.mark.xfail(strict=True, reason="known: a NUL in an id is a 500 on PostgreSQL "
                                                                  "(see NUL_IDS_FAIL_ON_POSTGRESQL)"))
    path, method, body = NUL_REQUESTS[name]
    status, out = call(url + path, method, body, key=key, headers={"X-Idempotency-Key": f"nul-probe-{name}-0001"})
    assert status in (404, 422), (status, out)
