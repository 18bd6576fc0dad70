"""No Docker engine runs here: check the compose file's structure instead."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_designs_services_from_one_image():
    services = compose()["services"]
    assert {"api", "worker", "beat", "db", "redis"} <= set(services)
    for name in ("api", "worker", "beat"):
        assert services[name]["build"] == "." and services[name]["image"] == "archangel:latest"
        assert services[name]["environment"]["DJANGO_ENV"] == "production"
    assert services["api"]["command"][0] == "gunicorn"
    assert services["worker"]["command"][:4] == ["celery", "-A", "archangel", "worker"]
    assert "django_celery_beat.schedulers:DatabaseScheduler" in services["beat"]["command"]
    assert services["db"]["image"] == "postgres:16"
    for name in ("api", "db", "redis", "worker"):
        assert "healthcheck" in services[name], name
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_dockerfile_installs_the_pinned_requirements_and_runs_unprivileged():
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in text
    assert "USER archangel" in text


def test_every_requirement_is_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "-r")):
                assert "==" in line, f"{name}: {line} is not pinned"
