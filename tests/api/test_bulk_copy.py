"""The bulk import's COPY path (tasks_app/services.py, "bulk: the COPY path"): on PostgreSQL, more
than COPY_MIN_ROWS valid items are written with COPY; it must write exactly what the INSERT path
writes (single creates, small batches and SQLite keep that path), answer the same per-item results,
and leave nothing behind when it fails."""

import datetime as dt
import gc
import uuid

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from archangel.audit.models import AuditEntry
from outbox_app.models import OutboxEvent
from tasks_app import selectors, services
from tasks_app.models import RoutingDecision, Task
from tests.clients import token_client
from tests.concurrency import in_parallel
from tests.factories import ClientFactory, IdentityFactory, make_provider

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def world():
    """Two providers with people on them, a client that prefers one, a fixed assignee: every
    branch of a create (routing chose or kept the provider, chose or kept the person)."""
    clickup, todoist = make_provider("clickup"), make_provider("todoist")
    people = [IdentityFactory(provider=p).assignee for p in (clickup, clickup, todoist)]
    client = ClientFactory(importance=0.9, sla_hours=24, preferred_provider=todoist)
    return {"clickup": clickup, "todoist": todoist, "people": people, "client": client}


def _items(world, n=40):
    """A varied import: every optional field, both effort kinds, deadlines as dates and
    date-times, a repeat inside the batch and invalid items in between."""
    items = []
    for i in range(n):
        item = {"title": f"  Import   item {i} ", "priority": ["low", 2, "high", 4][i % 4]}
        if i % 3 == 0:
            item["description"] = f"Line one of {i}\n\n\n\nline two\twith a tab and a \\ backslash"
        if i % 4 == 1:
            item["effort_hours"] = "2.5"
        if i % 5 == 2:
            item["deadline"] = "2031-03-04" if i % 2 else "2031-03-04T10:30:00+02:00"
        if i % 6 == 3:
            item["client"] = str(world["client"].id)
        if i % 7 == 4:
            item["provider"] = str(world["clickup"].id)
        if i % 8 == 5:
            item["assignee"] = str(world["people"][2].id)
            item["status"] = "in_progress"
        items.append(item)
    items[10] = {"title": "import ITEM 0"}  # the same task as item 0: a duplicate within the batch
    items[11] = {"title": ""}
    items[12] = {"title": "ok", "priority": 9, "surprise": 1}
    items[13] = {"title": "x", "client": str(uuid.uuid4())}
    return items


def _run(items, *, copy: bool, since: dt.datetime, monkeypatch):
    """Import ``items`` through one path in a savepoint rolled back at the end; what it answered
    and wrote, with the ids of this run replaced by each task's title, and the instants of this
    run (``now``) checked to lie between ``since`` and its end, then left out."""
    monkeypatch.setattr(services, "COPY_MIN_ROWS", 20 if copy else 10**9)
    selectors.open_load.forget()
    before = since
    with transaction.atomic():
        with CaptureQueriesContext(connection) as ctx:
            results = services.task_bulk_create(items=items)
        after = dt.datetime.now(dt.UTC)
        copies = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("COPY")]
        titles = {t.id: t.title for t in Task.objects.all()}

        def name(value):
            return titles.get(value, titles.get(uuid.UUID(value)) if isinstance(value, str) and _uuid(value) else value)

        stamps = {"created_at", "updated_at", "scheduled_at"}
        tasks = {}
        for row in Task.objects.values():
            tasks[row["title"]] = {k: v for k, v in row.items() if k not in stamps | {"id", "last_progress_at"}}
            assert before <= row["created_at"] <= after and before <= row["updated_at"] <= after
            assert (row["status"] == "in_progress") == (row["last_progress_at"] is not None)
            assert row["last_progress_at"] is None or before <= row["last_progress_at"] <= after
        events = {}
        for row in OutboxEvent.objects.values():
            payload = {**row["payload"], "task_id": name(row["payload"]["task_id"])}
            events[name(row["aggregate_id"])] = {
                **{k: v for k, v in row.items() if k not in stamps | {"id", "aggregate_id", "payload"}},
                "payload": payload,
                "idempotency_key": row["idempotency_key"].replace(str(row["aggregate_id"]), "<task>"),
            }
            assert before <= row["scheduled_at"] <= after and before <= row["created_at"] <= after
        decisions = {}
        for row in RoutingDecision.objects.values():
            assert row["duration_ms"] >= 0 and before <= row["created_at"] <= after
            decisions[name(row["task_id"])] = {
                k: v for k, v in row.items() if k not in stamps | {"id", "task_id", "duration_ms"}
            }
        audit = {}
        for row in AuditEntry.objects.filter(object_type="tasks_app.task").values():
            if "last_progress_at" in row["changes"]:
                row["changes"]["last_progress_at"] = [None, "<now>"]
            audit[name(row["object_id"])] = {k: v for k, v in row.items() if k not in {"id", "at", "object_id"}}
        answers = [
            (r.index, r.status, r.errors, name(r.task.pk) if r.task else None, r.task.title if r.task else None)
            for r in results
        ]
        created = [r.task for r in results if r.status == "created"]
        for task in created:
            fresh = Task.objects.get(pk=task.pk)
            assert {f.attname: getattr(fresh, f.attname) for f in Task._meta.concrete_fields} == {
                f.attname: getattr(task, f.attname) for f in Task._meta.concrete_fields
            }
            assert not task._state.adding
        transaction.set_rollback(True)
    return {"answers": answers, "tasks": tasks, "events": events, "decisions": decisions, "audit": audit}, copies


def _uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def test_the_copy_path_writes_and_answers_exactly_what_the_insert_path_does(world, monkeypatch):
    since = dt.datetime.now(dt.UTC)
    services.task_create(data={"title": "import item 1", "description": "made earlier"})  # a twin in the database
    items = _items(world)

    copied, copies = _run(items, copy=True, since=since, monkeypatch=monkeypatch)
    inserted, no_copies = _run(items, copy=False, since=since, monkeypatch=monkeypatch)

    assert [sql.split(" (")[0] for sql in copies] == [
        'COPY "tasks_app_task"',
        'COPY "outbox_app_outboxevent"',
        'COPY "tasks_app_routingdecision"',
    ]
    assert no_copies == []
    assert copied == inserted
    statuses = [status for _, status, *_ in copied["answers"]]
    assert statuses.count("created") == 35 and statuses.count("error") == 3 and statuses.count("duplicate") == 2
    # Besides the twin made before: its row, event, decision and audit entry.
    assert len(copied["tasks"]) == len(copied["events"]) == len(copied["audit"]) == 36
    assert len(copied["decisions"]) == 36


def test_a_copied_task_is_an_ordinary_instance_whose_later_changes_are_audited(world, monkeypatch):
    results = services.task_bulk_create(items=[{"title": f"Later {i}"} for i in range(30)])
    task = results[0].task
    task.title = "Later, renamed"
    task.save(update_fields=["title", "updated_at"])
    entry = AuditEntry.objects.filter(object_id=str(task.pk), action="update").get()
    assert entry.changes == {"title": ["Later 0", "Later, renamed"]}


def test_a_failure_after_the_tasks_are_copied_leaves_nothing(api, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("routing decisions could not be written")

    monkeypatch.setattr(services, "copy_rows", explode)  # the last write of the import
    api.raise_request_exception = False
    response = api.post("/api/tasks/bulk", {"tasks": [{"title": f"Doomed {i}"} for i in range(50)]})
    assert response.status_code == 500
    assert Task.objects.count() == OutboxEvent.objects.count() == RoutingDecision.objects.count() == 0
    assert not AuditEntry.objects.filter(object_type="tasks_app.task").exists()


def test_a_failure_while_copying_the_outbox_leaves_no_task(api, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("outbox down")

    monkeypatch.setattr(services, "outbox_copy_many", explode)
    api.raise_request_exception = False
    response = api.post("/api/tasks/bulk", {"tasks": [{"title": f"Doomed {i}"} for i in range(50)]})
    assert response.status_code == 500
    assert Task.objects.count() == OutboxEvent.objects.count() == 0


def test_a_twin_committed_after_the_look_up_sends_the_import_through_the_insert_path(monkeypatch):
    twin, _ = services.task_create(data={"title": "Raced"})
    looked = []

    def missed(fingerprints):
        looked.append(len(fingerprints))
        return {}  # as if the twin had committed right after this look-up

    monkeypatch.setattr(services, "_open_twins", missed)
    results = services.task_bulk_create(items=[{"title": "raced"}] + [{"title": f"Fresh {i}"} for i in range(30)])

    assert looked == [31]  # one COPY attempt, refused by the open-fingerprint index; then INSERT
    assert (results[0].status, results[0].task.pk) == ("duplicate", twin.pk)
    assert [r.status for r in results[1:]] == ["created"] * 30
    assert Task.objects.count() == OutboxEvent.objects.count() == 31
    assert RoutingDecision.objects.count() == 31


def test_an_idempotency_key_replays_a_copied_import(api):
    payload = {"tasks": [{"title": f"Once {i}"} for i in range(30)]}
    first = api.post("/api/tasks/bulk", payload, HTTP_IDEMPOTENCY_KEY="copy-1")
    again = api.post("/api/tasks/bulk", payload, HTTP_IDEMPOTENCY_KEY="copy-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Task.objects.count() == OutboxEvent.objects.count() == 30


def test_the_import_resumes_the_garbage_collector_and_leaves_it_alone_when_it_was_off():
    services.task_bulk_create(items=[{"title": f"Collected {i}"} for i in range(30)])
    assert gc.isenabled()
    gc.disable()
    try:
        services.task_bulk_create(items=[{"title": f"Uncollected {i}"} for i in range(30)])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_without_postgresql_the_import_takes_the_insert_path(monkeypatch):
    monkeypatch.setattr(type(connections["default"]), "vendor", "sqlite")  # as the embedded mode runs
    with CaptureQueriesContext(connection) as ctx:
        results = services.task_bulk_create(items=[{"title": f"Embedded {i}"} for i in range(30)])
    assert [r.status for r in results] == ["created"] * 30
    assert not [q for q in ctx.captured_queries if q["sql"].startswith("COPY")]
    assert Task.objects.count() == OutboxEvent.objects.count() == 30


@pytest.mark.django_db(transaction=True)
def test_concurrent_imports_sharing_tasks_create_each_once(user):
    key = Token.objects.create(user=user).key

    def run(i):
        client = token_client(key)
        # Each import: 40 tasks of its own and the same 40 shared ones, in a different order.
        shared = [{"title": f"Shared {j}"} for j in range(40)]
        items = [{"title": f"Own {i}-{j}"} for j in range(40)] + (shared if i % 2 else shared[::-1])
        response = client.post("/api/tasks/bulk", {"tasks": items})
        return response.status_code, response.json()

    answers = in_parallel(4, run)
    assert [code for code, _ in answers] == [201] * 4
    assert sum(body["created"] for _, body in answers) == 4 * 40 + 40
    assert sum(body["duplicates"] for _, body in answers) == 3 * 40
    shared_ids = {tuple(sorted(r["id"] for r in body["results"][40:])) for _, body in answers}
    assert len(shared_ids) == 1  # every import answered with the same 40 tasks
    assert Task.objects.count() == OutboxEvent.objects.count() == RoutingDecision.objects.count() == 200
