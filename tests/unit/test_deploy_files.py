"""The deployment files (Dockerfile, deploy/compose.yaml, deploy/k8s/) checked against the code.

No container engine or cluster runs here, so the files are read instead: they parse, every
``CLICKTRACK_*`` variable they set is a setting with a valid value, every command they run
exists, every probe and scrape path is a route, every image is pinned, and the spool is on a
volume that outlives the container.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from pydantic import ValidationError

from app.cli import build_parser
from app.main import create_app
from app.settings import Environment, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
SECRET_TEMPLATE = K8S / "secret.example.yaml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "clicktrack.json"

# What the Grafana dashboard must chart; the names the metrics change defines.
DASHBOARD_METRICS = (
    "clicktrack_redirect_seconds",
    "clicktrack_clicks_accepted_total",
    "clicktrack_clicks_spooled_total",
    "clicktrack_clicks_replayed_total",
    "clicktrack_click_flags_total",
    "clicktrack_link_cache_total",
    "clicktrack_commit_batch_size",
    "clicktrack_commit_seconds",
    "clicktrack_stream_length",
    "clicktrack_stream_pending",
    "clicktrack_flusher_lag_seconds",
    "clicktrack_flusher_batch_size",
    "clicktrack_flusher_rows_total",
    "clicktrack_flusher_write_seconds",
    "clicktrack_flusher_retries_total",
    "clicktrack_flusher_claimed_total",
    "clicktrack_rollup_folds_total",
    "clicktrack_rollup_fold_seconds",
    "clicktrack_postback_deliveries_pending",
    "clicktrack_postback_oldest_pending_seconds",
    "clicktrack_postback_attempts_total",
)

# The processes that run beside the web app, each with its own metrics port and a liveness
# probe reading the heartbeat its event loop writes (app/core/liveness.py).
BACKGROUND = ("flusher", "sender")

WORKLOADS = ("Deployment", "StatefulSet", "Job")
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")
_PINNED_TAG = re.compile(r":v?\d+(\.\d+)+[\w.-]*$")


# ---- reading the files ----


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` as it comes out with nothing set: the default."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def ours(service: dict[str, Any]) -> bool:
    """Runs the clicktrack image (built from the Dockerfile)."""
    return "build" in service


def compose_env(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: None if v is None else interpolate(str(v)) for k, v in env.items()}


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text("utf-8"))
    return loaded


@cache
def k8s_objects() -> tuple[dict[str, Any], ...]:
    objects: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        text = (K8S / name).read_text(encoding="utf-8")
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return tuple(objects)


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    (found,) = (o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name)
    return found


def secret_template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SECRET_TEMPLATE.read_text(encoding="utf-8"))
    return loaded


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def k8s_containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container the kustomization deploys."""
    return [
        (obj, container)
        for obj in k8s_objects()
        if obj["kind"] in WORKLOADS
        for container in pod_spec(obj)["containers"]
    ]


def k8s_config_env() -> dict[str, str]:
    data: dict[str, str] = k8s_object("ConfigMap", "clicktrack-config")["data"]
    return dict(data)


@cache
def dockerfile() -> tuple[tuple[str, str], ...]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return tuple(instructions)


def dockerfile_args(keyword: str) -> list[str]:
    return [rest for kw, rest in dockerfile() if kw == keyword]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in dockerfile_args("ENV"):
        for pair in shlex.split(rest):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def base_images() -> list[str]:
    defaults = dict(
        arg.split("=", 1) for arg in dockerfile_args("ARG") if "=" in arg
    )  # build arguments with a default
    images = []
    for rest in dockerfile_args("FROM"):
        image = rest.split()[0]
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image))
    return images


def pinned(image: str) -> bool:
    """A version tag (not `latest`, not a bare major) or a digest."""
    return "@sha256:" in image or bool(_PINNED_TAG.search(image))


def pip_install_targets(text: str) -> list[str]:
    found = re.findall(r"pip install((?:\s+-[-\w]+(?:=\S+)?)*)\s+([^\s`'\"]+)", text)
    return [target for _options, target in found]


async def unrouted(paths: Iterable[str]) -> set[str]:
    """The paths that the app has no route for. A DELETE finds out
    without running a handler (405 for a route, 404 for none), so no lifespan is needed."""
    transport = httpx.ASGITransport(app=create_app(Settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as client:
        return {p for p in set(paths) if (await client.delete(p)).status_code == 404}


# ---- what every file must satisfy ----


def commands() -> list[tuple[str, list[str]]]:
    """Every command the deployment runs in the clicktrack image, with where it comes from."""
    found = [("Dockerfile CMD", json.loads(dockerfile_args("CMD")[-1]))]
    for name, service in compose_services().items():
        if ours(service):
            found.append((f"compose {name}", service["command"]))
    for workload, container in k8s_containers():
        where = f"k8s {workload['metadata']['name']}/{container['name']}"
        found.append((where, [*container["command"], *container.get("args", [])]))
    return found


@pytest.mark.parametrize(("where", "argv"), commands(), ids=[w for w, _ in commands()])
def test_every_command_exists(where: str, argv: list[str]) -> None:
    assert argv[:2] == ["python", "-m"], f"{where}: expected `python -m MODULE`: {argv}"
    module, args = argv[2], argv[3:]
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{where}: no module {module}"
    if spec.submodule_search_locations is not None:  # a package runs its __main__
        assert importlib.util.find_spec(f"{module}.__main__") is not None, where
    if module == "app.cli":
        build_parser().parse_args(args)  # an unknown subcommand exits (fails the test)
    else:
        assert args == [], f"{where}: {module} takes no arguments"


def set_variables() -> list[tuple[str, str]]:
    """(where, name) of every CLICKTRACK_* variable a deployment file sets."""
    found = [("Dockerfile", name) for name in dockerfile_env()]
    for name, service in compose_services().items():
        if ours(service):
            found += [(f"compose {name}", var) for var in compose_env(service)]
    found += [("k8s ConfigMap", var) for var in k8s_config_env()]
    found += [("k8s Secret template", var) for var in secret_template()["stringData"]]
    for workload, container in k8s_containers():
        found += [
            (f"k8s {workload['metadata']['name']}", e["name"]) for e in container.get("env", [])
        ]
    return [(where, var) for where, var in found if var.startswith("CLICKTRACK_")]


def test_every_variable_is_a_setting() -> None:
    fields = set(Settings.model_fields)
    unknown = {
        (where, var)
        for where, var in set_variables()
        if var.removeprefix("CLICKTRACK_").lower() not in fields
    }
    assert not unknown, "not settings of app/settings.py: " + ", ".join(sorted(map(str, unknown)))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No CLICKTRACK_* variable and no .env file: only what a test sets counts."""
    for var in list(os.environ):
        if var.startswith("CLICKTRACK_"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def settings_from(monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None]) -> Settings:
    for var, value in {**dockerfile_env(), **env}.items():
        if var.startswith("CLICKTRACK_") and value is not None:
            monkeypatch.setenv(var, value)
    return Settings()


@pytest.mark.parametrize("service", ["migrate", "app", "flusher", "sender"])
def test_compose_values_make_valid_settings(clean_env: pytest.MonkeyPatch, service: str) -> None:
    settings = settings_from(clean_env, compose_env(compose_services()[service]))
    assert settings.redis_url.startswith("redis://redis:")
    assert "@postgres:" in settings.database_url


def test_k8s_values_make_valid_settings(clean_env: pytest.MonkeyPatch) -> None:
    real_secret = {**secret_template()["stringData"], "CLICKTRACK_COOKIE_SECRET": "s" * 48}
    settings = settings_from(clean_env, {**k8s_config_env(), **real_secret})
    assert settings.environment is Environment.production
    assert settings.cookie_secure


def test_the_secret_placeholder_cannot_reach_production(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="COOKIE_SECRET"):
        settings_from(clean_env, {**k8s_config_env(), **secret_template()["stringData"]})


# ---- Dockerfile ----


def test_dockerfile_base_is_pinned_and_multi_stage() -> None:
    images = base_images()
    assert len(images) >= 2, "a build stage and a runtime stage"
    for image in images:
        assert pinned(image), f"unpinned base image {image}"
        assert "slim" in image
    version = re.search(r"python:(\d+)\.(\d+)", images[-1])
    assert version is not None and (int(version[1]), int(version[2])) >= (3, 11)


def test_dockerfile_runs_as_non_root() -> None:
    user = dockerfile_args("USER")[-1].split(":")[0]
    assert user not in ("", "root", "0")


async def test_dockerfile_checks_health_with_python() -> None:
    (check,) = dockerfile_args("HEALTHCHECK")
    argv = json.loads(check[check.index("CMD") + len("CMD") :])
    assert argv[:2] == ["python", "-c"] and "urllib" in argv[2] and "/healthz" in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")
    assert not await unrouted(["/healthz"])
    assert json.loads(dockerfile_args("CMD")[-1]) == ["python", "-m", "app.serve"]


def test_dockerfile_installs_as_the_readme_does() -> None:
    runs = "\n".join(dockerfile_args("RUN"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for text in (runs, readme):
        assert re.search(r"python3? -m venv ", text)
        assert "." in pip_install_targets(text), "the project itself, from pyproject.toml"
    assert pip_install_targets(runs) == ["."]
    assert "requirements" not in runs and " -r " not in runs


def test_dockerfile_serves_on_all_interfaces_with_a_spool_volume() -> None:
    env = dockerfile_env()
    assert env["CLICKTRACK_HOST"] == "0.0.0.0"
    assert env["CLICKTRACK_SPOOL_DIR"] in json.loads(dockerfile_args("VOLUME")[-1])


def test_the_installed_package_carries_its_data_files() -> None:
    """The image installs a wheel, which holds only the package data pyproject.toml lists."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
    shipped = {
        path
        for package, patterns in setuptools.get("package-data", {}).items()
        for pattern in patterns
        for path in (ROOT / package.replace(".", "/")).glob(pattern)
    }
    data_files = {
        path
        for path in (ROOT / "app").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }
    missing = sorted(str(path.relative_to(ROOT)) for path in data_files - shipped)
    assert not missing, f"add to [tool.setuptools.package-data]: {missing}"


def test_dockerignore_lets_in_what_the_dockerfile_copies() -> None:
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    for rest in dockerfile_args("COPY"):
        if "--from=" in rest:
            continue
        *sources, _dest = rest.split()
        for source in sources:
            assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"
            assert (ROOT / source).exists()


# ---- constraints.txt: the versions make run, make test and the image install ----

CONSTRAINTS = ROOT / "constraints.txt"
_CONSTRAINED = ("--constraint=constraints.txt", "-c constraints.txt")


def constraint_pins() -> dict[str, str]:
    """constraints.txt as {normalized name: version}; every line NAME==VERSION or a comment."""
    pins: dict[str, str] = {}
    for raw in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version and not re.search(r"[\s;@<>!~,]", line), f"not NAME==VERSION: {raw}"
        assert canonicalize_name(name) not in pins, f"pinned twice: {name}"
        pins[canonicalize_name(name)] = version
    return pins


def needed_packages(extras: Iterable[str] = ("dev",)) -> dict[str, str]:
    """{normalized name: installed version} of every package the project's install with
    ``extras`` pulls in, direct and transitive (read from pyproject.toml, then from each
    installed package's metadata), on this Python and platform."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    own = canonicalize_name(project["name"])
    direct = [Requirement(r) for r in project["dependencies"]]
    todo_extras, seen_extras = list(extras), set()
    while todo_extras:
        extra = todo_extras.pop()
        if extra not in seen_extras:
            seen_extras.add(extra)
            for req in map(Requirement, project["optional-dependencies"][extra]):
                if canonicalize_name(req.name) == own:  # "clicktrack[load]"
                    todo_extras.extend(req.extras)
                else:
                    direct.append(req)
    todo = [r for r in direct if r.marker is None or r.marker.evaluate({"extra": ""})]
    found: dict[str, str] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in done:
            continue
        done.add((name, frozenset(req.extras)))
        dist = metadata.distribution(name)
        found[name] = dist.version
        for sub in map(Requirement, dist.requires or []):
            wanted = req.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(sub)
    return found


def test_dockerfile_installs_with_the_constraints_file() -> None:
    instructions = list(dockerfile())
    installs = [i for i, (kw, rest) in enumerate(instructions) if "pip install" in rest]
    assert installs
    for i in installs:
        assert any(flag in instructions[i][1] for flag in _CONSTRAINED), instructions[i][1]
    copied = [
        i
        for i, (kw, rest) in enumerate(instructions)
        if kw == "COPY" and "constraints.txt" in rest.split()[:-1]
    ]
    assert copied and copied[0] < installs[0], "COPY constraints.txt before installing"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install --constraint=constraints.txt ." in readme


def test_make_installs_with_the_constraints_file() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    stamp = re.search(r"^\$\(STAMP\):([^|\n]*)", makefile, re.MULTILINE)
    assert stamp is not None
    assert {"pyproject.toml", "constraints.txt"} <= set(stamp[1].split()), "re-install on change"
    installs = [line for line in makefile.splitlines() if "-m pip install" in line]
    assert installs
    for line in installs:
        assert any(flag in line for flag in _CONSTRAINED), line
    assert re.search(r"^lock:", makefile, re.MULTILINE), "make lock writes constraints.txt"


def test_constraints_pin_every_package_the_project_needs_at_its_installed_version() -> None:
    pins = constraint_pins()
    needed = needed_packages()
    assert canonicalize_name("clicktrack") not in pins, "the project itself is not pinned"
    missing = sorted(set(needed) - set(pins))
    assert not missing, f"not in constraints.txt (run `make lock`): {missing}"
    other = {
        name: (pins[name], version)
        for name, version in needed.items()
        if Version(pins[name]) != Version(version)
    }
    assert not other, f"installed at another version than pinned (pin, installed): {other}"


def test_pyproject_holds_redis_to_the_major_the_code_is_written_for() -> None:
    """app/core/redis.py passes redis-py options of one major; another could refuse or
    reinterpret them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    (redis_req,) = (
        req
        for req in map(Requirement, project["dependencies"])
        if canonicalize_name(req.name) == "redis"
    )
    installed = Version(metadata.version("redis"))
    assert redis_req.specifier.contains(installed)
    assert not redis_req.specifier.contains(f"{installed.major + 1}.0")
    assert not redis_req.specifier.contains(f"{installed.major - 1}.99")
    assert constraint_pins()["redis"] == str(installed)


# ---- compose ----


def test_compose_runs_the_whole_stack() -> None:
    services = compose_services()
    assert set(services) >= {
        "redis", "postgres", "migrate", "app", "flusher", "sender", "prometheus", "grafana",
    }  # fmt: skip
    for name in ("app", *BACKGROUND):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert services["migrate"]["command"] == ["python", "-m", "app.cli", "migrate"]
    for name in BACKGROUND:
        assert "container_name" not in services[name], f"the {name} must scale"
    assert "CLICKTRACK_WORKERS" in compose_env(services["app"])


def test_compose_images_are_pinned() -> None:
    for name, service in compose_services().items():
        assert pinned(service["image"]), f"{name}: unpinned image {service['image']}"


def test_compose_redis_persists_with_aof() -> None:
    redis = compose_services()["redis"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in redis["volumes"]}
    conf_path = mounted["./redis/redis.conf"]
    assert conf_path in redis["command"]
    conf = dict(
        line.split(None, 1)
        for line in (DEPLOY / "redis" / "redis.conf").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_compose_spool_is_a_named_volume() -> None:
    app = compose_services()["app"]
    spool_dir = compose_env(app)["CLICKTRACK_SPOOL_DIR"]
    sources = [v.split(":")[0] for v in app["volumes"] if v.split(":")[1] == spool_dir]
    assert sources and sources[0] in compose()["volumes"]


async def test_prometheus_scrapes_the_ports_the_processes_serve() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text("utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    services = compose_services()
    expected = {
        "clicktrack-web": (
            "app",
            int(compose_env(services["app"])["CLICKTRACK_METRICS_PORT"] or 0),
        ),
    }
    for name in BACKGROUND:
        env = compose_env(services[name])
        assert env[f"CLICKTRACK_{name.upper()}_METRICS_HOST"] == "0.0.0.0"
        metrics_port = env[f"CLICKTRACK_{name.upper()}_METRICS_PORT"]
        expected[f"clicktrack-{name}"] = (name, int(metrics_port or 0))
    for job_name, (service, port) in expected.items():
        (sd,) = jobs[job_name]["dns_sd_configs"]
        assert sd["names"] == [service] and sd["port"] == port
        assert not await unrouted([jobs[job_name]["metrics_path"]])


def test_grafana_dashboard_charts_every_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )["datasources"][0]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    missing = [
        m for m in DASHBOARD_METRICS if not re.search(rf"\b{m}(_bucket|_sum|_count)?\b", exprs)
    ]
    assert not missing, f"not on the dashboard: {missing}"
    used = set(re.findall(r"\bclicktrack_\w+", exprs))
    suffixes = ("_bucket", "_sum", "_count")
    assert {m.removesuffix(s) for m in used for s in suffixes if m.endswith(s)} | {
        m for m in used if not m.endswith(suffixes)
    } <= set(DASHBOARD_METRICS), "a metric outside the agreed list"
    assert {p["datasource"]["uid"] for p in panels} == {datasource["uid"]}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


# ---- Kubernetes ----


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    listed = set(kustomization()["resources"])
    assert all((K8S / name).is_file() for name in listed)
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", SECRET_TEMPLATE.name}
    assert listed == on_disk
    for obj in k8s_objects():
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"]


def test_k8s_images_are_pinned() -> None:
    overrides = {image["name"]: image for image in kustomization()["images"]}
    for workload, container in k8s_containers():
        image = container["image"]
        if image in overrides:
            override = overrides[image]
            image = f"{override['newName']}:{override['newTag']}"
        assert pinned(image), f"{workload['metadata']['name']}: unpinned image {image}"


async def test_k8s_probes_and_scrapes_point_at_routes() -> None:
    paths = []
    web = k8s_object("StatefulSet", "clicktrack-web")
    (container,) = pod_spec(web)["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] in port_names
        paths.append(get["path"])
    for workload, _container in k8s_containers():
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            paths.append(annotations["prometheus.io/path"])
    assert not await unrouted(paths)


def test_k8s_scrape_ports_are_the_ports_served() -> None:
    workloads = [k8s_object("StatefulSet", "clicktrack-web")]
    served = {"clicktrack-web": k8s_config_env()["CLICKTRACK_METRICS_PORT"]}
    # Reachable by a scraper in the pod network; the public port answers /metrics to
    # loopback only.
    assert k8s_config_env()["CLICKTRACK_METRICS_HOST"] == "0.0.0.0"
    for name in BACKGROUND:
        workloads.append(k8s_object("Deployment", f"clicktrack-{name}"))
        served[f"clicktrack-{name}"] = k8s_config_env()[f"CLICKTRACK_{name.upper()}_METRICS_PORT"]
        assert k8s_config_env()[f"CLICKTRACK_{name.upper()}_METRICS_HOST"] == "0.0.0.0"
    for workload in workloads:
        port = workload["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]
        assert port == served[workload["metadata"]["name"]]
        ports = [p["containerPort"] for c in pod_spec(workload)["containers"] for p in c["ports"]]
        assert int(port) in ports


def test_k8s_every_container_has_requests_and_limits() -> None:
    for workload, container in k8s_containers():
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), workload["metadata"]["name"]


def test_k8s_references_resolve() -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in k8s_objects()}
    secret = secret_template()["metadata"]["name"]
    for workload, container in k8s_containers():
        for source in container["envFrom"]:
            if "configMapRef" in source:
                assert ("ConfigMap", source["configMapRef"]["name"]) in names
            else:
                assert source["secretRef"]["name"] == secret
        if workload["kind"] == "StatefulSet":
            assert ("Service", workload["spec"]["serviceName"]) in names
    hpa = k8s_object("HorizontalPodAutoscaler", "clicktrack-web")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) in names
    pod_labels = [
        o["spec"]["template"]["metadata"]["labels"] for o in k8s_objects() if o["kind"] in WORKLOADS
    ]
    for obj in k8s_objects():
        if obj["kind"] == "PodDisruptionBudget":
            selector = obj["spec"]["selector"]["matchLabels"]
        elif obj["kind"] == "Service":
            selector = obj["spec"]["selector"]
        else:
            continue
        assert any(selector.items() <= labels.items() for labels in pod_labels), obj


def test_k8s_spool_outlives_the_pod() -> None:
    web = k8s_object("StatefulSet", "clicktrack-web")
    (container,) = pod_spec(web)["containers"]
    spool_dir = k8s_config_env()["CLICKTRACK_SPOOL_DIR"]
    (mount,) = (m for m in container["volumeMounts"] if m["mountPath"] == spool_dir)
    claims = {t["metadata"]["name"] for t in web["spec"]["volumeClaimTemplates"]}
    assert mount["name"] in claims, "the spool must be a per-pod volume claim, not an emptyDir"
    assert web["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"
    assert "replicas" not in web["spec"], "the HPA owns the replica count"


def liveness_probes(name: str) -> list[tuple[str, list[str], dict[str, str | None]]]:
    """(where, argv, environment) of each liveness check the deployment runs for the
    background process ``name`` (the flusher, the sender)."""
    service = compose_services()[name]
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", "exec form: no shell in the way of the exit status"
    (container,) = pod_spec(k8s_object("Deployment", f"clicktrack-{name}"))["containers"]
    k8s_env: dict[str, str | None] = {**k8s_config_env(), "CLICKTRACK_COOKIE_SECRET": "s" * 48}
    return [
        (f"compose {name}", test[1:], compose_env(service)),
        (f"k8s {name}", container["livenessProbe"]["exec"]["command"], k8s_env),
    ]


@pytest.mark.parametrize("name", BACKGROUND)
@pytest.mark.parametrize("platform", ["compose", "k8s"])
def test_background_liveness_is_the_heartbeat_check(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, platform: str, name: str
) -> None:
    """The probe runs ``python -m app.<name> --check``, which passes on a fresh heartbeat
    and fails without one, with the deployment's own settings."""
    ((_, argv, env),) = [p for p in liveness_probes(name) if p[0] == f"{platform} {name}"]
    assert argv == ["python", "-m", f"app.{name}", "--check"]
    heartbeat = tmp_path / "heartbeat"
    probe_env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKTRACK_")}
    probe_env |= {k: v for k, v in {**dockerfile_env(), **env}.items() if v is not None}
    probe_env[f"CLICKTRACK_{name.upper()}_HEARTBEAT_FILE"] = str(heartbeat)

    def probe() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *argv[1:]], env=probe_env, cwd=tmp_path, capture_output=True,
            text=True, timeout=30, check=False,
        )  # fmt: skip

    missing = probe()
    assert missing.returncode == 1 and "no heartbeat" in missing.stderr, missing.stderr
    heartbeat.write_text(f"{time.monotonic()} 1\n")
    fresh = probe()
    assert fresh.returncode == 0, fresh.stderr


@pytest.mark.parametrize("name", BACKGROUND)
def test_k8s_background_probe_has_time_and_a_writable_heartbeat(name: str) -> None:
    workload = k8s_object("Deployment", f"clicktrack-{name}")
    (container,) = pod_spec(workload)["containers"]
    probe = container["livenessProbe"]
    assert set(probe) >= {"exec", "periodSeconds", "timeoutSeconds", "failureThreshold"}
    assert probe["timeoutSeconds"] >= 5, "a Python start-up on a busy node takes seconds"
    default = Settings.model_fields[f"{name}_heartbeat_file"].default
    heartbeat = Path(k8s_config_env().get(f"CLICKTRACK_{name.upper()}_HEARTBEAT_FILE", default))
    assert container["securityContext"]["readOnlyRootFilesystem"]
    mounts = [Path(m["mountPath"]) for m in container["volumeMounts"]]
    assert any(heartbeat.is_relative_to(mount) for mount in mounts), "a read-only file system"
    # Kubernetes restarts a stuck process, not one waiting out an outage: it only reads the
    # heartbeat, which a flusher or sender waiting for Redis or Postgres keeps writing.
    assert "tcpSocket" not in probe and "httpGet" not in probe


def test_k8s_background_workloads_match_the_flushers_hardening() -> None:
    """The sender runs as the flusher does: same pod and container security context, a
    PodDisruptionBudget, requests and limits."""
    flusher = k8s_object("Deployment", "clicktrack-flusher")
    (flusher_container,) = pod_spec(flusher)["containers"]
    for name in BACKGROUND:
        workload = k8s_object("Deployment", f"clicktrack-{name}")
        (container,) = pod_spec(workload)["containers"]
        assert pod_spec(workload)["securityContext"] == pod_spec(flusher)["securityContext"]
        assert container["securityContext"] == flusher_container["securityContext"]
        assert container["command"] == ["python", "-m", f"app.{name}"]
        pdb = k8s_object("PodDisruptionBudget", f"clicktrack-{name}")
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (kustomize built in)")
def test_kustomize_renders_pinned_images_in_one_namespace() -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert len(objects) == len(k8s_objects())
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "clicktrack", obj["metadata"]["name"]
        if obj["kind"] in WORKLOADS:
            for container in pod_spec(obj)["containers"]:
                assert "/" in container["image"] and pinned(container["image"])
