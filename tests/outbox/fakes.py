"""A fake provider door with the contract of providers_app/gateway.py, for drain tests.

``script`` maps an operation (or an idempotency key) to a list of outcomes consumed one
per call: an exception instance to raise, or ``None`` for success. ``waits`` is what
``reserve`` answers, per provider name (0 by default).

Batches (``batch_size``/``deliver_batch``, as the gateway offers them for Todoist): off
unless ``batch_sizes`` names a provider type. ``batches`` records each batch request (the
keys it carried); ``script["batch"]`` scripts the outcome of whole batch requests (an
exception raises for the whole request), and each item is then scripted like a single
delivery (an exception becomes that item's own error).
"""

import itertools
import threading
from collections import defaultdict

from django.db import connection

from providers_app.gateway import DeliveryResult


class FakeGateway:
    def __init__(self):
        self.calls: list[dict] = []
        self.reserves: list[str] = []
        self.script: dict[str, list] = {}
        self.waits: dict[str, float] = {}
        self.latency = 0.0
        self.batch_sizes: dict[str, int] = {}
        self.batches: list[list[str]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def reserve(self, provider, *, urgent=False):
        with self._lock:
            self.reserves.append(provider.name)
        return self.waits.get(provider.name, 0.0)

    def deliver(
        self,
        provider,
        operation,
        payload,
        *,
        idempotency_key,
        external_id,
        outcome_unknown_before=False,
        first_claimed_at=None,
    ):
        if self.latency:
            import time

            time.sleep(self.latency)
        with self._lock:
            self.calls.append(
                {
                    "provider": provider.name,
                    "operation": operation,
                    "task_id": payload.get("task_id"),
                    "version": payload.get("version"),
                    "key": idempotency_key,
                    "external_id": external_id,
                    "outcome_unknown_before": outcome_unknown_before,
                    "first_claimed_at": first_claimed_at,
                }
            )
            outcomes = self.script.get(idempotency_key) or self.script.get(operation)
            outcome = outcomes.pop(0) if outcomes else None
            number = next(self._ids)
        if outcome is not None:
            raise outcome
        if operation == "create":
            return DeliveryResult(external_id=f"ext-{number}", status_code=200)
        return DeliveryResult(external_id=None, status_code=200)

    def batch_size(self, provider):
        return self.batch_sizes.get(provider.type, 0)

    def deliver_batch(self, provider, items):
        assert len(items) <= self.batch_sizes[provider.type]
        with self._lock:
            self.batches.append([item.idempotency_key for item in items])
            whole = self.script.get("batch")
            outcome = whole.pop(0) if whole else None
        if outcome is not None:
            raise outcome
        results = []
        for item in items:
            try:
                results.append(
                    self.deliver(
                        provider,
                        item.operation,
                        item.payload,
                        idempotency_key=item.idempotency_key,
                        external_id=item.external_id,
                    )
                )
            except Exception as exc:  # noqa: BLE001 - the item's own error, as the gateway returns it
                results.append(exc)
        return results

    def keys_delivered(self, operation=None) -> list[str]:
        return [c["key"] for c in self.calls if operation is None or c["operation"] == operation]


def drain_concurrently(*, threads: int, rounds: int) -> list[BaseException]:
    """``threads`` drains at once, each running ``rounds`` drains on its own connection; returns
    what any of them raised."""
    from outbox_app.drain import drain

    errors: list[BaseException] = []

    def worker():
        try:
            for _ in range(rounds):
                drain(batch_size=10, threads=2, max_seconds=5)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connection.close()

    running = [threading.Thread(target=worker) for _ in range(threads)]
    for t in running:
        t.start()
    for t in running:
        t.join()
    return errors


def versions_by_task(gateway: FakeGateway) -> dict[str, list[int]]:
    """The task versions the fake provider received, per task, in the order it received them."""
    versions = defaultdict(list)
    for call in gateway.calls:
        versions[call["task_id"]].append(call["version"])
    return versions
