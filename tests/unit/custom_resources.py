"""Schemas of the custom resources in deploy/k8s/, for tests/unit/test_manifests.py.

No package here ships the Strimzi, CloudNativePG or prometheus-operator CRDs, so these are
written by hand after the operators' CRDs (Strimzi 0.47 ``kafka.strimzi.io/v1beta2``,
CloudNativePG 1.25 ``postgresql.cnpg.io/v1``, prometheus-operator 0.80
``monitoring.coreos.com/v1``): the fields the manifests use, with the CRDs' types, enums,
bounds and required fields, closed to every other key (where the CRDs are open, such as a
Kafka ``config``, so are these). A typo, a wrong type or a value the operator refuses fails;
a field these do not know must be added here, after the CRD, before a manifest can use it.
"""

from __future__ import annotations

from typing import Any


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_STRING: dict[str, Any] = {"type": "string"}
_BOOL: dict[str, Any] = {"type": "boolean"}
_LABELS: dict[str, Any] = {"type": "object", "additionalProperties": _STRING}
_QUANTITY: dict[str, Any] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
}
_RESOURCES = _closed(
    {
        "requests": {"type": "object", "additionalProperties": _QUANTITY},
        "limits": {"type": "object", "additionalProperties": _QUANTITY},
    }
)
_METADATA = _closed(
    {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": _STRING,
        "labels": _LABELS,
        "annotations": _LABELS,
    },
    required=("name",),
)


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _closed(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
        required=("apiVersion", "kind", "metadata", "spec"),
    )


# Strimzi

_VOLUME = _closed(
    {
        "id": {"type": "integer", "minimum": 0},
        "type": {"enum": ["ephemeral", "persistent-claim"]},
        "size": _STRING,
        "class": _STRING,
        "deleteClaim": _BOOL,
        "kraftMetadata": {"enum": ["shared"]},
    },
    required=("type",),
)
_NODE_POOL = _resource(
    "kafka.strimzi.io/v1beta2",
    "KafkaNodePool",
    _closed(
        {
            "replicas": {"type": "integer", "minimum": 0},
            "roles": {
                "type": "array",
                "items": {"enum": ["controller", "broker"]},
                "minItems": 1,
                "uniqueItems": True,
            },
            "storage": _closed(
                {
                    "type": {"enum": ["ephemeral", "persistent-claim", "jbod"]},
                    "volumes": {"type": "array", "items": _VOLUME},
                },
                required=("type",),
            ),
            "resources": _RESOURCES,
        },
        required=("replicas", "roles", "storage"),
    ),
)
_LISTENER = _closed(
    {
        "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
        "port": {"type": "integer", "minimum": 9092},
        "type": {
            "enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]
        },
        "tls": _BOOL,
    },
    required=("name", "port", "type", "tls"),
)
_KAFKA = _resource(
    "kafka.strimzi.io/v1beta2",
    "Kafka",
    _closed(
        {
            "kafka": _closed(
                {
                    "version": _STRING,
                    "metadataVersion": _STRING,
                    "listeners": {"type": "array", "items": _LISTENER, "minItems": 1},
                    "config": {"type": "object"},
                },
                required=("listeners",),
            ),
            "entityOperator": _closed(
                {"topicOperator": {"type": "object"}, "userOperator": {"type": "object"}}
            ),
        },
        required=("kafka",),
    ),
)
_TOPIC = _resource(
    "kafka.strimzi.io/v1beta2",
    "KafkaTopic",
    _closed(
        {
            "partitions": {"type": "integer", "minimum": 1},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
            "config": {"type": "object"},
            "topicName": _STRING,
        }
    ),
)

# CloudNativePG

_CLUSTER = _resource(
    "postgresql.cnpg.io/v1",
    "Cluster",
    _closed(
        {
            "instances": {"type": "integer", "minimum": 1},
            "imageName": _STRING,
            "primaryUpdateStrategy": {"enum": ["supervised", "unsupervised"]},
            "bootstrap": _closed(
                {"initdb": _closed({"database": _STRING, "owner": _STRING, "secret": _LABELS})}
            ),
            "storage": _closed({"size": _STRING, "storageClass": _STRING}),
            "resources": _RESOURCES,
            "monitoring": _closed({"enablePodMonitor": _BOOL}),
        },
        required=("instances",),
    ),
)

# prometheus-operator

_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
    r"(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_SERVICE_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    _closed(
        {
            "selector": _closed({"matchLabels": _LABELS}),
            "endpoints": {
                "type": "array",
                "items": _closed(
                    {
                        "port": _STRING,
                        "path": _STRING,
                        "interval": _DURATION,
                        "scrapeTimeout": _DURATION,
                        "scheme": {"enum": ["http", "https"]},
                    }
                ),
            },
        },
        required=("selector",),
    ),
)

SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    (schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"]): schema
    for schema in (_NODE_POOL, _KAFKA, _TOPIC, _CLUSTER, _SERVICE_MONITOR)
}
"""The schema of each custom resource, by (apiVersion, kind)."""
