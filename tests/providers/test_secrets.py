import json

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from providers_app.models import Provider
from tests.factories import PROVIDER_CONFIGS, make_provider

pytestmark = pytest.mark.django_db

SECRET_VALUES = [
    "pk_test_clickup_token",
    "cu-hook-secret",
    "trello-key-123",
    "trello-token-456",
    "trello-app-secret",
    "todoist-token-789",
    "td-client-secret",
]


def raw_rows() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT config, secrets FROM providers_app_provider")
        return json.dumps([list(map(str, row)) for row in cursor.fetchall()])


def test_secrets_are_encrypted_at_rest():
    for kind in ("clickup", "trello", "todoist"):
        make_provider(kind)
    stored = raw_rows()
    for value in SECRET_VALUES:
        assert value not in stored
    assert Provider.objects.get(type="trello").secret_config()["api_token"] == "trello-token-456"


def test_repr_and_str_never_show_secrets():
    provider = make_provider("todoist")
    assert "todoist-token" not in repr(provider) + str(provider)


def test_rotation_re_encrypts_so_the_old_key_can_be_removed(settings):
    old_key = settings.ENCRYPTION_KEYS[0]
    provider = make_provider("clickup")
    new_key = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_encryption_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    settings.ENCRYPTION_KEYS = [new_key]
    provider.refresh_from_db()
    assert provider.secret_config() == {
        "api_token": PROVIDER_CONFIGS["clickup"]["api_token"],
        "webhook_secret": PROVIDER_CONFIGS["clickup"]["webhook_secret"],
    }


def test_rotation_without_the_old_key_fails_loudly_and_changes_nothing(settings):
    provider = make_provider("clickup")
    before = Provider.objects.get(pk=provider.pk).secrets
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError) as exc:
        call_command("rotate_encryption_keys")
    assert "pk_test" not in str(exc.value)
    assert Provider.objects.get(pk=provider.pk).secrets == before
