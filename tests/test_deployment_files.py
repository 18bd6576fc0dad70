"""No Docker engine runs here: check the compose file's structure instead."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
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


def test_the_provider_sandbox_is_an_opt_in_profile_without_a_published_port():
    sandbox = compose()["services"]["sandbox"]
    assert sandbox["profiles"] == ["sandbox"]
    assert sandbox["command"][:3] == ["python", "manage.py", "run_sandbox"]
    assert "ports" not in sandbox and sandbox["expose"] == ["8001"]
    assert "healthcheck" in sandbox


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


# --- The observability stack (issue 6) ---------------------------------------------------------------
DEPLOY = ROOT / "deploy"
WORKER_METRICS_PORT = 9808
REQUIRED_ALERTS = {"OutboxBacklogGrowing", "OutboxDeadLetters", "ProviderBreakerOpen", "WebhookSignatureFailuresRising"}


def prometheus_config() -> dict:
    return yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "archangel.json").read_text())


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]


def exported_names() -> set[str]:
    """Every series name Archangel exports: the domain metrics, the outbox collector and django-prometheus."""
    import django_prometheus.db.metrics
    import django_prometheus.migrations  # noqa: F401 - these imports register their metrics
    from django_prometheus.middleware import Metrics
    from prometheus_client import REGISTRY

    from archangel import metrics

    Metrics.get_instance()
    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_count", "_sum"],
        "gauge": [""],
        "summary": ["_count", "_sum"],
    }
    families = [*REGISTRY.collect(), *metrics.OutboxCollector().describe()]
    return {family.name + suffix for family in families for suffix in suffixes.get(family.type, [""])}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(?:archangel|django)_[a-z0-9_]+\b", expr))


def test_compose_adds_prometheus_grafana_and_jaeger_with_pinned_images_and_health_checks():
    services = compose()["services"]
    assert {"migrate", "api", "worker", "beat", "db", "redis", "prometheus", "grafana", "jaeger", "sandbox"} == set(
        services
    )
    assert services["prometheus"]["image"] == "prom/prometheus:v2.55.1"
    assert services["grafana"]["image"] == "grafana/grafana:11.3.0"
    assert services["jaeger"]["image"] == "jaegertracing/all-in-one:1.62.0"
    # Every long-running service but beat (which serves nothing to ask) has a health check.
    for name in set(services) - {"migrate", "beat"}:
        assert services[name]["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    # The UIs are reachable from the host's loopback only.
    for name, port in (("prometheus", 9090), ("grafana", 3000), ("jaeger", 16686)):
        assert services[name]["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_the_worker_is_scalable_and_beat_runs_once():
    services = compose()["services"]
    worker, beat = services["worker"], services["beat"]
    assert "container_name" not in worker and "ports" not in worker
    assert worker["command"][:4] == ["celery", "-A", "archangel", "worker"]
    assert beat["command"][:4] == ["celery", "-A", "archangel", "beat"]
    assert "deploy" not in beat and "container_name" not in beat
    assert worker["environment"]["CELERY_METRICS_PORT"] == str(WORKER_METRICS_PORT)
    assert "env -u PROMETHEUS_MULTIPROC_DIR celery -A archangel inspect ping" in worker["healthcheck"]["test"][1]


def test_api_and_worker_keep_multiprocess_metrics_on_a_private_tmpfs_and_send_traces_to_jaeger():
    services = compose()["services"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        folder = env["PROMETHEUS_MULTIPROC_DIR"]
        assert services[name]["tmpfs"] == [f"{folder}:mode=1777"], name
        assert env["DJANGO_ENV"] == "production" and env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT-http://jaeger:4318}"
        assert env["ALLOWED_HOSTS"].endswith(",api,localhost,127.0.0.1")
    # Beat and migrate have no folder: a missing multiprocess folder would stop them at start-up.
    for name in ("beat", "migrate"):
        assert "PROMETHEUS_MULTIPROC_DIR" not in services[name]["environment"]
    assert services["api"]["command"][:3] == ["gunicorn", "-c", "python:archangel.gunicorn_conf"]


def test_prometheus_scrapes_the_api_and_discovers_every_worker_through_dns():
    config = prometheus_config()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["archangel-api"]["metrics_path"] == "/metrics"
    assert jobs["archangel-api"]["static_configs"] == [{"targets": ["api:8000"]}]
    assert jobs["archangel-worker"]["dns_sd_configs"] == [
        {"names": ["worker"], "type": "A", "port": WORKER_METRICS_PORT, "refresh_interval": "30s"}
    ]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in compose()["services"]["prometheus"]["volumes"]


def test_alert_rules_are_well_formed_and_cover_the_issues_four_alerts():
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{rule['alert'].lower()}"
    by_name = {rule["alert"]: rule["expr"] for rule in rules}
    assert "archangel_outbox_dead_letters) > 0" in by_name["OutboxDeadLetters"]
    assert "archangel_breaker_state) == 2" in by_name["ProviderBreakerOpen"]
    assert 'result="bad_signature"' in by_name["WebhookSignatureFailuresRising"]
    assert "deriv(archangel_outbox_backlog[15m])" in by_name["OutboxBacklogGrowing"]


def test_every_metric_in_the_alerts_and_the_dashboard_is_one_archangel_exports():
    known = exported_names()
    used = set().union(*(metric_names(rule["expr"]) for rule in alert_rules()), *map(metric_names, dashboard_exprs()))
    assert used - known == set()
    # And the dashboard shows every domain metric.
    family = re.compile(r"_(bucket|count|sum|total)$")
    domain = {family.sub("", name) for name in known if name.startswith("archangel_")}
    shown = {family.sub("", name) for name in set().union(*map(metric_names, dashboard_exprs()))}
    assert domain - shown == set()


def test_grafana_provisions_the_data_sources_and_the_dashboard_uses_them():
    provisioning = DEPLOY / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "datasources.yml").read_text())["datasources"]
    prometheus = next(source for source in sources if source["type"] == "prometheus")
    assert prometheus["url"] == "http://prometheus:9090" and prometheus["isDefault"] is True
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    volumes = compose()["services"]["grafana"]["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in volumes
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes

    board = dashboard()
    assert board["uid"] == "archangel-overview"
    graphs = [panel for panel in board["panels"] if panel["type"] != "row"]
    assert len(graphs) >= 15
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    for panel in graphs:
        assert panel["datasource"] == {"type": "prometheus", "uid": prometheus["uid"]}, panel["title"]
        assert panel["targets"] and all(t["expr"].count("(") == t["expr"].count(")") for t in panel["targets"])


def test_every_alert_has_a_runbook_entry_in_the_operations_docs():
    headings = re.findall(r"^### (\w+)$", (ROOT / "docs" / "operations.md").read_text(), flags=re.MULTILINE)
    assert {rule["alert"] for rule in alert_rules()} <= set(headings)


PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")


@pytest.mark.skipif(not PROMTOOL, reason="promtool is not installed (Debian: the prometheus package; or set PROMTOOL)")
def test_promtool_accepts_the_config_the_alert_rules_and_every_dashboard_query(tmp_path):
    # The dashboard's queries become recording rules, so promtool parses each of them too.
    queries = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(dashboard_exprs())]
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": queries}]}))
    (tmp_path / "alerts.yml").write_text((DEPLOY / "prometheus" / "alerts.yml").read_text())
    config = prometheus_config()
    config["rule_files"] = [str(tmp_path / "alerts.yml"), str(tmp_path / "dashboard.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def _gunicorn_conf(monkeypatch, **env):
    import importlib

    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_KEEPALIVE", "GUNICORN_GC_REFREEZE_AFTER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    import archangel.gunicorn_conf

    return importlib.reload(archangel.gunicorn_conf)


def test_every_way_of_running_the_api_uses_the_one_gunicorn_worker_model(monkeypatch):
    from tasks_app.management.commands.run_stack import Command

    conf = _gunicorn_conf(monkeypatch)
    assert conf.worker_class == "gthread" and conf.threads == 4 and conf.keepalive == 75
    assert conf.workers == (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    conf = _gunicorn_conf(monkeypatch, WEB_CONCURRENCY="3", GUNICORN_THREADS="16", GUNICORN_KEEPALIVE="5")
    assert (conf.workers, conf.threads, conf.keepalive) == (3, 16, 5)
    # No worker count on a command line: it would silently override the configuration.
    api = compose()["services"]["api"]["command"]
    dockerfile_cmd = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD"))
    web = Command().commands(
        {"host": "127.0.0.1", "port": 8000, "workers": 2, "worker_concurrency": 1, "no_sandbox": True}
    )["web"]
    assert "--workers" not in api and "--workers" not in dockerfile_cmd
    assert '"-c", "python:archangel.gunicorn_conf"' in dockerfile_cmd
    assert web[web.index("-c") + 1] == "python:archangel.gunicorn_conf"


def test_a_bad_gunicorn_setting_stops_start_up_naming_it(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="GUNICORN_THREADS"):
        _gunicorn_conf(monkeypatch, GUNICORN_THREADS="0")
    monkeypatch.delenv("GUNICORN_THREADS")
    _gunicorn_conf(monkeypatch)  # leave the module as the environment says


def test_a_gunicorn_worker_freezes_its_loaded_application_and_once_more_after_its_first_requests(monkeypatch):
    import gc
    from types import SimpleNamespace

    # Frozen objects are still freed by reference counting (the count can only drop by itself),
    # so "no freeze" is checked as "fewer new frozen objects than were just made".
    conf = _gunicorn_conf(monkeypatch, GUNICORN_GC_REFREEZE_AFTER="3")
    worker = SimpleNamespace(nr=0)
    try:
        gc.unfreeze()
        conf.post_worker_init(worker)
        at_start = gc.get_freeze_count()
        assert at_start > 10_000  # the whole loaded test process
        loaded_later = [[n] for n in range(1000)]  # what the first requests import and cache
        for worker.nr in (1, 2):
            conf.post_request(worker, None, {}, None)
        assert gc.get_freeze_count() < at_start + len(loaded_later)
        worker.nr = 3
        conf.post_request(worker, None, {}, None)
        refrozen = gc.get_freeze_count()
        assert refrozen >= at_start + len(loaded_later) - 100
        more = [[n] for n in range(1000)]  # more objects, but no third freeze
        worker.nr = 4
        conf.post_request(worker, None, {}, None)
        assert gc.get_freeze_count() < refrozen + len(more)
        conf = _gunicorn_conf(monkeypatch, GUNICORN_GC_REFREEZE_AFTER="0")
        gc.unfreeze()
        worker.nr = 10**6
        conf.post_request(worker, None, {}, None)
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


# Variables read in the code: the settings' env_* helpers, os.environ reads, and argparse defaults.
_READ = re.compile(
    r"""(?:env_(?:str|bool|int|float|list|choice|url)\(|os\.environ(?:\.get\(|\[))\s*"([A-Z][A-Z0-9_]+)\""""
)
# Other tools' own variables, documented by them.
_NOT_CONFIGURATION = {"DJANGO_SETTINGS_MODULE", "OTEL_PYTHON_DJANGO_EXCLUDED_URLS"}


def test_every_variable_the_code_reads_is_in_env_example_and_the_readme():
    read = set()
    for folder in ("archangel", "tasks_app", "providers_app", "outbox_app"):
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" not in path.parts:
                read.update(_READ.findall(path.read_text()))
    read -= _NOT_CONFIGURATION
    assert len(read) > 60  # the pattern still finds them
    example = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    readme = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "README.md").read_text()))
    assert sorted(read - example) == [], "missing from .env.example"
    assert sorted(read - readme) == [], "missing from the README's configuration"
