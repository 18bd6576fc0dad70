"""The beat job that refreshes scores, as a django-celery-beat row: visible and editable in the admin."""

from django.db import migrations

SCHEDULES = {
    # name: (task, every minutes)
    "Rescore open tasks": ("tasks_app.rescore_open_tasks", 15),
}


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, (task, minutes) in SCHEDULES.items():
        interval, _ = IntervalSchedule.objects.get_or_create(every=minutes, period="minutes")
        # get_or_create: an operator's edits (another interval, disabled) survive re-running migrations.
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": interval})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=SCHEDULES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tasks_app", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
