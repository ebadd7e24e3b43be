"""The deployment files, checked offline: nothing here needs a container engine or a cluster.

- Kubernetes core kinds against the API's schemas (kubernetes-validate, strict: unknown keys
  fail), custom resources against tests/unit/custom_resources.py.
- deploy/compose/compose.yaml against the Compose Specification's JSON schema.
- Cross-checks with the code: every setting a manifest sets is a field of ``Settings`` and
  parses; the KafkaTopics are exactly the contract topics with their configs; probes, the
  ServiceMonitor and healthchecks ask for routes the worker serves; the Grafana dashboard asks
  for metrics and labels that ``/metrics`` exports; the durability settings; the wiring
  between the resources (selectors, Secrets, ports, the headless Service of canonical_url).

Every check is a function that returns the problems it finds; the test asserts there are none,
and a test beside it breaks a copy of the manifest and asserts the check then finds one.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from streams.kafka.app import create_app
from streams.kafka.topics import contract_topics
from streams.observability import lag, metrics
from streams.process.web import register_routes
from streams.settings import PROCESS_TABLE, Settings
from tests.unit.custom_resources import SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "orderflow.json"
COMPOSE_SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
KUBERNETES_VERSION = "1.30.0"  # the oldest release the manifests target
IMAGE = "orderflow:"
KAFKA_IMAGE = "apache/kafka:3.9.1"
# Names a pod's env may set that are not settings: the downward API, read by other entries.
POD_FIELDS = {"POD_NAME", "POD_NAMESPACE"}

Docs = list[dict[str, Any]]


def load_k8s() -> Docs:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: Docs = []
    for name in kustomization["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / name).read_text()) if d)
    return docs


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def of_kind(docs: Docs, kind: str) -> Docs:
    return [d for d in docs if d["kind"] == kind]


def one(docs: Docs, kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def containers(docs: Docs) -> Iterator[dict[str, Any]]:
    for sts in of_kind(docs, "StatefulSet"):
        yield from sts["spec"]["template"]["spec"]["containers"]


def orderflow_containers(docs: Docs) -> list[dict[str, Any]]:
    return [c for c in containers(docs) if c["image"].startswith(IMAGE)]


def orderflow_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image", "").startswith(IMAGE)}


def env_names(container: dict[str, Any]) -> list[str]:
    return [e["name"] for e in container.get("env", [])]


def resolved_env(docs: Docs, container: dict[str, Any], pod: str) -> dict[str, str]:
    """The environment a container of pod ``pod`` in namespace orderflow starts with."""
    config = {c["metadata"]["name"]: c["data"] for c in of_kind(docs, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config[source["configMapRef"]["name"]])
    fields = {"metadata.name": pod, "metadata.namespace": "orderflow"}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], entry["value"])
        elif "fieldRef" in entry["valueFrom"]:
            env[entry["name"]] = fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[entry["name"]] = "from-a-secret"
    return env


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment with ``${VAR:-default}`` and ``${VAR:?error}`` filled in."""

    def fill(value: Any) -> str:
        return re.sub(
            r"\$\{(\w+)(?::-([^}]*)|:\?[^}]*)?\}", lambda m: m.group(2) or "x", str(value)
        )

    return {name: fill(value) for name, value in service.get("environment", {}).items()}


def settings_from(env: dict[str, str]) -> Settings:
    fields = {name.lower(): value for name, value in env.items() if name not in POD_FIELDS}
    return Settings(**fields)


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


# Kubernetes: schemas


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def core_problems(doc: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{doc['kind']} {doc['metadata']['name']}: {error.message}"]
    return []


def custom_problems(doc: dict[str, Any]) -> list[str]:
    schema = SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if schema is None:
        return [f"no schema for {doc['apiVersion']} {doc['kind']}"]
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{doc['kind']} {doc['metadata'].get('name')} at {list(e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def is_core(doc: dict[str, Any]) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    return group in ("", "apps", "policy", "batch")


def schema_problems(docs: Docs) -> list[str]:
    return [p for d in docs for p in (core_problems(d) if is_core(d) else custom_problems(d))]


def test_every_kubernetes_resource_matches_its_schema() -> None:
    docs = load_k8s()
    assert {d["kind"] for d in docs if is_core(d)} >= {
        "Namespace",
        "ConfigMap",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
    }
    assert {d["kind"] for d in docs if not is_core(d)} == {k for _, k in SCHEMAS}
    assert schema_problems(docs) == []


# Kubernetes: the wiring


def wiring_problems(docs: Docs) -> list[str]:
    problems = []
    sts = one(docs, "StatefulSet")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    selects_pods = sts["spec"]["selector"]["matchLabels"]
    if not selects_pods.items() <= pod_labels.items():
        problems.append("the StatefulSet's selector misses its pods")
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    headless = services.get(sts["spec"]["serviceName"])
    if headless is None or headless["spec"].get("clusterIP") != "None":
        problems.append("the StatefulSet's serviceName is no headless Service")
    elif not headless["spec"].get("publishNotReadyAddresses"):
        problems.append("the headless Service must publish pods that are not ready")
    ports = {p["name"] for c in containers(docs) for p in c.get("ports", [])}
    for service in services.values():
        if not service["spec"]["selector"].items() <= pod_labels.items():
            problems.append(f"Service {service['metadata']['name']} selects no worker pod")
        for port in service["spec"]["ports"]:
            if port["targetPort"] not in ports:
                problems.append(f"Service port {port['targetPort']} is no container port")
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        if pdb["spec"]["selector"]["matchLabels"] != selects_pods:
            problems.append("the PodDisruptionBudget does not select the worker pods")
    monitor = one(docs, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    monitored = [s for s in services.values() if wanted <= s["metadata"].get("labels", {}).items()]
    if not monitored:
        problems.append("the ServiceMonitor selects no Service")
    service_ports = {p["name"] for s in monitored for p in s["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        if endpoint["port"] not in service_ports:
            problems.append(f"ServiceMonitor port {endpoint['port']} is on no selected Service")
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
    worker = next(c for c in containers(docs) if c["name"] == "worker")
    data_dir = resolved_env(docs, worker, "orderflow-worker-0").get("DATA_DIR")
    if not any(
        m["name"] in claims and m["mountPath"] == data_dir for m in worker.get("volumeMounts", [])
    ):
        problems.append("the worker's DATA_DIR (RocksDB) is not on a PersistentVolumeClaim")
    for container in containers(docs):
        if "requests" not in container.get("resources", {}):
            problems.append(f"container {container['name']} has no resource requests")
    if not worker.get("readinessProbe") or not worker.get("livenessProbe"):
        problems.append("the worker needs a readiness and a liveness probe")
    return problems


def test_the_resources_are_wired_to_each_other() -> None:
    assert wiring_problems(load_k8s()) == []


def test_a_service_that_selects_nothing_fails() -> None:
    docs = load_k8s()
    for service in of_kind(docs, "Service"):
        service["spec"]["selector"] = {"app.kubernetes.io/name": "someone-else"}
    assert wiring_problems(docs)


def test_rocksdb_off_the_volume_fails() -> None:
    docs = load_k8s()
    one(docs, "ConfigMap")["data"]["DATA_DIR"] = "/tmp/data"
    assert "the worker's DATA_DIR (RocksDB) is not on a PersistentVolumeClaim" in wiring_problems(
        docs
    )


def identity_problems(docs: Docs) -> list[str]:
    """Each pod's WORKER_ID and canonical_url come from its own name in the headless Service."""
    problems = []
    sts = one(docs, "StatefulSet")
    service = sts["spec"]["serviceName"]
    name = sts["metadata"]["name"]
    for ordinal in range(sts["spec"]["replicas"]):
        pod = f"{name}-{ordinal}"
        for container in orderflow_containers(docs):
            settings = settings_from(resolved_env(docs, container, pod))
            if settings.stable_worker_id() != pod:
                problems.append(f"{container['name']} of {pod}: worker id {settings.worker_id}")
        worker = next(c for c in orderflow_containers(docs) if c["name"] == "worker")
        settings = settings_from(resolved_env(docs, worker, pod))
        wanted = f"http://{pod}.{service}.orderflow.svc.cluster.local:{settings.web_port}"
        if settings.canonical_url() != wanted:
            problems.append(f"{pod}: canonical_url {settings.canonical_url()}, not {wanted}")
        web = {p["name"]: p["containerPort"] for p in worker["ports"]}.get("web")
        if web != settings.web_port:
            problems.append(f"{pod}: WEB_PORT {settings.web_port}, container port {web}")
    return problems


def test_every_pod_has_a_stable_identity_and_address() -> None:
    assert identity_problems(load_k8s()) == []


def test_a_worker_id_not_from_the_pod_fails() -> None:
    docs = load_k8s()
    one(docs, "ConfigMap")["data"]["WORKER_ID"] = "w"
    for container in orderflow_containers(docs):
        container["env"] = [e for e in container["env"] if e["name"] != "WORKER_ID"]
    assert identity_problems(docs)


def secrets_problems(docs: Docs) -> list[str]:
    problems = []
    cluster = one(docs, "Cluster")["metadata"]["name"]
    for container in orderflow_containers(docs):
        env = {e["name"]: e for e in container.get("env", [])}
        ref = env.get("DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef", {})
        if (ref.get("name"), ref.get("key")) != (f"{cluster}-app", "uri"):
            problems.append(f"{container['name']}: DATABASE_URL not from {cluster}-app's uri")
    worker = next(c for c in orderflow_containers(docs) if c["name"] == "worker")
    token = {e["name"]: e for e in worker.get("env", [])}.get("OPERATOR_TOKEN", {})
    if "secretKeyRef" not in token.get("valueFrom", {}):
        problems.append("the worker's OPERATOR_TOKEN is not from a Secret")
    for config in of_kind(docs, "ConfigMap"):
        if {"OPERATOR_TOKEN", "DATABASE_URL", "SASL_PASSWORD"} & set(config["data"]):
            problems.append("a secret setting is in a ConfigMap")
    return problems


def test_secrets_come_from_secrets() -> None:
    assert secrets_problems(load_k8s()) == []


def test_an_operator_token_in_plain_text_fails() -> None:
    docs = load_k8s()
    worker = next(c for c in orderflow_containers(docs) if c["name"] == "worker")
    worker["env"] = [
        {"name": "OPERATOR_TOKEN", "value": "hunter2"} if e["name"] == "OPERATOR_TOKEN" else e
        for e in worker["env"]
    ]
    assert secrets_problems(docs) == ["the worker's OPERATOR_TOKEN is not from a Secret"]


# Kubernetes and compose: settings


def settings_problems_k8s(docs: Docs) -> list[str]:
    problems = []
    for config in of_kind(docs, "ConfigMap"):
        problems += [f"ConfigMap sets {n}" for n in config["data"] if n not in setting_names()]
    for container in orderflow_containers(docs):
        names = env_names(container)
        for name in names:
            if name in POD_FIELDS:
                values = " ".join(e.get("value", "") for e in container["env"])
                if f"$({name})" not in values:
                    problems.append(f"{container['name']}: {name} is read by nothing")
            elif name not in setting_names():
                problems.append(f"{container['name']} sets {name}, which is no setting")
        try:
            settings_from(resolved_env(docs, container, "orderflow-worker-0"))
        except ValueError as error:
            problems.append(f"{container['name']}: {error}")
    return problems


def settings_problems_compose(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, service in orderflow_services(compose).items():
        env = compose_env(service)
        problems += [
            f"{name} sets {n}, which is no setting" for n in env if n not in setting_names()
        ]
        try:
            settings_from(env)
        except ValueError as error:
            problems.append(f"{name}: {error}")
    return problems


def test_every_variable_set_is_a_setting_that_parses() -> None:
    assert settings_problems_k8s(load_k8s()) == []
    assert settings_problems_compose(load_compose()) == []


def test_a_misspelt_or_invalid_setting_fails() -> None:
    docs = load_k8s()
    one(docs, "ConfigMap")["data"]["KAFKA_BOOTSTRAP_SERVER"] = "kafka:9092"
    assert settings_problems_k8s(docs) == ["ConfigMap sets KAFKA_BOOTSTRAP_SERVER"]
    compose = load_compose()
    compose["services"]["worker-1"]["environment"]["LOG_FORMAT"] = "xml"
    assert settings_problems_compose(compose)


# Topics and durability


def topic_problems(docs: Docs) -> list[str]:
    problems = []
    topics = {t["metadata"]["name"]: t for t in of_kind(docs, "KafkaTopic")}
    contract = {spec.name: spec for spec in contract_topics()}
    problems += [
        f"KafkaTopic {n} is no contract topic" for n in sorted(set(topics) - set(contract))
    ]
    problems += [
        f"contract topic {n} has no KafkaTopic" for n in sorted(set(contract) - set(topics))
    ]
    config = one(docs, "ConfigMap")["data"]
    partitions = int(config["TOPIC_PARTITIONS"])
    replicas = int(config["TOPIC_REPLICATION_FACTOR"])
    kafka = one(docs, "Kafka")["metadata"]["name"]
    for name, topic in topics.items():
        spec = topic["spec"]
        if topic["metadata"].get("labels", {}).get("strimzi.io/cluster") != kafka:
            problems.append(f"KafkaTopic {name} is not labelled for the Kafka cluster {kafka}")
        if (spec.get("partitions"), spec.get("replicas")) != (partitions, replicas) or replicas < 3:
            problems.append(f"KafkaTopic {name}: partitions and replicas, not {partitions} x 3")
        settings = {k: str(v) for k, v in spec.get("config", {}).items()}
        if settings.get("min.insync.replicas") != "2":
            problems.append(f"KafkaTopic {name}: min.insync.replicas is not 2")
        if name in contract and not contract[name].config.items() <= settings.items():
            problems.append(f"KafkaTopic {name}: config differs from the contract's")
    return problems


def test_the_kafka_topics_are_the_contract_topics() -> None:
    assert topic_problems(load_k8s()) == []


def test_a_topic_outside_the_contract_or_missing_fails() -> None:
    docs = load_k8s()
    topic = copy.deepcopy(of_kind(docs, "KafkaTopic")[0])
    topic["metadata"]["name"] = "carts.event"
    docs.remove(of_kind(docs, "KafkaTopic")[0])
    docs.append(topic)
    assert len(topic_problems(docs)) == 2
    docs = load_k8s()
    of_kind(docs, "KafkaTopic")[1]["spec"]["config"]["retention.ms"] = "1000"
    assert topic_problems(docs)


def broker_config_problems(config: dict[str, Any], where: str) -> list[str]:
    wanted = {
        "default.replication.factor": "3",
        "min.insync.replicas": "2",
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
    }
    have = {k: str(v).lower() for k, v in config.items()}
    return [f"{where}: {k} must be {v}" for k, v in wanted.items() if have.get(k) != v]


def strimzi_problems(docs: Docs) -> list[str]:
    kafka = one(docs, "Kafka")
    name = kafka["metadata"]["name"]
    problems = broker_config_problems(kafka["spec"]["kafka"]["config"], f"Kafka {name}")
    if kafka["spec"]["kafka"].get("version") != KAFKA_IMAGE.rpartition(":")[2]:
        problems.append("the Kafka version differs from the compose file's and the Maven jars'")
    annotations = kafka["metadata"].get("annotations", {})
    if annotations.get("strimzi.io/kraft") != "enabled":
        problems.append("Kafka is not in KRaft mode")
    if annotations.get("strimzi.io/node-pools") != "enabled":
        problems.append("Kafka does not use node pools")
    pools = [
        pool
        for pool in of_kind(docs, "KafkaNodePool")
        if pool["metadata"].get("labels", {}).get("strimzi.io/cluster") == name
    ]
    voters = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    if voters != 3 or brokers < 3:
        problems.append(f"{voters} controllers and {brokers} brokers, not 3 and at least 3")
    plain = [li for li in kafka["spec"]["kafka"]["listeners"] if not li["tls"]]
    bootstrap = one(docs, "ConfigMap")["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    if not any(bootstrap == f"{name}-kafka-bootstrap:{li['port']}" for li in plain):
        problems.append(f"KAFKA_BOOTSTRAP_SERVERS {bootstrap} is no plain listener of {name}")
    return problems


def test_strimzi_kafka_is_a_durable_kraft_cluster() -> None:
    assert strimzi_problems(load_k8s()) == []


def test_unclean_leader_election_or_a_wrong_bootstrap_fails() -> None:
    docs = load_k8s()
    one(docs, "Kafka")["spec"]["kafka"]["config"]["unclean.leader.election.enable"] = True
    one(docs, "ConfigMap")["data"]["KAFKA_BOOTSTRAP_SERVERS"] = "kafka:9092"
    assert len(strimzi_problems(docs)) == 2


def compose_kafka_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    nodes = {n: s for n, s in compose["services"].items() if s.get("image") == KAFKA_IMAGE}
    images = {n: s.get("image", "") for n, s in compose["services"].items()}
    others = [n for n, image in images.items() if "kafka" in image and n not in nodes]
    problems += [f"{n} is not {KAFKA_IMAGE}" for n in others]
    ids: dict[str, str] = {}
    for name, service in nodes.items():
        env = {k: str(v) for k, v in compose_env(service).items()}
        kafka_config = {
            k.removeprefix("KAFKA_").lower().replace("_", "."): v
            for k, v in env.items()
            if k.startswith("KAFKA_")
        }
        problems += broker_config_problems(kafka_config, name)
        if set(env.get("KAFKA_PROCESS_ROLES", "").split(",")) != {"broker", "controller"}:
            problems.append(f"{name} is not both broker and controller")
        ids[env.get("KAFKA_NODE_ID", "")] = name
        voters = dict(
            v.split("@") for v in env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "").split(",")
        )
        if {i: h.partition(":")[0] for i, h in voters.items()} != {
            compose_env(s)["KAFKA_NODE_ID"]: n for n, s in nodes.items()
        }:
            problems.append(f"{name}: the quorum voters are not the three nodes")
    if len(ids) != 3 or len({compose_env(s).get("CLUSTER_ID") for s in nodes.values()}) != 1:
        problems.append("not three nodes with distinct ids in one cluster")
    for name, service in orderflow_services(compose).items():
        env = compose_env(service)
        hosts = {h.partition(":")[0] for h in env.get("KAFKA_BOOTSTRAP_SERVERS", "").split(",")}
        if not hosts or not hosts <= set(nodes):
            problems.append(f"{name}: KAFKA_BOOTSTRAP_SERVERS is not the cluster's nodes")
        if env.get("TOPIC_REPLICATION_FACTOR") != "3":
            problems.append(f"{name}: TOPIC_REPLICATION_FACTOR is not 3")
    return problems


def test_the_compose_cluster_is_three_durable_kraft_nodes() -> None:
    assert compose_kafka_problems(load_compose()) == []


def test_a_compose_node_with_min_isr_1_or_off_the_quorum_fails() -> None:
    compose = load_compose()
    compose["services"]["kafka-2"]["environment"]["KAFKA_MIN_INSYNC_REPLICAS"] = "1"
    compose["services"]["kafka-3"]["environment"]["KAFKA_NODE_ID"] = "4"
    assert len(compose_kafka_problems(compose)) >= 2


# Compose: the schema and the processes


def compose_schema_problems(compose: dict[str, Any]) -> list[str]:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]


def test_the_compose_file_matches_the_compose_spec() -> None:
    assert compose_schema_problems(load_compose()) == []


def test_a_misspelt_compose_key_fails() -> None:
    compose = load_compose()
    compose["services"]["setup"]["depends_on"]["kafka-1"]["condition"] = "service_ready"
    compose["services"]["worker-1"]["enviroment"] = {}
    assert len(compose_schema_problems(compose)) == 2


def compose_process_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    services = orderflow_services(compose)
    setup = services.get("setup", {})
    command = " ".join(setup.get("command", []))
    if "streams.kafka.admin topics" not in command or "migrate" not in command:
        problems.append("the setup job does not create the topics and migrate")
    workers = {
        n: s for n, s in services.items() if "streams.process.worker" in s.get("command", [])
    }
    runners = {
        n: s for n, s in services.items() if "streams.modules.runner" in s.get("command", [])
    }
    if not workers or len(workers) != len(runners):
        problems.append(f"{len(workers)} workers and {len(runners)} module runners")
    for group in (workers, runners):
        ids = [compose_env(s).get("WORKER_ID") for s in group.values()]
        if None in ids or len(set(ids)) != len(ids):
            problems.append(f"WORKER_ID not set and distinct: {ids}")
    for name, service in workers.items():
        env = compose_env(service)
        if env.get("WORKER_RUNS_MODULES") != "false":
            problems.append(f"{name} runs the modules too, beside its runner")
        if env.get("WEB_HOST") != name:
            problems.append(f"{name}: WEB_HOST {env.get('WEB_HOST')} is not its own name")
        if not any(v.endswith(":" + env.get("DATA_DIR", "?")) for v in service.get("volumes", [])):
            problems.append(f"{name}: DATA_DIR (RocksDB) is not on a volume")
    for name, service in {**workers, **runners}.items():
        condition = service.get("depends_on", {}).get("setup", {}).get("condition")
        if condition != "service_completed_successfully":
            problems.append(f"{name} does not wait for the setup job")
    return problems


def test_the_compose_workers_runners_and_setup_job() -> None:
    assert compose_process_problems(load_compose()) == []


def test_two_workers_with_one_worker_id_fail() -> None:
    compose = load_compose()
    compose["services"]["worker-2"]["environment"]["WORKER_ID"] = "worker-1"
    assert compose_process_problems(compose)


# Routes: probes, healthchecks, the ServiceMonitor


@cache
def worker_routes() -> tuple[str, ...]:
    """The paths the worker's web server serves: ours, and Faust's own blueprints (on an app
    made as the worker makes its own, without importing the worker, which asks Kafka first)."""
    settings = Settings()
    app = create_app(settings, app_id="manifest-routes")
    table = app.Table(
        PROCESS_TABLE, key_type=bytes, value_type=bytes, partitions=settings.topic_partitions
    )
    register_routes(app, table, settings)
    app.web.blueprints.apply(app.web)
    return tuple(app.web.views)


def served(path: str) -> bool:
    path = path.partition("?")[0]
    patterns = (re.sub(r"\{\w+\}", "[^/]+", route) for route in worker_routes())
    return any(re.fullmatch(p, path) for p in patterns)


def route_problems(docs: Docs, compose: dict[str, Any]) -> list[str]:
    problems = []
    for container in orderflow_containers(docs):
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        runs = " ".join(container["command"])
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = container.get(kind, {}).get("httpGet")
            if get is None:
                continue
            if "streams.process.worker" in runs and not served(get["path"]):
                problems.append(f"{container['name']} {kind}: the worker serves no {get['path']}")
            if "streams.modules.runner" in runs and (
                get["path"] != "/metrics" or f"--metrics-port {ports.get(get['port'])}" not in runs
            ):
                problems.append(f"{container['name']} {kind}: not the runner's metrics port")
    for endpoint in one(docs, "ServiceMonitor")["spec"]["endpoints"]:
        if endpoint.get("path") != "/metrics" or not served(endpoint["path"]):
            problems.append(f"ServiceMonitor scrapes {endpoint.get('path')}, not /metrics")
    for name, service in orderflow_services(compose).items():
        test = " ".join(service.get("healthcheck", {}).get("test", []))
        for url in re.findall(r"http://[^/'\"]+(/[^'\" ]*)", test):
            if not served(url):
                problems.append(f"{name} healthcheck: the worker serves no {url}")
    return problems


def test_probes_and_scrapes_ask_for_routes_that_exist() -> None:
    assert route_problems(load_k8s(), load_compose()) == []


def test_a_probe_on_a_missing_route_fails() -> None:
    docs = load_k8s()
    worker = next(c for c in orderflow_containers(docs) if c["name"] == "worker")
    worker["readinessProbe"]["httpGet"]["path"] = "/healthz"
    compose = load_compose()
    compose["services"]["worker-1"]["healthcheck"]["test"][-1] = (
        "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/ready')"
    )
    problems = route_problems(docs, compose)
    assert "worker readinessProbe: the worker serves no /healthz" in problems
    assert "worker-1 healthcheck: the worker serves no /ready" in problems


# Grafana


def exported_metrics() -> dict[str, set[str]]:
    """Every metric name ``GET /metrics`` exports (workers and runners), with its labels."""
    found: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, metrics.Counter):
            found[f"{value._name}_total"] = set(value._labelnames)
    gauges = [
        *metrics.ProcessStates(app=None, table=None).collect(),
        *lag.ConsumerLag(Settings(), {}).collect(),
    ]
    for family in gauges:
        found[family.name] = set(family._labelnames)  # type: ignore[attr-defined]
    return found


PROMQL_WORDS = set(
    [
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "by",
        "without",
        "rate",
        "irate",
        "increase",
        "topk",
        "bottomk",
        "histogram_quantile",
        "clamp_min",
        "on",
        "ignoring",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
    ]
)


def expression_problems(expr: str, exported: dict[str, set[str]]) -> list[str]:
    text = re.sub(r'"[^"]*"', "", expr)
    matchers = re.findall(r"\{([^}]*)\}", text)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    grouping = re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", text)) - PROMQL_WORDS
    problems = [f"{expr}: {n} is no exported metric" for n in sorted(names - set(exported))]
    labels = {x.strip() for g in grouping for x in g.split(",") if x.strip()}
    labels |= {m.split("=")[0].strip(" !~") for ms in matchers for m in ms.split(",") if m}
    known = set().union(*(exported.get(n, set()) for n in names)) | {"job", "instance"}
    problems += [f"{expr}: no metric in it has the label {x}" for x in sorted(labels - known)]
    if not names:
        problems.append(f"{expr}: no metric")
    return problems


def dashboard_problems(dashboard: dict[str, Any]) -> list[str]:
    exported = exported_metrics()
    problems = []
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            problems += expression_problems(target["expr"], exported)
            used |= set(re.findall(r"[a-z_]+", target["expr"])) & set(exported)
    wanted = {
        "processes",
        "transitions_total",
        "consumer_lag",
        "dead_letters_total",
        "timeouts_fired_total",
    }
    problems += [f"no panel shows {n}" for n in sorted(wanted - used)]
    return problems


def test_the_dashboard_charts_metrics_that_are_exported() -> None:
    exported = exported_metrics()
    assert {"processes", "transitions_total", "consumer_lag"} <= set(exported)
    assert dashboard_problems(load_dashboard()) == []


def test_a_dashboard_metric_or_label_that_does_not_exist_fails() -> None:
    dashboard = load_dashboard()
    dashboard["panels"][0]["targets"][0]["expr"] = "sum by (state) (orders_total)"
    expr = dashboard["panels"][1]["targets"][0]["expr"] = (
        "sum by (topic) (rate(transitions_total[5m]))"
    )
    problems = dashboard_problems(dashboard)
    assert "sum by (state) (orders_total): orders_total is no exported metric" in problems
    assert f"{expr}: no metric in it has the label topic" in problems
    assert "no panel shows processes" in problems


# The image


def dockerfile_problems(dockerfile: str, dockerignore: str) -> list[str]:
    problems = []
    stages = re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", dockerfile, re.M | re.I)
    if len(stages) < 2:
        problems.append("the Dockerfile is not multi-stage")
    final = dockerfile.split("\nFROM ")[-1]
    users = re.findall(r"^USER\s+(\S+)", final, re.M)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the image runs as root")
    if not re.search(r"pip install[^\n]*-c constraints\.txt", dockerfile):
        problems.append("pip does not install with -c constraints.txt")
    if "COPY --from=" not in final:
        problems.append("the runtime stage copies nothing from the build stage")
    ignored = {line.strip() for line in dockerignore.splitlines() if line.strip()}
    problems += [f".dockerignore keeps {p}" for p in (".git", ".venv", ".data") if p not in ignored]
    needed = {"pyproject.toml", "constraints.txt", "README.md", "streams", "aggregates"}
    problems += [f".dockerignore drops {p}, which the build needs" for p in needed & ignored]
    return problems


def test_the_image_is_multi_stage_non_root_and_pinned() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile_problems(dockerfile, (ROOT / ".dockerignore").read_text()) == []


def test_a_root_image_unpinned_fails() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    broken = dockerfile.replace("USER 10001:10001", "USER root").replace("-c constraints.txt", "")
    assert len(dockerfile_problems(broken, ".git\n.venv\n.data\n")) == 2


@pytest.mark.parametrize(
    "check",
    [core_problems, custom_problems],
    ids=["core", "custom"],
)
def test_a_schema_break_fails(check: Callable[[dict[str, Any]], list[str]]) -> None:
    docs = load_k8s()
    if check is core_problems:
        doc = one(docs, "StatefulSet")
        doc["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    else:
        doc = one(docs, "KafkaNodePool")
        doc["spec"]["roles"] = ["broker", "zookeeper"]
    assert check(doc)
