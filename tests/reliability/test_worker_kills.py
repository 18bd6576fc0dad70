"""SIGKILL of Celery workers at random points (docs/reliability.md P2, P3, P9): 150 deliveries
(120 creates over the three providers, 30 updates) through the real gateway to the sandbox while
whole workers and single pool children are killed at moments a seeded generator picks, some
between the provider's effect and the commit of its result. Nothing is lost, nothing reaches the
provider twice (counted by the reference marker at the sandbox), a task's update never overtakes
its create, and the killed workers' events come back after their lease."""

import time

from outbox_app.models import OutboxEvent
from tasks_app.models import Task
from tasks_app.services import task_bulk_create, task_update
from tests.markers import real_services
from tests.reliability.conftest import all_delivered, assert_each_create_made_once, drive

pytestmark = real_services()

Status = OutboxEvent.Status
KILLS = 6


def test_workers_killed_at_random_points_lose_nothing_and_duplicate_nothing(sandbox, accounts, workers, rng):
    providers = list(accounts.values())
    items = [{"title": f"Killed {i}", "provider": str(providers[i % 3].id)} for i in range(120)]
    tasks = [result.task for result in task_bulk_create(items=items)]
    for task in rng.sample(tasks, 30):
        task_update(task_id=task.id, data={"title": f"{task.title} renamed"}, partial=True)
    assert OutboxEvent.objects.count() == 150
    # Slow enough answers that every kill finds deliveries in flight, some past their effect.
    sandbox.sandbox.set_faults({"*": {"latency_ms": 40, "jitter_ms": 160}})

    pool = workers(OUTBOX_DELIVERY_THREADS="3", OUTBOX_BATCH_SIZE="6")
    pool.start(2, concurrency=2)
    kills: list[tuple[str, int]] = []
    next_kill = [None]

    def kill_at_random_moments():
        in_flight = OutboxEvent.objects.filter(status=Status.PROCESSING).count()
        now = time.monotonic()
        if len(kills) >= KILLS or not in_flight:
            return
        if next_kill[0] is None:
            next_kill[0] = now + rng.uniform(0.1, 1.0)
        if now < next_kill[0]:
            return
        kills.append((pool.kill_one(rng), in_flight))
        if len(pool.procs) < 2:
            pool.start(1, concurrency=2)  # the supervisor restarts a dead worker
        next_kill[0] = now + rng.uniform(0.3, 1.5)

    drive(pool, all_delivered, timeout=75, every=0.2, tick=kill_at_random_moments)

    print("kills (victim, events in flight):", kills)
    assert len(kills) == KILLS, kills
    assert OutboxEvent.objects.filter(status=Status.DELIVERED).count() == 150
    state = assert_each_create_made_once(sandbox)
    assert state["creates"] == {"clickup": 40, "trello": 40, "todoist": 40}
    # Some deliveries were lost with their worker: they came back after their lease, and a create
    # among them first looked for the task it may have made.
    assert OutboxEvent.objects.filter(retry_count__gt=0).exists()
    # Order per task: each renamed task's create reached the sandbox before its update, or the
    # update rode along with an earlier event (coalesced: outbox_app/batching.py).
    with sandbox.sandbox.lock:
        effects = list(sandbox.sandbox.effects)
    first = {}
    for effect in effects:
        first.setdefault((effect["id"], effect["op"]), effect["seq"])
    for update in OutboxEvent.objects.filter(operation_type=OutboxEvent.Operation.UPDATE).select_related("carried_by"):
        external_id = Task.objects.get(id=update.aggregate_id).external_id
        if update.carried_by is not None:
            assert update.carried_by.aggregate_id == update.aggregate_id
            assert update.carried_by.aggregate_version < update.aggregate_version
        else:
            assert first[(external_id, "create")] < first[(external_id, "update")]
