"""What needs the provider's API (mocked with ``responses``): ClickUp's task fetch, webhook
registration, and the paginated reconciliation pull (issue 5 §3, §4)."""

import io

import pytest
import responses
from django.core.management import CommandError, call_command
from django.test import Client

from providers_app.models import ProviderSyncCursor, WebhookDelivery
from tasks_app import sync
from tasks_app.models import Task
from tests.factories import make_provider
from tests.sync.payloads import example, post

pytestmark = pytest.mark.django_db
CU = "https://api.clickup.com/api/v2"
TR = "https://api.trello.com/1"
TD = "https://api.todoist.com/api/v1"


def _clickup_task(task_id="1vj37mc", **extra):
    return {
        "id": task_id,
        "name": "Made in ClickUp",
        "text_content": "Straight from the list",
        "status": {"status": "to do", "type": "open"},
        "priority": {"id": "1", "priority": "urgent"},
        "due_date": None,
        "assignees": [],
        "archived": False,
        "date_created": "1767225500000",
        "date_updated": "1767225600000",
        **extra,
    }


@responses.activate
def test_a_clickup_task_created_there_is_fetched_and_adopted(providers):
    responses.get(f"{CU}/task/1vj37mc", json=_clickup_task())
    payload = example("clickup")
    payload["event"] = "taskCreated"
    response = post(Client(), "clickup", payload)
    assert sync.webhook_delivery_process(delivery_id=response.json()["id"]) == "processed"
    task = Task.objects.get(external_id="1vj37mc")
    assert (task.title, task.description, task.priority, task.status) == (
        "Made in ClickUp",
        "Straight from the list",
        4,  # ClickUp 1 urgent
        "pending",
    )
    assert responses.calls[0].request.headers["Authorization"] == "pk_test_clickup_token"


@responses.activate
def test_a_clickup_description_change_is_read_from_the_task(providers):
    task = Task.objects.create(
        title="Made in ClickUp", provider=providers["clickup"], external_id="1vj37mc", effort_hours=1
    )
    responses.get(f"{CU}/task/1vj37mc", json=_clickup_task(text_content="New words"))
    payload = example("clickup")
    payload["event"] = "taskUpdated"
    payload["history_items"][0].update({"field": "content", "before": None, "after": '{"ops":[]}'})
    response = post(Client(), "clickup", payload)
    sync.webhook_delivery_process(delivery_id=response.json()["id"])
    task.refresh_from_db()
    assert task.description == "New words"


@responses.activate
def test_a_provider_outage_leaves_the_delivery_failed_for_the_sweep(providers):
    responses.get(f"{CU}/task/1vj37mc", status=503)
    payload = example("clickup")
    payload["event"] = "taskCreated"
    response = post(Client(), "clickup", payload)
    assert sync.webhook_delivery_process(delivery_id=response.json()["id"]) == "failed"
    delivery = WebhookDelivery.objects.get()
    assert delivery.attempts == 1 and "RetryLater" in delivery.error
    assert not Task.objects.exists()


@responses.activate
def test_register_webhooks_stores_clickups_secret_encrypted(providers, settings):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "PUBLIC_URL": "https://archangel.example.com"}
    provider = providers["clickup"]
    responses.post(
        f"{CU}/team/42/webhook",
        json={"id": "wh-9", "webhook": {"id": "wh-9", "secret": "fresh-secret", "health": {"status": "active"}}},
    )
    out = io.StringIO()
    call_command("register_webhooks", provider.name, stdout=out)
    provider.refresh_from_db()
    assert provider.config["webhook_id"] == "wh-9"
    assert provider.secret_config()["webhook_secret"] == "fresh-secret"
    assert "fresh-secret" not in provider.secrets  # stored encrypted
    body = responses.calls[0].request.body
    assert f"https://archangel.example.com/api/webhooks/clickup/{provider.pk}".encode() in body
    assert "wh-9" in out.getvalue()


@responses.activate
def test_register_webhooks_stores_trellos_callback_url_verbatim(providers):
    provider = providers["trello"]
    responses.post(f"{TR}/webhooks", json={"id": "tw-1", "active": True})
    call_command("register_webhooks", provider.name, "--url", "https://hooks.example.com/", stdout=io.StringIO())
    provider.refresh_from_db()
    expected = f"https://hooks.example.com/api/webhooks/trello/{provider.pk}"
    assert (provider.config["webhook_id"], provider.config["callback_url"]) == ("tw-1", expected)
    query = responses.calls[0].request.url
    assert "idModel=5a1111111111111111111111" in query and "key=trello-key-123" in query


@responses.activate
def test_unregister_deletes_the_webhook_and_forgets_it(providers):
    provider = make_provider("clickup", name="cu-hooked", webhook_id="wh-9")
    responses.delete(f"{CU}/webhook/wh-9", json={})
    call_command("register_webhooks", provider.name, "--unregister", stdout=io.StringIO())
    provider.refresh_from_db()
    assert "webhook_id" not in provider.config
    assert "webhook_secret" not in provider.secret_config()


def test_todoist_webhooks_are_set_up_in_its_console(providers):
    with pytest.raises(CommandError, match="configured per app in its console"):
        call_command("register_webhooks", providers["todoist"].name, "--url", "https://x.example.com")


def _td(task_id, added_at, content=None, checked=False):
    return {
        "id": task_id,
        "content": content or f"Task {task_id}",
        "description": "",
        "priority": 1,
        "checked": checked,
        "due": None,
        "added_at": added_at,
        "updated_at": added_at,
        "responsible_uid": None,
    }


@responses.activate
def test_sync_provider_adopts_open_tasks_created_since_the_date_page_by_page(providers):
    provider = providers["todoist"]
    known = Task.objects.create(title="Old title", provider=provider, external_id="K1", effort_hours=1)
    responses.get(
        f"{TD}/tasks",
        match=[responses.matchers.query_param_matcher({"project_id": "6XR4H993xv8H5qCR", "limit": "200"})],
        json={"results": [_td("N1", "2026-11-20T10:00:00Z"), _td("OLD", "2026-01-01T10:00:00Z")], "next_cursor": "c2"},
    )
    responses.get(
        f"{TD}/tasks",
        match=[
            responses.matchers.query_param_matcher({"project_id": "6XR4H993xv8H5qCR", "limit": "200", "cursor": "c2"})
        ],
        json={"results": [_td("K1", "2026-01-01T10:00:00Z", content="New title")], "next_cursor": None},
    )
    out = io.StringIO()
    call_command("sync_provider", provider.name, "--since", "2026-11-01", stdout=out, stderr=io.StringIO())
    assert set(Task.objects.filter(provider=provider).values_list("external_id", flat=True)) == {"K1", "N1"}
    known.refresh_from_db()
    assert known.title == "New title"  # a change the webhooks missed
    cursor = ProviderSyncCursor.objects.get(provider=provider)
    assert cursor.finished_at is not None and cursor.pages == 2
    assert "adopted 1" in out.getvalue()


@responses.activate
def test_sync_provider_dry_run_stores_nothing(providers):
    provider = providers["todoist"]
    responses.get(f"{TD}/tasks", json={"results": [_td("N1", "2026-11-20T10:00:00Z")], "next_cursor": None})
    out = io.StringIO()
    call_command("sync_provider", provider.name, "--since", "2026-11-01", "--dry-run", stdout=out, stderr=io.StringIO())
    assert not Task.objects.exists()
    assert "[dry run]" in out.getvalue() and "adopted 1" in out.getvalue()
    assert not ProviderSyncCursor.objects.filter(provider=provider, started_at__isnull=False).exists()


@responses.activate
def test_an_interrupted_pull_resumes_from_its_stored_cursor(providers):
    provider = providers["todoist"]
    ProviderSyncCursor.objects.create(provider=provider, cursor="c2", pages=1, started_at="2026-11-25T00:00:00Z")
    responses.get(f"{TD}/tasks", json={"results": [], "next_cursor": None})
    call_command("sync_provider", provider.name, stdout=io.StringIO(), stderr=io.StringIO())
    assert "cursor=c2" in responses.calls[0].request.url
    assert ProviderSyncCursor.objects.get(provider=provider).finished_at is not None


def test_an_unknown_provider_name_is_a_clear_error(db):
    with pytest.raises(CommandError, match="No provider"):
        call_command("sync_provider", "nope")


@responses.activate
def test_a_pull_past_its_deadline_stops_after_the_page_and_the_next_resumes(providers):
    from tasks_app.reconcile import provider_pull

    provider = providers["todoist"]
    responses.get(
        f"{TD}/tasks",
        match=[responses.matchers.query_param_matcher({"project_id": "6XR4H993xv8H5qCR", "limit": "200"})],
        json={"results": [_td("N1", "2026-11-20T10:00:00Z")], "next_cursor": "c2"},
    )
    responses.get(
        f"{TD}/tasks",
        match=[
            responses.matchers.query_param_matcher({"project_id": "6XR4H993xv8H5qCR", "limit": "200", "cursor": "c2"})
        ],
        json={"results": [_td("N2", "2026-11-21T10:00:00Z")], "next_cursor": None},
    )
    first = provider_pull(provider=provider, since=None, deadline=0.0)  # already past: one page, then stop
    assert first["paused"] == 1 and first["pages"] == 1 and len(responses.calls) == 1
    state = ProviderSyncCursor.objects.get(provider=provider)
    assert state.cursor == "c2" and state.finished_at is None
    second = provider_pull(provider=provider, since=None)
    assert "paused" not in second and "cursor=c2" in responses.calls[1].request.url
    assert set(Task.objects.filter(provider=provider).values_list("external_id", flat=True)) == {"N1", "N2"}
    assert ProviderSyncCursor.objects.get(provider=provider).finished_at is not None


def test_the_periodic_pull_ends_at_its_soft_time_limit_instead_of_pulling_the_next_provider(
    providers, monkeypatch, settings
):
    from celery.exceptions import SoftTimeLimitExceeded

    from tasks_app import jobs, reconcile

    pulled = []

    def pull(*, provider, **kwargs):
        pulled.append(provider.pk)
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(reconcile, "provider_pull", pull)
    with pytest.raises(SoftTimeLimitExceeded):
        jobs.reconcile_providers.run()
    assert len(pulled) == 1  # the other providers wait for the next run


def test_the_periodic_pull_passes_its_time_budget_as_a_deadline(providers, monkeypatch, settings):
    import time

    from tasks_app import jobs, reconcile

    settings.ARCHANGEL = {**settings.ARCHANGEL, "SYNC_PULL_MAX_SECONDS": 30}
    deadlines = []
    monkeypatch.setattr(reconcile, "provider_pull", lambda *, provider, deadline, **kw: deadlines.append(deadline))
    before = time.monotonic()
    assert jobs.reconcile_providers.run() == len(providers)
    assert deadlines and all(before + 29 <= d <= time.monotonic() + 30 for d in deadlines)
