"""Routing's per-process copy of the open load (tasks_app/selectors.py, "Open load"): kept for
ROUTING_LOAD_TTL_MS, this process's creates added when they commit, its other task writes drop it,
nothing kept from inside a transaction. These tests commit (transaction=True): the copy is only
kept outside a transaction."""

import datetime as dt
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


def test_the_copy_is_reused_within_the_ttl_and_read_again_after_it(team, clock):
    assert _load(team) == (0, 0.0)
    _elsewhere(team, 3)
    clock["t"] += 0.9
    with CaptureQueriesContext(connection) as ctx:
        assert _load(team) == (0, 0.0)  # another process's work, not seen yet
    assert _aggregates(ctx) == []
    clock["t"] += 0.2
    with CaptureQueriesContext(connection) as ctx:
        assert _load(team) == (1, 3.0)
    assert len(_aggregates(ctx)) == 2


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
