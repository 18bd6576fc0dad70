"""manage.py export_person EMAIL [--output FILE]: everything stored about a person, as JSON."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from archangel.audit.context import acting_as
from archangel.errors import NotFound
from tasks_app.personal_data import as_json, person_export


class Command(BaseCommand):
    help = "Write everything stored about an assignee (JSON) to stdout or --output. Audited."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--output", "-o", help="Write to this file instead of stdout.")

    def handle(self, *args, email, output=None, **options):
        try:
            with acting_as("command:export_person", "command"):
                text = as_json(person_export(email=email))
        except NotFound as exc:
            raise CommandError(exc.message) from None
        if output:
            Path(output).write_text(text + "\n", encoding="utf-8")
            self.stderr.write(f"Written to {output}")
        else:
            self.stdout.write(text)
