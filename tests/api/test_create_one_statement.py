"""A single create is one statement, and outside any other transaction it is the whole
transaction (``archangel.db.one_statement(ends_transaction=True)``): what that must not change.
The task is written with its audit entry, outbox event and routing decision, or none of them;
a duplicate writes nothing and wakes no drain; and the rows are those of a bulk create."""

import uuid

import psycopg
import pytest
from django.db import connection

import outbox_app.services as outbox_services
from archangel.audit.models import AuditEntry
from outbox_app.models import OutboxEvent
from tasks_app import services
from tasks_app.models import RoutingDecision, Task
from tests.factories import AssigneeFactory, ClientFactory, IdentityFactory, make_provider

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sent(monkeypatch):
    """What psycopg sends as transaction control (BEGIN, COMMIT, ROLLBACK go through
    ``_exec_command``; statements do not)."""
    commands: list[bytes] = []
    real = psycopg.Connection._exec_command

    def record(self, command, *args, **kwargs):
        commands.append(command if isinstance(command, bytes) else str(command).encode())
        return real(self, command, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "_exec_command", record)
    return commands


def _rows(title):
    task = Task.objects.get(title=title)
    return (
        task,
        list(OutboxEvent.objects.filter(aggregate_id=task.pk)),
        list(AuditEntry.objects.filter(object_type="tasks_app.task", object_id=str(task.pk))),
        list(RoutingDecision.objects.filter(task_id=task.pk)),
    )


def test_a_create_outside_a_transaction_sends_no_begin_and_no_commit(api, sent):
    api.post("/api/tasks", {"title": "warm up"})  # the token's lookup is cached from here on
    sent.clear()
    response = api.post("/api/tasks", {"title": "one round trip"})
    assert response.status_code == 201
    assert not [c for c in sent if c.split()[0] in (b"BEGIN", b"COMMIT", b"ROLLBACK")], sent
    # Committed, not left in an open transaction.
    assert connection.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    task, events, audit, decisions = _rows("one round trip")
    assert [e.operation_type for e in events] == ["create"]
    assert [a.action for a in audit] == ["create"]
    assert len(decisions) == 1 and task.version == 1


def test_a_create_with_an_idempotency_key_runs_inside_the_keys_transaction(api, sent):
    api.post("/api/tasks", {"title": "warm up"})
    sent.clear()
    response = api.post("/api/tasks", {"title": "keyed"}, HTTP_IDEMPOTENCY_KEY="one-statement-1")
    assert response.status_code == 201
    # The key's record is written in the same transaction as the task: one BEGIN, one COMMIT.
    assert [c.split()[0] for c in sent if c.split()[0] in (b"BEGIN", b"COMMIT")] == [b"BEGIN", b"COMMIT"]
    assert len(_rows("keyed")[1]) == 1


def test_a_statement_that_fails_in_autocommit_writes_nothing(api, monkeypatch):
    real_events_for = services._events_for

    def events_to_a_missing_provider(changes):
        # The event's provider does not exist: the foreign key fails when the statement commits,
        # after the task row and the audit entry were inserted by it.
        return [
            outbox_services.EventSpec(**{**spec.__dict__, "provider_id": uuid.uuid4()})
            for spec in real_events_for(changes)
        ]

    monkeypatch.setattr(services, "_events_for", events_to_a_missing_provider)
    response = api.post("/api/tasks", {"title": "never written"})
    assert response.status_code == 409  # the API's answer to an IntegrityError it could not retry away
    assert Task.objects.count() == 0
    assert OutboxEvent.objects.count() == 0
    assert RoutingDecision.objects.count() == 0
    assert not AuditEntry.objects.filter(object_type="tasks_app.task").exists()


def test_a_duplicate_writes_nothing_and_wakes_no_drain(api, monkeypatch):
    wakeups = []
    monkeypatch.setattr(outbox_services, "request_drain", lambda: wakeups.append(1))
    first = api.post("/api/tasks", {"title": "Once only"})
    assert first.status_code == 201 and wakeups == [1]
    again = api.post("/api/tasks", {"title": "  once   ONLY "})
    assert again.status_code == 200
    assert again["X-Archangel-Duplicate"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert wakeups == [1]  # the duplicate's event was never written, nor announced
    assert Task.objects.count() == 1
    assert OutboxEvent.objects.count() == 1
    assert RoutingDecision.objects.count() == 1
    assert AuditEntry.objects.filter(object_type="tasks_app.task").count() == 1


def test_single_and_bulk_creates_write_the_same_rows(api):
    provider = make_provider("clickup")
    person = AssigneeFactory(name="Ann", capacity_hours_per_day=8)
    IdentityFactory(assignee=person, provider=provider, external_user_id="cu-ann")
    client = ClientFactory(importance="0.80", sla_hours=24)
    body = {
        "description": "Tag, build, publish.",
        "priority": 3,
        "deadline": "2026-12-01T17:00:00+01:00",
        "client": str(client.pk),
    }
    assert api.post("/api/tasks", {**body, "title": "single"}).status_code == 201
    assert api.post("/api/tasks/bulk", {"tasks": [{**body, "title": "bulk"}]}).status_code == 201

    def comparable(title):
        task, events, audit, decisions = _rows(title)
        skip = {"id", "title", "fingerprint", "created_at", "updated_at", "score", "score_breakdown", "_state"}
        fields = {k: v for k, v in task.__dict__.items() if k not in skip and not k.startswith("_")}
        [event] = events
        payload = {k: v for k, v in event.payload.items() if k not in ("task_id", "title")}
        [entry] = audit
        changes = {k: v for k, v in entry.changes.items() if k not in ("title", "score", "score_breakdown")}
        [decision] = decisions
        return (
            fields,
            (event.operation_type, event.provider_id, event.aggregate_version, payload, event.status),
            (entry.action, entry.actor, entry.source, changes),
            (decision.provider_id, decision.assignee_id, decision.trigger, decision.chose_provider),
        )

    single, bulk = comparable("single"), comparable("bulk")
    assert single == bulk
    assert single[0]["assignee_id"] == person.pk and single[0]["provider_id"] == provider.pk


def test_the_create_statement_is_prepared_on_its_connection(api, settings):
    # DATABASE_PREPARE_THRESHOLD (5): from its sixth run on a connection PostgreSQL no longer
    # parses and plans it again (about as long as running it).
    assert connection.connection.prepare_threshold == 5
    for i in range(7):
        assert api.post("/api/tasks", {"title": f"prepared {i}"}).status_code == 201
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert [s for s in prepared if s.startswith('WITH lead AS (INSERT INTO "tasks_app_task"')], prepared
