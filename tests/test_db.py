"""archangel.db.one_statement: the inserts deferred inside it go as one statement at its end,
all or nothing with the transaction around it."""

import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from archangel.audit.context import Entry, record
from archangel.audit.models import AuditEntry
from archangel.db import LeadSkipped, insert_rows, one_statement
from outbox_app.models import OutboxEvent
from outbox_app.services import EventSpec, outbox_enqueue_many
from tasks_app.models import Client

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _client(name):
    return Client(id=uuid.uuid4(), name=name, importance=0.5)


def _event(key_version=1):
    return EventSpec(provider_id=None, aggregate_id=uuid.UUID(int=7), aggregate_version=key_version,
                     operation="update", payload={"n": key_version})  # fmt: skip


def test_the_deferred_inserts_go_as_one_statement_at_the_end_of_the_block():
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        with one_statement():
            insert_rows([_client("A")])
            record([Entry("note", "tasks_app.client", "x")])
            outbox_enqueue_many(events=[_event()])
            assert not Client.objects.filter(name="A").exists()  # not sent yet
        assert Client.objects.filter(name="A").exists()
    inserts = [q["sql"] for q in ctx.captured_queries if "INSERT" in q["sql"]]
    assert len(inserts) == 1 and inserts[0].startswith("WITH ")
    assert AuditEntry.objects.filter(action="note").count() == 1 and OutboxEvent.objects.count() == 1


def test_a_deferred_insert_that_fails_raises_at_the_end_and_nothing_stays():
    with transaction.atomic():
        outbox_enqueue_many(events=[_event()])
    with pytest.raises(IntegrityError), transaction.atomic(), one_statement():
        insert_rows([_client("B")])
        outbox_enqueue_many(events=[_event()])  # the same idempotency key again
    assert not Client.objects.filter(name="B").exists()
    assert OutboxEvent.objects.count() == 1


def test_an_error_inside_the_block_sends_nothing():
    with pytest.raises(ValueError), transaction.atomic(), one_statement():
        insert_rows([_client("C")])
        raise ValueError("changed my mind")
    assert not Client.objects.filter(name="C").exists()


def test_many_rows_and_conflict_skipping_inserts_run_at_once():
    with transaction.atomic(), one_statement():
        assert len(insert_rows([_client(f"Many {i}") for i in range(25)])) == 25
        assert Client.objects.filter(name__startswith="Many").count() == 25
        assert insert_rows([_client("D")], skip_conflicts=True)  # its result is needed now
        assert Client.objects.filter(name="D").exists()


def test_rows_after_a_lead_are_written_only_with_it():
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx, one_statement():
        lead = _client("Lead")
        assert insert_rows([lead], skip_conflicts=True, lead=True) == {lead.pk}  # as if written
        record([Entry("note", "tasks_app.client", "led")])
        outbox_enqueue_many(events=[_event()])
    [statement] = [q["sql"] for q in ctx.captured_queries if "INSERT" in q["sql"]]
    assert statement.startswith("WITH lead AS (INSERT") and "$1" in statement
    assert Client.objects.filter(name="Lead").exists() and OutboxEvent.objects.count() == 1
    # The same row again is skipped: nothing of its block is written, and the block says so.
    with pytest.raises(LeadSkipped), transaction.atomic(), one_statement():
        insert_rows([lead], skip_conflicts=True, lead=True)
        record([Entry("note", "tasks_app.client", "skipped")])
        outbox_enqueue_many(events=[_event(2)])
    assert not AuditEntry.objects.filter(object_id="skipped").exists()
    assert OutboxEvent.objects.count() == 1


def test_one_row_is_prepared_as_a_row_of_many_is():
    import datetime as dt
    import decimal

    from tasks_app.models import Task

    def task(title):
        now = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)
        return Task(
            id=uuid.uuid4(), title=title, effort_hours=decimal.Decimal("1.50"), deadline=now,
            score_breakdown={"urgency": 0.5}, fingerprint=uuid.uuid4().hex, created_at=now, updated_at=now,
        )  # fmt: skip

    with transaction.atomic():
        insert_rows([task("one")])
        insert_rows([task("many 1"), task("many 2")])
    columns = ["effort_hours", "deadline", "score_breakdown", "status", "priority", "version", "effort_estimated"]
    rows = {t["title"]: [t[c] for c in columns] for t in Task.objects.values("title", *columns)}
    assert rows["one"] == rows["many 1"] == rows["many 2"]


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_it_refuses():
    with pytest.raises(RuntimeError, match="inside a transaction"), one_statement():
        pass


def test_copied_instances_get_their_timestamps_and_are_announced_like_inserted_ones():
    from archangel.db import copy_objs

    clients = [_client(f"Copied {i}") for i in range(3)]
    with transaction.atomic():
        copy_objs(clients)
    stored = list(Client.objects.filter(name__startswith="Copied").order_by("name"))
    assert [c.name for c in stored] == ["Copied 0", "Copied 1", "Copied 2"]
    assert all(c.created_at is not None and c.created_at == c.updated_at for c in stored)
    assert [c.created_at for c in stored] == [c.created_at for c in clients]
    assert all(not c._state.adding for c in clients)
    # rows_inserted reached the audit log, as insert_rows' rows do
    assert AuditEntry.objects.filter(object_type="tasks_app.client", action="create").count() == 3


def test_a_copy_that_breaks_a_constraint_fails_whole_with_an_integrity_error():
    from archangel.db import copy_objs

    insert_rows([_client("Taken")])
    with pytest.raises(IntegrityError), transaction.atomic():
        copy_objs([_client("Free"), _client("Taken")])
    assert not Client.objects.filter(name="Free").exists()
