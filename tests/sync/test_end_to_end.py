"""The whole round trip against the provider sandbox (issue 5 §6): a task created in Archangel
is delivered by the outbox drain, changed in the sandbox "as a user", the sandbox posts a
signed webhook to the running Archangel, the change is applied, and nothing echoes back."""

import pytest
import requests
from rest_framework.test import APIClient

from outbox_app.models import OutboxEvent
from providers_app import services as provider_services
from providers_app.models import WebhookDelivery
from providers_app.sandbox import SandboxServer
from tasks_app import sync
from tasks_app.models import SyncConflict, Task, TaskSyncState
from tasks_app.services import task_create, task_update

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]
SECRET = "td-e2e-client-secret"


def _drain() -> int:
    """Deliver what the outbox holds: through the outbox drain when this build has it, else
    straight through the gateway (recording the external id as the drain's handler does)."""
    try:
        from outbox_app import jobs as outbox_jobs

        return outbox_jobs.outbox_drain.run()["delivered"]
    except (ImportError, AttributeError):
        pass
    from providers_app import gateway

    delivered = 0
    for event in OutboxEvent.objects.filter(status="pending").order_by("created_at", "aggregate_version"):
        result = gateway.deliver(
            event.provider,
            event.operation_type,
            event.payload,
            idempotency_key=event.idempotency_key,
            external_id=Task.objects.get(pk=event.aggregate_id).external_id,
        )
        if result.external_id:
            Task.objects.filter(pk=event.aggregate_id).update(external_id=result.external_id)
        OutboxEvent.objects.filter(pk=event.pk).update(status="delivered")
        delivered += 1
    return delivered


@pytest.fixture
def sandbox():
    server = SandboxServer(seed=11).start()
    yield server
    server.stop()


def _control(sandbox, method, path, **kw):
    response = requests.request(method, f"{sandbox.url}/_sandbox/{path}", timeout=15, **kw)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_change_made_in_the_provider_comes_back_once_and_never_echoes(sandbox, live_server, django_user_model):
    from rest_framework.authtoken.models import Token

    provider = provider_services.provider_create(
        name="todoist-sandbox",
        type="todoist",
        config={
            "api_token": "demo-todoist-token",
            "project_id": "6Demo",
            "base_url": sandbox.base_url("todoist"),
            "client_secret": SECRET,
            "user_id": "2671355",
        },
    )
    _control(
        sandbox,
        "POST",
        "webhooks",
        json={"provider": "todoist", "url": f"{live_server.url}/api/webhooks/todoist/{provider.pk}", "secret": SECRET},
    )
    api = APIClient()
    api.credentials(
        HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=django_user_model.objects.create(username='e2e')).key}"
    )

    # 1. Created in Archangel, delivered by the outbox drain.
    created = api.post("/api/tasks", {"title": "Prepare the offsite", "provider": str(provider.pk)}, format="json")
    assert created.status_code == 201
    assert _drain() == 1
    task = Task.objects.get(pk=created.json()["id"])
    assert task.external_id
    [remote] = _control(sandbox, "GET", "state")["providers"]["todoist"]["tasks"]
    assert remote["id"] == task.external_id and remote["content"] == "Prepare the offsite"

    # 2. Changed in the provider by its user: the sandbox posts a signed webhook to Archangel.
    answer = _control(
        sandbox,
        "POST",
        "user-change",
        json={
            "provider": "todoist",
            "id": task.external_id,
            "changes": {"content": "Prepare the offsite (Lisbon)", "priority": 4},
        },
    )
    assert answer["sent"] and answer["status"] == 200
    delivery = WebhookDelivery.objects.get()
    events_before = OutboxEvent.objects.filter(aggregate_id=task.pk).count()

    # 3. Applied (the job the intake enqueued; run here in-process, see test_worker_integration for a real worker).
    assert sync.webhook_delivery_process(delivery_id=delivery.pk) == "processed"
    task.refresh_from_db()
    assert (task.title, task.priority) == ("Prepare the offsite (Lisbon)", 4)

    # 4. No echo: no new outbox event, the drain sends nothing, the sandbox saw no write from us.
    assert OutboxEvent.objects.filter(aggregate_id=task.pk).count() == events_before
    assert _drain() == 0
    writes = [e for e in _control(sandbox, "GET", "effects?provider=todoist")["effects"] if e["op"] != "user_update"]
    assert [e["op"] for e in writes] == ["create"]
    assert [d["status"] for d in _control(sandbox, "GET", "webhooks")["sent"]] == [200]


def test_the_periodic_pull_adopts_what_webhooks_never_told(sandbox, settings):
    provider = provider_services.provider_create(
        name="todoist-pulled",
        type="todoist",
        config={"api_token": "demo-todoist-token", "project_id": "6Demo", "base_url": sandbox.base_url("todoist")},
    )
    # Made directly in the provider, with no webhook registered: only the pull can see it.
    made = requests.post(
        f"{sandbox.base_url('todoist')}/tasks",
        json={"content": "Call the caterer", "project_id": "6Demo", "priority": 3},
        headers={"Authorization": "Bearer demo-todoist-token"},
        timeout=15,
    )
    assert made.status_code == 200
    from tasks_app.jobs import reconcile_providers

    assert reconcile_providers.run() == 1
    task = Task.objects.get(provider=provider, external_id=made.json()["id"])
    assert (task.title, task.priority, task.source) == ("Call the caterer", 3, "webhook")
    assert reconcile_providers.run() == 0  # not due again before ARCHANGEL_SYNC_PULL_MINUTES
    assert Task.objects.filter(provider=provider).count() == 1


def test_a_clickup_description_change_is_fetched_from_the_provider_and_applied(sandbox, live_server):
    provider = provider_services.provider_create(
        name="clickup-sandbox",
        type="clickup",
        config={
            "api_token": "pk_demo_clickup",
            "list_id": "901",
            "base_url": sandbox.base_url("clickup"),
            "webhook_secret": "cu-e2e-secret",
            "webhook_id": "wh-e2e",
        },
    )
    _control(
        sandbox,
        "POST",
        "webhooks",
        json={
            "provider": "clickup",
            "url": f"{live_server.url}/api/webhooks/clickup",
            "secret": "cu-e2e-secret",
            "webhook_id": "wh-e2e",
        },
    )
    task, _ = task_create(data={"title": "Write the brief", "provider": str(provider.pk)})
    assert _drain() == 1
    task.refresh_from_db()

    answer = _control(
        sandbox,
        "POST",
        "user-change",
        json={"provider": "clickup", "id": task.external_id, "changes": {"description": "Two pages, no more"}},
    )
    assert answer["sent"] and answer["status"] == 200
    delivery = WebhookDelivery.objects.get()
    # The history item carries a Quill delta, not the text: the task is read back from the sandbox.
    assert sync.webhook_delivery_process(delivery_id=delivery.pk) == "processed"
    task.refresh_from_db()
    assert task.description == "Two pages, no more"
    assert _drain() == 0


def test_a_trello_card_moved_by_its_user_comes_back_once_and_our_own_writes_never_echo(sandbox, live_server):
    from providers_app.sandbox.trello import DEMO_APP_SECRET, DEMO_BOARD, DEMO_LISTS
    from providers_app.sandbox.webhooks import emitter_for

    todo, doing, done = (list_id for list_id, _ in DEMO_LISTS)
    provider = provider_services.provider_create(
        name="trello-sandbox",
        type="trello",
        config={
            "api_key": "demo-trello-key",
            "api_token": "demo-trello-token",
            "board_id": DEMO_BOARD,
            "status_lists": {"pending": todo, "in_progress": doing, "completed": done},
            "base_url": sandbox.base_url("trello"),
            "app_secret": DEMO_APP_SECRET,
        },
    )
    emitter = emitter_for(sandbox.sandbox)

    def apply_what_trello_sent() -> list[str]:
        assert emitter.wait_idle(15)
        sync.webhook_deliveries_drain()
        return [d["status"] for d in _control(sandbox, "GET", "webhooks")["sent"]]

    # Registered as on Trello: POST /1/webhooks, Trello's HEAD check answered by the intake, and
    # the callback URL kept verbatim on both sides (it is half of what every delivery is signed over).
    registered = provider_services.webhook_register(provider=provider, base_url=live_server.url)
    provider.refresh_from_db()
    [hook] = _control(sandbox, "GET", "webhooks")["trello"]
    assert hook["callbackURL"] == registered["callback_url"] == provider.config["callback_url"]
    assert hook["idModel"] == DEMO_BOARD

    # 1. Created in Archangel and delivered: Trello reports our own createCard back, which adopts nothing.
    task, _ = task_create(data={"title": "Book the venue", "provider": str(provider.pk)})
    assert _drain() == 1
    task.refresh_from_db()
    assert task.external_id and task.status == "pending"
    assert apply_what_trello_sent() == [200]
    assert Task.objects.count() == 1
    assert WebhookDelivery.objects.get().event == "createCard"

    # 2. The user renames the card and moves it to Doing: two signed updateCard actions.
    answer = _control(
        sandbox,
        "POST",
        "user-change",
        json={
            "provider": "trello",
            "id": task.external_id,
            "changes": {"idList": doing, "name": "Book the venue (Porto)"},
        },
    )
    assert answer["sent"] and answer["status"] == 200 and len(answer["events"]) == 2
    events_before = OutboxEvent.objects.filter(aggregate_id=task.pk).count()
    assert apply_what_trello_sent() == [200, 200, 200]
    task.refresh_from_db()
    assert (task.title, task.status) == ("Book the venue (Porto)", "in_progress")
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) <= {"processed", "ignored"}
    assert WebhookDelivery.objects.filter(status="processed").count() == 2

    # 3. No echo: nothing to send back, so Trello has nothing new to report either.
    assert OutboxEvent.objects.filter(aggregate_id=task.pk).count() == events_before
    assert _drain() == 0
    writes = _control(sandbox, "GET", "effects?provider=trello")["effects"]
    assert [e["op"] for e in writes] == ["webhook_create", "create", "user_update"]
    assert apply_what_trello_sent() == [200, 200, 200]
    assert WebhookDelivery.objects.count() == 3

    # 4. Our own change goes out, and Trello reports it back (as it reports every action on the
    # board): recognised as ours, it changes nothing, conflicts with nothing and sends nothing.
    task_update(task_id=task.pk, data={"title": "Book the venue (Porto, 40 people)"}, partial=True)
    assert _drain() == 1
    # The rename, and the description rewritten around our reference line: one action each.
    statuses = apply_what_trello_sent()
    assert len(statuses) > 3 and set(statuses) == {200}
    echoes = list(WebhookDelivery.objects.order_by("received_at")[3:])
    assert echoes and {e.event for e in echoes} == {"updateCard"}
    assert {e.status for e in echoes} <= {"processed", "ignored"}
    task.refresh_from_db()
    assert (task.title, task.status) == ("Book the venue (Porto, 40 people)", "in_progress")
    assert TaskSyncState.objects.get(task=task).fields["title"]["by"] == "archangel"
    assert not SyncConflict.objects.filter(task=task).exists()
    assert _drain() == 0
    assert [e["op"] for e in _control(sandbox, "GET", "effects?provider=trello")["effects"]][-1] == "update"


def test_a_clickup_webhook_registered_by_the_command_brings_a_sandbox_change_back_signed(sandbox, live_server):
    """register_webhooks against the sandbox (§4): ClickUp's answer carries the webhook's own
    secret, stored encrypted; the sandbox signs a user's change with it and names the webhook;
    the intake accepts it and the task follows; --unregister deletes it at the sandbox."""
    import io

    from django.core.management import call_command

    from providers_app.sandbox.clickup import TEAM_ID
    from providers_app.sandbox.webhooks import emitter_for
    from tasks_app.management.commands.bootstrap_demo import DEMO_PROVIDERS

    # The demo's own ClickUp provider (make run), pointed at this test's sandbox. Its status map
    # sends "pending" and "assigned" both to "to do": the echo of our own create reads as the
    # "pending" we wrote, so it changes nothing and records no conflict.
    [(name, _, demo_config)] = [p for p in DEMO_PROVIDERS if p[1] == "clickup"]
    assert demo_config["team_id"] == TEAM_ID
    provider = provider_services.provider_create(
        name=name, type="clickup", config={**demo_config, "base_url": sandbox.base_url("clickup")}
    )
    clickup = {"Authorization": "pk_demo_clickup"}
    hooks_url = f"{sandbox.base_url('clickup')}/team/{TEAM_ID}/webhook"

    out = io.StringIO()
    call_command("register_webhooks", provider.name, url=live_server.url, stdout=out)
    provider.refresh_from_db()
    [hook] = requests.get(hooks_url, headers=clickup, timeout=10).json()["webhooks"]
    assert hook["endpoint"] == f"{live_server.url}/api/webhooks/clickup/{provider.pk}"
    assert hook["list_id"] == "901" and "taskStatusUpdated" in hook["events"]
    assert provider.config["webhook_id"] == hook["id"] and hook["id"] in out.getvalue()
    assert provider.secret_config()["webhook_secret"] == hook["secret"]
    assert hook["secret"] not in provider.secrets and hook["secret"] not in str(provider.config)  # encrypted

    emitter = emitter_for(sandbox.sandbox)

    def apply_what_clickup_sent() -> list[int]:
        assert emitter.wait_idle(15)
        sync.webhook_deliveries_drain()
        return [d["status"] for d in _control(sandbox, "GET", "webhooks")["sent"]]

    # 1. Created in Archangel and delivered: ClickUp reports our own create back (taskCreated
    # and taskStatusUpdated, §1.5), signed with the webhook's secret; it adopts nothing.
    task, _ = task_create(data={"title": "Renew the lease", "provider": str(provider.pk)})
    assert _drain() == 1
    task.refresh_from_db()
    assert task.external_id and task.status == "pending"
    assert apply_what_clickup_sent() == [200, 200]
    assert sorted(WebhookDelivery.objects.values_list("event", flat=True)) == ["taskCreated", "taskStatusUpdated"]
    assert Task.objects.count() == 1 and _drain() == 0
    task.refresh_from_db()
    assert task.status == "pending" and not SyncConflict.objects.exists()

    # 2. The user moves it to "in progress": accepted by the intake (the signature with the
    # webhook's own secret checked out) and applied.
    answer = _control(
        sandbox,
        "POST",
        "user-change",
        json={"provider": "clickup", "id": task.external_id, "changes": {"status": "in progress"}},
    )
    assert answer["sent"] and [(e["status"], e["webhook_id"]) for e in answer["events"]] == [(200, hook["id"])]
    assert apply_what_clickup_sent() == [200, 200, 200]
    delivery = WebhookDelivery.objects.order_by("received_at").last()
    assert (delivery.event, delivery.status) == ("taskStatusUpdated", "processed")
    task.refresh_from_db()
    assert task.status == "in_progress"
    assert _drain() == 0  # nothing echoes back

    # 3. Our own rename goes out and ClickUp reports it back: recognised as ours, no conflict.
    task_update(task_id=task.pk, data={"title": "Renew the lease (3 years)"}, partial=True)
    assert _drain() == 1
    statuses = apply_what_clickup_sent()
    assert len(statuses) > 3 and set(statuses) == {200}
    echoes = list(WebhookDelivery.objects.order_by("received_at")[3:])
    assert echoes and {e.status for e in echoes} <= {"processed", "ignored"}
    task.refresh_from_db()
    assert (task.title, task.status) == ("Renew the lease (3 years)", "in_progress")
    assert not SyncConflict.objects.filter(task=task).exists()
    assert _drain() == 0
    seen = WebhookDelivery.objects.count()

    # A delivery signed with another secret is refused and changes nothing.
    forged = requests.post(
        hook["endpoint"],
        data=b'{"event":"taskStatusUpdated"}',
        headers={"Content-Type": "application/json", "X-Signature": "0" * 64},
        timeout=10,
    )
    assert forged.status_code in (401, 403) and WebhookDelivery.objects.count() == seen

    call_command("register_webhooks", provider.name, unregister=True, stdout=io.StringIO())
    provider.refresh_from_db()
    assert requests.get(hooks_url, headers=clickup, timeout=10).json() == {"webhooks": []}
    assert provider.config.get("webhook_id") is None and not provider.secret_config().get("webhook_secret")
    gone = _control(
        sandbox, "POST", "user-change", json={"provider": "clickup", "id": task.external_id, "changes": {"name": "x"}}
    )
    assert gone["sent"] is False
    assert emitter.wait_idle(15) and WebhookDelivery.objects.count() == seen
