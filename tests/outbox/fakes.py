"""A fake provider door with the contract of providers_app/gateway.py, for drain tests.

``script`` maps an operation (or an idempotency key) to a list of outcomes consumed one
per call: an exception instance to raise, or ``None`` for success. ``waits`` is what
``reserve`` answers, per provider name (0 by default).
"""

import itertools
import threading

from providers_app.gateway import DeliveryResult


class FakeGateway:
    def __init__(self):
        self.calls: list[dict] = []
        self.reserves: list[str] = []
        self.script: dict[str, list] = {}
        self.waits: dict[str, float] = {}
        self.latency = 0.0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def reserve(self, provider, *, urgent=False):
        with self._lock:
            self.reserves.append(provider.name)
        return self.waits.get(provider.name, 0.0)

    def deliver(self, provider, operation, payload, *, idempotency_key, external_id, outcome_unknown_before=False):
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

    def keys_delivered(self, operation=None) -> list[str]:
        return [c["key"] for c in self.calls if operation is None or c["operation"] == operation]
