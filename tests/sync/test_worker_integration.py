"""A real Celery worker applies stored deliveries, including those received while it was down
(issue 5 §2): PostgreSQL holds the delivery, Redis the job, the worker is a separate process."""

import os
import subprocess
import sys
import time

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client

from providers_app.models import WebhookDelivery
from tasks_app.models import Task
from tests.processes import ROOT
from tests.sync.payloads import example, post

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]


def _worker_env() -> dict[str, str]:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PROMETHEUS_", "OTEL_"))}
    return {
        **base,
        "DATABASE_URL": url,
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "archangel.settings",
        "CELERY_METRICS_PORT": "0",
        "LOG_LEVEL": "warning",
    }


def test_deliveries_stored_while_no_worker_runs_are_applied_when_one_starts(providers):
    queue = redis.Redis.from_url(settings.REDIS_URL)
    queue.delete("celery")  # this test's Redis database: only its own jobs
    task = Task.objects.create(
        title="Buy Milk", provider=providers["clickup"], external_id="1vj37mc", effort_hours=1, version=1
    )
    response = post(Client(), "clickup", example("clickup"))  # committed: its job is now in Redis
    assert response.status_code == 200
    assert queue.llen("celery") == 1
    assert WebhookDelivery.objects.get().status == "received"

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "archangel", "worker", "--pool", "solo", "--without-heartbeat",
         "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        cwd=ROOT, env=_worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if WebhookDelivery.objects.get().status != "received":
                break
            time.sleep(0.2)
    finally:
        worker.terminate()
        _, err = worker.communicate(timeout=30)
    delivery = WebhookDelivery.objects.get()
    task.refresh_from_db()
    assert delivery.status == "processed", err[-2000:]
    assert task.status == "in_progress"
