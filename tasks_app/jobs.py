"""Celery jobs of the tasks app: thin wrappers that call a service and are safe to run twice."""

from celery import shared_task

from tasks_app import services


@shared_task(name="tasks_app.rescore_open_tasks", ignore_result=True)
def rescore_open_tasks() -> int:
    """Beat job: refresh every open task's score (time moves urgency and SLA pressure)."""
    return services.tasks_rescore_open()
