"""The drain job, its beat schedule and the wake-up sent when events are committed."""

import pytest
from django_celery_beat.models import PeriodicTask

from outbox_app import jobs
from tasks_app.services import task_create
from tests.factories import make_provider

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """Each test starts as a process that never tried to send a wake-up."""
    monkeypatch.setitem(jobs._last_try, "at", float("-inf"))


def test_the_drain_is_scheduled_in_beat_and_editable_in_the_admin():
    task = PeriodicTask.objects.get(name="outbox-drain")
    assert task.task == jobs.DRAIN_TASK == "outbox.drain"
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (5, "seconds")
    assert task.expire_seconds == 30


def test_the_job_drains(gateway):
    task, _ = task_create(data={"title": "Job", "provider": str(make_provider("clickup").id)})
    assert jobs.outbox_drain.run()["delivered"] == 1
    assert gateway.calls[0]["task_id"] == str(task.id)


def test_a_burst_of_commits_sends_one_wakeup(monkeypatch, settings, django_capture_on_commit_callbacks):
    settings.OUTBOX_WAKEUP = True
    settings.OUTBOX_WAKEUP_WINDOW_SECONDS = 300  # the burst must fit in one window on a busy machine
    sent = []
    monkeypatch.setattr(jobs.outbox_drain, "apply_async", lambda **kw: sent.append(kw))
    provider = make_provider("clickup")
    for i in range(20):
        with django_capture_on_commit_callbacks(execute=True):
            task_create(data={"title": f"Burst {i}", "provider": str(provider.id)})
    assert len(sent) == 1
    assert sent[0]["expires"] == 30


def test_within_a_window_a_process_does_not_ask_the_cache_again(monkeypatch, settings):
    settings.OUTBOX_WAKEUP = True
    settings.OUTBOX_WAKEUP_WINDOW_SECONDS = 1
    now = {"t": 500.0}
    monkeypatch.setattr(jobs.time, "monotonic", lambda: now["t"])
    asked, sent = [], []
    monkeypatch.setattr(jobs.cache, "add", lambda *a, **kw: asked.append(a) or True)
    monkeypatch.setattr(jobs.outbox_drain, "apply_async", lambda **kw: sent.append(kw))
    assert jobs.send_wakeup() is True
    now["t"] += 0.5
    assert jobs.send_wakeup() is False  # the flag is set already: no round trip
    now["t"] += 0.6
    assert jobs.send_wakeup() is True
    assert len(asked) == 2 and len(sent) == 2


def test_a_broker_outage_does_not_fail_the_committed_write(monkeypatch, settings, django_capture_on_commit_callbacks):
    settings.OUTBOX_WAKEUP = True

    def down(**kw):
        raise ConnectionError("broker down")

    monkeypatch.setattr(jobs.outbox_drain, "apply_async", down)
    with django_capture_on_commit_callbacks(execute=True):
        _, created = task_create(data={"title": "Still saved"})
    assert created


def test_no_wakeup_without_events(monkeypatch, settings):
    settings.OUTBOX_WAKEUP = False
    monkeypatch.setattr(jobs.outbox_drain, "apply_async", lambda **kw: pytest.fail("sent"))
    assert jobs.send_wakeup() is False
