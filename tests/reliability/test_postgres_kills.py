"""PostgreSQL connections killed mid-drain (docs/reliability.md P2, P3): while real workers
deliver 90 creates to the sandbox, every database session of those workers (found by their
``application_name``, in this test's database only) is ended with ``pg_terminate_backend`` at
moments a seeded generator picks: during claims, between a provider's effect and the commit of
its result, while recording. Everything is delivered, each exactly once."""

import time

from django.db import connection

from outbox_app.models import OutboxEvent
from tasks_app.services import task_bulk_create
from tests.markers import real_services
from tests.reliability.conftest import all_delivered, assert_each_create_made_once, drive

pytestmark = real_services()

Status = OutboxEvent.Status
ROUNDS = 8


def terminate_backends(application_name: str) -> int:
    """End the sessions of one pool of workers, and only theirs (this database, their name)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s AND pid <> pg_backend_pid()",
            [application_name],
        )
        return cursor.fetchone()[0]


def test_database_connections_killed_mid_drain_deliver_everything_exactly_once(sandbox, accounts, workers, rng):
    providers = list(accounts.values())
    items = [{"title": f"Cut off {i}", "provider": str(providers[i % 3].id)} for i in range(90)]
    task_bulk_create(items=items)
    sandbox.sandbox.set_faults({"*": {"latency_ms": 30, "jitter_ms": 120}})

    pool = workers(OUTBOX_DELIVERY_THREADS="3", OUTBOX_BATCH_SIZE="6")
    pool.start(2, concurrency=2)
    rounds: list[tuple[int, int]] = []  # (sessions ended, events in flight then)
    next_round = [None]

    def kill_connections_at_random_moments():
        now = time.monotonic()
        in_flight = OutboxEvent.objects.filter(status=Status.PROCESSING).count()
        if len(rounds) >= ROUNDS or not (in_flight or rounds):
            return
        if next_round[0] is None or now >= next_round[0]:
            rounds.append((terminate_backends(pool.application_name), in_flight))
            next_round[0] = now + rng.uniform(0.2, 1.0)

    drive(pool, all_delivered, timeout=75, every=0.2, tick=kill_connections_at_random_moments)

    print("rounds (sessions ended, events in flight):", rounds)
    # The workers' sessions were ended under them while they held deliveries in flight.
    assert any(ended and in_flight for ended, in_flight in rounds), rounds
    assert OutboxEvent.objects.filter(status=Status.DELIVERED).count() == 90
    state = assert_each_create_made_once(sandbox)
    assert state["creates"] == {"clickup": 30, "trello": 30, "todoist": 30}
