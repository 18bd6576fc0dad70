"""manage.py register_webhooks PROVIDER [--unregister] [--url https://public.address]"""

from django.core.management.base import BaseCommand, CommandError

from archangel.errors import DomainError
from providers_app import services
from providers_app.adapters.base import ProviderError
from providers_app.models import Provider


class Command(BaseCommand):
    help = "Register (or remove) a provider's webhook pointing at this service (ClickUp, Trello)."

    def add_arguments(self, parser):
        parser.add_argument("provider", help="provider name or id")
        parser.add_argument("--unregister", action="store_true", help="delete the webhook instead")
        parser.add_argument("--url", help="public base URL (default: ARCHANGEL_PUBLIC_URL)")

    def handle(self, *args, provider, unregister, url, **options):
        found = Provider.objects.filter(name=provider).first()
        if found is None:
            try:
                found = Provider.objects.filter(pk=provider).first()
            except Exception:  # noqa: BLE001 - not a UUID
                found = None
        if found is None:
            raise CommandError(f"No provider named or with id {provider!r}.")
        try:
            if unregister:
                removed = services.webhook_unregister(provider=found)
                self.stdout.write(f"{found.name}: webhook {'removed' if removed else 'was not registered'}")
            else:
                result = services.webhook_register(provider=found, base_url=url)
                self.stdout.write(f"{found.name}: webhook {result['webhook_id']} -> {result['callback_url']}")
        except DomainError as exc:
            raise CommandError(exc.message) from None
        except ProviderError as exc:
            raise CommandError(f"{found.type} refused: {exc.message}") from None
