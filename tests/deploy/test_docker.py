"""deploy/docker: the two images and the single-host compose stack, checked statically; and
`docker compose config` where the compose plugin is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.manifests import DEPLOY, ROOT, image_is_pinned, load_all

DOCKER = DEPLOY / "docker"
COMPOSE = DOCKER / "docker-compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
# Images without a shell or probe tool: their health is that they started.
NO_HEALTHCHECK = {"otel-collector", "tempo", "promtail", "temporal-ui"}


def compose() -> dict[str, Any]:
    (doc,) = load_all(COMPOSE.read_text())
    return doc


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize(
    ("name", "probe"), [("gateway", "/healthz"), ("worker", "SOMA_METRICS_PORT")]
)
def test_dockerfile(name: str, probe: str) -> None:
    steps = instructions(DOCKER / f"Dockerfile.{name}")
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for w, a in steps if w == "ARG" and "=" in a}
    froms = [a for w, a in steps if w == "FROM"]
    assert len(froms) >= 2, "multi-stage: build, then runtime"
    for base in froms:
        image = base.split()[0]
        image = args.get(image.strip("${}"), image)
        assert image.startswith("python:3.11-slim"), base
        assert image_is_pinned(image), base
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    users = [a for w, a in final if w == "USER"]
    assert users, "the runtime stage sets a USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert any(w == "COPY" and "--from=build" in a for w, a in final)
    health = [a for w, a in final if w == "HEALTHCHECK"]
    assert len(health) == 1
    assert probe in health[0]
    installs = [a for w, a in steps if w == "RUN" and "pip install" in a]
    assert any('pip install ".[qdrant]"' in a for a in installs)
    assert not any(re.search(r"\[(dev|test)", a) for a in installs), "no dev dependencies"
    for w, a in steps:
        if w == "COPY" and "--from" not in a:
            for source in a.split()[:-1]:
                assert (ROOT / source).exists(), source
    ignore = (DOCKER / f"Dockerfile.{name}.dockerignore").read_text()
    assert "!src/" in ignore


def test_compose_stack_is_complete() -> None:
    services = compose()["services"]
    for expected in [
        "gateway",
        "worker",
        "temporal",
        "postgresql",
        "redis",
        "qdrant",
        "nats",
        "otel-collector",
        "prometheus",
        "grafana",
        "loki",
        "tempo",
    ]:
        assert expected in services
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal"]["environment"]["DB"].startswith("postgres")
    assert "-js" in services["nats"]["command"]
    assert services["gateway"]["command"] == ["serve", "--no-worker"]


def test_compose_images_healthchecks_and_dependencies() -> None:
    services = compose()["services"]
    for name, service in services.items():
        image = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", service["image"])
        assert image_is_pinned(image), (name, service["image"])
        if name not in NO_HEALTHCHECK:
            assert "test" in service.get("healthcheck", {}), f"{name} has no healthcheck"
        for dep, condition in service.get("depends_on", {}).items():
            assert dep in services, (name, dep)
            wanted = condition["condition"]
            assert wanted in {"service_healthy", "service_started"}
            if wanted == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
    for soma in ("gateway", "worker"):
        deps = services[soma]["depends_on"]
        for infra in ("postgresql", "temporal", "redis", "nats", "qdrant"):
            assert deps[infra]["condition"] == "service_healthy"


def test_compose_soma_environment() -> None:
    from soma.settings import Settings

    known = {f"SOMA_{name.upper()}" for name in Settings.model_fields}
    services = compose()["services"]
    for name in ("gateway", "worker"):
        env = services[name]["environment"]
        assert set(env) <= known, set(env) - known
        assert env["SOMA_TEMPORAL_ADDRESS"] == "temporal:7233"
        assert env["SOMA_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["SOMA_EVENT_EXPORT"] == "nats"
        assert env["SOMA_OTEL_EXPORTER"] == "otlp"
        assert env["SOMA_LOG_FORMAT"] == "json"
        assert env["SOMA_SECRET_KEY"].startswith("${SOMA_SECRET_KEY:?")
    assert services["worker"]["environment"]["SOMA_METRICS_PORT"] == "9464"


def test_compose_mounts_exist_and_env_example_covers_every_variable() -> None:
    text = COMPOSE.read_text()
    for service in compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), source
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    example = env_example()
    assert required <= set(example), required - set(example)
    for key, value in example.items():
        if any(word in key for word in ("SECRET", "PASSWORD", "KEY")):
            assert value.startswith("change-me"), f"{key}: placeholders only in .env.example"


def test_docker_compose_config() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker CLI not installed")
    version = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False
    )
    if version.returncode != 0:
        pytest.skip("the docker compose plugin is not installed (`docker compose version` fails)")
    done = subprocess.run(
        [docker, "compose", "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
