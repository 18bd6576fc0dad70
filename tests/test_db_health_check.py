"""archangel.postgresql: the per-request health check is skipped on a connection that finished a
request without error within DATABASE_HEALTH_CHECK_WINDOW, and made as before on any other."""

import pytest
from django.db import connection, connections
from django.db.utils import OperationalError, ProgrammingError

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def wrapper(monkeypatch):
    """A second connection to the test database with the production settings (persistent, checked),
    and a count of the health checks it makes."""
    conn = connections.create_connection("default")
    conn.settings_dict = {**conn.settings_dict, "CONN_MAX_AGE": 600, "CONN_HEALTH_CHECKS": True}
    checks = []
    real = type(conn).is_usable
    monkeypatch.setattr(conn, "is_usable", lambda: checks.append(1) or real(conn))
    conn.checks = checks
    yield conn
    conn.close()


def _request(conn, sql="SELECT 1"):
    """What Django does around one request that runs ``sql`` on ``conn``."""
    conn.close_if_unusable_or_obsolete()  # request_started
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()[0]
    finally:
        conn.close_if_unusable_or_obsolete()  # request_finished


def _kill(conn):
    pid = conn.connection.info.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_the_engine_is_ours():
    assert type(connections["default"]).__module__ == "archangel.postgresql.base"


def test_a_connection_used_within_the_window_is_not_checked(wrapper, settings):
    settings.DATABASE_HEALTH_CHECK_WINDOW = 60
    for _ in range(5):
        assert _request(wrapper) == 1
    assert wrapper.checks == []


def test_an_idle_connection_is_checked_and_a_dead_one_replaced(wrapper, settings):
    settings.DATABASE_HEALTH_CHECK_WINDOW = 60
    _request(wrapper)
    old_pid = wrapper.connection.info.backend_pid
    _kill(wrapper)
    wrapper.proven_at -= 61  # idle for longer than the window
    assert _request(wrapper) == 1  # the check found it dead, Django reconnected, the request ran
    assert wrapper.checks == [1]
    assert wrapper.connection.info.backend_pid != old_pid


def test_a_window_of_zero_checks_every_request(wrapper, settings):
    settings.DATABASE_HEALTH_CHECK_WINDOW = 0
    for _ in range(3):
        _request(wrapper)
    assert len(wrapper.checks) == 2  # every reuse (a new connection is not checked, as in Django)


def test_a_drop_inside_the_window_costs_one_request_and_no_more(wrapper, settings):
    settings.DATABASE_HEALTH_CHECK_WINDOW = 60
    _request(wrapper)
    _kill(wrapper)
    with pytest.raises(OperationalError):
        _request(wrapper)
    # Django closed the failed connection as the request ended; the next one opens a new one.
    assert wrapper.connection is None
    assert _request(wrapper) == 1


def test_a_failed_request_does_not_prove_the_connection(wrapper, settings):
    settings.DATABASE_HEALTH_CHECK_WINDOW = 60
    _request(wrapper)
    proven = wrapper.proven_at
    with pytest.raises(ProgrammingError):
        _request(wrapper, "SELECT * FROM no_such_table")
    assert wrapper.proven_at == proven


def test_a_request_that_failed_leaves_the_next_one_checked_after_the_window(wrapper, settings):
    settings.DATABASE_HEALTH_CHECK_WINDOW = 60
    _request(wrapper)
    with pytest.raises(ProgrammingError):
        _request(wrapper, "SELECT * FROM no_such_table")  # Django checks it as this request ends
    checks = len(wrapper.checks)
    wrapper.proven_at -= 61
    _request(wrapper)  # idle past the window since its last good request: checked again
    assert len(wrapper.checks) == checks + 1
