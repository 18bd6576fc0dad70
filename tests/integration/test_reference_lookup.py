"""A create whose worker was lost after the provider made the task, retried when many other
tasks have been made in the same list since, against the provider sandbox (embedded) over real
PostgreSQL and Redis.

The 10-minute sustained run made five tasks twice this way: the retry looked for its reference
marker in the newest 1,000 tasks of the list only, and ~20,000 had been created since. The
lookup now reads every task updated since the event's first claim (ClickUp's documented
``date_updated_gt`` filter, docs/provider-apis.md §1.2), and when even that is more than it may
read, it stops the event for an operator instead of guessing (docs/reliability.md P4)."""

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from outbox_app import services as outbox_services
from outbox_app.drain import claim, drain, reclaim_expired
from outbox_app.models import OutboxEvent
from providers_app import gateway
from providers_app.adapters import get_adapter
from providers_app.services import provider_create
from tasks_app.models import Task
from tasks_app.services import task_create
from tests.markers import real_services

pytestmark = real_services()

Status = OutboxEvent.Status
OTHERS = 1_250  # more than the old lookup's 10 pages of 100


@pytest.fixture
def clickup(sandbox):
    sandbox.sandbox.set_limits({"enabled": False})  # 1,250 creates in a second: not what this is about
    # A token of this test's own: the lookup's pages are charged to its budget in the shared
    # Redis, which must not leave other tests (on the demo token) short of theirs.
    token = f"pk_lookup_{uuid.uuid4().hex[:12]}"
    sandbox.sandbox.credentials.add({"clickup_tokens": [token]})
    return provider_create(
        name="lookup-clickup",
        type="clickup",
        config={
            "api_token": token,
            "list_id": "901",
            "team_id": "9001",
            "base_url": sandbox.base_url("clickup"),
            "rate_limit_per_minute": 100_000,
        },
    )


def _lost_create_then_busy_list(clickup) -> tuple[OutboxEvent, str]:
    """The task's create reaches the provider, then its worker dies before recording it; many
    other tasks are made in the list before the lease expires and the event is reclaimed."""
    task_create(data={"title": "Quarterly numbers", "provider": str(clickup.id)})
    _, [event] = claim(limit=10)
    made = gateway.deliver(
        clickup, "create", event.payload, idempotency_key=event.idempotency_key, external_id=None
    ).external_id
    adapter = get_adapter(clickup)
    for i in range(OTHERS):
        adapter.create({"title": f"Someone else's task {i}"}, idempotency_key=f"elsewhere:{i}:create")
    assert reclaim_expired(now=timezone.now() + dt.timedelta(hours=1)) == 1
    OutboxEvent.objects.filter(id=event.id).update(scheduled_at=timezone.now())
    return event, made


def test_the_retry_adopts_its_task_among_thousands_made_since(sandbox, clickup):
    event, made = _lost_create_then_busy_list(clickup)

    counts = drain(threads=1, max_seconds=0)

    assert counts["delivered"] == 1
    event.refresh_from_db()
    assert event.status == Status.DELIVERED
    assert event.attempts.get().outcome == "delivered"
    assert Task.objects.get(id=event.aggregate_id).external_id == made
    state = sandbox.sandbox.state(include_items=False)
    assert state["creates"]["clickup"] == OTHERS + 1  # ours once
    assert state["duplicates"]["by_marker"] == {}


def test_past_its_cap_the_lookup_stops_the_event_for_an_operator_who_adopts_the_task(sandbox, clickup, settings):
    settings.OUTBOX_REFERENCE_LOOKUP_MAX_PAGES = 5
    event, made = _lost_create_then_busy_list(clickup)

    drain(threads=1, max_seconds=0)

    event.refresh_from_db()
    assert event.status == Status.DEAD
    assert event.error_message.startswith("lookup_incomplete: Could not rule out")
    assert f"archangel-ref: {event.idempotency_key}" in event.error_message
    assert sandbox.sandbox.state(include_items=False)["creates"]["clickup"] == OTHERS + 1  # no second create

    outbox_services.outbox_adopt(event_id=event.id, external_id=made)

    event.refresh_from_db()
    assert (event.status, Task.objects.get(id=event.aggregate_id).external_id) == (Status.DELIVERED, made)
