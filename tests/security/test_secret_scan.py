"""Known secret values never leave: not in a response, a log line, an error message, the audit
log, a stored row (other than their ciphertext) or a metric label.

One run exercises the paths secrets travel: providers created, read, listed, health-checked and
changed through the API and the admin; deliveries that succeed, fail with provider error bodies
that echo the credential back, hit 429s and time out; a signed webhook; /metrics. Then every
output is scanned for every secret.
"""

import io
import json
import logging
import re

import pytest
import requests
import responses
from django.apps import apps
from django.db import connection

from archangel.logging import ContextFilter, JsonFormatter, SecretMaskingFilter
from providers_app import gateway
from providers_app.adapters.base import ProviderError
from providers_app.models import Provider

SECRETS = {
    "clickup": {"api_token": "pk_1234567_SCANCLICKUPTOKEN0001", "webhook_secret": "cu-hook-SCANSECRET-0002"},
    "trello": {
        "api_key": "SCANTRELLOKEY00000000000000000003",
        "api_token": "ATTASCANTRELLOTOKEN0000000000000000000004",
        "app_secret": "SCANTRELLOAPPSECRET0005",
    },
    "todoist": {"api_token": "SCANTODOISTTOKEN00000000000000000000006", "client_secret": "SCANTODOISTCLIENT0007"},
}
PLAIN = {
    "clickup": {"list_id": "901", "team_id": "9001"},
    "trello": {"board_id": "5a1111111111111111111111", "status_lists": {"pending": "5a2222222222222222222222"}},
    "todoist": {"project_id": "6Scan"},
}
ALL = [value for config in SECRETS.values() for value in config.values()]


@pytest.fixture
def log_output():
    """Everything logged at DEBUG, through the production handler's filters and JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(SecretMaskingFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def _echo(request):
    """A provider error body that repeats the credentials it was sent (some proxies do)."""
    return 401, {}, json.dumps({"err": f"bad token {request.headers.get('Authorization')} at {request.url}"})


def _exercise_deliveries(providers, outputs):
    payload = {
        "task_id": "3f0b6e0e-0000-4000-8000-000000000001",
        "version": 1,
        "title": "Scan me",
        "description": "",
        "status": "pending",
        "priority": 2,
        "effort_hours": 1.0,
        "deadline": None,
        "assignee_id": None,
        "assignee_external_id": None,
        "external_id": None,
    }
    any_url = re.compile(r"https://.*")
    for behaviour in ("echo", "server", "429", "timeout", "ok"):
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            for method in ("GET", "POST", "PUT", "DELETE"):
                if behaviour == "echo":
                    mock.add_callback(method, any_url, callback=_echo)
                elif behaviour == "server":
                    mock.add(method, any_url, status=503, body="upstream down")
                elif behaviour == "429":
                    mock.add(method, any_url, status=429, headers={"Retry-After": "1"}, json={"error": "rate"})
                elif behaviour == "timeout":
                    mock.add(method, any_url, body=requests.exceptions.ReadTimeout("read timed out"))
                else:
                    mock.add(method, any_url, json={"id": "ext-1", "name": "Scan me", "content": "Scan me"})
            for provider in providers:
                try:
                    gateway.deliver(provider, "create", payload, idempotency_key=f"scan:{behaviour}", external_id=None)
                except ProviderError as exc:
                    outputs.append(f"{exc!s} {exc.message} {exc.body!r}")
                    # As a delivery job reports a failure: message, body and traceback.
                    logging.getLogger("outbox_app.drain").warning(
                        "delivery failed: %s (body %r)", exc, exc.body, exc_info=exc
                    )


@pytest.mark.postgres
def test_no_secret_escapes_anywhere(operator_api, client, django_user_model, log_output, settings):
    outputs: list[str] = []  # every response body, error message and page we saw
    ids = {}
    for kind in ("clickup", "trello", "todoist"):
        body = {"name": f"Scan {kind}", "type": kind, "config": {**PLAIN[kind], **SECRETS[kind]}}
        response = operator_api.post("/api/providers", body, format="json")
        assert response.status_code == 201, response.content
        outputs.append(response.content.decode())
        ids[kind] = response.json()["id"]
    # A bad update that names a secret key: the error must not repeat the value.
    bad = operator_api.patch(f"/api/providers/{ids['todoist']}", {"config": {"api_token": ""}}, format="json")
    outputs.append(bad.content.decode())
    for path in ["/api/providers", *(f"/api/providers/{pid}" for pid in ids.values())]:
        outputs.append(operator_api.get(path).content.decode())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback("GET", re.compile(r"https://.*"), callback=_echo)
        for pid in ids.values():
            outputs.append(operator_api.get(f"/api/providers/{pid}/health", {"check": "1"}).content.decode())
    outputs.append(operator_api.get("/api/health").content.decode())
    outputs.append(operator_api.get("/api/usage/predictions").content.decode())

    providers = list(Provider.objects.filter(pk__in=ids.values()))
    _exercise_deliveries(providers, outputs)

    admin = django_user_model.objects.create_superuser("scan-admin", "scan@example.com", "pw-scan-123")
    client.force_login(admin)
    for pid in ids.values():
        outputs.append(client.get(f"/admin/providers_app/provider/{pid}/change/").content.decode())
    outputs.append(client.get("/admin/").content.decode())
    outputs.append(client.get("/admin/providers_app/provider/").content.decode())
    settings.METRICS_ALLOWED_NETWORKS = None  # open, as "*" configures it
    outputs.append(client.get("/metrics").content.decode())

    # Every stored text, except the ciphertext column that is the point of it all.
    stored = []
    with connection.cursor() as cursor:
        for model in apps.get_models():
            table = model._meta.db_table
            columns = [
                f.column
                for f in model._meta.concrete_fields
                if f.get_internal_type() in {"CharField", "TextField", "JSONField"}
                and not (model is Provider and f.name == "secrets")
            ]
            if not columns:
                continue
            quoted = ", ".join(f"{connection.ops.quote_name(c)}::text" for c in columns)
            cursor.execute(f"SELECT {quoted} FROM {connection.ops.quote_name(table)}")  # noqa: S608
            stored.extend(str(value) for row in cursor.fetchall() for value in row if value)

    haystacks = {
        "responses and messages": "\n".join(outputs),
        "logs": log_output.getvalue(),
        "database": "\n".join(stored),
    }
    assert haystacks["logs"].count("delivery failed") >= 12, "the failures should have been logged"
    for where, text in haystacks.items():
        leaked = [secret for secret in ALL if secret in text]
        assert not leaked, f"secret(s) found in {where}: {[s[:6] + '…' for s in leaked]}"
