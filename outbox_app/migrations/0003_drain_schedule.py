"""The beat schedule of the outbox drain, as a django-celery-beat PeriodicTask: visible and
editable in the admin (Periodic tasks), where an operator can change its interval or pause it."""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

NAME = "outbox-drain"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    every = getattr(settings, "OUTBOX_DRAIN_INTERVAL_SECONDS", 5)
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    _, created = PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": "outbox.drain",
            "interval": interval,
            "enabled": True,
            # A tick nobody picked up within a few intervals is worthless (the next one comes):
            # without this, a stopped worker fills the broker with drains.
            "expire_seconds": every * 6,
            "description": "Deliver due outbox events (outbox_app/jobs.py). Harmless to run twice.",
        },
    )
    if created:
        # DatabaseScheduler re-reads its schedule when this changes.
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("outbox_app", "0002_delivery_leases_and_attempts"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
