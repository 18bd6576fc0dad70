"""Admin: register/unregister webhooks on providers; deliveries and sync conflicts are read-only."""

import pytest
import responses

from providers_app.models import WebhookDelivery
from tests.factories import make_provider

CHANGELIST = "/admin/providers_app/provider/"


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", "pw-ops-123"))
    return client


def _act(staff, action, provider):
    return staff.post(CHANGELIST, {"action": action, "_selected_action": [str(provider.pk)]}, follow=True)


@responses.activate
def test_the_register_action_creates_the_webhook_and_stores_its_secret(staff, settings):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "PUBLIC_URL": "https://archangel.example.com"}
    provider = make_provider("clickup", name="CU admin")
    responses.post(
        "https://api.clickup.com/api/v2/team/42/webhook", json={"id": "wh-a", "webhook": {"secret": "admin-secret"}}
    )
    page = _act(staff, "register_webhooks", provider).content.decode()
    assert "CU admin: webhook wh-a registered." in page
    provider.refresh_from_db()
    assert provider.secret_config()["webhook_secret"] == "admin-secret"
    assert "admin-secret" not in page


def test_the_register_action_explains_todoist_and_changes_nothing(staff):
    provider = make_provider("todoist", name="TD admin")
    page = _act(staff, "register_webhooks", provider).content.decode()
    assert "configured per app in its console" in page
    provider.refresh_from_db()
    assert "webhook_id" not in provider.config


def test_deliveries_are_listed_but_cannot_be_added_or_changed(staff):
    provider = make_provider("trello")
    from django.utils import timezone

    delivery = WebhookDelivery.objects.create(
        provider=provider, dedup_key="a-1", payload={"x": 1}, received_at=timezone.now()
    )
    assert staff.get("/admin/providers_app/webhookdelivery/").status_code == 200
    assert staff.get("/admin/providers_app/webhookdelivery/add/").status_code == 403
    assert staff.post(f"/admin/providers_app/webhookdelivery/{delivery.pk}/change/", {}).status_code == 403
    assert staff.get("/admin/tasks_app/syncconflict/").status_code == 200
