"""The beat job that moves work off providers that are down, as a django-celery-beat row (admin-editable).

Breakers open without telling tasks_app (providers_app may not import it); with
ARCHANGEL_PROVIDER_DOWN_POLICY=move this job moves the undelivered tasks of unavailable providers
every minute, and does nothing with "wait".
"""

from django.db import migrations

NAME = "Move work off providers that are down"
TASK = "tasks_app.reroute_from_down_providers"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(name=NAME, defaults={"task": TASK, "interval": interval})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tasks_app", "0006_plan_email_periodic_task"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
