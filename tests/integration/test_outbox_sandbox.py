"""The drain through the real gateway and adapters against the provider sandbox (embedded on a
free port), over real PostgreSQL and Redis: a provider failing for a while opens its breaker,
its events wait (never dead) while another provider's deliver, then it recovers and all
deliver, each once (docs/reliability.md P3, P8)."""

import time

import pytest
from django.utils import timezone

from outbox_app.drain import drain
from outbox_app.models import OutboxEvent
from providers_app.services import provider_create
from tasks_app.services import task_bulk_create
from tests.markers import real_services

pytestmark = real_services()

Status = OutboxEvent.Status


@pytest.fixture
def sandbox(sandbox, settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "BREAKER_FAIL_MAX": 3, "BREAKER_RESET_SECONDS": 2}
    return sandbox


def test_a_failing_provider_waits_behind_its_breaker_while_another_delivers_then_recovers(sandbox):
    clickup = provider_create(
        name="sandbox-clickup",
        type="clickup",
        config={"api_token": "pk_demo_clickup", "list_id": "901", "team_id": "9001",
                "base_url": sandbox.base_url("clickup")},
    )  # fmt: skip
    todoist = provider_create(
        name="sandbox-todoist",
        type="todoist",
        config={"api_token": "demo-todoist-token", "project_id": "6Demo", "base_url": sandbox.base_url("todoist")},
    )
    task_bulk_create(items=[{"title": f"Down {i}", "provider": str(clickup.id)} for i in range(8)])
    task_bulk_create(items=[{"title": f"Up {i}", "provider": str(todoist.id)} for i in range(8)])
    sandbox.sandbox.set_faults({"clickup": {"error_seconds": 3, "error_status": 503}})

    drain(threads=4, max_seconds=0)

    by_provider = {
        p.name: sorted(OutboxEvent.objects.filter(provider=p).values_list("status", flat=True))
        for p in (clickup, todoist)
    }
    assert by_provider["sandbox-todoist"] == [Status.DELIVERED] * 8
    assert Status.DELIVERED not in by_provider["sandbox-clickup"]
    assert Status.DEAD not in by_provider["sandbox-clickup"]
    clickup.refresh_from_db()
    assert clickup.health_status == clickup.Health.DOWN  # its breaker opened (mirrored on the provider)

    # The outage ends; the breaker lets a probe through after its reset time, and all deliver.
    deadline = time.monotonic() + 30
    while OutboxEvent.objects.exclude(status=Status.DELIVERED).exists() and time.monotonic() < deadline:
        time.sleep(0.5)
        # Backoff and breaker waits are short here but real: make the waiting events due.
        OutboxEvent.objects.filter(status__in=[Status.PENDING, Status.FAILED]).update(scheduled_at=timezone.now())
        drain(threads=4, max_seconds=2)

    assert OutboxEvent.objects.exclude(status=Status.DELIVERED).count() == 0
    state = sandbox.sandbox.state(include_items=False)
    assert state["creates"]["clickup"] == 8
    assert state["creates"]["todoist"] == 8
    assert state["duplicates"] == {"by_marker": {}, "by_request_id": {}}
    assert state["over_limit_total"] == 0
