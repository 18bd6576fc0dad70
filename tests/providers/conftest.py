import uuid

import pytest

from providers_app import breakers, ratelimit
from providers_app.adapters import clear_cache
from providers_app.http import clear_sessions

TASK_ID = "0b5f8f0e-4a3c-4c1e-9d7a-6a1c2f3e4d5b"
KEY = f"task:{TASK_ID}:v1:create"


@pytest.fixture(autouse=True)
def _fresh_provider_state():
    from django.core.cache import cache

    cache.clear()  # cached provider metadata (providers_app/metadata.py) of an earlier test
    clear_cache()
    clear_sessions()
    breakers.reset_memory()
    ratelimit.reset_memory()
    yield
    clear_cache()
    clear_sessions()


@pytest.fixture
def payload():
    return {
        "task_id": TASK_ID,
        "version": 1,
        "title": "Ship the report",
        "description": "Numbers for Q3",
        "status": "pending",
        "priority": 4,
        "effort_hours": 1.5,
        "deadline": "2026-12-01T17:30:00+01:00",
        "assignee_id": None,
        "assignee_external_id": None,
        "external_id": None,
    }


@pytest.fixture
def unique_token():
    return f"tok-{uuid.uuid4().hex}"
