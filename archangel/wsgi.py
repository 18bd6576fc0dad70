import os

from django.core.wsgi import get_wsgi_application

from archangel.tracing import configure_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "archangel.settings")
# Before Django loads its middleware, which the Django instrumentation extends; a no-op
# (nothing imported) unless OTEL_EXPORTER_OTLP_ENDPOINT is set.
configure_tracing("archangel-api")
application = get_wsgi_application()
