from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks_app"
    verbose_name = "Tasks"

    def ready(self):
        from archangel.auth import connect_signals

        connect_signals()

        from tasks_app import delivery

        delivery.register()

        from tasks_app import selectors

        selectors.connect_signals()
