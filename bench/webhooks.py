"""Webhook intake: signed deliveries of the three providers posted to /api/webhooks/<type>
(signature verified over the raw body, delivery stored under its dedup key, processing job
sent to Redis), beside a bare Django view (bench/urls.py) served by the same gunicorn in the
same run.

Target (issue 5 §7): >= 1,000 deliveries/s with p99 <= 30 ms.
"""

import json
import os
import uuid

from bench.common import Row, gunicorn, load, manage

REQUESTS = int(os.environ.get("BENCH_WEBHOOK_REQUESTS", "12000"))
CONCURRENCY = int(os.environ.get("BENCH_WEBHOOK_CLIENTS", "16"))
SECRETS = {"clickup": "bench-cu-secret", "trello": "bench-trello-secret", "todoist": "bench-td-secret"}
CALLBACK = "https://archangel.example.com/api/webhooks/trello"

SETUP = """
from providers_app import services
cfg = {{
    "clickup": {{"api_token": "pk_bench", "list_id": "901", "webhook_secret": "{clickup}", "webhook_id": "wh-bench"}},
    "trello": {{"api_key": "k", "api_token": "t", "board_id": "5a1111111111111111111111",
               "status_lists": {{"pending": "5a2222222222222222222222"}}, "app_secret": "{trello}",
               "callback_url": "{callback}"}},
    "todoist": {{"api_token": "td", "client_secret": "{todoist}", "user_id": "2671355"}},
}}
for t, c in cfg.items():
    services.provider_create(name=f"bench-{{t}}", type=t, config=c)
"""


def _payload(provider_type: str, i: int, run: str) -> dict:
    if provider_type == "clickup":
        return {
            "event": "taskStatusUpdated",
            "history_items": [
                {"id": f"{run}{i}", "type": 1, "date": "1642736073330", "field": "status",
                 "after": {"status": "in progress", "type": "custom"}, "before": {"status": "to do", "type": "open"}}
            ],
            "task_id": f"t{i % 500}",
            "webhook_id": "wh-bench",
        }  # fmt: skip
    if provider_type == "trello":
        return {
            "action": {
                "id": f"{run}-{i}", "type": "updateCard", "date": "2026-03-20T12:10:00.000Z",
                "data": {"card": {"id": f"c{i % 500}", "name": "Card", "idList": "5a2222222222222222222222"},
                         "old": {"idList": "5a4444444444444444444444"}},
            },
            "model": {"id": "5a1111111111111111111111"},
        }  # fmt: skip
    return {
        "event_name": "item:updated",
        "user_id": "2671355",
        "version": "1",
        "triggered_at": "2025-02-10T10:39:38.000000Z",
        "event_data": {"id": f"i{i % 500}", "content": "Buy Milk", "priority": 4, "checked": False,
                       "project_id": "p", "updated_at": "2025-02-10T10:39:38.000000Z"},
    }  # fmt: skip


def _requests(n: int, run: str) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """Signed in advance, so the load generator spends nothing on HMACs."""
    from providers_app.webhooks import SIGNATURE_HEADERS, sign

    out = []
    for i in range(n):
        provider_type = ("clickup", "trello", "todoist")[i % 3]
        body = json.dumps(_payload(provider_type, i, run), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADERS[provider_type]: sign(
                provider_type, body=body, secret=SECRETS[provider_type], callback_url=CALLBACK
            ),
        }
        if provider_type == "todoist":
            headers["X-Todoist-Delivery-ID"] = f"{run}-{i}"
        out.append(("POST", f"/api/webhooks/{provider_type}", body, headers))
    return out


def run(database_url: str) -> list[Row]:
    manage("shell", "-c", SETUP.format(callback=CALLBACK, **SECRETS), database_url=database_url)
    run_id = uuid.uuid4().hex[:8]
    warm = _requests(300, f"warm{run_id}")
    signed = _requests(REQUESTS, run_id)
    bare_body = signed[0][2]
    # The production worker model (archangel/gunicorn_conf.py) unless BENCH_WEB_WORKERS /
    # BENCH_WEB_THREADS say otherwise.
    workers = os.environ.get("BENCH_WEB_WORKERS")
    threads = os.environ.get("BENCH_WEB_THREADS")
    with gunicorn(
        database_url,
        workers=int(workers) if workers else None,
        threads=int(threads) if threads else None,
        DJANGO_SETTINGS_MODULE="bench.settings_bench",
    ) as base:
        load(base, concurrency=8, requests=len(warm), make_request=lambda i: warm[i])
        load(
            base,
            concurrency=8,
            requests=300,
            make_request=lambda i: ("POST", "/bench/bare", bare_body, {"Content-Type": "application/json"}),
        )
        bare = load(
            base,
            concurrency=CONCURRENCY,
            requests=REQUESTS,
            make_request=lambda i: ("POST", "/bench/bare", bare_body, {"Content-Type": "application/json"}),
        )
        hooks = load(base, concurrency=CONCURRENCY, requests=REQUESTS, make_request=lambda i: signed[i])
        # What else the two cores were doing: the figures only compare within one run.
        load_average = os.getloadavg()[0]
    stored = manage(
        "shell", "-c",
        "from providers_app.models import WebhookDelivery as W; print(W.objects.count())",
        database_url=database_url, capture=True,
    ).strip().splitlines()[-1]  # fmt: skip
    return [
        Row(
            "webhooks", f"POST /api/webhooks/<type> ({CONCURRENCY} clients)", hooks.rate, "deliveries/s",
            baseline=f"bare Django view, same server: {bare.rate:,.0f} req/s "
            f"(intake = {hooks.rate / bare.rate:.0%} of bare); {stored} rows stored",
            target=">= 1,000/s", ok=hooks.rate >= 1000 and hooks.errors == 0,
            extra={"errors": hooks.errors, "statuses": hooks.statuses, "stored": stored},
        ),
        Row(
            "webhooks", "webhook intake p50 / p99", hooks.p(99), "ms (p99)",
            baseline=f"p50 {hooks.p(50):.1f} ms; bare view p50 {bare.p(50):.1f} / p99 {bare.p(99):.1f} ms; "
            f"load average {load_average:.1f} on {os.cpu_count()} cores",
            target="p99 <= 30 ms", ok=hooks.p(99) <= 30,
        ),
    ]  # fmt: skip
