"""The Redis Cluster variants of the deployment (deploy/compose.cluster.yaml over
deploy/compose.yaml; the kustomize component deploy/k8s/cluster/ over deploy/k8s/, and the
pinned chart it runs Redis with), read as test_deploy_files.py reads the single-node ones:
every process is there, on a cluster URL, with one stream shard count, flushers whose shards
cover every shard exactly once, only real settings, and pinned references.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings
from tests.unit.test_deploy_files import (
    BACKGROUND,
    COMPOSE,
    DEPLOY,
    K8S,
    compose_env,
    k8s_object,
    k8s_objects,
    kustomization,
    ours,
    pinned,
    pod_spec,
    settings_from,
)

COMPOSE_CLUSTER = DEPLOY / "compose.cluster.yaml"
COMPONENT = K8S / "cluster"
CHART = COMPONENT / "redis-cluster"
# Every process of the service that talks to Redis, and the ones that do not.
REDIS_PROCESSES = ("app", "flusher")
PROCESSES = ("migrate", "app", *BACKGROUND)
_EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No CLICKTRACK_* variable and no .env file: only what a test sets counts."""
    for var in list(os.environ):
        if var.startswith("CLICKTRACK_"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


# ---- compose: the override merged onto the base as Compose merges ----


def _merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge for the keys these files use: mappings merge key by key (environment,
    depends_on, healthcheck, networks), volumes by mount target, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if key == "volumes" and key in base:
            by_target = {v.split(":")[1]: v for v in base[key]}
            by_target |= {v.split(":")[1]: v for v in value}
            merged[key] = list(by_target.values())
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


@cache
def cluster_compose() -> dict[str, Any]:
    base, override = load(COMPOSE), load(COMPOSE_CLUSTER)
    services = dict(base["services"])
    for name, service in override["services"].items():
        services[name] = _merge_service(services.get(name, {}), service)
    return {**base, "services": services, "volumes": {**base["volumes"], **override["volumes"]}}


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = cluster_compose()["services"]
    return found


def flusher_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in services().items()
        if ours(service) and service["command"] == ["python", "-m", "app.flusher"]
    }


def redis_nodes() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in services().items()
        if not ours(service) and service.get("command", [None])[0] == "redis-server"
    }


def shards_of(value: str | None) -> list[int]:
    assert value, "CLICKTRACK_FLUSHER_SHARDS must be set on every flusher of a cluster variant"
    return [int(part) for part in value.split(",")]


def cluster_seeds(url: str) -> list[str]:
    assert url.startswith("redis+cluster://"), url
    return url.removeprefix("redis+cluster://").split("/")[0].split(",")


def test_compose_cluster_runs_every_process_on_the_cluster() -> None:
    names = set(services())
    assert {*PROCESSES, "postgres", "prometheus", "grafana"} <= names
    for name, service in services().items():
        if not ours(service):
            continue
        env = compose_env(service)
        url = env["CLICKTRACK_REDIS_URL"]
        assert url is not None, name
        hosts = {seed.rsplit(":", 1)[0] for seed in cluster_seeds(url)}
        assert hosts == set(redis_nodes()), f"{name}: every node a seed, and only nodes"
        assert env["CLICKTRACK_STREAM_SHARDS"] == "12", name
        assert env["CLICKTRACK_REDIS_MIN_REPLICAS"] == "1", name
    for name in (*REDIS_PROCESSES, *flusher_services()):
        assert services()[name]["depends_on"]["redis-cluster-init"] == {
            "condition": "service_completed_successfully"
        }, name


def test_compose_cluster_flushers_cover_every_shard_once() -> None:
    flushers = flusher_services()
    assert len(flushers) >= 2, "one flusher service per group of shards"
    covered = [
        shard
        for service in flushers.values()
        for shard in shards_of(compose_env(service)["CLICKTRACK_FLUSHER_SHARDS"])
    ]
    n = int(compose_env(services()["app"])["CLICKTRACK_STREAM_SHARDS"] or 1)
    assert sorted(covered) == list(range(n))
    for name, service in flushers.items():
        assert "container_name" not in service, f"{name} must scale"
        assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "app.flusher", "--check"]
        env = compose_env(service)
        # Scraped as the base's flusher is: by the name `flusher`, on the same port.
        assert name == "flusher" or "flusher" in service["networks"]["default"]["aliases"]
        assert env["CLICKTRACK_FLUSHER_METRICS_PORT"] == "9101"
        assert env["CLICKTRACK_FLUSHER_METRICS_HOST"] == "0.0.0.0"
        assert env.keys() >= compose_env(load(COMPOSE)["services"]["flusher"]).keys()


def test_compose_cluster_is_three_primaries_with_a_replica_each() -> None:
    nodes = redis_nodes()
    assert len(nodes) == 6
    data_volumes = []
    for name, node in nodes.items():
        assert pinned(node["image"]), name
        args = node["command"]
        assert args[args.index("--cluster-enabled") + 1] == "yes", name
        assert "/usr/local/etc/redis/redis.conf" in args, f"{name}: the AOF policy of redis.conf"
        (data,) = [v.split(":")[0] for v in node["volumes"] if v.split(":")[1] == "/data"]
        data_volumes.append(data)
    assert len(set(data_volumes)) == 6 and set(data_volumes) <= set(cluster_compose()["volumes"])
    init = services()["redis-cluster-init"]
    script = init["command"][-1]
    assert "--cluster create" in script and "--cluster-replicas 1" in script
    assert init["environment"]["NODES"].split() == list(nodes)
    assert set(init["depends_on"]) == set(nodes)
    assert init["restart"] == "no"


def test_compose_cluster_images_are_pinned() -> None:
    for name, service in services().items():
        assert pinned(service["image"]), f"{name}: unpinned image {service['image']}"


def test_compose_cluster_variables_are_settings() -> None:
    fields = set(Settings.model_fields)
    unknown = {
        (name, var)
        for name, service in services().items()
        if ours(service)
        for var in compose_env(service)
        if var.startswith("CLICKTRACK_") and var.removeprefix("CLICKTRACK_").lower() not in fields
    }
    assert not unknown, f"not settings of app/settings.py: {sorted(unknown)}"


@pytest.mark.parametrize("service", ["migrate", "app", "flusher", "flusher-b", "flusher-c"])
def test_compose_cluster_values_make_valid_settings(
    clean_env: pytest.MonkeyPatch, service: str
) -> None:
    settings = settings_from(clean_env, compose_env(services()[service]))
    assert settings.redis_url.startswith("redis+cluster://")
    assert settings.stream_shards == 12


# ---- Kubernetes: the component over the base ----


def component() -> dict[str, Any]:
    return load(COMPONENT / "kustomization.yaml")


@cache
def component_objects() -> tuple[dict[str, Any], ...]:
    objects: list[dict[str, Any]] = []
    for name in component()["resources"]:
        text = (COMPONENT / name).read_text(encoding="utf-8")
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return tuple(objects)


def cluster_config_env() -> dict[str, str]:
    (path,) = [p["path"] for p in component()["patches"] if "path" in p]
    patch = load(COMPONENT / path)
    assert (patch["kind"], patch["metadata"]["name"]) == ("ConfigMap", "clicktrack-config")
    data: dict[str, str] = k8s_object("ConfigMap", "clicktrack-config")["data"]
    return {**data, **patch["data"]}


def flusher_groups() -> list[dict[str, Any]]:
    return [
        obj
        for obj in component_objects()
        if obj["kind"] == "Deployment"
        and pod_spec(obj)["containers"][0]["command"] == ["python", "-m", "app.flusher"]
    ]


def deleted() -> set[tuple[str, str]]:
    found = set()
    for patch in component()["patches"]:
        if "patch" in patch:
            doc = yaml.safe_load(patch["patch"])
            assert doc["$patch"] == "delete"
            found.add((doc["kind"], doc["metadata"]["name"]))
    return found


def test_k8s_cluster_is_a_component_with_the_base_transformers() -> None:
    assert component()["kind"] == "Component"
    base = kustomization()
    assert component()["namespace"] == base["namespace"]
    assert component()["images"] == base["images"]
    assert component()["labels"] == base["labels"]
    for obj in component_objects():
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"]


def test_k8s_cluster_runs_every_process_on_the_cluster() -> None:
    env = cluster_config_env()
    seeds = cluster_seeds(env["CLICKTRACK_REDIS_URL"])
    assert seeds and all(re.fullmatch(r"[a-z0-9.-]+:\d+", seed) for seed in seeds)
    assert env["CLICKTRACK_REDIS_MIN_REPLICAS"] == "1"
    values = load(CHART / "values.yaml")["redis-cluster"]
    name = values["redisCluster"]["name"]
    assert {seed.split(".")[0] for seed in seeds} == {f"{name}-leader", f"{name}-follower"}
    # What remains of the base plus what the component adds: web, migrations, sender, flushers.
    remaining = [o for o in k8s_objects() if (o["kind"], o["metadata"]["name"]) not in deleted()]
    commands = {
        tuple(c["command"])
        for obj in (*remaining, *component_objects())
        if obj["kind"] in ("Deployment", "StatefulSet", "Job")
        for c in pod_spec(obj)["containers"]
    }
    assert commands >= {
        ("python", "-m", "app.serve"),
        ("python", "-m", "app.cli", "migrate"),
        ("python", "-m", "app.flusher"),
        ("python", "-m", "app.sender"),
    }
    assert deleted() == {
        ("Deployment", "clicktrack-flusher"),
        ("PodDisruptionBudget", "clicktrack-flusher"),
    }
    assert all(k in {(o["kind"], o["metadata"]["name"]) for o in k8s_objects()} for k in deleted())


def test_k8s_cluster_flushers_cover_every_shard_once() -> None:
    n = int(cluster_config_env()["CLICKTRACK_STREAM_SHARDS"])
    covered = []
    for group in flusher_groups():
        (container,) = pod_spec(group)["containers"]
        (value,) = [
            e["value"] for e in container["env"] if e["name"] == "CLICKTRACK_FLUSHER_SHARDS"
        ]
        covered += shards_of(value)
        assert group["spec"]["replicas"] >= 2, "a second consumer to claim what one leaves"
    assert len(flusher_groups()) >= 2
    assert sorted(covered) == list(range(n))


def test_k8s_flusher_groups_are_the_base_flusher_plus_their_shards() -> None:
    base = k8s_object("Deployment", "clicktrack-flusher")
    (base_container,) = pod_spec(base)["containers"]
    selectors = []
    pdbs = {
        o["metadata"]["name"]: o for o in component_objects() if o["kind"] == "PodDisruptionBudget"
    }
    for group in flusher_groups():
        (container,) = pod_spec(group)["containers"]
        extra = [e for e in container["env"] if e not in base_container.get("env", [])]
        assert [e["name"] for e in extra] == ["CLICKTRACK_FLUSHER_SHARDS"]
        assert {**container, "env": base_container["env"]} == base_container
        assert {k: v for k, v in pod_spec(group).items() if k != "containers"} == {
            k: v for k, v in pod_spec(base).items() if k != "containers"
        }
        meta = group["spec"]["template"]["metadata"]
        assert meta["annotations"] == base["spec"]["template"]["metadata"]["annotations"]
        selector = group["spec"]["selector"]["matchLabels"]
        assert selector.items() <= meta["labels"].items()
        selectors.append(selector)
        pdb = pdbs[group["metadata"]["name"]]
        assert pdb["spec"]["selector"]["matchLabels"] == selector
    # No Deployment selects another's pods.
    for i, one in enumerate(selectors):
        for other in selectors[i + 1 :]:
            assert not one.items() <= other.items() and not other.items() <= one.items()


def test_k8s_cluster_variables_are_settings() -> None:
    fields = set(Settings.model_fields)
    names = set(cluster_config_env())
    for group in flusher_groups():
        names |= {e["name"] for e in pod_spec(group)["containers"][0]["env"]}
    unknown = {
        var
        for var in names
        if var.startswith("CLICKTRACK_") and var.removeprefix("CLICKTRACK_").lower() not in fields
    }
    assert not unknown, f"not settings of app/settings.py: {sorted(unknown)}"


def test_k8s_cluster_values_make_valid_settings(clean_env: pytest.MonkeyPatch) -> None:
    settings = settings_from(
        clean_env, {**cluster_config_env(), "CLICKTRACK_COOKIE_SECRET": "s" * 48}
    )
    assert settings.redis_url.startswith("redis+cluster://")
    assert settings.stream_shards == 12


# ---- the Redis Cluster: a maintained chart, pinned ----


def test_redis_cluster_is_a_pinned_maintained_chart() -> None:
    chart = load(CHART / "Chart.yaml")
    (dependency,) = chart["dependencies"]
    assert dependency["name"] == "redis-cluster"
    assert _EXACT_VERSION.match(str(dependency["version"])), "an exact version, not a range"
    assert dependency["repository"].startswith("https://")
    assert not (CHART / "templates").exists(), "no manifests of ours: the chart's only"
    values = load(CHART / "values.yaml")["redis-cluster"]
    cluster = values["redisCluster"]
    assert cluster["leader"]["replicas"] == cluster["follower"]["replicas"] == 3
    assert cluster["persistenceEnabled"] is True
    assert pinned(f"{cluster['image']}:{cluster['tag']}")
    assert {"requests", "limits"} <= set(cluster["resources"])
    config = dict(line.split(None, 1) for line in values["externalConfig"]["data"].splitlines())
    assert config["maxmemory-policy"] == "noeviction"
    assert config["appendonly"] == "yes"


def test_the_operator_install_is_pinned() -> None:
    readme = (COMPONENT / "README.md").read_text(encoding="utf-8")
    charts = dict(re.findall(r"helm upgrade --install \S+ (\S+)((?:\\\n|[^\n])*)", readme))
    assert "ot-helm/redis-operator" in charts
    for chart, rest in charts.items():
        if chart.startswith("ot-helm/"):
            version = re.search(r"--version (\S+)", rest)
            assert version and _EXACT_VERSION.match(version[1]), chart


def test_no_redis_statefulset_of_our_own() -> None:
    for path in [*COMPONENT.rglob("*.yaml"), COMPOSE_CLUSTER]:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == "StatefulSet":
                assert "redis" not in doc["metadata"]["name"], path


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (kustomize built in)")
def test_kustomize_renders_the_component_over_the_base(tmp_path: Path) -> None:
    """As an operator's overlay would use it (kustomize refuses an overlay inside its base)."""
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../deploy/k8s]\ncomponents: [../deploy/k8s/cluster]\n"
    )
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout  # fmt: skip
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert not names & deleted()
    for group in flusher_groups():
        assert ("Deployment", group["metadata"]["name"]) in names
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "clicktrack", obj["metadata"]["name"]
        if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
            for container in pod_spec(obj)["containers"]:
                assert "/" in container["image"] and pinned(container["image"])
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert config["data"] == cluster_config_env()
