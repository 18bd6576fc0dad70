"""What the benchmark smoke tests share: a bench database of their own on the tests' server."""

import os
import uuid
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings


def admin_url() -> str:
    """The tests' PostgreSQL server, its ``postgres`` database (the bench creates and drops its own)."""
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    auth = f"{user}:{db['PASSWORD']}" if db.get("PASSWORD") else user
    return f"postgresql://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/postgres"


def bench_redis_url() -> str:
    # A database index of its own: the smoke run's queues and rate-limit logs stay apart from the tests'.
    parts = urlsplit(settings.REDIS_URL)
    return parts._replace(path="/13").geturl()


def bench_env(bench_database: str, what: str, **extra: str) -> dict[str, str]:
    """The environment a bench command runs in: this process's, without the tests' database and
    Redis, pointed at ``bench_database`` and a Redis index of its own. Fails (not skips) without
    PostgreSQL and Redis: ``what`` names the run that needs them."""
    if settings.DATABASES["default"]["ENGINE"] != settings.POSTGRES_ENGINE or not settings.REDIS_URL:
        pytest.fail(f"{what} needs PostgreSQL and Redis")
    return {
        **{k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL"}},
        "BENCH_DATABASE": bench_database,
        "BENCH_ADMIN_DATABASE_URL": admin_url(),
        "BENCH_REDIS_URL": bench_redis_url(),
        **extra,
    }


@pytest.fixture
def bench_database():
    name = f"archangel_bench_ci{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
