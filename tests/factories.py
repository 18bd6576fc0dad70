import factory
from factory.django import DjangoModelFactory

from providers_app import services as provider_services
from providers_app.models import Provider
from tasks_app.models import Assignee, AssigneeIdentity, Client, Task

PROVIDER_CONFIGS = {
    "clickup": {
        "api_token": "pk_test_clickup_token",
        "list_id": "901",
        "team_id": "42",
        "webhook_secret": "cu-hook-secret",
    },
    "trello": {
        "api_key": "trello-key-123",
        "api_token": "trello-token-456",
        "board_id": "5a1111111111111111111111",
        "status_lists": {"pending": "5a2222222222222222222222", "completed": "5a4444444444444444444444"},
        "app_secret": "trello-app-secret",
    },
    "todoist": {
        "api_token": "todoist-token-789",
        "project_id": "6XR4H993xv8H5qCR",
        "client_secret": "td-client-secret",
    },
}


def make_provider(type="clickup", name=None, **config_overrides) -> Provider:
    """A provider created through the service, so its secrets are encrypted as in production."""
    config = {**PROVIDER_CONFIGS[type], **config_overrides}
    name = name or f"{type}-{Provider.objects.count() + 1}"
    return provider_services.provider_create(name=name, type=type, config=config)


class ClientFactory(DjangoModelFactory):
    class Meta:
        model = Client

    name = factory.Sequence(lambda n: f"Client {n}")
    importance = 0.5
    sla_hours = 48


class AssigneeFactory(DjangoModelFactory):
    class Meta:
        model = Assignee

    name = factory.Sequence(lambda n: f"Person {n}")
    email = factory.Sequence(lambda n: f"person{n}@example.com")
    capacity_hours_per_day = 8
    timezone = "UTC"


class IdentityFactory(DjangoModelFactory):
    class Meta:
        model = AssigneeIdentity

    assignee = factory.SubFactory(AssigneeFactory)
    external_user_id = factory.Sequence(lambda n: str(1000 + n))


class TaskFactory(DjangoModelFactory):
    """A task row written directly (no outbox event): for read-side tests only."""

    class Meta:
        model = Task

    title = factory.Sequence(lambda n: f"Task {n}")
    priority = 2
    effort_hours = 1
