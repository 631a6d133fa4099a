"""An independent fuzzer against the served document: schemathesis generates requests for every
operation of /api/v1/openapi.json (valid and invalid) and checks that none gets a server
error and that every answer matches the document (status codes, content types, schemas)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api_helpers import fund_merchant, get, make_key, post
from tests.escrow_helpers import funded_customer


def served_document() -> dict:
    """The document as /api/v1/openapi.json serves it (an app of its own: tests are collected
    before any fixture runs; it touches neither database nor Redis)."""
    from devtools import create_app

    app = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", "REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    return app.test_client().get("/api/v1/openapi.json").json


schema = schemathesis.openapi.from_dict(served_document())


@pytest.fixture
def api_key(app, config, merchant, second_customer):
    """A funded merchant's key with every scope, a customer to pay, a rate that never bites."""
    config(API_RATE_PER_MINUTE=1_000_000)
    funded_customer()
    fund_merchant(merchant.phone, 1_000_00)
    return make_key(merchant)


def test_the_document_lists_every_operation(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    operations = {(method.upper(), path) for path, methods in paths.items() for method in methods}
    assert operations >= {
        ("GET", "/api/v1/balance"),
        ("GET", "/api/v1/transactions"),
        ("GET", "/api/v1/transactions/{code}"),
        ("POST", "/api/v1/payouts"),
        ("POST", "/api/v1/payouts/batch"),
        ("POST", "/api/v1/refunds"),
        ("POST", "/api/v1/payment-requests"),
        ("GET", "/api/v1/payment-requests/{request_id}"),
    }
    batch = paths["/api/v1/payouts/batch"]["post"]["requestBody"]["content"]
    assert {"application/json", "text/csv"} <= set(batch)  # the batch reads CSV too


def _follow(body: dict, expression: str):
    """``$response.body#/results/0/transaction`` read from ``body`` (a JSON pointer)."""
    prefix = "$response.body#/"
    assert expression.startswith(prefix), expression
    for part in expression[len(prefix) :].split("/"):
        body = body[int(part)] if isinstance(body, list) else body[part]
    return body


def test_every_link_leads_from_an_answer_to_what_it_names(client, api_key):
    """The document links each created thing to the operation that reads it (OpenAPI links):
    the stateful phase of the outside fuzz follows them. Each link, followed from a real answer,
    reaches a 200; a refund's links point at fields its answer has."""
    doc = client.get("/api/v1/openapi.json").json
    by_id = {
        op["operationId"]: (path, method) for path, ops in doc["paths"].items() for method, op in ops.items()
    }
    answers = {
        "/api/v1/payouts": post(client, "/payouts", api_key, {"phone": "0712000222", "amount": 100_00}),
        "/api/v1/payouts/batch": post(
            client, "/payouts/batch", api_key, {"payouts": [{"phone": "0712000222", "amount": 50_00}]}
        ),
        "/api/v1/payment-requests": post(
            client,
            "/payment-requests",
            api_key,
            {"phone": "0712000111", "amount": 20_00, "description": "Lunch"},
        ),
    }
    followed = 0
    for path, ops in doc["paths"].items():
        for status, answer in ops.get("post", {}).get("responses", {}).items():
            for name, link in answer.get("links", {}).items():
                target_path, method = by_id[link["operationId"]]
                assert method == "get", name
                [(parameter, expression)] = link["parameters"].items()
                assert "{" + parameter + "}" in target_path, name
                if path not in answers:  # a refund: its answer's schema has the field
                    fields = doc["components"]["schemas"]["Refund"]["properties"]
                    assert expression.rsplit("/", 1)[1] in fields, name
                    continue
                response = answers[path]
                assert response.status_code == int(status), response.json
                value = _follow(response.json, expression)
                reached = get(
                    client, target_path.removeprefix("/api/v1").replace("{" + parameter + "}", value), api_key
                )
                assert reached.status_code == 200, (name, reached.json)
                followed += 1
    assert followed == 3


def _key_unless_the_case_breaks_it(case, api_key: str) -> dict:
    """Our key, except for a negative case whose headers the fuzzer broke (the Authorization
    header dropped or malformed): sending our key over it would undo the breakage, and the
    negative-data check would then call the valid request's 200 a schema violation accepted.
    Such a case goes out as generated and must be refused (401)."""
    header = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    if header is not None and header.mode.is_negative:
        return {}
    return {"Authorization": f"Bearer {api_key}"}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_every_answer_matches_the_document(case, app, api_key):
    case.call_and_validate(
        app=app,
        headers=_key_unless_the_case_breaks_it(case, api_key),
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            negative_data_rejection,
        ],
    )
