"""Re-encrypt every stored provider secret with the first key of ARCHANGEL_ENCRYPTION_KEYS.

Rotation: generate a key, put it first in ARCHANGEL_ENCRYPTION_KEYS (keep the old
one after it), restart, run this command, then remove the old key.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from providers_app import crypto
from providers_app.models import Provider


class Command(BaseCommand):
    help = "Re-encrypt all provider secrets with the primary (first) encryption key."

    def handle(self, *args, **options):
        rotated = 0
        with transaction.atomic():
            for provider in Provider.objects.select_for_update().exclude(secrets=""):
                try:
                    provider.secrets = crypto.rotate(provider.secrets)
                except crypto.DecryptionError as exc:
                    raise CommandError(f"provider {provider.name}: {exc}") from None
                provider.save(update_fields=["secrets", "updated_at"])
                rotated += 1
        self.stdout.write(
            self.style.SUCCESS(f"Re-encrypted the secrets of {rotated} provider(s) with the primary key.")
        )
