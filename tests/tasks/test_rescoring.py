"""Scores are stored at create and update, shown by the API, and refreshed in bulk by the beat job."""

import datetime as dt

import pytest
from django.utils import timezone

from tasks_app import jobs, scoring, services
from tasks_app.models import Task
from tests.factories import ClientFactory

pytestmark = pytest.mark.django_db


def test_a_created_task_has_its_score_and_breakdown_in_the_api(api):
    client = ClientFactory(importance=1, sla_hours=24)
    body = api.post(
        "/api/tasks", {"title": "Scored", "client": str(client.pk), "priority": 4, "effort_hours": 0}
    ).json()
    assert set(body["score_breakdown"]) == set(scoring.FACTORS)
    assert body["score_breakdown"]["importance"] == 1.0
    assert body["score_breakdown"]["effort_factor"] == 1.0
    assert body["score_breakdown"]["urgency"] == 0.1
    assert body["score"] == pytest.approx(0.3 * 0.1 + 0.25 + 0.15 + 0.10, abs=1e-3)
    assert Task.objects.get().score == body["score"]


def test_an_update_rescores_the_task(api):
    task_id = api.post("/api/tasks", {"title": "Will be urgent"}).json()["id"]
    past = (timezone.now() - dt.timedelta(hours=1)).isoformat()
    body = api.patch(f"/api/tasks/{task_id}", {"deadline": past}).json()
    assert body["score_breakdown"]["urgency"] == 1.0


def test_the_rescoring_job_refreshes_open_tasks_only_and_keeps_versions(api):
    client = ClientFactory(importance=0.5, sla_hours=10)
    open_id = api.post("/api/tasks", {"title": "Open", "client": str(client.pk)}).json()["id"]
    closed_id = api.post("/api/tasks", {"title": "Closed"}).json()["id"]
    api.patch(f"/api/tasks/{closed_id}", {"status": "in_progress"})
    api.patch(f"/api/tasks/{closed_id}", {"status": "completed"})
    closed_before = Task.objects.get(pk=closed_id)

    later = timezone.now() + dt.timedelta(hours=5)
    assert services.tasks_rescore_open(now=later, batch_size=1) == 1
    task = Task.objects.get(pk=open_id)
    assert task.score_breakdown["sla_pressure"] == pytest.approx(0.5, abs=1e-3)
    assert task.version == 1
    closed_after = Task.objects.get(pk=closed_id)
    assert (closed_after.score, closed_after.updated_at) == (closed_before.score, closed_before.updated_at)
    # Nothing moved since: a second run at the same instant writes nothing.
    assert services.tasks_rescore_open(now=later) == 0


def test_the_rescoring_job_leaves_a_task_changed_since_it_was_read(api, monkeypatch):
    # The portable path (SQLite in development) reads, scores in Python, then writes; PostgreSQL
    # scores in one statement (tests/tasks/test_scoring_sql.py has its concurrent-update test).
    task_id = api.post("/api/tasks", {"title": "Racing"}).json()["id"]
    real = services._write_scores

    def change_first(updates):
        Task.objects.filter(pk=task_id).update(version=2, score=0.99)  # a concurrent task_update
        return real(updates)

    monkeypatch.setattr(services, "_write_scores", change_first)
    assert services._rescore_in_python(timezone.now() + dt.timedelta(days=3), services.RESCORE_BATCH) == 0
    assert Task.objects.get(pk=task_id).score == 0.99


def test_the_beat_job_is_registered_and_editable_in_the_admin():
    from django_celery_beat.models import PeriodicTask

    entry = PeriodicTask.objects.get(task="tasks_app.rescore_open_tasks")
    assert entry.enabled and entry.interval.every == 15
    assert jobs.rescore_open_tasks.name == entry.task
