"""The Helm chart (deploy/helm/soma), rendered with the real ``helm template`` and checked
against the Kubernetes schemas and the container policy; no cluster needed."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.manifests import (
    CHART,
    CRD_SCHEMAS,
    DEPLOY,
    helm_binary,
    helm_template,
    image_is_pinned,
    load_all,
    pod_spec,
    policy_violations,
    render,
    validate_schema,
)

# Value sets the chart must render cleanly with: the defaults, every optional feature off, and
# the alternatives (edge key auth, digests, fixed replicas, no shared volume).
VARIANTS = {
    "defaults": [],
    "features-off": [
        "--set",
        "istio.enabled=false,networkPolicy.enabled=false,serviceMonitor.enabled=false,"
        "ingress.enabled=false,serviceAccount.create=false",
    ],
    "alternatives": [
        "--set",
        "kong.keyAuth.enabled=true,gateway.autoscaling.enabled=false,"
        "worker.autoscaling.enabled=false,home.persistence.enabled=false,"
        "worker.runtimeClassName=gvisor,image.gateway.digest=sha256:" + "a" * 64,
    ],
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Schema validation must work without a network (kubernetes-validate bundles schemas)."""

    def refuse(*_: Any) -> None:
        raise OSError("network access in a deploy test")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(*args) for name, args in VARIANTS.items()}


def by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def all_objects(rendered: dict[str, list[dict[str, Any]]]) -> Iterator[tuple[str, dict]]:
    for variant, objs in rendered.items():
        for obj in objs:
            yield variant, obj


def test_helm_lint() -> None:
    done = subprocess.run(
        [helm_binary(), "lint", str(CHART), "--strict"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_object_matches_its_schema(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for variant, obj in all_objects(rendered):
        try:
            validate_schema(obj)
        except Exception as e:  # report which object, whatever the validator raised
            pytest.fail(f"{variant}: {obj['kind']}/{obj['metadata']['name']}: {e}")


def test_defaults_render_the_whole_stack(rendered: dict[str, list[dict[str, Any]]]) -> None:
    kinds = sorted(o["kind"] for o in rendered["defaults"])
    for kind, count in {
        "Deployment": 2,
        "HorizontalPodAutoscaler": 2,
        "PodDisruptionBudget": 2,
        "Service": 2,
        "NetworkPolicy": 2,
        "ServiceMonitor": 2,
        "ConfigMap": 1,
        "Ingress": 1,
        "KongPlugin": 1,
        "PeerAuthentication": 1,
        "AuthorizationPolicy": 2,
        "PersistentVolumeClaim": 1,
    }.items():
        assert kinds.count(kind) == count, (kind, kinds)
    assert "Secret" not in kinds, "secrets come from secrets.existingSecret, never from values"
    (peer,) = by_kind(rendered["defaults"], "PeerAuthentication").values()
    assert peer["spec"]["mtls"]["mode"] == "STRICT"


def test_container_policy(rendered: dict[str, list[dict[str, Any]]]) -> None:
    problems = [f"{v}: {p}" for v, obj in all_objects(rendered) for p in policy_violations(obj)]
    assert problems == []


def test_policy_check_catches_violations() -> None:
    bad = {
        "kind": "Deployment",
        "metadata": {"name": "bad"},
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "c", "image": "repo/app:latest"}]},
            }
        },
    }
    problems = " ".join(policy_violations(bad))
    for expected in [
        "runAsNonRoot",
        "requests.cpu",
        "limits.memory",
        "livenessProbe",
        "readinessProbe",
        "not pinned",
        "writable",
    ]:
        assert expected in problems
    assert image_is_pinned("ghcr.io/x/soma-gateway:0.1.0")
    assert image_is_pinned("registry:5000/x/soma@sha256:" + "0" * 64)
    assert not image_is_pinned("registry:5000/x/soma")
    assert not image_is_pinned("soma:latest")


def test_latest_or_missing_tag_is_refused() -> None:
    for tag in ("latest", ""):
        done = helm_template("--set-string", f"image.worker.tag={tag}")
        assert done.returncode != 0
        assert "pinned" in done.stderr


def test_existing_secret_is_required() -> None:
    done = helm_template("--set", "secrets.existingSecret=")
    assert done.returncode != 0
    assert "secrets.existingSecret" in done.stderr


def test_workloads_are_wired_together(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Selectors, named ports, HPA targets, ConfigMap and claim references all resolve."""
    for variant, objs in rendered.items():
        deployments = by_kind(objs, "Deployment")
        configmaps = by_kind(objs, "ConfigMap")
        claims = by_kind(objs, "PersistentVolumeClaim")
        for deploy in deployments.values():
            template = deploy["spec"]["template"]
            labels = template["metadata"]["labels"]
            assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
            spec = pod_spec(deploy)
            assert spec is not None
            for container in spec["containers"]:
                ports = {p["name"] for p in container.get("ports", [])}
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    if probe in container:
                        assert container[probe]["httpGet"]["port"] in ports, (variant, probe)
                for source in container.get("envFrom", []):
                    assert source["configMapRef"]["name"] in configmaps
                mounts = {m["name"] for m in container["volumeMounts"]}
                assert mounts <= {v["name"] for v in spec["volumes"]}
            for volume in spec["volumes"]:
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims
        pods = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
        for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"):
            for name, obj in by_kind(objs, kind).items():
                spec = obj["spec"]
                selector = (
                    spec.get("selector", {}).get("matchLabels")
                    or spec.get("podSelector", {}).get("matchLabels")
                    or spec.get("selector")
                )
                if kind == "ServiceMonitor":  # selects Services, whose labels carry the same
                    services = by_kind(objs, "Service").values()
                    assert any(
                        selector.items() <= s["metadata"]["labels"].items() for s in services
                    ), name
                    continue
                assert any(selector.items() <= p.items() for p in pods), (variant, kind, name)
        for hpa in by_kind(objs, "HorizontalPodAutoscaler").values():
            assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
            assert "replicas" not in deployments[hpa["spec"]["scaleTargetRef"]["name"]]["spec"]


def test_settings_reach_the_pods(rendered: dict[str, list[dict[str, Any]]]) -> None:
    from soma.settings import Settings

    known = {f"SOMA_{name.upper()}" for name in Settings.model_fields}
    objs = rendered["defaults"]
    (configmap,) = by_kind(objs, "ConfigMap").values()
    assert set(configmap["data"]) <= known, set(configmap["data"]) - known
    for name in ("SOMA_TEMPORAL_ADDRESS", "SOMA_RATE_LIMIT_URL", "SOMA_NATS_URL"):
        assert name in configmap["data"]
    assert configmap["data"]["SOMA_EVENT_EXPORT"] == "nats"
    assert configmap["data"]["SOMA_LOG_FORMAT"] == "json"
    for deploy in by_kind(objs, "Deployment").values():
        (container,) = deploy["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert set(env) <= known
        for required in ("SOMA_SECRET_KEY", "SOMA_DATABASE_URL"):
            ref = env[required]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "soma-secrets"
            assert not ref.get("optional", False)
    worker = by_kind(objs, "Deployment")["soma-worker"]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["worker"]
    assert {e["name"]: e.get("value") for e in container["env"]}["SOMA_METRICS_PORT"] == "9464"
    gateway = by_kind(objs, "Deployment")["soma-gateway"]
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["serve", "--no-worker"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_kong_ingress_plugins(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for variant, expected in [
        ("defaults", {"soma-rate-limiting"}),
        ("alternatives", {"soma-rate-limiting", "soma-key-auth"}),
    ]:
        objs = rendered[variant]
        (ingress,) = by_kind(objs, "Ingress").values()
        assert ingress["spec"]["ingressClassName"] == "kong"
        named = set(ingress["metadata"]["annotations"]["konghq.com/plugins"].split(","))
        assert named == expected
        assert named == set(by_kind(objs, "KongPlugin"))


def test_argocd_application_points_at_the_chart() -> None:
    (app,) = load_all((DEPLOY / "argocd" / "application.yaml").read_text())
    validate_schema(app)
    assert (app["apiVersion"], app["kind"]) in CRD_SCHEMAS
    source = app["spec"]["source"]
    assert (DEPLOY.parent / source["path"]) == CHART
    for values_file in source["helm"]["valueFiles"]:
        assert (CHART / values_file).is_file()
