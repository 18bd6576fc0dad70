"""The providers misbehave in every way the sandbox can (docs/reliability.md P2, P3, P6): 5xx
answers, answers held past the read timeout, 2xx answers with their JSON cut short, connections
reset before the request is handled and dropped after its effect, a 429 storm, an account whose
token is refused and a provider that always fails. Real workers deliver through the real
gateway. Every event ends delivered or dead with its reason (never pending, failed or in flight),
but for the later events of a task whose earlier event died, which wait behind it, never sent,
until an operator acts (by design: docs/operations.md, "A dead event holds back the later events
of the same task"). No lease is left expired without being reclaimed, and no create reaches a
provider twice."""

import uuid

import pytest
from django.db.models import Exists, OuterRef
from django.utils import timezone

from outbox_app.models import DeliveryAttempt, OutboxEvent
from providers_app.sandbox import SandboxServer
from providers_app.services import provider_create
from tasks_app.services import task_bulk_create, task_update
from tests.markers import real_services
from tests.reliability.conftest import assert_each_create_made_once, drive

pytestmark = real_services()

Status = OutboxEvent.Status
MAX_ATTEMPTS = 6
ENDED = (Status.DELIVERED, Status.DEAD)


def held_back():
    """Events behind a dead earlier event of their task: the drain never claims them (the rename
    of a task whose create died). Which ones, if any, depends on the random faults."""
    dead_before = OutboxEvent.objects.filter(
        status=Status.DEAD,
        aggregate_type=OuterRef("aggregate_type"),
        aggregate_id=OuterRef("aggregate_id"),
        aggregate_version__lt=OuterRef("aggregate_version"),
    )
    return OutboxEvent.objects.filter(Exists(dead_before)).exclude(status__in=ENDED)


def settled() -> bool:
    return not OutboxEvent.objects.exclude(status__in=ENDED).exclude(pk__in=held_back().values("pk")).exists()


@pytest.fixture
def broken_sandbox():
    """A second sandbox whose every answer is a 500: the provider that never recovers."""
    server = SandboxServer(rate_limits=False, faults={"*": {"error_rate": 1.0}}).start()
    yield server
    server.stop()


def test_every_event_ends_delivered_or_dead_with_its_reason_whatever_the_providers_do(
    sandbox, broken_sandbox, accounts, workers, rng
):
    clickup, trello, todoist = accounts["clickup"], accounts["trello"], accounts["todoist"]
    refused = provider_create(
        name="rel refused token", type="clickup",
        config={"api_token": "pk_revoked", "list_id": "901", "team_id": "9001",
                "base_url": sandbox.base_url("clickup")},
    )  # fmt: skip
    # Its own token: a budget in the shared Redis no other test has spent (the demo token's is).
    never_token = f"pk_never_{uuid.uuid4().hex[:12]}"
    broken_sandbox.sandbox.credentials.add({"clickup_tokens": [never_token]})
    never = provider_create(
        name="rel always failing", type="clickup",
        config={"api_token": never_token, "list_id": "901", "team_id": "9001",
                "base_url": broken_sandbox.base_url("clickup")},
    )  # fmt: skip
    faulty = [clickup, trello, todoist]
    tasks = [
        result.task
        for result in task_bulk_create(
            items=[{"title": f"Faulty {i}", "provider": str(faulty[i % 3].id)} for i in range(90)]
            + [{"title": f"Refused {i}", "provider": str(refused.id)} for i in range(3)]
            + [{"title": f"Never {i}", "provider": str(never.id)} for i in range(3)]
        )
    ]
    for task in rng.sample(tasks[:90], 15):
        task_update(task_id=task.id, data={"title": f"{task.title} renamed"}, partial=True)
    sandbox.sandbox.set_faults(
        {
            # Random faults, and each kind at least once for sure (``*_next``): with some thirty
            # requests per provider a rate alone can miss a kind (it did, about one run in fifty).
            "clickup": {"error_rate": 0.2, "malformed_rate": 0.15, "malformed_next": 1,
                        "latency_ms": 10, "jitter_ms": 40},
            "trello": {"timeout_rate": 0.1, "timeout_seconds": 1.5, "drop_rate": 0.1, "reset_rate": 0.1,
                       "timeout_next": 1, "drop_next": 1, "reset_next": 1, "latency_ms": 10, "jitter_ms": 40},
            "todoist": {"error_next": 4, "error_status": 503, "latency_ms": 10, "jitter_ms": 40},
        }
    )  # fmt: skip

    # A breaker opened by the random faults would only make this slower (its own tests are in
    # tests/integration and test_redis_restart.py); here every failure must count as an attempt.
    pool = workers(
        OUTBOX_DELIVERY_THREADS="4", OUTBOX_BATCH_SIZE="8", OUTBOX_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
        PROVIDER_BREAKER_FAIL_MAX="1000",
    )  # fmt: skip
    pool.start(2, concurrency=2)
    overdue: list[str] = []
    storm = []

    def no_lease_left_expired():
        if not storm and OutboxEvent.objects.exclude(status=Status.PENDING).exists():
            # The workers are up: Todoist answers everything with its 429 for the next 2 s.
            storm.append(sandbox.sandbox.set_faults({"todoist": {"storm_seconds": 2}}))
        # A drain runs every 0.2 s here and reclaims expired leases first: none may stay expired.
        stale = timezone.now() - timezone.timedelta(seconds=3)
        overdue.extend(str(e) for e in OutboxEvent.objects.filter(status=Status.PROCESSING, locked_until__lt=stale))

    drive(pool, settled, timeout=75, every=0.2, tick=no_lease_left_expired)

    assert overdue == []
    final = OutboxEvent.objects.select_related("provider")
    waiting = list(held_back())
    assert not final.exclude(status__in=ENDED).exclude(pk__in=[e.pk for e in waiting]).exists()
    for event in waiting:  # held, not lost: pending, never sent, nobody's lease
        assert event.status == Status.PENDING and event.locked_until is None, event
        assert not DeliveryAttempt.objects.filter(event=event).exists(), event
    assert not final.filter(locked_until__isnull=False).exists()
    for event in final.filter(status=Status.DEAD):
        assert event.error_message, event  # its reason
        assert event.retry_count <= MAX_ATTEMPTS
    # The refused token: dead at once, saying why; the provider that always fails: given up after
    # the last attempt, with its last error.
    for event in final.filter(provider=refused):
        assert event.status == Status.DEAD and event.retry_count == 1 and "401" in event.error_message
    for event in final.filter(provider=never):
        assert event.status == Status.DEAD and event.retry_count == MAX_ATTEMPTS
        assert event.error_message.startswith(f"Gave up after {MAX_ATTEMPTS} attempts. Last error:")
        assert "500" in event.error_message
        assert DeliveryAttempt.objects.filter(event=event).count() == MAX_ATTEMPTS
    # A 429 only postpones: no Todoist event paid an attempt for the storm.
    assert not DeliveryAttempt.objects.filter(event__provider=todoist, status_code=429, outcome="dead").exists()
    # Most events got through the faults; each create reached its provider at most once, and a
    # delivered one exactly once with its id on the task.
    delivered = final.filter(provider__in=faulty, status=Status.DELIVERED).count()
    assert delivered >= 95, delivered
    state = assert_each_create_made_once(sandbox)
    for kind in ("injected_errors", "malformed", "timeouts", "dropped", "resets", "storm_429"):
        assert sum(state[kind].values()) > 0, kind  # every kind of fault happened
    print({s: final.filter(status=s).count() for s in (Status.DELIVERED, Status.DEAD)})
