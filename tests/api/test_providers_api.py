import json

import pytest

from providers_app import breakers
from providers_app.adapters.base import TransientError
from providers_app.models import Provider
from tests.api.test_tasks_api import assert_envelope
from tests.factories import PROVIDER_CONFIGS, make_provider
from tests.providers.test_secrets import SECRET_VALUES

pytestmark = pytest.mark.django_db


def test_it_adds_a_provider_and_never_returns_its_secrets(operator_api):
    response = operator_api.post(
        "/api/providers", {"name": "Team ClickUp", "type": "clickup", "config": PROVIDER_CONFIGS["clickup"]}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["config"] == {
        "list_id": "901",
        "team_id": "42",
        "api_token": {"set": True},
        "webhook_secret": {"set": True},
    }
    assert body["health_status"] == "active"
    listed = (
        operator_api.get("/api/providers").content.decode()
        + operator_api.get(f"/api/providers/{body['id']}").content.decode()
    )
    for value in SECRET_VALUES:
        assert value not in response.content.decode() + listed


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"list_id": "1"}, "config.api_token", "This key is required."),
        ({"api_token": "t", "list_id": "1", "colour": "red"}, "config.colour", None),
        (
            {"api_token": "t", "list_id": "1", "base_url": "ftp://x"},
            "config.base_url",
            "Must be an http(s) URL with a host.",
        ),
        ({"api_token": "", "list_id": "1"}, "config.api_token", "Must be a non-empty string."),
        ({"api_token": "t", "list_id": "1", "rate_limit_per_minute": 0}, "config.rate_limit_per_minute", None),
    ],
)
def test_config_is_validated_per_type_and_nothing_is_written(operator_api, config, field, message):
    response = operator_api.post("/api/providers", {"name": "bad", "type": "clickup", "config": config})
    error = assert_envelope(response, 400, "invalid", field)
    if message:
        assert error["fields"][field] == [message]
    assert Provider.objects.count() == 0


def test_unknown_type_and_duplicate_name_are_rejected(operator_api):
    assert_envelope(
        operator_api.post("/api/providers", {"name": "x", "type": "asana", "config": {}}), 400, "invalid", "type"
    )
    make_provider("todoist", name="Home")
    response = operator_api.post(
        "/api/providers", {"name": "Home", "type": "todoist", "config": PROVIDER_CONFIGS["todoist"]}
    )
    assert_envelope(response, 400, "invalid", "name")


def test_patch_merges_config_keeps_unsent_secrets_and_null_removes(operator_api):
    provider = make_provider("todoist")
    response = operator_api.patch(
        f"/api/providers/{provider.pk}", {"config": {"project_id": "P2", "client_secret": None}}
    )
    assert response.status_code == 200, response.content
    assert response.json()["config"] == {
        "project_id": "P2",
        "api_token": {"set": True},
        "client_secret": {"set": False},
    }
    provider.refresh_from_db()
    assert provider.secret_config() == {"api_token": "todoist-token-789"}


def test_a_get_put_round_trip_keeps_the_secrets(operator_api):
    provider = make_provider("trello")
    body = operator_api.get(f"/api/providers/{provider.pk}").json()
    body["config"]["board_id"] = "5b" + "0" * 22
    response = operator_api.put(f"/api/providers/{provider.pk}", body)
    assert response.status_code == 200, response.content
    provider.refresh_from_db()
    assert provider.config["board_id"] == "5b" + "0" * 22
    assert provider.secret_config()["api_token"] == "trello-token-456"


def test_put_drops_plain_keys_it_does_not_mention(operator_api):
    provider = make_provider("clickup")
    response = operator_api.put(
        f"/api/providers/{provider.pk}", {"name": provider.name, "type": "clickup", "config": {"list_id": "77"}}
    )
    assert response.status_code == 200, response.content
    assert response.json()["config"] == {"list_id": "77", "api_token": {"set": True}, "webhook_secret": {"set": True}}


def test_a_patch_that_would_remove_a_required_secret_is_refused(operator_api):
    provider = make_provider("clickup")
    assert_envelope(
        operator_api.patch(f"/api/providers/{provider.pk}", {"config": {"api_token": None}}),
        400,
        "invalid",
        "config.api_token",
    )
    provider.refresh_from_db()
    assert provider.secret_config()["api_token"] == "pk_test_clickup_token"


def test_type_cannot_change_and_the_breakers_health_values_cannot_be_set(operator_api):
    provider = make_provider("clickup")
    name = provider.name
    assert_envelope(operator_api.patch(f"/api/providers/{provider.pk}", {"type": "todoist"}), 400, "invalid", "type")
    for value in ("down", "degraded", "bogus"):
        response = operator_api.patch(f"/api/providers/{provider.pk}", {"health_status": value, "name": "renamed"})
        assert_envelope(response, 400, "invalid", "health_status")
    provider.refresh_from_db()
    assert (provider.health_status, provider.name) == ("active", name)


def test_an_operator_disables_and_enables_a_provider(operator_api):
    provider = make_provider("clickup")
    url = f"/api/providers/{provider.pk}"
    response = operator_api.patch(url, {"health_status": "disabled"})
    assert response.status_code == 200 and response.json()["health_status"] == "disabled"
    provider.refresh_from_db()
    assert provider.health_status == "disabled"
    # The breaker's verdicts never override an operator's decision.
    breakers.mirror_state(provider.pk, provider.name, breakers.CLOSED)
    provider.refresh_from_db()
    assert provider.health_status == "disabled"
    # Routing and task creation see it at once.
    response = operator_api.post("/api/tasks", {"title": "to a disabled provider", "provider": str(provider.pk)})
    assert_envelope(response, 400, "invalid", "provider")
    assert operator_api.patch(url, {"health_status": "active"}).json()["health_status"] == "active"
    assert operator_api.post("/api/tasks", {"title": "back", "provider": str(provider.pk)}).status_code == 201


def test_enabling_returns_a_provider_to_what_its_breaker_says(operator_api, settings):
    provider = make_provider("todoist")
    operator_api.patch(f"/api/providers/{provider.pk}", {"health_status": "disabled"})
    for _ in range(settings.PROVIDERS["BREAKER_FAIL_MAX"]):
        breakers.record_failure(provider, TransientError("503 from the provider", status_code=503))
    provider.refresh_from_db()
    assert provider.health_status == "disabled"  # the breaker opened meanwhile, the operator's word stands
    url = f"/api/providers/{provider.pk}"
    assert operator_api.patch(url, {"health_status": "active"}).json()["health_status"] == "down"
    # A GET -> PUT round trip sends "down" back: the value it has, accepted and unchanged.
    body = operator_api.get(url).json()
    response = operator_api.put(url, {k: body[k] for k in ("name", "type", "config", "health_status", "weight")})
    assert response.status_code == 200 and response.json()["health_status"] == "down"


def test_a_provider_can_be_created_disabled(operator_api):
    body = {"name": "later", "type": "todoist", "config": {"api_token": "tok-later"}, "health_status": "disabled"}
    response = operator_api.post("/api/providers", body)
    assert response.status_code == 201 and response.json()["health_status"] == "disabled"
    body = {**body, "name": "never", "health_status": "down"}
    assert_envelope(operator_api.post("/api/providers", body), 400, "invalid", "health_status")
    assert not Provider.objects.filter(name="never").exists()


def test_provider_health_endpoint(operator_api):
    provider = make_provider("todoist")
    body = operator_api.get(f"/api/providers/{provider.pk}/health").json()
    assert body["health_status"] == "active" and body["type"] == "todoist"


def test_providers_cannot_be_deleted_through_the_api(operator_api):
    provider = make_provider("todoist")
    assert_envelope(operator_api.delete(f"/api/providers/{provider.pk}"), 405, "method_not_allowed")


def test_secrets_do_not_leak_into_validation_errors(operator_api):
    provider = make_provider("clickup")
    response = operator_api.patch(
        f"/api/providers/{provider.pk}", {"config": {"api_token": "pk_new_secret", "bogus": 1}}
    )
    assert response.status_code == 400
    assert "pk_new_secret" not in json.dumps(response.json())
    provider.refresh_from_db()
    assert provider.secret_config()["api_token"] == "pk_test_clickup_token"


def test_a_provider_whose_secrets_cannot_be_decrypted_does_not_break_the_list(operator_api, settings):
    from cryptography.fernet import Fernet

    make_provider("todoist")
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key is gone
    make_provider("clickup", name="fresh")
    response = operator_api.get("/api/providers")
    assert response.status_code == 200
    configs = {p["name"]: p["config"] for p in response.json()["results"]}
    assert configs["todoist-1"]["api_token"] == {"set": None}
    assert configs["fresh"]["api_token"] == {"set": True}


def test_control_characters_in_config_values_are_refused(operator_api):
    response = operator_api.post(
        "/api/providers", {"name": "nul", "type": "todoist", "config": {"api_token": "t", "project_id": "a\u0000b"}}
    )
    assert_envelope(response, 400, "invalid", "config.project_id")
    assert Provider.objects.count() == 0
