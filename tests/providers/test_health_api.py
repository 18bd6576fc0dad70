"""GET /api/providers/{id}/health, the providers in GET /api/health, GET /api/usage/predictions."""

import uuid

import pytest
import responses

from outbox_app.models import OutboxEvent
from providers_app import breakers, ratelimit
from providers_app.adapters.base import TransientError
from tests.factories import make_provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def clickup(unique_token):
    return make_provider("clickup", api_token=unique_token)


def _url(provider):
    return f"/api/providers/{provider.pk}/health"


def test_provider_health_needs_a_token(anon, clickup):
    assert anon.get(_url(clickup)).status_code == 401


def test_provider_health_shows_breaker_budgets_and_last_error_without_secrets(reader_api, clickup, unique_token):
    ratelimit.take(clickup, urgent=True)
    breakers.record_failure(clickup, TransientError("clickup PUT /task/1 answered 503: down", status_code=503))
    response = reader_api.get(_url(clickup))
    assert response.status_code == 200
    body = response.json()
    assert body["breaker"] == {"state": "closed", "fail_counter": 1, "retry_in_seconds": None}
    (budget,) = body["budgets"]
    assert (budget["scope"], budget["limit"], budget["window_seconds"], budget["used"]) == ("token", 100, 60.0, 1)
    assert budget["usable"] == 90 and budget["remaining"] == 89
    assert body["last_error"]["status_code"] == 503 and body["last_error"]["code"] == "transient"
    assert "check" not in body
    assert unique_token not in response.content.decode()


@responses.activate
def test_check_1_runs_the_live_health_call(reader_api, clickup):
    responses.get(
        "https://api.clickup.com/api/v2/team", json={"err": "Token invalid", "ECODE": "OAUTH_025"}, status=401
    )
    body = reader_api.get(_url(clickup) + "?check=1").json()
    assert body["check"]["ok"] is False and body["check"]["code"] == "auth" and body["check"]["status_code"] == 401
    responses.replace(responses.GET, "https://api.clickup.com/api/v2/team", json={"teams": []})
    assert reader_api.get(_url(clickup) + "?check=1").json()["check"]["ok"] is True


def test_unknown_provider_is_404(reader_api):
    assert reader_api.get(f"/api/providers/{uuid.uuid4()}/health").status_code == 404


def test_api_health_lists_breaker_states_without_authentication(anon, settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "BREAKER_FAIL_MAX": 1}
    down = make_provider("trello", name="trello-main", api_token=f"t-{uuid.uuid4().hex}")
    make_provider("todoist", name="todoist-main", api_token=f"t-{uuid.uuid4().hex}")
    breakers.record_failure(down, TransientError("timeout"))
    response = anon.get("/api/health")
    providers = response.json()["providers"]
    assert providers["trello-main"] == {"type": "trello", "health_status": "down", "breaker": "open"}
    assert providers["todoist-main"]["breaker"] == "closed"
    assert "token" not in response.content.decode().lower()


def test_usage_predictions_need_a_token(anon):
    assert anon.get("/api/usage/predictions").status_code == 401


def test_usage_predictions_forecast_and_backlog(reader_api, settings, unique_token):
    settings.PROVIDERS = {**settings.PROVIDERS, "RATE_LIMIT_MARGIN_PERCENT": 0}
    busy = make_provider("todoist", name="busy", api_token=unique_token)
    make_provider("clickup", name="idle", api_token=f"idle-{unique_token}")
    for _ in range(900):
        ratelimit.take(busy, urgent=True)
    for version, status in enumerate(["pending", "pending", "failed", "delivered", "dead"], start=1):
        OutboxEvent.objects.create(
            provider=busy,
            aggregate_id=uuid.uuid4(),
            aggregate_version=version,
            operation_type="create",
            payload={},
            idempotency_key=f"k-{uuid.uuid4()}",
            status=status,
        )
    response = reader_api.get("/api/usage/predictions")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()["providers"]}
    (budget,) = rows["busy"]["budgets"]
    assert budget["used"] == 900 and budget["remaining"] == 100 and budget["limit"] == 1000
    # 900 requests in the last 5 minutes (at most 300 s): kept up, that rate would hold more than
    # 1,000 in Todoist's 15-minute window, so the last 100 run out in 100 / rate seconds.
    rate = budget["recent_rate_per_second"]
    assert 3.0 <= rate <= 3.75
    assert budget["runs_out_in_seconds"] == pytest.approx(100 / rate, rel=0.01)
    assert budget["runs_out_at"] is not None
    assert rows["busy"]["runs_out_in_seconds"] == budget["runs_out_in_seconds"]
    assert rows["busy"]["backlog"] == {"pending": 2, "failed": 1, "total": 3, "capped": False}
    (idle,) = rows["idle"]["budgets"]
    assert idle["used"] == 0 and idle["runs_out_in_seconds"] is None and rows["idle"]["runs_out_in_seconds"] is None
    assert unique_token not in response.content.decode()


def test_provider_health_answers_when_the_secrets_no_longer_decrypt(reader_api, clickup):
    from providers_app.models import Provider

    Provider.objects.filter(pk=clickup.pk).update(secrets="not-a-fernet-token")
    response = reader_api.get(_url(clickup) + "?check=1")
    assert response.status_code == 200
    assert response.json()["budgets"] == [] and "check" not in response.json()
    assert reader_api.get("/api/usage/predictions").status_code == 200
