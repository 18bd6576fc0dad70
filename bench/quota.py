"""Quota: provider requests spent per 1,000 task changes, with batching and coalescing off
(every change its own request, as before issue 8) and on (the defaults), per provider; beside
it, how many of those changes reach the provider in the first seconds of draining under each
provider's documented rate limit, with the sandbox enforcing it.

The changes: 200 tasks, each created, then moved to in progress, renamed twice and completed
(5 changes a task, 1,000 in all). Two arrival patterns:

- ``backlog``: all 1,000 are queued before the drain runs (the drain was behind: a provider
  down for a while, a budget spent, a bulk import);
- ``steady``: the drain delivers each wave (all creates, then each update, then the
  completes) before the next one is written, so nothing is queued behind an undelivered
  event and coalescing has nothing to fold; only Todoist's batches save requests.

Requests are counted by the sandbox (every answer it gives, per provider). For the counts the
limits are lifted (sandbox and budgets) so that the drain runs to the end; the time-boxed
run keeps the documented limits (ClickUp 100/min per token, Trello 100/10 s per token,
Todoist 1,000/15 min per user: docs/provider-apis.md §1.6, §2.6, §3.6) in both the gateway's
budgets and the sandbox, and the sandbox's ``over_limit`` must stay 0.
"""

import json
import os

from bench.common import Row, manage

TASKS = int(os.environ.get("BENCH_QUOTA_TASKS", "200"))
WINDOW_SECONDS = float(os.environ.get("BENCH_QUOTA_WINDOW_SECONDS", "10"))

SCRIPT = r"""
import json, time, uuid
from django.test.utils import override_settings
from outbox_app.drain import drain
from outbox_app.models import OutboxEvent
from providers_app.sandbox import SandboxServer
from providers_app.services import provider_create
from tasks_app.services import task_bulk_create, task_update

TASKS, WINDOW = {tasks}, {window}
HIGH = {{"clickup": {{"rate_limit_per_minute": 10_000_000}},
        "trello": {{"rate_limit_per_10s": 10_000_000, "key_rate_limit_per_10s": 10_000_000}},
        "todoist": {{"rate_limit_per_15min": 10_000_000}}}}


def provider(server, kind, lifted):
    token = uuid.uuid4().hex
    extra = HIGH[kind] if lifted else {{}}
    if kind == "clickup":
        server.sandbox.credentials.add({{"clickup_tokens": [token]}})
        config = {{"api_token": token, "list_id": "901", "team_id": "9001"}}
    elif kind == "trello":
        key = uuid.uuid4().hex
        server.sandbox.credentials.add({{"trello_keys": [key], "trello_tokens": [token]}})
        config = {{"api_key": key, "api_token": token, "board_id": "5a1111111111111111111111",
                  "status_lists": {{"pending": "5a2222222222222222222222", "in_progress": "5a3333333333333333333333",
                                   "completed": "5a4444444444444444444444"}}}}
    else:
        server.sandbox.credentials.add({{"todoist_tokens": [token]}})
        config = {{"api_token": token, "project_id": "6Demo"}}
    return provider_create(name=f"quota-{{kind}}-{{token[:6]}}", type=kind,
                           config={{**config, **extra, "base_url": server.base_url(kind)}})


def waves(p):
    tasks = [r.task for r in task_bulk_create(items=[{{"title": f"Quota {{i}} {{uuid.uuid4().hex[:6]}}",
                                                      "provider": str(p.id)}} for i in range(TASKS)])]
    yield
    for t in tasks:
        task_update(task_id=t.id, data={{"status": "in_progress"}}, partial=True)
    yield
    for t in tasks:
        task_update(task_id=t.id, data={{"title": t.title + " (renamed)"}}, partial=True)
    yield
    for t in tasks:
        task_update(task_id=t.id, data={{"title": t.title + " (final)", "priority": 3}}, partial=True)
    yield
    for t in tasks:
        task_update(task_id=t.id, data={{"status": "completed"}}, partial=True)
    yield


def undelivered(p):
    return OutboxEvent.objects.filter(provider=p).exclude(status="delivered").count()


def requests_spent(server, kind):
    return sum(server.sandbox.state(include_items=False)["requests"][kind].values())


def count(kind, on, pattern):
    server = SandboxServer(rate_limits=False).start()
    try:
        with override_settings(OUTBOX_BATCHING=on, OUTBOX_COALESCING=on):
            p = provider(server, kind, lifted=True)
            changes = 0
            for _ in waves(p):
                if pattern == "steady":
                    while undelivered(p):
                        drain(threads=8, max_seconds=30)
            while undelivered(p):
                drain(threads=8, max_seconds=30)
            changes = OutboxEvent.objects.filter(provider=p).count()
            return {{"changes": changes, "requests": requests_spent(server, kind)}}
    finally:
        server.stop()


def window(kind, on):
    server = SandboxServer(rate_limits=True).start()  # the documented limits
    try:
        with override_settings(OUTBOX_BATCHING=on, OUTBOX_COALESCING=on):
            p = provider(server, kind, lifted=False)  # the gateway keeps to the documented budgets
            for _ in waves(p):
                pass
            started = time.monotonic()
            while time.monotonic() - started < WINDOW:
                drain(threads=8, max_seconds=max(0.0, WINDOW - (time.monotonic() - started)))
                time.sleep(0.05)
            delivered = OutboxEvent.objects.filter(provider=p, status="delivered").count()
            state = server.sandbox.state(include_items=False)
            return {{"delivered": delivered, "requests": requests_spent(server, kind),
                    "over_limit": state["over_limit"][kind]}}
    finally:
        server.stop()


out = {{}}
for kind in ("clickup", "trello", "todoist"):
    for on in (False, True):
        label = "on" if on else "off"
        out[f"{{kind}}:{{label}}:backlog"] = count(kind, on, "backlog")
        out[f"{{kind}}:{{label}}:steady"] = count(kind, on, "steady")
        out[f"{{kind}}:{{label}}:window"] = window(kind, on)
print("QUOTA " + json.dumps(out))
"""

# Requests a documented window allows (docs/provider-apis.md) and its length in minutes.
LIMITS = {"clickup": (100, 1.0), "trello": (100, 10 / 60), "todoist": (1000, 15.0)}


def run(database_url: str) -> list[Row]:
    script = SCRIPT.format(tasks=TASKS, window=WINDOW_SECONDS)
    # The sandbox answers on 127.0.0.1 over plain HTTP: allowed for this run only.
    os.environ["ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS"] = "true"
    os.environ["ARCHANGEL_PLAIN_HTTP_HOSTS"] = "127.0.0.1"
    output = manage("shell", "-c", script, database_url=database_url, capture=True)
    line = next(line for line in output.splitlines() if line.startswith("QUOTA "))
    data = json.loads(line[len("QUOTA ") :])
    rows = []
    for kind in ("clickup", "trello", "todoist"):
        for pattern in ("backlog", "steady"):
            off, on = data[f"{kind}:off:{pattern}"], data[f"{kind}:on:{pattern}"]
            per_k_off = off["requests"] * 1000 / off["changes"]
            per_k_on = on["requests"] * 1000 / on["changes"]
            limit, minutes = LIMITS[kind]
            rows.append(
                Row(
                    "quota",
                    f"{kind} requests per 1,000 changes ({pattern})",
                    per_k_on,
                    "requests",
                    baseline=f"{per_k_off:,.0f} with batching and coalescing off",
                    target="fewer than off",
                    ok=per_k_on < per_k_off if (kind == "todoist" or pattern == "backlog") else per_k_on <= per_k_off,
                    extra={
                        "off": off,
                        "on": on,
                        # At the documented limit, the changes one window's requests carry.
                        "changes_per_min_at_limit_off": round(limit / minutes * 1000 / per_k_off),
                        "changes_per_min_at_limit_on": round(limit / minutes * 1000 / per_k_on),
                    },
                )
            )
        w_off, w_on = data[f"{kind}:off:window"], data[f"{kind}:on:window"]
        rows.append(
            Row(
                "quota",
                f"{kind} changes delivered in the first {WINDOW_SECONDS:.0f} s at the documented limit (backlog)",
                w_on["delivered"],
                "changes",
                baseline=f"{w_off['delivered']:,} off; requests {w_on['requests']} on / {w_off['requests']} off",
                target="more than off, 0 requests over the limit",
                ok=w_on["delivered"] >= w_off["delivered"] and w_on["over_limit"] == 0 and w_off["over_limit"] == 0,
                extra={"off": w_off, "on": w_on},
            )
        )
    return rows
