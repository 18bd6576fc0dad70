"""Every admin page an operator can reach opens: changelist, add form and change form of each model."""

import pytest
from django.contrib import admin
from django.urls import reverse

from tests.factories import AssigneeFactory, ClientFactory, make_provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", "pw-ops-123"))
    return client


def test_each_models_changelist_add_and_change_pages_open(staff, api):
    provider = make_provider("clickup")
    AssigneeFactory()
    ClientFactory()
    # A task through the API, so its outbox event, routing decision and audit entry exist too.
    assert api.post("/api/tasks", {"title": "Admin pages", "provider": str(provider.pk)}).status_code == 201
    opened = []
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        changelist = staff.get(reverse("admin:{}_{}_changelist".format(*info)))
        assert changelist.status_code == 200, (info, changelist.status_code)
        add = staff.get(reverse("admin:{}_{}_add".format(*info)))
        assert add.status_code in (200, 403), (info, add.status_code)  # 403: read-only models
        row = model._default_manager.first()
        if row is not None:
            change = staff.get(reverse("admin:{}_{}_change".format(*info), args=[row.pk]))
            assert change.status_code == 200, (info, change.status_code)
        opened.append(info)
    assert ("providers_app", "provider") in opened and ("tasks_app", "task") in opened


def test_clients_and_people_can_be_added_in_the_admin(staff):
    from tasks_app.models import Assignee, Client

    response = staff.post(
        reverse("admin:tasks_app_client_add"), {"name": "Acme from the admin", "importance": "0.7", "sla_hours": "24"}
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Client.objects.get(name="Acme from the admin").sla_hours == 24
    provider = make_provider("todoist")
    form = {
        "name": "Ada from the admin",
        "email": "ada.admin@example.com",
        "capacity_hours_per_day": "6",
        "timezone": "Europe/Berlin",
        "active": "on",
        "identities-TOTAL_FORMS": "1",
        "identities-INITIAL_FORMS": "0",
        "identities-MIN_NUM_FORMS": "0",
        "identities-MAX_NUM_FORMS": "1000",
        "identities-0-provider": str(provider.pk),
        "identities-0-external_user_id": "2671355",
    }
    response = staff.post(reverse("admin:tasks_app_assignee_add"), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    person = Assignee.objects.get(email="ada.admin@example.com")
    assert list(person.identities.values_list("provider_id", "external_user_id")) == [(provider.pk, "2671355")]
