"""The real settings plus one bare Django view (bench/urls.py): the baseline a scenario measures
beside the endpoint under test, served by the same gunicorn in the same run."""

from archangel.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
