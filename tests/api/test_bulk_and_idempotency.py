import uuid

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from outbox_app.models import OutboxEvent
from tasks_app.models import IdempotencyRecord, Task
from tests.api.test_tasks_api import assert_envelope
from tests.clients import token_client
from tests.concurrency import in_parallel

pytestmark = pytest.mark.django_db


def test_bulk_creates_many_tasks_with_per_item_results(api):
    items = [{"title": f"Bulk {i}"} for i in range(5)] + [{"title": "bulk 0"}, {"title": ""}, {"priority": 2}]
    response = api.post("/api/tasks/bulk", {"tasks": items})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["created"], body["duplicates"], body["errors"]) == (5, 1, 2)
    results = body["results"]
    assert [r["status"] for r in results] == ["created"] * 5 + ["duplicate", "error", "error"]
    assert results[5]["id"] == results[0]["id"]  # the same task twice in one request
    assert results[6]["errors"] == {"title": ["This field may not be blank."]}
    assert results[7]["errors"] == {"title": ["This field is required."]}
    assert Task.objects.count() == 5
    assert OutboxEvent.objects.filter(operation_type="create").count() == 5


def test_bulk_of_only_duplicates_is_a_200(api):
    api.post("/api/tasks", {"title": "Existing"})
    response = api.post("/api/tasks/bulk", {"tasks": [{"title": "existing"}]})
    assert response.status_code == 200
    assert response.json()["duplicates"] == 1


def test_bulk_where_every_item_is_invalid_is_a_400_naming_each_item(api):
    response = api.post("/api/tasks/bulk", {"tasks": [{"title": ""}, {"title": "ok", "priority": 0}]})
    error = assert_envelope(response, 400, "invalid")
    assert set(error["fields"]) == {"tasks.0.title", "tasks.1.priority"}
    assert Task.objects.count() == 0


def test_bulk_refuses_more_than_the_limit_and_empty_or_malformed_bodies(api, settings):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "BULK_MAX_ITEMS": 3}
    error = assert_envelope(
        api.post("/api/tasks/bulk", {"tasks": [{"title": str(i)} for i in range(4)]}), 400, "invalid"
    )
    assert error["fields"]["tasks"] == ["At most 3 tasks per request; got 4."]
    assert_envelope(api.post("/api/tasks/bulk", {"tasks": []}), 400, "invalid", "tasks")
    assert_envelope(api.post("/api/tasks/bulk", [{"title": "x"}]), 400, "invalid", "tasks")
    assert Task.objects.count() == 0


def test_bulk_of_a_thousand_is_one_transaction_of_few_statements(api):
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        response = api.post("/api/tasks/bulk", {"tasks": [{"title": f"Many {i}"} for i in range(1000)]})
    assert response.status_code == 201
    assert response.json()["created"] == 1000
    assert Task.objects.count() == 1000 and OutboxEvent.objects.count() == 1000
    assert len(ctx.captured_queries) < 20


def test_a_failure_while_writing_the_outbox_leaves_no_task(api, monkeypatch):
    import tasks_app.services as services

    def explode(**kwargs):
        raise RuntimeError("outbox down")

    monkeypatch.setattr(services, "outbox_enqueue_many", explode)
    api.raise_request_exception = False
    response = api.post("/api/tasks/bulk", {"tasks": [{"title": "a"}, {"title": "b"}]})
    assert response.status_code == 500
    assert Task.objects.count() == 0 and OutboxEvent.objects.count() == 0


def test_idempotency_key_replays_the_first_response_and_creates_nothing(api):
    first = api.post("/api/tasks", {"title": "Once"}, HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post("/api/tasks", {"title": "Once"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert again["Location"] == first["Location"]
    assert Task.objects.count() == 1 and OutboxEvent.objects.count() == 1


def test_idempotency_key_with_a_different_body_is_a_422(api):
    api.post("/api/tasks", {"title": "Once"}, HTTP_IDEMPOTENCY_KEY="k-2")
    assert_envelope(api.post("/api/tasks", {"title": "Twice"}, HTTP_IDEMPOTENCY_KEY="k-2"), 422, "unprocessable")
    assert Task.objects.count() == 1


def test_idempotency_key_on_bulk(api):
    payload = {"tasks": [{"title": "b1"}, {"title": "b2"}]}
    first = api.post("/api/tasks/bulk", payload, HTTP_IDEMPOTENCY_KEY="bulk-1")
    again = api.post("/api/tasks/bulk", payload, HTTP_IDEMPOTENCY_KEY="bulk-1")
    assert again.json() == first.json() and again.status_code == 201
    assert Task.objects.count() == 2


def test_a_rejected_request_does_not_burn_its_key(api):
    assert api.post("/api/tasks", {"title": ""}, HTTP_IDEMPOTENCY_KEY="k-3").status_code == 400
    assert api.post("/api/tasks", {"title": "Fixed"}, HTTP_IDEMPOTENCY_KEY="k-3").status_code == 201
    assert IdempotencyRecord.objects.count() == 1


def test_keys_are_per_user(api, django_user_model):
    api.post("/api/tasks", {"title": "Mine"}, HTTP_IDEMPOTENCY_KEY="shared")
    bob = django_user_model.objects.create_user(username="bob", password="pw-bob-123")
    other = token_client(Token.objects.create(user=bob).key)
    assert other.post("/api/tasks", {"title": "Theirs"}, HTTP_IDEMPOTENCY_KEY="shared").status_code == 201


def test_a_bad_idempotency_key_is_a_400(api):
    assert_envelope(
        api.post("/api/tasks", {"title": "x"}, HTTP_IDEMPOTENCY_KEY="k" * 300), 400, "invalid", "Idempotency-Key"
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_of_the_same_task_make_one(user):
    key = Token.objects.create(user=user).key

    def create(i):
        return token_client(key).post("/api/tasks", {"title": "Race me", "description": f"attempt {i}"}).status_code

    codes = in_parallel(8, create)
    assert sorted(codes) == [200] * 7 + [201]
    assert Task.objects.count() == 1 and OutboxEvent.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_idempotency_key_create_once(user):
    key = Token.objects.create(user=user).key
    title = f"Idem {uuid.uuid4()}"

    def create(i):
        response = token_client(key).post("/api/tasks/bulk", {"tasks": [{"title": title}]}, HTTP_IDEMPOTENCY_KEY="race")
        return response.status_code, response.json()

    results = in_parallel(6, create)
    assert {code for code, _ in results} == {201}
    assert len({body["results"][0]["id"] for _, body in results}) == 1
    assert Task.objects.count() == 1 and IdempotencyRecord.objects.count() == 1


@pytest.fixture
def break_outbox(monkeypatch, api):
    """Call it and every way a task change writes its outbox event raises, as a failing database would."""
    import tasks_app.services as services

    def explode(**kwargs):
        raise RuntimeError("outbox down")

    def apply():
        monkeypatch.setattr(services, "outbox_enqueue_many", explode)
        monkeypatch.setattr(services, "outbox_copy_many", explode)
        api.raise_request_exception = False

    return apply


def test_a_failure_while_writing_the_outbox_leaves_no_single_task(api, break_outbox):
    break_outbox()
    assert api.post("/api/tasks", {"title": "lost?"}).status_code == 500
    assert Task.objects.count() == 0 and OutboxEvent.objects.count() == 0


@pytest.mark.parametrize("method", ["patch", "put", "delete"])
def test_a_failure_while_writing_the_outbox_leaves_the_task_as_it_was(api, break_outbox, method):
    created = api.post("/api/tasks", {"title": "Before", "priority": 2}).json()
    before = Task.objects.values().get(pk=created["id"])
    events = OutboxEvent.objects.count()
    break_outbox()
    body = None if method == "delete" else {"title": "After", "priority": 4, "status": "in_progress"}
    response = getattr(api, method)(f"/api/tasks/{created['id']}", body)
    assert response.status_code == 500
    assert set(response.json()) == {"error"}
    assert Task.objects.values().get(pk=created["id"]) == before
    assert OutboxEvent.objects.count() == events
