# One image for every Archangel process (api, worker, beat); docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Static files for the admin are served by whitenoise from the image.
RUN DJANGO_ENV=development ARCHANGEL_VAR_DIR=/app/var python manage.py collectstatic --no-input --verbosity 0 \
    && useradd --system --uid 10001 archangel && chown -R archangel /app/var
USER archangel

# 8000: the API (gunicorn); 9808: a Celery worker's metrics (CELERY_METRICS_PORT).
EXPOSE 8000 9808
CMD ["gunicorn", "-c", "python:archangel.gunicorn_conf", "archangel.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
