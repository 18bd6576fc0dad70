"""Settings for the test suite: the real settings, pointed at the real services when they answer.

PostgreSQL (DATABASE_URL, else postgres@127.0.0.1:5432) and Redis (REDIS_URL,
else 127.0.0.1:6379, database 15) are used when reachable; without them the
suite runs on SQLite and the tests marked ``postgres`` / ``redis`` skip with a
reason, unless REQUIRE_SERVICES=1 turns those skips into failures (CI).
"""

import os
import socket
import tempfile
from urllib.parse import urlsplit


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port), timeout=0.5):
            return True
    except OSError:
        return False


os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/archangel")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("DJANGO_ENV", "development")
# The provider sandbox the tests talk to listens on 127.0.0.1; tests of the SSRF guard turn this off.
os.environ.setdefault("ARCHANGEL_ALLOW_PRIVATE_PROVIDER_URLS", "true")
os.environ.setdefault("ARCHANGEL_PLAIN_HTTP_HOSTS", "127.0.0.1,localhost,testserver")
os.environ.setdefault("ARCHANGEL_VAR_DIR", tempfile.mkdtemp(prefix="archangel-test-"))
# A committed delivery queues its drain inline, so a test sees the message at once
# (tests/sync/test_webhook_intake.py covers the coalescing thread with a delay of its own).
os.environ.setdefault("ARCHANGEL_WEBHOOK_WAKEUP_DELAY_MS", "0")
if not _reachable(os.environ["DATABASE_URL"].replace("postgres://", "http://").replace("postgresql://", "http://")):
    os.environ["DATABASE_URL_UNREACHABLE"] = os.environ.pop("DATABASE_URL")
if not _reachable(os.environ["REDIS_URL"].replace("redis://", "http://")):
    os.environ["REDIS_URL_UNREACHABLE"] = os.environ.pop("REDIS_URL")

from archangel.settings import *  # noqa: E402,F403

POSTGRES = DATABASES["default"]["ENGINE"] == POSTGRES_ENGINE  # noqa: F405
REDIS = bool(REDIS_URL)  # noqa: F405
CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
BROWSER = os.access(CHROMIUM_PATH, os.X_OK)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Each test starts with an empty cache; Redis itself is exercised by the tests that need it.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405 - whitenoise warns about a missing folder
OUTBOX_WAKEUP = False  # tests that want the wake-up turn it on; no stray drain messages pile up in Redis
