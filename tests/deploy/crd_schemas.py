"""Small JSON schemas for the custom resources the chart and deploy/argocd render.

``kubernetes-validate`` bundles the core API only; these cover the fields this repository
uses (and the ones a typo would silently disable), with unknown fields refused where the real
CRD refuses them.
"""

from __future__ import annotations

from typing import Any

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": _NAME,
        "namespace": _NAME,
        "labels": _LABELS,
        "annotations": _LABELS,
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}
_SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": _LABELS},
    "required": ["matchLabels"],
}
_STRINGS = {"type": "array", "items": {"type": "string"}, "minItems": 1}


def _resource(api_version: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", *body.get("required", [])],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            **body["properties"],
        },
        "additionalProperties": False,
    }


SERVICE_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    {
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "jobLabel": {"type": "string"},
                    "selector": _SELECTOR,
                    "namespaceSelector": {"type": "object"},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["port"],
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string", "pattern": "^/"},
                                "interval": {"type": "string", "pattern": r"^\d+[smh]$"},
                                "scheme": {"enum": ["http", "https"]},
                            },
                        },
                    },
                },
            }
        },
    },
)

KONG_PLUGIN = _resource(
    "configuration.konghq.com/v1",
    "KongPlugin",
    {
        "required": ["plugin"],
        "properties": {
            "plugin": {"enum": ["rate-limiting", "key-auth"]},
            "config": {"type": "object"},
            "disabled": {"type": "boolean"},
        },
    },
)

_MTLS_MODE = {"enum": ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]}
PEER_AUTHENTICATION = _resource(
    "security.istio.io/v1",
    "PeerAuthentication",
    {
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "selector": _SELECTOR,
                    "mtls": {
                        "type": "object",
                        "required": ["mode"],
                        "properties": {"mode": _MTLS_MODE},
                        "additionalProperties": False,
                    },
                    "portLevelMtls": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {"mode": _MTLS_MODE},
                        },
                    },
                },
            }
        },
    },
)

_SOURCE_FIELDS = ["principals", "namespaces", "ipBlocks", "notPrincipals", "notNamespaces"]
_OPERATION_FIELDS = ["ports", "paths", "methods", "hosts", "notPorts", "notPaths", "notMethods"]
AUTHORIZATION_POLICY = _resource(
    "security.istio.io/v1",
    "AuthorizationPolicy",
    {
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "selector": _SELECTOR,
                    "action": {"enum": ["ALLOW", "DENY", "AUDIT", "CUSTOM"]},
                    "rules": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "from": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {
                                            "source": {
                                                "type": "object",
                                                "additionalProperties": False,
                                                "minProperties": 1,
                                                "properties": dict.fromkeys(
                                                    _SOURCE_FIELDS, _STRINGS
                                                ),
                                            }
                                        },
                                    },
                                },
                                "to": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {
                                            "operation": {
                                                "type": "object",
                                                "additionalProperties": False,
                                                "minProperties": 1,
                                                "properties": dict.fromkeys(
                                                    _OPERATION_FIELDS, _STRINGS
                                                ),
                                            }
                                        },
                                    },
                                },
                                "when": {"type": "array"},
                            },
                        },
                    },
                },
            }
        },
    },
)

ARGO_APPLICATION = _resource(
    "argoproj.io/v1alpha1",
    "Application",
    {
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["project", "source", "destination"],
                "additionalProperties": False,
                "properties": {
                    "project": {"type": "string"},
                    "source": {
                        "type": "object",
                        "required": ["repoURL", "path", "targetRevision"],
                        "additionalProperties": False,
                        "properties": {
                            "repoURL": {"type": "string", "pattern": "^(https|ssh)://"},
                            "targetRevision": {"type": "string", "minLength": 1},
                            "path": {"type": "string"},
                            "helm": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "releaseName": {"type": "string"},
                                    "valueFiles": {"type": "array", "items": {"type": "string"}},
                                    "valuesObject": {"type": "object"},
                                },
                            },
                        },
                    },
                    "destination": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "server": {"type": "string"},
                            "name": {"type": "string"},
                            "namespace": {"type": "string"},
                        },
                    },
                    "syncPolicy": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "automated": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "prune": {"type": "boolean"},
                                    "selfHeal": {"type": "boolean"},
                                    "allowEmpty": {"type": "boolean"},
                                },
                            },
                            "syncOptions": {"type": "array", "items": {"type": "string"}},
                            "retry": {"type": "object"},
                        },
                    },
                    "ignoreDifferences": {"type": "array"},
                },
            }
        },
    },
)

CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    (s["properties"]["apiVersion"]["const"], s["properties"]["kind"]["const"]): s
    for s in [
        SERVICE_MONITOR,
        KONG_PLUGIN,
        PEER_AUTHENTICATION,
        AUTHORIZATION_POLICY,
        ARGO_APPLICATION,
    ]
}
