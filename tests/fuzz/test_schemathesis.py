"""Schemathesis against our own OpenAPI schema: every operation, generated and mutated input.

Properties: no 5xx ever; every response matches its documented status code, content type and
schema; every 4xx carries the one error envelope. Examples per operation are few (the suite must
stay fast) but every operation is covered; SCHEMATHESIS_MAX_EXAMPLES raises it for a longer run.
"""

import os

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckContext
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from archangel.wsgi import application

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "5"))

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = application


def error_envelope(ctx: CheckContext, response, case) -> bool | None:
    """Every 4xx body under /api/ is {"error": {"status", "code", "message", "fields"}}."""
    if 400 <= response.status_code < 500 and case.method.upper() != "HEAD":
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        assert isinstance(error, dict), f"{response.status_code} without the error envelope: {body!r:.300}"
        assert error.get("status") == response.status_code, f"envelope status {error.get('status')!r}"
        assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str)
        assert isinstance(error.get("fields"), dict)
    return None


def no_server_error(ctx: CheckContext, response, case) -> bool | None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    return None


@pytest.fixture
def operator_token(db):
    import io

    from django.core.management import call_command
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    # The WSGI app runs in this thread, inside the test's transaction: as Django's test client
    # does, keep requests from closing the connection under it.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)

    out = io.StringIO()
    call_command("create_api_token", "fuzz-operator", "--role", "operator", stdout=out)
    yield out.getvalue().strip()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.postgres
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples in every run: CI failures reproduce
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_holds_its_contract(case, operator_token):
    case.call_and_validate(
        headers={**(case.headers or {}), "Authorization": f"Token {operator_token}"},
        checks=[
            no_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            error_envelope,
        ],
    )
