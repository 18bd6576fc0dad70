"""The ops console in a real browser: headless Chromium driven by Playwright.

Screenshots are kept in ``artifacts/`` (ignored by git) for a human to look at.
"""

import os
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections

from outbox_app.models import OutboxEvent
from tests.factories import make_provider

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARTIFACTS = Path(settings.BASE_DIR) / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # This machine's network is closed: without these Chromium keeps trying to reach Google.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser_page(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between browser steps are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=settings.CHROMIUM_PATH, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            browser.close()
            # The ORM connections the test opened while Playwright's loop ran belong to that
            # context: the test case's own teardown does not see them, and left open they kept
            # a session on the test database until the end ("database is being accessed by
            # other users" when pytest-django dropped it). Close them here, in that context.
            connections.close_all()


def _dead_letter(provider):
    return OutboxEvent.objects.create(
        provider=provider,
        aggregate_id=uuid.uuid4(),
        aggregate_version=1,
        operation_type="create",
        payload={"title": "From the browser"},
        idempotency_key=f"browser:{uuid.uuid4()}",
        status=OutboxEvent.Status.DEAD,
        error_message="503 Service Unavailable after 8 attempts",
    )


def test_log_in_and_read_the_dashboard(live_server, browser_page, django_user_model):
    django_user_model.objects.create_superuser("ops", "ops@example.com", "pw-ops-123")
    _dead_letter(make_provider("todoist", name="Browser Todoist"))
    page = browser_page
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "pw-ops-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard")
    assert page.inner_text("#dash-dead") == "1"
    assert "503 Service Unavailable" in page.inner_text("#dash-failures")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-dashboard.png"), full_page=True)
    assert os.path.getsize(ARTIFACTS / "admin-dashboard.png") > 10_000


def test_requeue_a_dead_letter_from_the_dashboard_and_see_it_delivered(live_server, browser_page, django_user_model):
    from outbox_app import drain
    from providers_app import services as provider_services
    from providers_app.sandbox.server import SandboxServer
    from tasks_app import services as task_services

    django_user_model.objects.create_superuser("ops", "ops@example.com", "pw-ops-123")
    sandbox = SandboxServer(seed=5).start()
    try:
        provider = provider_services.provider_create(
            name="Sandbox Todoist",
            type="todoist",
            config={"api_token": "demo-todoist-token", "project_id": "6Demo", "base_url": sandbox.base_url("todoist")},
        )
        task, _ = task_services.task_create(data={"title": "Requeued from the browser", "provider": str(provider.pk)})
        event = OutboxEvent.objects.get(aggregate_id=task.pk)
        # As if the provider had been down for all of its attempts.
        OutboxEvent.objects.filter(pk=event.pk).update(status="dead", error_message="503 after 8 attempts")

        page = browser_page
        page.goto(f"{live_server.url}/admin/")
        page.fill("#id_username", "ops")
        page.fill("#id_password", "pw-ops-123")
        page.click("input[type=submit]")
        page.wait_for_selector("#dashboard")
        assert page.inner_text("#dash-dead") == "1"
        page.click("#dash-outbox a[href*='status__exact=dead']")  # the dead-letter count links to them
        page.wait_for_selector("#result_list")
        page.check(f"input.action-select[value='{event.pk}']")
        page.select_option("select[name=action]", "requeue")
        page.click("button[name=index]")
        page.wait_for_selector("ul.messagelist")
        assert "1 event(s) requeued." in page.inner_text("ul.messagelist")

        counts = drain.drain(max_seconds=20)  # what the Celery worker runs on its wake-up
        assert counts["delivered"] == 1

        page.goto(f"{live_server.url}/admin/outbox_app/outboxevent/{event.pk}/change/")
        assert "delivered" in page.inner_text("#content-main").lower()
        page.goto(f"{live_server.url}/admin/")
        assert page.inner_text("#dash-dead") == "0"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "admin-requeued.png"), full_page=True)
        task.refresh_from_db()
        assert task.external_id  # created at the sandbox
        assert sandbox.sandbox.state(include_items=False)["creates"]["todoist"] == 1
    finally:
        sandbox.stop()
