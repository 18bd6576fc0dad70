"""manage.py erase_person EMAIL [--yes]: anonymize a person, keeping task history consistent."""

from django.core.management.base import BaseCommand, CommandError

from archangel.audit.context import acting_as
from archangel.errors import NotFound
from tasks_app.personal_data import person_erase


class Command(BaseCommand):
    help = (
        "Anonymize an assignee: name and email replaced, provider identities removed, deactivated, "
        "and the audit entries about them scrubbed. Their tasks stay, pointing at the anonymous person. Audited."
    )

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")

    def handle(self, *args, email, yes=False, **options):
        if not yes and input(f"Erase {email}? This cannot be undone. Type 'yes': ").strip() != "yes":
            raise CommandError("Not confirmed; nothing changed.")
        try:
            with acting_as("command:erase_person", "command"):
                person = person_erase(email=email)
        except NotFound as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Erased: assignee {person.id} is now {person.name!r}.")
