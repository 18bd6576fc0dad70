"""POST/GET /api/planner/daily, the stored plans, roll-over, and the morning emails."""

import datetime as dt
import threading

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks_app import jobs, plans
from tasks_app.models import DailyPlan, PlanEmail, Task
from tests.api.test_tasks_api import assert_envelope
from tests.factories import AssigneeFactory, ClientFactory, TaskFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 3, 10, 8, 30, tzinfo=dt.UTC)


def test_a_plan_orders_overdue_and_critical_first_then_by_score_within_capacity(api):
    ann = AssigneeFactory(capacity_hours_per_day=4)
    tight = ClientFactory(sla_hours=10)
    late = TaskFactory(
        assignee=ann, status="assigned", score=0.1, effort_hours=1, deadline=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    )
    sla = TaskFactory(assignee=ann, status="assigned", score=0.2, effort_hours=1, client=tight)
    Task.objects.filter(pk=sla.pk).update(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=9))
    best = TaskFactory(assignee=ann, status="in_progress", score=0.9, effort_hours=2)
    big = TaskFactory(assignee=ann, status="assigned", score=0.8, effort_hours=3)
    TaskFactory(assignee=ann, status="blocked", score=1.0, effort_hours=1)
    TaskFactory(assignee=ann, status="completed", score=1.0, effort_hours=1)

    response = api.post("/api/planner/daily", {"assignee": str(ann.pk)})
    assert response.status_code == 200, response.content
    [plan] = response.json()["plans"]
    assert [i["task"] for i in plan["items"]] == [str(late.pk), str(sla.pk), str(best.pk)]
    assert [i["kind"] for i in plan["items"]] == ["overdue", "critical", "by_score"]
    assert plan["not_fitting"][0]["task"] == str(big.pk)
    assert plan["planned_hours"] == 4 and plan["capacity_hours"] == 4
    stored = DailyPlan.objects.get()
    assert stored.items == plan["items"] and stored.date.isoformat() == plan["date"]
    # GET reads the stored plan; building again replaces it (one per person per day).
    assert api.get("/api/planner/daily", {"assignee": str(ann.pk)}).json()["results"] == [plan]
    api.post("/api/planner/daily", {"assignee": str(ann.pk), "date": plan["date"]})
    assert DailyPlan.objects.count() == 1


def test_unfinished_tasks_roll_over_to_the_next_days_plan(api):
    ann = AssigneeFactory()
    task = TaskFactory(assignee=ann, status="assigned", score=0.1)
    api.post("/api/planner/daily", {"assignee": str(ann.pk), "date": "2026-03-09"})
    [plan] = api.post("/api/planner/daily", {"assignee": str(ann.pk), "date": "2026-03-10"}).json()["plans"]
    assert plan["items"][0]["task"] == str(task.pk)
    assert plan["items"][0]["kind"] == "rolled_over"
    assert "rolled over from 2026-03-09" in plan["items"][0]["reason"]


def test_plans_for_everyone_take_a_fixed_number_of_queries(api):
    for _ in range(5):
        person = AssigneeFactory()
        TaskFactory.create_batch(3, assignee=person, status="assigned", score=0.5)
    AssigneeFactory(active=False)
    with CaptureQueriesContext(connection) as ctx:
        built = plans.plans_build(date=dt.date(2026, 3, 10))
    assert len(built) == 5 and len(ctx.captured_queries) <= 6


def test_planner_input_is_validated_in_the_envelope(api, reader_api):
    assert_envelope(api.post("/api/planner/daily", {"date": "10/03/2026"}), 400, "invalid", "date")
    assert_envelope(api.post("/api/planner/daily", {"assignee": "nope"}), 400, "invalid", "assignee")
    missing = "00000000-0000-0000-0000-000000000000"
    assert_envelope(api.post("/api/planner/daily", {"assignee": missing}), 400, "invalid", "assignee")
    assert_envelope(api.post("/api/planner/daily", {"when": "today"}), 400, "invalid", "when")
    assert_envelope(api.get("/api/planner/daily", {"date": "tomorrow"}), 400, "invalid", "date")
    assert_envelope(reader_api.post("/api/planner/daily", {}), 403, "permission_denied")
    assert reader_api.get("/api/planner/daily").status_code == 200
    assert not DailyPlan.objects.exists()


def test_the_morning_email_goes_out_once_after_the_local_hour(settings):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "PLAN_EMAIL_HOUR": 7}
    berlin = AssigneeFactory(timezone="Europe/Berlin", name="Berta")  # 09:30 local: due
    TaskFactory(assignee=berlin, status="assigned", score=0.7, title="Write the report")
    AssigneeFactory(timezone="America/New_York")  # 03:30 local: not yet
    AssigneeFactory(timezone="UTC", active=False)

    assert plans.plan_emails_send(now=NOW) == {"claimed": 1, "sent": 1, "failed": 0}
    [email] = mail.outbox
    assert email.to == [berlin.email]
    assert "Write the report" in email.body and "Your plan for Tuesday 10 March" in email.subject
    html = email.alternatives[0]
    assert html[1] == "text/html" and "Write the report" in html[0]
    assert PlanEmail.objects.get().status == "sent"
    assert DailyPlan.objects.get().assignee_id == berlin.pk  # the same stored plan the API shows
    assert plans.plan_emails_send(now=NOW + dt.timedelta(minutes=15))["claimed"] == 0
    assert len(mail.outbox) == 1


def test_a_failed_send_is_recorded_retried_and_then_given_up(settings, monkeypatch):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "PLAN_EMAIL_HOUR": 0, "PLAN_EMAIL_MAX_ATTEMPTS": 2}
    AssigneeFactory()

    def broken(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(plans.EmailMultiAlternatives, "send", broken)
    assert plans.plan_emails_send(now=NOW)["failed"] == 1
    claim = PlanEmail.objects.get()
    assert (claim.status, claim.attempts) == ("failed", 1) and "smtp down" in claim.error
    assert plans.plan_emails_send(now=NOW)["failed"] == 1
    claim.refresh_from_db()
    assert (claim.status, claim.attempts) == ("gave_up", 2)
    assert plans.plan_emails_send(now=NOW)["claimed"] == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_of_the_email_job_send_one_email_per_assignee(settings):
    settings.ARCHANGEL = {**settings.ARCHANGEL, "PLAN_EMAIL_HOUR": 0}
    people = [AssigneeFactory() for _ in range(6)]
    for person in people:
        TaskFactory(assignee=person, status="assigned", score=0.5)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(jobs.send_daily_plan_emails())
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r["sent"] for r in results) in ([0, 6], [1, 5], [2, 4], [3, 3])
    assert sorted(m.to[0] for m in mail.outbox) == sorted(p.email for p in people)
    assert PlanEmail.objects.filter(status="sent").count() == 6


def test_the_email_beat_job_is_registered_and_editable_in_the_admin():
    from django_celery_beat.models import PeriodicTask

    entry = PeriodicTask.objects.get(task="tasks_app.send_daily_plan_emails")
    assert entry.enabled and entry.interval.every == 15


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "0001-01-07", "1970-01-01", "3000-01-01"])
def test_a_plan_for_a_day_outside_1970_to_2999_is_a_400(api, day):
    AssigneeFactory()
    assert_envelope(api.post("/api/planner/daily", {"date": day}), 400, "invalid", "date")


def test_plans_for_the_first_and_last_days_allowed(api):
    AssigneeFactory(timezone="Pacific/Kiritimati")
    AssigneeFactory(timezone="Pacific/Pago_Pago")
    for day in ("1970-01-02", "2999-12-31"):
        assert api.post("/api/planner/daily", {"date": day}).status_code in (200, 201), day
