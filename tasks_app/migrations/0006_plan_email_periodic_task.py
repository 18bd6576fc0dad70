"""The beat job that emails the morning plans, as a django-celery-beat row: visible and editable in the admin."""

from django.db import migrations

NAME = "Send daily plan emails"
TASK = "tasks_app.send_daily_plan_emails"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    # Every 15 minutes: each person gets theirs within a quarter hour of ARCHANGEL_PLAN_EMAIL_HOUR
    # in their own time zone; the claim row keeps it to one a day however often this runs.
    interval, _ = IntervalSchedule.objects.get_or_create(every=15, period="minutes")
    PeriodicTask.objects.get_or_create(name=NAME, defaults={"task": TASK, "interval": interval})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tasks_app", "0005_daily_plans"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
