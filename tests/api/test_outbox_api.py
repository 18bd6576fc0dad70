"""GET /api/outbox, GET /api/outbox/{id}, requeue, discard and process."""

import pytest

from outbox_app.models import OutboxEvent
from providers_app.adapters.base import AuthError
from tasks_app.services import task_create, task_update
from tests.factories import make_provider

pytestmark = pytest.mark.django_db

Status = OutboxEvent.Status


@pytest.fixture
def provider():
    return make_provider("clickup")


def new_task(provider, title="Task"):
    task, _ = task_create(data={"title": title, "provider": str(provider.id)})
    return task


def test_the_list_is_newest_first_and_filters_by_status_provider_operation_and_task(api, provider):
    other = make_provider("todoist")
    first = new_task(provider, "First")
    second = new_task(other, "Second")
    task_update(task_id=first.id, data={"title": "First again"}, partial=True)
    OutboxEvent.objects.filter(aggregate_id=second.id).update(status=Status.DEAD)

    body = api.get("/api/outbox").json()
    assert body["count"] == 3
    assert [(e["aggregate_id"], e["operation"]) for e in body["results"]] == [
        (str(first.id), "update"),
        (str(second.id), "create"),
        (str(first.id), "create"),
    ]
    assert set(body["results"][0]) >= {"payload", "idempotency_key", "status", "attempts", "error_message"}
    assert "lease_token" not in body["results"][0]

    def ids(query):
        return [(e["aggregate_id"], e["aggregate_version"]) for e in api.get(f"/api/outbox?{query}").json()["results"]]

    assert ids("status=dead") == [(str(second.id), 1)]
    assert ids(f"provider={provider.id}") == [(str(first.id), 2), (str(first.id), 1)]
    assert ids("operation=update") == [(str(first.id), 2)]
    assert ids(f"task={first.id}") == [(str(first.id), 2), (str(first.id), 1)]
    assert api.get("/api/outbox?status=bogus").status_code == 400


def test_an_event_is_read_with_its_attempts(api, provider, gateway):
    task = new_task(provider)
    gateway.script["create"] = [AuthError("bad token", status_code=401)]
    from outbox_app.drain import drain

    drain(threads=1)
    event = OutboxEvent.objects.get(aggregate_id=task.id)

    body = api.get(f"/api/outbox/{event.id}").json()

    assert body["status"] == "dead"
    assert body["error_message"] == "auth: bad token"
    [attempt] = body["delivery_attempts"]
    assert (attempt["outcome"], attempt["status_code"], attempt["error"]) == ("dead", 401, "auth: bad token")
    assert "api_token" not in str(body)


def test_unknown_event_is_a_404_in_the_envelope(api):
    response = api.get("/api/outbox/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_an_operator_requeues_a_dead_event(operator_api, provider):
    event = OutboxEvent.objects.get(aggregate_id=new_task(provider).id)
    OutboxEvent.objects.filter(id=event.id).update(status=Status.DEAD, retry_count=10, error_message="boom")

    response = operator_api.post(f"/api/outbox/{event.id}/requeue")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["attempts"]) == ("pending", 0)
    event.refresh_from_db()
    assert (event.status, event.retry_count) == (Status.PENDING, 0)


@pytest.mark.parametrize("status", [Status.PENDING, Status.PROCESSING, Status.DELIVERED])
def test_requeueing_an_event_that_is_not_dead_or_failed_is_a_409(operator_api, provider, status):
    event = OutboxEvent.objects.get(aggregate_id=new_task(provider).id)
    OutboxEvent.objects.filter(id=event.id).update(status=status)

    response = operator_api.post(f"/api/outbox/{event.id}/requeue")

    assert response.status_code == 409
    assert response.json()["error"]["details"]["status"] == status
    event.refresh_from_db()
    assert event.status == status


def test_only_operators_requeue_discard_or_process(api, reader_api, provider):
    event = OutboxEvent.objects.get(aggregate_id=new_task(provider).id)
    OutboxEvent.objects.filter(id=event.id).update(status=Status.DEAD)
    for client in (api, reader_api):
        assert client.post(f"/api/outbox/{event.id}/requeue").status_code == 403
        assert client.post(f"/api/outbox/{event.id}/discard").status_code == 403
        assert client.post(f"/api/outbox/{event.id}/adopt", {"external_id": "x"}).status_code == 403
        assert client.post("/api/outbox/process").status_code == 403
    event.refresh_from_db()
    assert event.status == Status.DEAD


def _lookup_incomplete(provider, title="Task"):
    """A create that died because its lookup could not rule out an earlier task."""
    task = new_task(provider, title)
    event = OutboxEvent.objects.get(aggregate_id=task.id)
    OutboxEvent.objects.filter(id=event.id).update(
        status=Status.DEAD, outcome_unknown=True, error_message="lookup_incomplete: Could not rule out ..."
    )
    return task, event


def test_requeue_assuming_not_created_clears_the_unknown_outcome_of_a_create(operator_api, provider):
    _, event = _lookup_incomplete(provider)
    plain = operator_api.post(f"/api/outbox/{event.id}/requeue", {}, format="json")
    assert plain.status_code == 200 and plain.json()["outcome_unknown"] is True  # still looks first
    OutboxEvent.objects.filter(id=event.id).update(status=Status.DEAD)

    response = operator_api.post(f"/api/outbox/{event.id}/requeue", {"assume_not_created": True}, format="json")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["outcome_unknown"]) == ("pending", False)
    from archangel.audit.models import AuditEntry

    entry = AuditEntry.objects.filter(action="requeue", object_id=str(event.id)).latest("id")
    assert entry.changes["outcome_unknown"] == [True, False]


def test_requeue_assuming_not_created_is_refused_for_anything_but_a_create(operator_api, provider):
    task = new_task(provider)
    task_update(task_id=task.id, data={"title": "Renamed"}, partial=True)
    update = OutboxEvent.objects.get(aggregate_id=task.id, operation_type="update")
    OutboxEvent.objects.filter(id=update.id).update(status=Status.DEAD, outcome_unknown=True)
    wrong_type = operator_api.post(f"/api/outbox/{update.id}/requeue", {"assume_not_created": "maybe"}, format="json")
    assert wrong_type.status_code == 400 and "assume_not_created" in wrong_type.json()["error"]["fields"]
    response = operator_api.post(f"/api/outbox/{update.id}/requeue", {"assume_not_created": True}, format="json")
    assert response.status_code == 400 and "assume_not_created" in response.json()["error"]["fields"]
    update.refresh_from_db()
    assert (update.status, update.outcome_unknown) == (Status.DEAD, True)  # nothing changed


def test_adopt_settles_a_create_with_the_task_found_and_lets_its_later_events_go(operator_api, provider, gateway):
    from outbox_app.drain import drain

    task, event = _lookup_incomplete(provider)
    task_update(task_id=task.id, data={"title": "Renamed"}, partial=True)
    drain(threads=1)
    assert gateway.calls == []  # the update waits behind its dead create

    response = operator_api.post(f"/api/outbox/{event.id}/adopt", {"external_id": " 86abc "}, format="json")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["outcome_unknown"]) == ("delivered", False)
    task.refresh_from_db()
    assert task.external_id == "86abc"
    drain(threads=1)
    assert [(c["operation"], c["external_id"]) for c in gateway.calls] == [("update", "86abc")]
    from archangel.audit.models import AuditEntry

    entry = AuditEntry.objects.get(action="adopt", object_id=str(event.id))
    assert entry.changes == {"status": ["dead", "delivered"], "external_id": [None, "86abc"]}


def test_adopt_refuses_bad_input_and_events_it_cannot_settle(operator_api, provider):
    task, event = _lookup_incomplete(provider)
    for body in ({}, {"external_id": "  "}, {"external_id": "x" * 256}):
        response = operator_api.post(f"/api/outbox/{event.id}/adopt", body, format="json")
        assert response.status_code == 400 and "external_id" in response.json()["error"]["fields"], body
    other, _ = _lookup_incomplete(provider, "Another task")
    type(task).objects.filter(id=other.id).update(external_id="taken")
    taken = operator_api.post(f"/api/outbox/{event.id}/adopt", {"external_id": "taken"}, format="json")
    assert taken.status_code == 409
    task_update(task_id=task.id, data={"title": "Renamed"}, partial=True)
    update = OutboxEvent.objects.get(aggregate_id=task.id, operation_type="update")
    OutboxEvent.objects.filter(id=update.id).update(status=Status.DEAD)
    assert operator_api.post(f"/api/outbox/{update.id}/adopt", {"external_id": "y"}, format="json").status_code == 409
    event.refresh_from_db()
    task.refresh_from_db()
    assert (event.status, task.external_id) == (Status.DEAD, None)  # nothing changed
    OutboxEvent.objects.filter(id=event.id).update(status=Status.DELIVERED)
    assert operator_api.post(f"/api/outbox/{event.id}/adopt", {"external_id": "z"}, format="json").status_code == 409


def test_the_outbox_needs_a_token(anon):
    assert anon.get("/api/outbox").status_code == 401


def test_an_operator_discards_a_dead_event(operator_api, provider):
    event = OutboxEvent.objects.get(aggregate_id=new_task(provider).id)
    reason = {"reason": "the task was archived meanwhile"}
    assert operator_api.post(f"/api/outbox/{event.id}/discard", reason, format="json").status_code == 409
    OutboxEvent.objects.filter(id=event.id).update(status=Status.DEAD)
    missing = operator_api.post(f"/api/outbox/{event.id}/discard", {}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()["error"]["fields"]
    response = operator_api.post(f"/api/outbox/{event.id}/discard", reason, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "discarded"
    from archangel.audit.models import AuditEntry

    entry = AuditEntry.objects.get(action="discard", object_id=str(event.id))
    assert entry.changes["reason"] == [None, "the task was archived meanwhile"]
    assert entry.actor == "user:olga-operator"


def test_process_drains_one_bounded_batch_and_returns_the_counts(operator_api, provider, gateway):
    for i in range(5):
        new_task(provider, f"Task {i}")

    response = operator_api.post("/api/outbox/process", {"batch_size": 3}, format="json")

    assert response.status_code == 200
    assert response.json() == {
        "delivered": 3,
        "retried": 0,
        "deferred": 0,
        "dead": 0,
        "discarded": 0,
        "stale": 0,
        "reclaimed": 0,
    }
    assert OutboxEvent.objects.filter(status=Status.PENDING).count() == 2


def test_process_refuses_a_batch_size_out_of_range(operator_api, gateway):
    response = operator_api.post("/api/outbox/process", {"batch_size": 501}, format="json")
    assert response.status_code == 400
    assert "batch_size" in response.json()["error"]["fields"]
    assert gateway.calls == []


def test_a_coalesced_event_names_its_carrier_and_the_carrier_lists_what_it_carried(api, provider, gateway):
    from outbox_app.drain import drain

    task = new_task(provider, "Folded")
    task_update(task_id=task.id, data={"title": "Folded again"}, partial=True)
    task_update(task_id=task.id, data={"title": "Folded thrice"}, partial=True)
    drain(threads=1)
    create, *followers = OutboxEvent.objects.filter(aggregate_id=task.id).order_by("aggregate_version")

    carrier = api.get(f"/api/outbox/{create.id}").json()
    assert carrier["carried_by"] is None
    assert carrier["carried"] == [str(f.id) for f in followers]
    assert [a["outcome"] for a in carrier["delivery_attempts"]] == ["delivered"]
    follower = api.get(f"/api/outbox/{followers[0].id}").json()
    assert (follower["status"], follower["carried_by"], follower["delivery_attempts"]) == (
        "delivered",
        str(create.id),
        [],
    )

    coalesced = api.get("/api/outbox", {"coalesced": "true"}).json()
    assert sorted(e["id"] for e in coalesced["results"]) == sorted(str(f.id) for f in followers)
    by_carrier = api.get("/api/outbox", {"carried_by": str(create.id)}).json()
    assert by_carrier["count"] == 2
    assert api.get("/api/outbox", {"coalesced": "false"}).json()["count"] == 1
    bad = api.get("/api/outbox", {"carried_by": "nope"})
    assert bad.status_code == 400 and "carried_by" in bad.text
