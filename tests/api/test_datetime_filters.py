"""Date-time filters take any ISO 8601 offset Python accepts: converted to UTC before the query
(PostgreSQL refuses offsets past ±15:59), and refused with a 400 naming the field when the
conversion overflows."""

import pytest

from tasks_app.services import task_create

pytestmark = pytest.mark.django_db


def test_an_offset_postgresql_would_refuse_is_compared_in_utc(operator_api):
    task_create(data={"title": "Due late in 2085", "deadline": "2085-08-09T20:00:00Z"})
    # 18:37 at +22:51 is 19:46 the day before in UTC: before the deadline.
    answer = operator_api.get("/api/tasks", {"deadline_after": "2085-08-09T18:37:39+22:51"})
    assert answer.status_code == 200
    assert [t["title"] for t in answer.json()["results"]] == ["Due late in 2085"]
    later = operator_api.get("/api/tasks", {"deadline_after": "2085-08-10T20:37:39+00:51"})
    assert later.json()["results"] == []
    audit = operator_api.get("/api/audit", {"since": "2085-08-09T18:37:39.848202+22:51"})
    assert audit.status_code == 200 and audit.json()["results"] == []


def test_a_date_time_that_overflows_once_converted_is_a_400_naming_the_field(operator_api):
    answer = operator_api.get("/api/audit", {"until": "0001-01-01T00:30:00+01:00"})
    assert answer.status_code == 400
    assert set(answer.json()["error"]["fields"]) == {"until"}
