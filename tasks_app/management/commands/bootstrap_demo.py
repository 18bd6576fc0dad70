"""Create the demo admin user, its API token and a small demo dataset. Safe to run again.

The admin's password is generated once and kept in ``var/demo-credentials.json``
(readable by the owner only), so every run can print it.
"""

import datetime as dt
import json
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from providers_app import services as provider_services
from providers_app.models import Provider
from tasks_app import services
from tasks_app.models import Assignee, AssigneeIdentity, Client, Task

SANDBOX = os.environ.get("ARCHANGEL_SANDBOX_URL", "http://127.0.0.1:8001").rstrip("/")

DEMO_PROVIDERS = [
    (
        "Demo ClickUp",
        "clickup",
        {
            "api_token": "pk_demo_clickup",
            "list_id": "901",
            "team_id": "9001",
            "base_url": f"{SANDBOX}/clickup/api/v2",
            # The statuses of the sandbox's list 901 (providers_app/sandbox/clickup.py).
            "status_map": {
                "pending": "to do",
                "assigned": "to do",
                "in_progress": "in progress",
                "blocked": "blocked",
                "on_hold": "on hold",
                "review": "review",
                "completed": "complete",
            },
        },
    ),
    (
        "Demo Trello",
        "trello",
        {
            "api_key": "demo-trello-key",
            "api_token": "demo-trello-token",
            "board_id": "5a1111111111111111111111",
            "status_lists": {
                "pending": "5a2222222222222222222222",
                "in_progress": "5a3333333333333333333333",
                "completed": "5a4444444444444444444444",
            },
            "base_url": f"{SANDBOX}/trello/1",
            # The sandbox's app secret for the demo key, which signs its webhooks: after
            # `manage.py register_webhooks "Demo Trello" --url http://127.0.0.1:8000` changes made
            # in the sandbox come back (docs/operations.md, "The provider sandbox").
            "app_secret": "demo-trello-app-secret",
        },
    ),
    (
        "Demo Todoist",
        "todoist",
        {"api_token": "demo-todoist-token", "project_id": "6Demo", "base_url": f"{SANDBOX}/todoist/api/v1"},
    ),
]
# Each person's user id at each demo provider, shaped as the provider's ids are (ClickUp integer
# user ids, Trello 24-hex member ids, Todoist numeric strings) and known to the sandbox as members.
DEMO_EXTERNAL_USERS = {
    "clickup": lambda n: str(81000001 + n),
    "trello": lambda n: f"5b000000000000000000000{n + 1}",
    "todoist": lambda n: str(2671356 + n),
}
DEMO_CLIENTS = [("Acme Corp", 0.9, 24), ("Globex", 0.6, 72), ("Internal", 0.3, None)]
DEMO_PEOPLE = [
    ("Ada Lovelace", "ada@example.com", 8, "Europe/London"),
    ("Grace Hopper", "grace@example.com", 6, "America/New_York"),
    ("Linus Torvalds", "linus@example.com", 8, "Europe/Helsinki"),
    ("Margaret Hamilton", "margaret@example.com", 4, "America/Los_Angeles"),
]
DEMO_TASKS = [
    ("Renew the TLS certificate", "Acme Corp", 4, 1, 0),
    ("Quarterly security review", "Acme Corp", 3, 6, 3),
    ("Fix login redirect loop", "Globex", 4, 2, 1),
    ("Migrate billing reports", "Globex", 2, 8, 7),
    ("Update onboarding docs", "Internal", 1, 3, 10),
    ("Triage support inbox", "Acme Corp", 3, None, 0),
    ("Plan the team offsite", "Internal", 1, 4, 21),
    ("Patch the CI runners", "Internal", 3, 2, 2),
    ("Draft the Globex proposal", "Globex", 2, 5, 5),
    ("Rotate API keys", "Acme Corp", 4, 1, -1),
]


class Command(BaseCommand):
    help = "Create the demo admin user, an API token and demo data (idempotent)."

    def handle(self, *args, **options):
        password = self._password()
        with transaction.atomic():
            user = self._admin(password)
            token, _ = Token.objects.get_or_create(user=user)
            providers = self._providers()
            clients = self._clients(providers)
            self._people(providers)
            created = self._tasks(clients, providers)
        port = os.environ.get("PORT", "8000")
        self.stdout.write(
            self.style.SUCCESS("Demo ready.")
            + f"\n  Admin:     http://127.0.0.1:{port}/admin/  user: admin  password: {password}"
            + f"\n  API token: {token.key}   (Authorization: Token {token.key})"
            + f"\n  Demo tasks created this run: {created}"
        )

    def _password(self) -> str:
        path = settings.VAR_DIR / "demo-credentials.json"
        if path.exists():
            return json.loads(path.read_text())["password"]
        password = secrets.token_urlsafe(12)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"username": "admin", "password": password}))
        path.chmod(0o600)
        return password

    def _admin(self, password: str):
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"}
        )
        if created or not user.check_password(password):
            user.set_password(password)
            user.save()
        return user

    def _providers(self) -> dict[str, Provider]:
        out = {}
        for name, kind, config in DEMO_PROVIDERS:
            provider = Provider.objects.filter(name=name).first()
            out[kind] = provider or provider_services.provider_create(name=name, type=kind, config=config)
        return out

    def _clients(self, providers) -> dict[str, Client]:
        preferred = {"Acme Corp": providers["clickup"], "Globex": providers["trello"]}
        out = {}
        for name, importance, sla in DEMO_CLIENTS:
            out[name], _ = Client.objects.get_or_create(
                name=name,
                defaults={"importance": importance, "sla_hours": sla, "preferred_provider": preferred.get(name)},
            )
        return out

    def _people(self, providers) -> None:
        for n, (name, email, capacity, tz) in enumerate(DEMO_PEOPLE):
            person, created = Assignee.objects.get_or_create(
                email=email, defaults={"name": name, "capacity_hours_per_day": capacity, "timezone": tz}
            )
            if created:
                for kind, provider in providers.items():
                    AssigneeIdentity.objects.create(
                        assignee=person, provider=provider, external_user_id=DEMO_EXTERNAL_USERS[kind](n)
                    )

    def _tasks(self, clients, providers) -> int:
        if Task.objects.exists():
            return 0  # demo tasks are made once; later runs leave the data as the user left it
        today = timezone.now().replace(hour=17, minute=0, second=0, microsecond=0)
        kinds = ["clickup", "trello", "todoist"]
        items = [
            {
                "title": title,
                "client": str(clients[client].pk),
                "priority": priority,
                "effort_hours": effort,
                "deadline": (today + dt.timedelta(days=days)).isoformat(),
                "provider": str(providers[kinds[i % 3]].pk),
            }
            for i, (title, client, priority, effort, days) in enumerate(DEMO_TASKS)
        ]
        results = services.task_bulk_create(items=items)
        return sum(1 for r in results if r.status == "created")
