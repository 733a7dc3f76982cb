"""deploy/observability and the observability configs of deploy/docker: every YAML file parses,
and the dashboard and alerts use metric names Soma really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.deploy.manifests import DEPLOY, load_all

ALERTS = DEPLOY / "observability" / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "observability" / "grafana" / "soma-dashboard.json"
HELM_TEMPLATES = DEPLOY / "helm" / "soma" / "templates"


def exported_series() -> set[str]:
    """Series names of soma.telemetry.metrics, as Prometheus sees them."""
    from prometheus_client.metrics import MetricWrapperBase

    from soma.telemetry import metrics

    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_sum", "_count"],
        "gauge": [""],
        "summary": ["_sum", "_count"],
    }
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names |= {value._name + s for s in suffixes[value._type]}
    return names


def soma_series(text: str) -> set[str]:
    return set(re.findall(r"\bsoma_[a-z_]+\b", text))


def test_every_yaml_file_parses() -> None:
    files = [
        p
        for p in DEPLOY.rglob("*")
        if p.suffix in {".yaml", ".yml"} and HELM_TEMPLATES not in p.parents
    ]
    assert len(files) >= 10
    for path in files:
        assert "\t" not in path.read_text(), f"{path}: tab"
        assert load_all(path.read_text()), f"{path}: empty"


def test_alert_rules() -> None:
    (doc,) = load_all(ALERTS.read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert len(names) == len(rules)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
    exprs = " ".join(rule["expr"] for rule in rules)
    for series in [
        "soma_http_requests_total",
        "soma_http_request_seconds_bucket",
        "soma_task_queue_backlog",
        "soma_sandbox_failures_total",
        "soma_model_cost_usd_total",
    ]:
        assert series in exprs
    assert soma_series(exprs) <= exported_series(), soma_series(exprs) - exported_series()


def test_dashboard_uses_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = soma_series(" ".join(exprs))
    assert used <= exported_series(), used - exported_series()
    # Every Soma series is on the dashboard.
    assert {re.sub(r"_(bucket|sum|count)$", "", s) for s in exported_series()} <= {
        re.sub(r"_(bucket|sum|count)$", "", s) for s in used
    }
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_prometheus_scrapes_gateway_and_workers() -> None:
    (doc,) = load_all((DEPLOY / "docker" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    assert jobs["soma-gateway"]["static_configs"][0]["targets"] == ["gateway:8765"]
    assert jobs["soma-workers"]["dns_sd_configs"][0]["port"] == 9464
    assert doc["rule_files"] == ["/etc/prometheus/alerts.yaml"]


def test_otel_collector_exports_to_tempo_and_prometheus() -> None:
    (doc,) = load_all((DEPLOY / "docker" / "otel-collector.yaml").read_text())
    pipelines = doc["service"]["pipelines"]
    assert "otlp/tempo" in pipelines["traces"]["exporters"]
    assert doc["exporters"]["otlp/tempo"]["endpoint"] == "tempo:4317"
    assert "prometheus" in pipelines["metrics"]["exporters"]
    for pipeline in pipelines.values():
        for part in ("receivers", "processors", "exporters"):
            for name in pipeline.get(part, []):
                section = doc[part] if name in doc.get(part, {}) else doc["connectors"]
                assert name in section, name


def test_grafana_provisioning() -> None:
    provisioning = DEPLOY / "docker" / "grafana" / "provisioning"
    (sources,) = load_all((provisioning / "datasources" / "datasources.yaml").read_text())
    assert {s["type"] for s in sources["datasources"]} == {"prometheus", "tempo", "loki"}
    (dashboards,) = load_all((provisioning / "dashboards" / "dashboards.yaml").read_text())
    path = Path(dashboards["providers"][0]["options"]["path"])
    compose = (DEPLOY / "docker" / "docker-compose.yaml").read_text()
    assert f"../observability/grafana:{path}:ro" in compose
