"""Provider admin: breaker and budget columns; test connection and reset breaker actions."""

import re

import pytest
import responses

from archangel.audit.models import AuditEntry
from providers_app import breakers
from providers_app.adapters.base import TransientError
from providers_app.models import Provider
from tests.factories import make_provider

CHANGELIST = "/admin/providers_app/provider/"


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", "pw-ops-123"))
    return client


def _act(staff, action, provider):
    return staff.post(CHANGELIST, {"action": action, "_selected_action": [str(provider.pk)]}, follow=True)


@responses.activate
def test_test_connection_reports_success_and_failure(staff):
    provider = make_provider("todoist", name="TD admin", api_token="tok-admin-ok")
    responses.add(responses.GET, re.compile(r"https://api\.todoist\.com/api/v1/.*"), json={"results": [], "id": "1"})
    page = _act(staff, "test_connection", provider).content.decode()
    assert "TD admin: OK in" in page
    responses.replace(responses.GET, re.compile(r"https://api\.todoist\.com/api/v1/.*"), status=401, body="Forbidden")
    page = _act(staff, "test_connection", provider).content.decode()
    assert "TD admin: failed, auth 401" in page
    assert "tok-admin-ok" not in page


def test_reset_breaker_closes_it_marks_the_provider_active_and_is_audited(staff, settings):
    provider = make_provider("todoist", name="TD breaker", api_token="tok-breaker")
    for _ in range(settings.PROVIDERS["BREAKER_FAIL_MAX"]):
        breakers.record_failure(provider, TransientError("503 from the provider", status_code=503))
    assert breakers.states([provider.pk])[str(provider.pk)] == breakers.OPEN
    assert Provider.objects.get(pk=provider.pk).health_status == Provider.Health.DOWN
    changelist = staff.get(CHANGELIST).content.decode()
    assert ">open<" in changelist and "per 900 s" in changelist  # breaker and Todoist's 15-minute budget
    _act(staff, "reset_breaker", provider)
    assert breakers.states([provider.pk])[str(provider.pk)] == breakers.CLOSED
    assert Provider.objects.get(pk=provider.pk).health_status == Provider.Health.ACTIVE
    entry = AuditEntry.objects.get(action="reset_breaker")
    assert (entry.actor, entry.source, entry.object_id) == ("user:ops", "admin", str(provider.pk))


def test_refresh_metadata_drops_the_providers_cached_metadata_and_is_audited(staff):
    from django.core.cache import cache

    from providers_app import metadata

    provider = make_provider("trello", name="TR metadata")
    other = make_provider("clickup", name="CU metadata")
    reads = []
    for p in (provider, other):
        metadata.get(str(p.pk), "labels", "board", lambda: reads.append(1) or ["cached"])
    assert len(reads) == 2

    page = _act(staff, "refresh_metadata", provider).content.decode()

    assert "Dropped the cached metadata of 1 provider(s)" in page
    assert cache.get(f"provider-meta:{provider.pk}:labels") is None
    assert cache.get(f"provider-meta:{other.pk}:labels") is not None  # only the one chosen
    metadata.get(str(provider.pk), "labels", "board", lambda: reads.append(1) or ["fresh"])
    assert len(reads) == 3
    entry = AuditEntry.objects.get(action="refresh_metadata")
    assert (entry.object_id, entry.source) == (str(provider.pk), "admin")


def test_the_add_page_opens_and_adds_a_provider_with_its_secrets_encrypted(staff):
    page = staff.get(f"{CHANGELIST}add/")
    assert page.status_code == 200
    add_page = page.content.decode()
    assert "secret_api_token" in add_page and "Leave blank to keep" not in add_page  # nothing stored yet
    form = {
        "name": "TD from the admin",
        "type": "todoist",
        "config": "{}",
        "weight": "100",
        "secret_api_token": "tok-from-admin",
    }
    response = staff.post(f"{CHANGELIST}add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = Provider.objects.get(name="TD from the admin")
    assert provider.secret_config() == {"api_token": "tok-from-admin"}
    assert "tok-from-admin" not in str(provider.secrets)  # encrypted at rest
    change = staff.get(f"{CHANGELIST}{provider.pk}/change/").content.decode()
    assert "tok-from-admin" not in change and "Set. Leave blank" in change


def test_the_add_page_names_a_missing_secret(staff):
    form = {"name": "TD no token", "type": "todoist", "config": "{}", "weight": "100"}
    response = staff.post(f"{CHANGELIST}add/", form)
    assert response.status_code == 200 and "api_token" in response.content.decode()
    assert not Provider.objects.filter(name="TD no token").exists()


def test_disable_and_enable_actions_are_audited(staff):
    provider = make_provider("trello", name="TR switch")
    assert "TR switch: disabled." in _act(staff, "disable", provider).content.decode()
    assert Provider.objects.get(pk=provider.pk).health_status == Provider.Health.DISABLED
    assert "TR switch: active." in _act(staff, "enable", provider).content.decode()
    assert Provider.objects.get(pk=provider.pk).health_status == Provider.Health.ACTIVE
    entries = AuditEntry.objects.filter(object_id=str(provider.pk), source="admin").order_by("id")
    changes = [e.changes for e in entries]
    assert [c["health_status"] for c in changes if "health_status" in c] == [
        ["active", "disabled"],
        ["disabled", "active"],
    ]
