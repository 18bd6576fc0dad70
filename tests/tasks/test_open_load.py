"""Routing's per-process copy of the open load (tasks_app/selectors.py, "Open load"): kept for
ROUTING_LOAD_TTL_MS, then read again by one background thread while the copy is served (up to
twice the TTL), this process's creates added when they commit, its other task writes drop it,
nothing kept from inside a transaction. These tests commit (transaction=True): the copy is only
kept outside a transaction."""

import datetime as dt
import threading
import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from tasks_app import selectors, services
from tasks_app.models import Task
from tests.factories import AssigneeFactory, IdentityFactory, make_provider

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def clock(monkeypatch):
    """selectors' monotonic clock, moved by hand."""
    now = {"t": 1000.0}
    monkeypatch.setattr(selectors.time, "monotonic", lambda: now["t"])
    selectors.open_load.forget()
    yield now
    selectors.open_load.wait()
    selectors.open_load.forget()


@pytest.fixture
def team(settings):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "ROUTING_LOAD_TTL_MS": 1000}
    provider = make_provider("clickup")
    ann = AssigneeFactory(name="Ann", capacity_hours_per_day=8)
    IdentityFactory(assignee=ann, provider=provider, external_user_id="cu-ann")
    return {"provider": provider, "ann": ann}


def _elsewhere(team, hours):
    """An open task written as another process would: no signal reaches this process."""
    now = dt.datetime.now(dt.UTC)
    Task.objects.bulk_create(
        [
            Task(
                id=uuid.uuid4(), title=f"elsewhere {uuid.uuid4()}", status="assigned", effort_hours=hours,
                assignee=team["ann"], provider=team["provider"], fingerprint=uuid.uuid4().hex, created_at=now,
                updated_at=now,
            )
        ]
    )  # fmt: skip


def _aggregates(ctx):
    return [q["sql"] for q in ctx.captured_queries if "GROUP BY" in q["sql"]]


def _load(team):
    inputs = selectors.routing_inputs()
    return inputs.providers[team["provider"].pk].open_tasks, inputs.assignees[team["ann"].pk].open_hours


def test_the_copy_is_reused_within_the_ttl_and_read_again_in_the_background_after_it(team, clock):
    assert _load(team) == (0, 0.0)
    _elsewhere(team, 3)
    clock["t"] += 0.9
    with CaptureQueriesContext(connection) as ctx:
        assert _load(team) == (0, 0.0)  # another process's work, not seen yet
    assert _aggregates(ctx) == []
    clock["t"] += 0.2
    with CaptureQueriesContext(connection) as ctx:
        assert _load(team) == (0, 0.0)  # stale: served while a background thread reads again
        selectors.open_load.wait()
    assert _aggregates(ctx) == []  # not on this request's connection
    assert _load(team) == (1, 3.0)


def test_a_copy_older_than_twice_the_ttl_is_read_again_by_the_request(team, clock):
    assert _load(team) == (0, 0.0)
    _elsewhere(team, 3)
    clock["t"] += 2.0
    with CaptureQueriesContext(connection) as ctx:
        assert _load(team) == (1, 3.0)
    assert len(_aggregates(ctx)) == 2


@pytest.fixture
def held_read(monkeypatch):
    """The background read held until released; counts the reads started."""
    release, started = threading.Event(), []
    real = selectors.open_tasks_by_provider

    def held():
        if threading.current_thread() is not threading.main_thread():
            started.append(1)
            assert release.wait(10)
        return real()

    monkeypatch.setattr(selectors, "open_tasks_by_provider", held)
    yield release, started
    release.set()


def test_one_background_read_at_a_time_and_the_copy_served_meanwhile(team, clock, held_read):
    release, started = held_read
    assert _load(team) == (0, 0.0)
    _elsewhere(team, 2)
    clock["t"] += 1.5
    for _ in range(5):
        with CaptureQueriesContext(connection) as ctx:
            assert _load(team) == (0, 0.0)
        assert _aggregates(ctx) == []
    assert started == [1]
    release.set()
    selectors.open_load.wait()
    assert _load(team) == (1, 2.0)
    clock["t"] += 1.5
    _load(team)
    selectors.open_load.wait()
    assert started == [1, 1]  # the next one after the first has finished


def test_a_background_read_under_way_when_a_write_commits_is_not_kept(team, clock, held_read):
    release, _ = held_read
    task, _ = services.task_create(data={"title": "Done soon", "effort_hours": 5})
    services.task_update(task_id=task.pk, data={"status": "in_progress"}, partial=True)
    assert _load(team) == (1, 5.0)
    clock["t"] += 1.5
    _load(team)  # starts the background read; it is held before its aggregates
    services.task_update(task_id=task.pk, data={"status": "completed"}, partial=True)
    assert _load(team) == (0, 0.0)  # the copy was dropped: read by the request
    _elsewhere(team, 4)
    release.set()
    selectors.open_load.wait()  # would see the new task, but started before the completion
    assert _load(team) == (0, 0.0)  # the request's read is kept, not the background one


def test_a_failed_background_read_leaves_the_copy_until_twice_the_ttl(team, clock, monkeypatch):
    assert _load(team) == (0, 0.0)
    _elsewhere(team, 1)
    real, failing = selectors.open_hours_by_assignee, {"on": True}

    def broken():
        if failing["on"]:
            raise RuntimeError("database gone")
        return real()

    monkeypatch.setattr(selectors, "open_hours_by_assignee", broken)
    clock["t"] += 1.5
    assert _load(team) == (0, 0.0)
    selectors.open_load.wait()
    failing["on"] = False
    assert _load(team) == (0, 0.0)  # still the copy; another background read starts
    selectors.open_load.wait()
    assert _load(team) == (1, 1.0)


def test_this_process_creates_count_at_once_without_aggregating_again(team, clock):
    _elsewhere(team, 1)
    assert _load(team) == (1, 1.0)
    task, created = services.task_create(data={"title": "Mine", "effort_hours": 2})
    assert created and task.assignee_id == team["ann"].pk
    services.task_bulk_create(items=[{"title": "Bulk mine 1", "effort_hours": 1}, {"title": "Bulk mine 2"}])
    estimated = float(Task.objects.get(title="Bulk mine 2").effort_hours)
    with CaptureQueriesContext(connection) as ctx:
        assert _load(team) == (4, 1.0 + 2 + 1 + estimated)
    assert _aggregates(ctx) == []


def test_another_write_in_this_process_drops_the_copy(team, clock):
    task, _ = services.task_create(data={"title": "Done soon", "effort_hours": 5})
    assert _load(team) == (1, 5.0)
    services.task_update(task_id=task.pk, data={"status": "in_progress"}, partial=True)
    assert _load(team) == (1, 5.0)  # read again: still open
    services.task_update(task_id=task.pk, data={"status": "completed"}, partial=True)
    with CaptureQueriesContext(connection) as ctx:
        assert _load(team) == (0, 0.0)
    assert len(_aggregates(ctx)) == 2


def test_a_write_that_moves_no_load_keeps_the_copy(team, clock):
    task, _ = services.task_create(data={"title": "Delivered", "effort_hours": 1})
    _load(team)
    Task.objects.get(pk=task.pk).save(update_fields=["external_id"])
    with CaptureQueriesContext(connection) as ctx:
        _load(team)
    assert _aggregates(ctx) == []


def test_nothing_read_inside_a_transaction_is_kept(team, clock):
    with transaction.atomic():
        _elsewhere(team, 2)
        assert _load(team) == (1, 2.0)
        transaction.set_rollback(True)
    with CaptureQueriesContext(connection) as ctx:
        assert _load(team) == (0, 0.0)
    assert len(_aggregates(ctx)) == 2


@pytest.mark.postgres
def test_a_read_inside_a_transaction_that_has_written_nothing_is_kept(team, clock):
    with transaction.atomic():  # as around an Idempotency-Key request, before its create
        assert _load(team) == (0, 0.0)
    _elsewhere(team, 2)
    with CaptureQueriesContext(connection) as ctx:
        assert _load(team) == (0, 0.0)  # the copy: another process's work not seen yet
    assert _aggregates(ctx) == []


def test_a_ttl_of_zero_reads_the_aggregates_for_every_decision(team, clock, settings):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "ROUTING_LOAD_TTL_MS": 0}
    _load(team)
    _elsewhere(team, 4)
    assert _load(team) == (1, 4.0)
