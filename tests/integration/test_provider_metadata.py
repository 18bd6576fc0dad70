"""Cached provider metadata (providers_app/metadata.py) against the sandbox, counting its
requests: read once for many deliveries, again after an explicit refresh, and refreshed
(with one retry) when the provider says a cached value is stale."""

import pytest

from outbox_app.drain import drain
from outbox_app.models import OutboxEvent
from providers_app.services import provider_create, provider_metadata_refresh
from tasks_app.services import task_bulk_create, task_update

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

Status = OutboxEvent.Status
BOARD, TODO, DOING, DONE = (
    "5a1111111111111111111111",
    "5a2222222222222222222222",
    "5a3333333333333333333333",
    "5a4444444444444444444444",
)
URGENT = "5a6600000000000000000004"


@pytest.fixture
def sandbox(sandbox):
    from django.core.cache import cache

    cache.clear()
    return sandbox


def requests(server, provider_type):
    return server.sandbox.state(include_items=False)["requests"][provider_type]


def tasks(provider, n, prefix, **fields):
    return [
        r.task
        for r in task_bulk_create(
            items=[{"title": f"{prefix} {i}", "provider": str(provider.id), **fields} for i in range(n)]
        )
    ]


def test_fifty_trello_deliveries_read_the_boards_labels_once_and_again_after_a_refresh(sandbox):
    # No priority_labels: an urgent task takes the board's label named "Urgent" (read from the board).
    trello = provider_create(
        name="sandbox-trello",
        type="trello",
        config={"api_key": "demo-trello-key", "api_token": "demo-trello-token", "board_id": BOARD,
                "status_lists": {"pending": TODO}, "base_url": sandbox.base_url("trello")},
    )  # fmt: skip
    tasks(trello, 50, "Urgent", priority=4)

    drain(batch_size=50, threads=4)

    assert requests(sandbox, "trello") == {"200": 51}  # 50 creates + 1 metadata read
    cards = sandbox.sandbox.state()["providers"]["trello"]["cards"]
    assert {tuple(c["idLabels"]) for c in cards} == {(URGENT,)}

    provider_metadata_refresh(provider=trello)
    tasks(trello, 10, "More urgent", priority=4)
    drain(batch_size=50, threads=4)

    assert requests(sandbox, "trello") == {"200": 51 + 10 + 1}


def test_a_label_deleted_since_it_was_cached_is_refreshed_and_the_write_sent_once_more(sandbox):
    trello = provider_create(
        name="sandbox-trello",
        type="trello",
        config={"api_key": "demo-trello-key", "api_token": "demo-trello-token", "board_id": BOARD,
                "status_lists": {"pending": TODO}, "base_url": sandbox.base_url("trello")},
    )  # fmt: skip
    [task] = tasks(trello, 1, "Urgent", priority=4)
    drain(threads=1)
    assert requests(sandbox, "trello") == {"200": 2}
    sandbox.sandbox.sims["trello"].boards[BOARD]["labels"].pop(URGENT)  # someone deletes the label

    task_update(task_id=task.id, data={"title": "Urgent, renamed"}, partial=True)
    drain(threads=1)

    # PUT refused (stale label) → the board's labels and lists read again (every id the PUT
    # carried is checked) → PUT without the label.
    assert requests(sandbox, "trello") == {"200": 2 + 3, "400": 1}
    assert OutboxEvent.objects.exclude(status=Status.DELIVERED).count() == 0
    [card] = sandbox.sandbox.state()["providers"]["trello"]["cards"]
    assert card["name"] == "Urgent, renamed"


def test_a_clickup_status_removed_from_the_list_is_left_out_after_one_refresh(sandbox):
    clickup = provider_create(
        name="sandbox-clickup",
        type="clickup",
        config={"api_token": "pk_demo_clickup", "list_id": "901", "team_id": "9001",
                "status_map": {"in_progress": "in progress"}, "base_url": sandbox.base_url("clickup")},
    )  # fmt: skip
    [task] = tasks(clickup, 1, "Moving")
    drain(threads=1)
    lst = sandbox.sandbox.sims["clickup"].lists["901"]
    lst["statuses"] = [s for s in lst["statuses"] if s["status"] != "in progress"]

    task_update(task_id=task.id, data={"status": "in_progress"}, partial=True)
    drain(threads=1)

    # PUT with "in progress" → 400 ITEM_114 → list read → PUT without a status.
    assert requests(sandbox, "clickup") == {"200": 3, "400": 1}
    assert OutboxEvent.objects.exclude(status=Status.DELIVERED).count() == 0


def test_a_todoist_project_that_is_gone_fails_with_a_clear_error_after_one_refresh(sandbox, settings):
    settings.OUTBOX_BATCHING = False
    todoist = provider_create(
        name="sandbox-todoist",
        type="todoist",
        config={"api_token": "demo-todoist-token", "project_id": "6Demo", "base_url": sandbox.base_url("todoist")},
    )
    sandbox.sandbox.sims["todoist"].projects.pop("6Demo")
    tasks(todoist, 1, "Homeless")

    drain(threads=1)

    [event] = OutboxEvent.objects.all()
    assert event.status == Status.DEAD
    assert "project 6Demo no longer exists" in event.error_message
    assert requests(sandbox, "todoist") == {"404": 1, "200": 1}  # the create, then the project list


def test_an_assignee_who_is_not_a_user_of_the_todoist_project_is_left_out(sandbox):
    from tasks_app.models import Assignee, AssigneeIdentity

    todoist = provider_create(
        name="sandbox-todoist",
        type="todoist",
        config={"api_token": "demo-todoist-token", "project_id": "6Demo", "base_url": sandbox.base_url("todoist")},
    )
    sandbox.sandbox.configure_provider("todoist", {"collaborators": ["777"]})
    people = {}
    for user_id in ("777", "999"):
        person = Assignee.objects.create(name=f"User {user_id}", email=f"u{user_id}@example.com")
        AssigneeIdentity.objects.create(assignee=person, provider=todoist, external_user_id=user_id)
        people[user_id] = person
    for user_id, person in people.items():
        tasks(todoist, 3, f"For {user_id}", assignee=str(person.id))

    drain(batch_size=50, threads=2)

    remote = sandbox.sandbox.state()["providers"]["todoist"]["tasks"]
    owners = {t["content"].split(" ")[1]: t["responsible_uid"] for t in remote}
    assert owners == {"777": "777", "999": None}
    # 1 sync request for the 6 creates + 1 read of the project's users.
    assert requests(sandbox, "todoist") == {"200": 2}


@pytest.mark.parametrize("batching", [True, False], ids=["sync", "rest"])
def test_an_assignee_removed_from_the_project_since_it_was_cached_is_left_out_on_one_retry(sandbox, settings, batching):
    from tasks_app.models import Assignee, AssigneeIdentity

    settings.OUTBOX_BATCHING = batching
    todoist = provider_create(
        name="sandbox-todoist",
        type="todoist",
        config={"api_token": "demo-todoist-token", "project_id": "6Demo", "base_url": sandbox.base_url("todoist")},
    )
    sandbox.sandbox.configure_provider("todoist", {"collaborators": ["777"]})
    person = Assignee.objects.create(name="Leaving", email="leaving@example.com")
    AssigneeIdentity.objects.create(assignee=person, provider=todoist, external_user_id="777")
    tasks(todoist, 1, "Before", assignee=str(person.id))
    drain(threads=1)
    assert requests(sandbox, "todoist") == {"200": 2}  # the project's users, the create
    sandbox.sandbox.sims["todoist"].collaborators.pop("777")  # 777 leaves the project

    tasks(todoist, 3, "After", assignee=str(person.id))
    drain(batch_size=50, threads=1)

    assert OutboxEvent.objects.exclude(status=Status.DELIVERED).count() == 0
    remote = {t["content"]: t["responsible_uid"] for t in sandbox.sandbox.state()["providers"]["todoist"]["tasks"]}
    assert remote == {"Before 0": "777", "After 0": None, "After 1": None, "After 2": None}
    if batching:
        # One sync refused per command (400) → users read again → one sync without the assignee.
        assert requests(sandbox, "todoist") == {"200": 2 + 3}
        assert sandbox.sandbox.state(include_items=False)["sync_requests"]["todoist"] == 2
    else:
        # The first create refused (400) → users read again → sent again without the assignee;
        # the other two already know from the fresh users.
        assert requests(sandbox, "todoist") == {"200": 2 + 1 + 3, "400": 1}
