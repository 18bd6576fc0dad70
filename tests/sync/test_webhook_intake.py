"""Intake: authentic deliveries are stored once and answered at once; anything else is refused
with nothing stored (issue 5 §1, §2)."""

import json
import logging

import pytest
from django.test import Client

from archangel.metrics import WEBHOOKS
from providers_app.models import WebhookDelivery
from tests.factories import make_provider
from tests.sync.payloads import SECRETS, encode, example, post, signed_headers

TYPES = ["clickup", "trello", "todoist"]
pytestmark = pytest.mark.django_db


def _count(provider_type, result):
    return WEBHOOKS.labels(provider_type, result)._value.get()


@pytest.fixture
def client():
    return Client()


@pytest.mark.parametrize("provider_type", TYPES)
def test_it_stores_a_signed_delivery_and_enqueues_its_job_after_commit(
    client, providers, provider_type, django_capture_on_commit_callbacks
):
    before = _count(provider_type, "accepted")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(client, provider_type, example(provider_type))
    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    delivery = WebhookDelivery.objects.get()
    assert delivery.provider == providers[provider_type]
    assert delivery.status == "received"
    assert delivery.payload == example(provider_type)
    assert len(callbacks) == 1
    assert _count(provider_type, "accepted") == before + 1


def test_the_dedup_keys_follow_each_providers_delivery_identity(client, providers):
    for provider_type in TYPES:
        post(client, provider_type, example(provider_type), delivery_id="todoist-delivery-7")
    keys = dict(WebhookDelivery.objects.values_list("provider__type", "dedup_key"))
    assert keys == {
        "clickup": "7fa3ec74-69a8-4530-a251-8a13730bd204:2800787326392370170",
        "trello": "5a4234567890abcdef123456",
        "todoist": "todoist-delivery-7",
    }


@pytest.mark.parametrize("provider_type", TYPES)
def test_a_replayed_delivery_is_answered_but_stored_and_enqueued_once(
    client, providers, provider_type, django_capture_on_commit_callbacks
):
    post(client, provider_type, example(provider_type))
    before = _count(provider_type, "duplicate")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(client, provider_type, example(provider_type))
    assert response.status_code == 200
    assert response.json() == {"status": "duplicate", "id": None}
    assert WebhookDelivery.objects.count() == 1
    assert callbacks == []
    assert _count(provider_type, "duplicate") == before + 1


@pytest.mark.parametrize("provider_type", TYPES)
def test_it_rejects_a_forged_signature_and_stores_nothing(client, providers, provider_type, caplog):
    body = encode(example(provider_type))
    before = _count(provider_type, "bad_signature")
    with caplog.at_level(logging.WARNING, logger="archangel.security"):
        response = post(client, provider_type, body=body, secret="not-the-secret")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert WebhookDelivery.objects.count() == 0
    assert _count(provider_type, "bad_signature") == before + 1
    assert any("signature rejected" in r.getMessage() for r in caplog.records)
    assert not any(SECRETS[provider_type] in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("provider_type", TYPES)
def test_it_rejects_a_missing_signature(client, providers, provider_type):
    response = post(client, provider_type, example(provider_type), headers={})
    assert response.status_code == 401
    assert WebhookDelivery.objects.count() == 0


@pytest.mark.parametrize("provider_type", TYPES)
def test_it_rejects_a_truncated_body_signed_for_the_whole(client, providers, provider_type):
    body = encode(example(provider_type))
    response = post(client, provider_type, body=body[:-10], headers=signed_headers(provider_type, body))
    assert response.status_code == 401
    assert WebhookDelivery.objects.count() == 0


@pytest.mark.parametrize("provider_type", TYPES)
def test_it_rejects_re_encoded_json_because_the_signature_covers_the_raw_bytes(client, providers, provider_type):
    body = encode(example(provider_type))
    reencoded = json.dumps(json.loads(body), indent=1, sort_keys=True).encode()
    assert json.loads(reencoded) == json.loads(body)
    response = post(client, provider_type, body=reencoded, headers=signed_headers(provider_type, body))
    assert response.status_code == 401
    assert WebhookDelivery.objects.count() == 0


def test_trello_signs_the_callback_url_as_registered(client, providers):
    body = encode(example("trello"))
    from providers_app.webhooks import sign

    other_url = sign("trello", body=body, secret=SECRETS["trello"], callback_url="https://archangel.example.com/x")
    response = post(client, "trello", body=body, headers={"HTTP_X_TRELLO_WEBHOOK": other_url})
    assert response.status_code == 401


def test_trello_head_check_answers_200_without_a_signature(client, providers):
    assert client.head("/api/webhooks/trello").status_code == 200
    assert client.head(f"/api/webhooks/trello/{providers['trello'].pk}").status_code == 200
    assert WebhookDelivery.objects.count() == 0


def test_other_methods_are_refused_in_the_envelope(client, providers):
    response = client.get("/api/webhooks/clickup")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_an_oversized_body_is_refused_with_413_before_parsing(client, providers, settings):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "WEBHOOK_MAX_BODY_BYTES": 2048}
    before = _count("clickup", "too_large")
    body = b'{"junk": "' + b"x" * 4096 + b'"'  # not even JSON: it must never be parsed
    response = post(client, "clickup", body=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert WebhookDelivery.objects.count() == 0
    assert _count("clickup", "too_large") == before + 1


def test_an_unknown_provider_type_is_404_in_the_envelope(client, db):
    response = post(client, "asana", {"x": 1}, headers={})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_type_without_a_configured_account_is_404(client, db):
    response = post(client, "clickup", example("clickup"))
    assert response.status_code == 404
    assert WebhookDelivery.objects.count() == 0


def test_an_unknown_provider_id_is_404(client, providers):
    path = "/api/webhooks/clickup/6a8e2c1e-0000-4000-8000-000000000000"
    assert post(client, "clickup", example("clickup"), path=path).status_code == 404


def test_the_short_form_finds_the_account_among_several_from_the_payload(client, providers):
    other = make_provider("trello", board_id="5a9999999999999999999999", callback_url="https://x.example.com/hook")
    assert other.pk != providers["trello"].pk
    response = post(client, "trello", example("trello"))
    assert response.status_code == 200
    assert WebhookDelivery.objects.get().provider == providers["trello"]


def test_the_long_form_names_the_account(client, providers):
    second = make_provider("clickup", webhook_secret="second-secret", webhook_id="another-hook")
    body = encode(example("clickup"))
    path = f"/api/webhooks/clickup/{second.pk}"
    response = post(client, "clickup", body=body, path=path, secret="second-secret")
    assert response.status_code == 200
    assert WebhookDelivery.objects.get().provider == second
    # The first account's secret does not open the second account's URL.
    assert post(client, "clickup", body=body, path=path).status_code == 401


def test_a_rotated_secret_is_picked_up_at_once(client, providers):
    from providers_app.services import provider_update

    post(client, "clickup", example("clickup"))  # fills the intake's cache
    provider_update(provider=providers["clickup"], data={"config": {"webhook_secret": "rotated"}}, partial=True)
    payload = example("clickup")
    payload["history_items"][0]["id"] = "2800787326392370171"
    assert post(client, "clickup", payload, secret="rotated").status_code == 200


def test_authentic_but_not_json_is_400(client, providers):
    body = b"not json"
    response = post(client, "todoist", body=body, path=f"/api/webhooks/todoist/{providers['todoist'].pk}")
    assert response.status_code == 400
    assert WebhookDelivery.objects.count() == 0


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}"])
def test_authentic_but_nested_thousands_deep_is_400(client, providers, body):
    response = post(client, "todoist", body=body, path=f"/api/webhooks/todoist/{providers['todoist'].pk}")
    assert response.status_code == 400
    assert WebhookDelivery.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": NaN}',
        b'{"x": -Infinity}',
        b'{"event": 1e309}',
        b'{"event": "item:added", "k": "a\\u0000b"}',
        b'{"event": "item:added", "k": "\\ud800"}',
        b'{"event": "item:added", "\\udfff": 1}',
        b'{"event": "item:added", "event_data": {"labels": ["x\\u0000"]}}',
    ],
)
def test_authentic_but_unstorable_is_400_and_stores_nothing(client, providers, body):
    response = post(client, "todoist", body=body, path=f"/api/webhooks/todoist/{providers['todoist'].pk}")
    assert response.status_code == 400, response.content
    assert WebhookDelivery.objects.count() == 0


@pytest.mark.parametrize("items", [True, -1, 1.5, "text", {"id": "1"}])
def test_clickup_history_items_that_are_not_a_list_are_read_as_none(client, providers, items):
    payload = {**example("clickup"), "history_items": items}
    assert post(client, "clickup", payload).status_code == 200
    from providers_app.webhooks import parse_clickup_webhook

    changes = parse_clickup_webhook(payload, providers["clickup"].config)
    assert all(not change.fields for change in changes)


def test_webhooks_need_no_token_and_are_not_throttled(client, providers, settings):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "THROTTLE_RATE": "1/min"}
    for i in range(3):
        payload = example("trello")
        payload["action"]["id"] = f"5a42345678900000000000{i:02d}"
        assert post(client, "trello", payload).status_code == 200


def test_a_burst_of_deliveries_queues_one_drain_that_applies_them_all(
    client, providers, monkeypatch, django_capture_on_commit_callbacks
):
    from archangel.celery import app
    from tasks_app import jobs

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, **kw: sent.append(name))
    for i in range(5):
        payload = example("trello")
        payload["action"]["id"] = f"5a42345678900000000001{i:02d}"
        with django_capture_on_commit_callbacks(execute=True):
            assert post(client, "trello", payload).status_code == 200
    assert sent == ["tasks_app.jobs.webhook_drain"]
    assert jobs.webhook_drain.run() == 5  # nothing to apply (unknown card, no title): ignored
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"ignored"}
    # The drain cleared the flag when it started: the next delivery queues the next drain.
    payload = example("trello")
    payload["action"]["id"] = "5a4234567890000000000999"
    with django_capture_on_commit_callbacks(execute=True):
        post(client, "trello", payload)
    assert sent == ["tasks_app.jobs.webhook_drain"] * 2


def test_a_broker_outage_leaves_the_delivery_stored_for_the_sweep(
    client, providers, monkeypatch, django_capture_on_commit_callbacks
):
    from archangel.celery import app

    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(app, "send_task", down)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, "todoist", example("todoist"))
    assert response.status_code == 200
    assert WebhookDelivery.objects.get().status == "received"


def test_with_a_wakeup_delay_a_burst_costs_one_wakeup_off_the_request_path_and_none_is_missed(
    client, providers, monkeypatch, settings, django_capture_on_commit_callbacks
):
    import time

    from django.core.cache import cache

    from archangel.celery import app
    from providers_app import services

    settings.ARCHANGEL = {**settings.ARCHANGEL, "WEBHOOK_WAKEUP_DELAY_MS": 500}
    cache.delete(services.WAKEUP_KEY)
    sent, wakeups = [], []
    monkeypatch.setattr(app, "send_task", lambda name, **kw: sent.append(name))
    real_wakeup = services.webhook_wakeup
    monkeypatch.setattr(services, "webhook_wakeup", lambda: wakeups.append(1) or real_wakeup())

    def burst(first: int, n: int) -> None:
        for i in range(first, first + n):
            payload = example("trello")
            payload["action"]["id"] = f"5a42345678900000000002{i:02d}"
            with django_capture_on_commit_callbacks(execute=True):
                assert post(client, "trello", payload).status_code == 200

    def settled(expected: int) -> bool:
        deadline = time.monotonic() + 10
        while len(sent) < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.6)  # one more delay: anything else would have been sent by now
        return not services.drain_waker._pending.is_set()

    burst(0, 5)
    assert settled(1)
    # Five deliveries, one trip to the cache (two if the burst straddled the delay) and one drain.
    assert sent == ["tasks_app.jobs.webhook_drain"] and 1 <= len(wakeups) <= 2
    # The drain has started (it clears the flag before reading): the next burst queues the next.
    cache.delete(services.WAKEUP_KEY)
    burst(10, 3)
    assert settled(2)
    assert sent == ["tasks_app.jobs.webhook_drain"] * 2
    assert WebhookDelivery.objects.count() == 8


@pytest.mark.django_db(transaction=True)
def test_a_delivery_arriving_on_a_connection_the_database_dropped_is_stored_on_a_new_one(client, providers):
    import psycopg
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    assert post(client, "todoist", example("todoist"), delivery_id="before").status_code == 200
    pid = connection.connection.info.backend_pid
    params = {
        k: v
        for k, v in connection.get_connection_params().items()
        if k in {"dbname", "host", "port", "user", "password"}
    }
    # Only this test's own backend, in its own test database.
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    response = post(client, "todoist", example("todoist"), delivery_id="after")
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    assert set(WebhookDelivery.objects.values_list("dedup_key", flat=True)) == {"before", "after"}
    assert connection.connection.info.backend_pid != pid


def test_a_delivery_takes_the_short_middleware_path_and_keeps_the_security_headers(client, providers):
    from prometheus_client import REGISTRY

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0

    by_view = {"status": "200", "view": "webhook", "method": "POST"}
    before = (
        sample("django_http_responses_total_by_status_view_method_total", **by_view),
        sample("django_http_requests_latency_seconds_by_view_method_count", view="webhook", method="POST"),
    )
    response = post(client, "trello", example("trello"))
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    # Outer middleware ran: request id, SecurityMiddleware's headers; a length for keep-alive.
    assert response["X-Request-Id"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert int(response["Content-Length"]) == len(response.content)
    # The rest did not: no session or CSRF cookie, no clickjacking header, no Vary: Cookie.
    assert not response.cookies and "X-Frame-Options" not in response and "Vary" not in response
    # The per-view metrics the dashboard reads are still recorded.
    assert (
        sample("django_http_responses_total_by_status_view_method_total", **by_view),
        sample("django_http_requests_latency_seconds_by_view_method_count", view="webhook", method="POST"),
    ) == (before[0] + 1, before[1] + 1)
    # Anything else under /api/webhooks/ still goes through the whole stack.
    other = client.post("/api/webhooks/trello/not-a-uuid", data=b"{}", content_type="application/json")
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    assert other["X-Frame-Options"] == "DENY"
