"""Redis restarted under running workers (docs/reliability.md P2, P7, P8). The workers use a
redis-server of the test's own as broker, cache, breaker store and rate-budget store; it is
killed mid-drain (SIGKILL, no persistence: it comes back empty) and started again on the same
port. The workers reconnect and consume again (one that exits instead is started again, as the
deployment's supervisor does), nothing is lost or sent twice, and after the restart the breakers
and the rate budgets live in the new Redis and work: a provider failing a few times in a row
opens its breaker there and recovers, and a Trello token limited to 10 requests per 10 s is kept
within its limit at the sandbox."""

import pytest

from outbox_app.models import DeliveryAttempt, OutboxEvent
from providers_app import breakers
from providers_app.models import Provider
from providers_app.services import provider_update
from tasks_app.services import task_bulk_create
from tests.markers import real_services
from tests.reliability.conftest import all_delivered, assert_each_create_made_once, drive
from tests.workers import children

pytestmark = real_services()

Status = OutboxEvent.Status


def delivered() -> int:
    return OutboxEvent.objects.filter(status=Status.DELIVERED).count()


def both_consuming(pool) -> bool:
    """Every worker of the pool has delivered something (it is up and connected to the broker)."""
    recorded = set(DeliveryAttempt.objects.values_list("worker", flat=True).distinct())
    pids = {int(worker.rsplit(":", 1)[1]) for worker in recorded}
    # The worker field names the process that imported the drain: the worker or its pool child.
    return all(pids & {proc.pid, *children(proc.pid)} for proc in pool.procs)


def test_workers_recover_from_a_redis_restart_with_breakers_and_budgets_working_again(
    sandbox, accounts, workers, own_redis, rng
):
    clickup, trello, todoist = accounts["clickup"], accounts["trello"], accounts["todoist"]
    provider_update(provider=trello, data={"config": {"rate_limit_per_10s": 10}}, partial=True)
    sandbox.sandbox.set_limits(
        {"enabled": True, "clickup": {"per_token": 0}, "todoist": {"per_user": 0},
         "trello": {"per_token": 10, "per_key": 0, "period": 10}}
    )  # fmt: skip
    task_bulk_create(items=[{"title": f"Before {i}", "provider": str((clickup, todoist)[i % 2].id)} for i in range(60)])
    sandbox.sandbox.set_faults({"*": {"latency_ms": 40, "jitter_ms": 120}})
    pool = workers(redis_url=own_redis.url, OUTBOX_DELIVERY_THREADS="3", OUTBOX_BATCH_SIZE="6",
                   PROVIDER_BREAKER_FAIL_MAX="3")  # fmt: skip
    pool.start(2, concurrency=2)

    # Redis dies while the drain is under way, at a point the generator picks.
    kill_after = rng.randint(3, 20)
    drive(pool, lambda: delivered() >= kill_after and both_consuming(pool), timeout=40, every=0.2)
    own_redis.kill()
    outage = rng.uniform(2.5, 4.0)  # longer than a running drain lasts (OUTBOX_DRAIN_MAX_SECONDS)
    with pytest.raises(AssertionError):  # wake-ups are lost while it is down; nothing else stops
        drive(pool, lambda: False, timeout=outage, every=0.2)
    # Tasks written while Redis is down: only a drain consumed after the restart can deliver them.
    task_bulk_create(items=[{"title": f"During {i}", "provider": str((clickup, todoist)[i % 2].id)} for i in range(30)])
    own_redis.start()
    assert delivered() < 120
    exits: list[tuple[int, int]] = []
    recovered = drive(pool, all_delivered, timeout=45, every=0.3, tick=lambda: exits.extend(pool.supervise()))
    # The workers reconnect by themselves. Celery 5.7's worker sometimes exits (code 1) on the broker
    # connection it lost instead (2 of about 15 runs on a busy machine); the supervisor starts it
    # again, and that too must lose nothing.
    print("workers that exited after the restart and were started again (pid, code):", exits)

    # After the restart: ClickUp answers its next 6 requests with 503 (its breaker must open, in the new Redis), and
    # 14 Trello creates need two 10-s windows of a 10-request budget.
    task_bulk_create(items=[{"title": f"Broken {i}", "provider": str(clickup.id)} for i in range(12)])
    task_bulk_create(items=[{"title": f"Budget {i}", "provider": str(trello.id)} for i in range(14)])
    sandbox.sandbox.set_faults({"clickup": {"error_next": 6, "error_status": 503}})
    redis_after = own_redis.client()
    after = drive(pool, all_delivered, timeout=45, every=0.3, tick=lambda: exits.extend(pool.supervise()))
    print(f"outage {outage:.1f} s; all delivered {recovered:.1f} s after the restart; second phase {after:.1f} s")

    # The breaker opened in the new Redis (pybreaker keeps when it last opened there), closed
    # again, and the provider is active again.
    assert redis_after.get(f"{breakers.state_key(clickup.pk).rsplit(':', 1)[0]}:opened_at") is not None
    assert Provider.objects.get(pk=clickup.pk).health_status == Provider.Health.ACTIVE
    assert redis_after.get(breakers.state_key(clickup.pk)) == b"closed"
    assert list(redis_after.scan_iter("archangel:rl:*"))  # the budgets are kept in the new Redis again
    assert OutboxEvent.objects.filter(status=Status.DELIVERED).count() == 116
    state = assert_each_create_made_once(sandbox)
    assert state["creates"] == {"clickup": 57, "trello": 14, "todoist": 45}
    assert state["over_limit"]["trello"] == 0  # the 10-per-10-s token was never pushed past its limit
    assert state["injected_errors"]["clickup"] == 6
