"""A provider door for worker subprocesses (``OUTBOX_GATEWAY``), keeping its state in Redis so
the test process can count effects and steer faults across processes.

Every create makes a remote object keyed by its idempotency key (the marker a real adapter
writes into the task); a create with ``outcome_unknown_before`` first looks it up and adopts
it, as the real gateway does (docs/reliability.md, "Idempotency at the provider"). Faults,
set by the test under ``<prefix>:faults``: ``latency_ms`` before answering, ``hang_after_effect``
(the effect happens, then the call hangs: the worker can be killed between the provider's
effect and the commit of the result).
"""

from __future__ import annotations

import os
import time

import redis

from providers_app.gateway import DeliveryResult

PREFIX = os.environ.get("FAKE_PROVIDER_PREFIX", "it")
_client: dict[str, redis.Redis] = {}


def client() -> redis.Redis:
    pid = str(os.getpid())
    if pid not in _client:
        _client.clear()
        _client[pid] = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    return _client[pid]


def reserve(provider, *, urgent=False) -> float:
    return 0.0


def deliver(
    provider, operation, payload, *, idempotency_key, external_id, outcome_unknown_before=False, first_claimed_at=None
):
    r = client()
    faults = r.hgetall(f"{PREFIX}:faults")
    latency = float(faults.get("latency_ms", 0)) / 1000
    if latency:
        time.sleep(latency)
    task_id = payload.get("task_id")
    if operation == "create":
        remote = f"{PREFIX}:remote:{idempotency_key}"
        if outcome_unknown_before and r.exists(remote):
            r.hincrby(f"{PREFIX}:adopted", idempotency_key, 1)
            return DeliveryResult(external_id=r.get(remote), status_code=200, adopted=True)
        new_id = f"r{r.incr(f'{PREFIX}:ids')}"
        r.set(remote, new_id)
        r.hincrby(f"{PREFIX}:creates", idempotency_key, 1)
    else:
        new_id = None
        r.hincrby(f"{PREFIX}:effects", idempotency_key, 1)
    r.rpush(f"{PREFIX}:seq:{task_id}", payload.get("version"))
    if faults.get("hang_after_effect"):
        r.incr(f"{PREFIX}:hanging")
        time.sleep(3600)  # killed here by the test
    return DeliveryResult(external_id=new_id, status_code=200)
