"""The ops console in a real browser: headless Chromium driven by Playwright.

Screenshots are kept in ``artifacts/`` (ignored by git) for a human to look at.
"""

import os
import uuid
from pathlib import Path

import pytest
from django.conf import settings

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
