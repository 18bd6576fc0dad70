"""What one POST /api/tasks costs in statements, so the create path cannot quietly regress
(docs/benchmarks.md, "Ingest": every statement is a round trip on the hot path)."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks_app import selectors
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


def test_a_create_without_providers_is_three_statements(api):
    client = ClientFactory()
    api.post("/api/tasks", {"title": "warm up"})  # the token's lookup is cached from here on
    assert _post(api, {"title": "counted", "client": str(client.pk)}) == [
        "SELECT tasks_app_client",  # the client exists, with what scoring and routing need of it
        "SELECT providers_app_provider",  # routing: none configured, nothing else to read
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
    assert statements == [*ROUTED[:1], *aggregates, has_written, *ROUTED[1:]]


@pytest.mark.django_db(transaction=True)
def test_a_routed_create_reuses_the_processs_open_load(api, team, settings):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "ROUTING_LOAD_TTL_MS": 2000}
    selectors.open_load.forget()
    try:
        api.post("/api/tasks", {"title": "warm up"})  # reads the aggregates and keeps them
        # No aggregate over the open tasks; outside a test's transaction the create's own
        # transaction shows (Django's BEGIN and COMMIT; see the round-trip test below for what
        # PostgreSQL is sent).
        assert _post(api, {"title": "routed"}) == [*ROUTED[:3], "BEGIN", *ROUTED[3:], "COMMIT"]
    finally:
        selectors.open_load.forget()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_create_with_an_idempotency_key_reuses_the_open_load_too(api, team, settings):
    # Its handler runs inside a transaction (the key's record is written with the task), which
    # has written nothing yet when routing reads the open load: the read is kept.
    settings.ARCHANGEL = {**settings.ARCHANGEL, "ROUTING_LOAD_TTL_MS": 2000}
    selectors.open_load.forget()
    try:
        api.post("/api/tasks", {"title": "warm up"}, HTTP_IDEMPOTENCY_KEY="k-1")
        with CaptureQueriesContext(connection) as ctx:
            response = api.post("/api/tasks", {"title": "keyed"}, HTTP_IDEMPOTENCY_KEY="k-2")
        assert response.status_code == 201
        assert not [q["sql"] for q in ctx.captured_queries if "GROUP BY" in q["sql"]]
    finally:
        selectors.open_load.forget()
