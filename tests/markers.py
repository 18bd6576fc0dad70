"""Marks that several test modules share."""

import pytest


def real_services() -> list:
    """The ``pytestmark`` of a module that runs against the real services: PostgreSQL and Redis
    are required (a skip without them, a failure under REQUIRE_SERVICES=1), and each test commits
    for real, so other connections (worker processes, threads, the sandbox's callers) see its rows."""
    return [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
