"""What one POST /api/tasks costs in statements, so the create path cannot quietly regress
(docs/benchmarks.md, "Ingest": every statement is a round trip on the hot path)."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from providers_app.health import set_health
from providers_app.models import Provider
from tasks_app import selectors
from tasks_app.models import Task
from tests.factories import AssigneeFactory, ClientFactory, IdentityFactory, make_provider

pytestmark = pytest.mark.django_db


def _statements(ctx) -> list[str]:
    """Each statement as its verb and table: 'SELECT providers_app_provider', 'INSERT tasks_app_task'..."""
    out = []
    for query in ctx.captured_queries:
        sql = query["sql"].replace('"', "")
        if sql.upper().startswith(("SAVEPOINT", "RELEASE")):
            continue
        verb = sql.split()[0].upper()
        if verb in ("BEGIN", "COMMIT"):
            out.append(verb)
            continue
        if verb == "WITH":  # inserts sent together (archangel.db.one_statement)
            out.append("INSERT " + " + ".join(re.findall(r"INSERT INTO (\w+)", sql)))
            continue
        found = re.search(r"\b(?:FROM|INTO)\s+(\w+)", sql, re.IGNORECASE)
        table = found.group(1) if found else sql[:60]
        out.append(f"{verb} {table}")
    return out


def _post(api, body):
    with CaptureQueriesContext(connection) as ctx:
        response = api.post("/api/tasks", body)
    assert response.status_code == 201, response.json()
    return _statements(ctx)


# The task (ON CONFLICT DO NOTHING: the duplicate check) and, in the same statement, what is
# written only if it was: its audit entry, outbox event and routing decision.
CREATE = "INSERT tasks_app_task + audit_auditentry + outbox_app_outboxevent + tasks_app_routingdecision"


@pytest.fixture
def fresh_copies(settings):
    """This process's copies of the provider rows and the open load, empty before and after."""
    settings.ARCHANGEL = {**settings.ARCHANGEL, "ROUTING_LOAD_TTL_MS": 2000}
    selectors.provider_rows.forget()
    selectors.open_load.forget()
    yield
    selectors.provider_rows.forget()
    selectors.open_load.forget()


@pytest.mark.django_db(transaction=True)
def test_a_create_without_providers_is_two_statements(api, fresh_copies):
    client = ClientFactory()
    api.post("/api/tasks", {"title": "warm up"})  # the token's lookup and the provider rows are kept from here on
    # Outside a test's transaction the create's own transaction shows as Django logs it (BEGIN and
    # COMMIT; psycopg sends neither in autocommit: tests/api/test_create_one_statement.py).
    assert _post(api, {"title": "counted", "client": str(client.pk)}) == [
        "SELECT tasks_app_client",  # the client exists, with what scoring and routing need of it
        "BEGIN",
        CREATE,  # routing: no provider in the process's copy, nothing else to read
        "COMMIT",
    ]


def test_inside_a_transaction_that_has_written_the_provider_rows_are_read_again(api):
    client = ClientFactory()
    api.post("/api/tasks", {"title": "warm up"})
    assert _post(api, {"title": "counted", "client": str(client.pk)}) == [
        "SELECT tasks_app_client",
        "SELECT providers_app_provider",
        "SELECT SELECT txid_current_if_assigned() IS NULL",  # yes (the test's own rows): not kept
        CREATE,
    ]


@pytest.fixture
def team():
    clickup = make_provider("clickup")
    for name in ("Ann", "Bob"):
        person = AssigneeFactory(name=name, capacity_hours_per_day=8)
        IdentityFactory(assignee=person, provider=clickup, external_user_id=f"cu-{name}")
    return clickup


ROUTED = [
    "SELECT providers_app_provider",
    "SELECT tasks_app_assigneeidentity",  # active people and their identities, one join
    "SELECT tasks_app_routingdecision",  # the round-robin cursor
    "SELECT tasks_app_assigneeidentity",  # the assignee's user id at the provider, for the event
    CREATE,
]


def test_a_routed_create_inside_a_transaction_reads_the_open_load(api, team):
    # A read inside a transaction that has written is never kept (it could count its own work).
    api.post("/api/tasks", {"title": "warm up"})
    statements = _post(api, {"title": "routed"})
    aggregates = ["SELECT tasks_app_task", "SELECT tasks_app_task"]
    has_written = "SELECT SELECT txid_current_if_assigned() IS NULL"  # yes (the test's own rows): not kept
    assert statements == [*ROUTED[:1], has_written, *aggregates, has_written, *ROUTED[1:]]


@pytest.mark.django_db(transaction=True)
def test_a_routed_create_reuses_the_processs_provider_rows_and_open_load(api, team, fresh_copies):
    api.post("/api/tasks", {"title": "warm up"})  # reads the provider rows and the aggregates, keeps them
    # Neither the providers nor an aggregate over the open tasks are read again.
    assert _post(api, {"title": "routed"}) == [*ROUTED[1:3], "BEGIN", *ROUTED[3:], "COMMIT"]


@pytest.mark.django_db(transaction=True)
def test_a_provider_change_in_this_process_is_seen_by_the_next_create(api, team, fresh_copies):
    api.post("/api/tasks", {"title": "warm up"})
    # An operator disables the provider (a save) ...
    team.health_status = "disabled"
    team.save()
    assert "SELECT providers_app_provider" in _post(api, {"title": "after the save"})
    task = Task.objects.get(title="after the save")
    assert task.provider_id is None  # nowhere to route: the only provider is disabled
    # ... and the breaker's mirror brings it back (an update, announced by health_changed).
    api.post("/api/tasks", {"title": "copy kept again"})
    set_health(Provider.objects.filter(pk=team.pk), "active")
    assert "SELECT providers_app_provider" in _post(api, {"title": "after the update"})
    assert Task.objects.get(title="after the update").provider_id == team.pk


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_create_with_an_idempotency_key_reuses_the_copies_too(api, team, fresh_copies):
    # Its handler runs inside a transaction (the key's record is written with the task), which
    # has written nothing yet when routing reads: the reads are kept.
    api.post("/api/tasks", {"title": "warm up"}, HTTP_IDEMPOTENCY_KEY="k-1")
    with CaptureQueriesContext(connection) as ctx:
        response = api.post("/api/tasks", {"title": "keyed"}, HTTP_IDEMPOTENCY_KEY="k-2")
    assert response.status_code == 201
    assert not [
        q["sql"] for q in ctx.captured_queries if "GROUP BY" in q["sql"] or "providers_app_provider" in q["sql"]
    ]
