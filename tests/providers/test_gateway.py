"""The gateway the outbox calls: reserve() before a request, deliver() to send it."""

import json

import pytest
import responses
from django.utils import timezone

from providers_app import breakers, gateway
from providers_app.adapters.base import PermanentError, RateLimited, TransientError
from tests.factories import make_provider
from tests.providers.conftest import KEY

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

CLICKUP = "https://api.clickup.com/api/v2"
TRELLO = "https://api.trello.com/1"


@pytest.fixture
def clickup(unique_token):
    return make_provider("clickup", api_token=unique_token, rate_limit_per_minute=10)


@pytest.fixture
def tight(settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "RATE_LIMIT_MARGIN_PERCENT": 0, "URGENT_RESERVE_PERCENT": 20}


def test_reserve_takes_a_unit_until_the_budget_is_spent(clickup, tight):
    assert [gateway.reserve(clickup) for _ in range(8)] == [0.0] * 8
    assert gateway.reserve(clickup) > 50  # non-urgent work leaves the last 20 % alone
    assert gateway.reserve(clickup, urgent=True) == 0.0


def test_reserve_answers_with_the_breaker_wait_while_it_is_open(clickup, settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "BREAKER_FAIL_MAX": 1, "BREAKER_RESET_SECONDS": 30}
    breakers.record_failure(clickup, TransientError("down"))
    assert 28 < gateway.reserve(clickup) <= 30  # pybreaker keeps whole seconds


@responses.activate
def test_create_returns_the_new_id_and_status(clickup, payload):
    responses.post(f"{CLICKUP}/list/901/task", json={"id": "9hx"})
    result = gateway.deliver(clickup, "create", payload, idempotency_key=KEY, external_id=None)
    assert result == gateway.DeliveryResult(external_id="9hx", status_code=200, adopted=False)


@responses.activate
def test_a_create_after_an_unknown_outcome_adopts_the_task_it_finds(clickup, payload):
    responses.get(f"{CLICKUP}/list/901/task", json={"tasks": [{"id": "made", "description": f"archangel-ref: {KEY}"}]})
    result = gateway.deliver(
        clickup, "create", payload, idempotency_key=KEY, external_id=None, outcome_unknown_before=True
    )
    assert result.external_id == "made" and result.adopted is True
    assert [c.request.method for c in responses.calls] == ["GET"]  # no second create


@responses.activate
def test_a_create_after_an_unknown_outcome_creates_when_nothing_was_made(clickup, payload):
    responses.get(f"{CLICKUP}/list/901/task", json={"tasks": []})
    responses.post(f"{CLICKUP}/list/901/task", json={"id": "new"})
    result = gateway.deliver(
        clickup, "create", payload, idempotency_key=KEY, external_id=None, outcome_unknown_before=True
    )
    assert (result.external_id, result.adopted) == ("new", False)


@responses.activate
def test_every_page_of_a_lookup_takes_a_unit_of_budget_and_none_left_defers_the_create(clickup, payload, tight):
    others = [{"id": f"o{i}", "description": "archangel-ref: task:other:v1:create"} for i in range(100)]
    responses.get(f"{CLICKUP}/list/901/task", json={"tasks": others})
    with pytest.raises(RateLimited):
        gateway.deliver(
            clickup,
            "create",
            payload,
            idempotency_key=KEY,
            external_id=None,
            outcome_unknown_before=True,
            first_claimed_at=timezone.now(),
        )
    # 10 per minute, all of it open to urgent work: ten pages read, then it waits; never a create.
    assert [c.request.method for c in responses.calls] == ["GET"] * 10


@pytest.mark.parametrize("operation", ["update", "complete", "archive"])
def test_changing_a_task_without_an_external_id_is_a_clear_permanent_error(clickup, payload, operation):
    with pytest.raises(PermanentError, match="no id at clickup"):
        gateway.deliver(clickup, operation, payload, idempotency_key="k", external_id=None)


@responses.activate
def test_update_complete_archive_use_the_external_id(clickup, payload):
    responses.put(f"{CLICKUP}/task/9hx", json={"id": "9hx"})
    # Completing asks the list for its closed status once (cached metadata).
    responses.get(f"{CLICKUP}/list/901", json={"id": "901", "statuses": [{"status": "complete", "type": "closed"}]})
    for operation in ("update", "complete", "archive"):
        result = gateway.deliver(clickup, operation, payload, idempotency_key="k", external_id="9hx")
        assert result == gateway.DeliveryResult(external_id=None, status_code=200)
    assert [c.request.method for c in responses.calls] == ["PUT", "GET", "PUT", "PUT"]
    assert json.loads(responses.calls[3].request.body) == {"archived": True}


@responses.activate
def test_deleting_a_task_that_is_already_gone_counts_as_done(clickup):
    responses.delete(f"{CLICKUP}/task/9hx", json={"err": "Task not found", "ECODE": "ITEM_013"}, status=401)
    result = gateway.deliver(clickup, "delete", {}, idempotency_key="k", external_id="9hx")
    assert result.external_id is None and result.status_code == 401


@responses.activate
def test_a_429_closes_the_budget_for_the_hinted_time_without_tripping_the_breaker(clickup, payload, settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "BREAKER_FAIL_MAX": 1}
    responses.put(f"{CLICKUP}/task/9hx", json={"err": "Rate limited"}, status=429, headers={"Retry-After": "45"})
    with pytest.raises(RateLimited):
        gateway.deliver(clickup, "update", payload, idempotency_key="k", external_id="9hx")
    assert 44 < gateway.reserve(clickup) <= 45
    assert breakers.state(clickup)["state"] == "closed"


@responses.activate
def test_trello_key_level_429_closes_only_the_key_budget(unique_token, payload):
    trello = make_provider("trello", api_token=unique_token, api_key=f"key-{unique_token}")
    other_token = make_provider("trello", api_token=f"other-{unique_token}", api_key=f"key-{unique_token}")
    responses.put(f"{TRELLO}/cards/c1", json={"error": "API_KEY_LIMIT_EXCEEDED", "message": "x"}, status=429)
    with pytest.raises(RateLimited):
        gateway.deliver(trello, "archive", payload, idempotency_key="k", external_id="c1")
    assert gateway.reserve(other_token) > 9  # same key, other token: the key's window is closed too


@responses.activate
def test_server_errors_open_the_breaker_and_the_provider_waits(clickup, payload, settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "BREAKER_FAIL_MAX": 2, "BREAKER_RESET_SECONDS": 60}
    responses.put(f"{CLICKUP}/task/9hx", body="bad gateway", status=502)
    for _ in range(2):
        with pytest.raises(TransientError):
            gateway.deliver(clickup, "update", payload, idempotency_key="k", external_id="9hx")
    assert gateway.reserve(clickup) > 55
    assert breakers.last_error(clickup)["status_code"] == 502


def test_an_unknown_operation_is_permanent(clickup):
    with pytest.raises(PermanentError, match="unknown outbox operation"):
        gateway.deliver(clickup, "explode", {}, idempotency_key="k", external_id="1")


@responses.activate
def test_with_redis_unreachable_deliveries_go_on_with_budgets_and_breaker_in_process(settings, unique_token, payload):
    """P8: with Redis stopped the system keeps working (breaker and budget fall back to memory)."""
    from providers_app.redis_client import _client

    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens there
    _client.cache_clear()
    try:
        provider = make_provider("clickup", api_token=unique_token)
        responses.post(f"{CLICKUP}/list/901/task", json={"id": "9hx"})
        assert gateway.reserve(provider) == 0.0
        assert gateway.deliver(provider, "create", payload, idempotency_key=KEY, external_id=None).external_id == "9hx"
        assert breakers.state(provider)["state"] == "closed"
        from providers_app.health import unavailable_provider_ids

        assert provider.pk not in unavailable_provider_ids()
    finally:
        _client.cache_clear()
