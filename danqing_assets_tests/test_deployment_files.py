"""The deployment in docker/: what can be checked without a container engine or a cluster.

* compose.yaml against the Compose Specification's JSON schema (shipped by PyPI's
  check-jsonschema), plus Debian's `docker-compose config` where that binary exists, plus
  the wiring between the files (environment, queues, GPU reservation, config paths);
* docker/workspace.yaml through `dagster definitions validate` against a real code server
  started with the compose service's own command;
* docker/celery.yaml through dagster-celery's own config validation;
* helm/values.yaml against the schema derived from the chart's documented keys, and the
  GPU step's tags through dagster-k8s's own Job builder.
docker/dagster.yaml is loaded against a real PostgreSQL in test_postgres_storage.py.
"""

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import jsonschema
import yaml

from danqing_assets.definitions import ALL_ASSETS
from danqing_assets.gpu import CELERY_GPU_QUEUE, GPU_TAG
from danqing_assets_tests.dagster_dev import _EXEC_WITH_DEFAULT_SIGNALS, free_port, group_alive

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
BIN = Path(sys.executable).parent
DAGSTER_SERVICES = {"user-code", "webserver", "daemon", "celery-worker", "celery-worker-gpu"}


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def env_names(value) -> set[str]:
    """Every `{env: NAME}` a Dagster config file reads."""
    if isinstance(value, dict):
        if set(value) == {"env"}:
            return {value["env"]}
        return set().union(*(env_names(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(env_names(v) for v in value)) if value else set()
    return set()


def compose_schema_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_compose_file_is_valid_compose_and_the_services_are_wired_together():
    checked = compose_schema_check(COMPOSE)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    docker_compose = shutil.which("docker-compose")
    if docker_compose:  # Debian's docker-compose 1.29 resolves and checks the file without an engine
        rendered = subprocess.run([docker_compose, "-f", str(COMPOSE), "config"], capture_output=True, text=True,
                                  timeout=120, cwd=DOCKER)
        assert rendered.returncode == 0, rendered.stderr
        gpu = yaml.safe_load(rendered.stdout)["services"]["celery-worker-gpu"]
        assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]

    services = load_yaml(COMPOSE)["services"]
    assert DAGSTER_SERVICES | {"postgres", "minio", "minio-init", "redis"} <= set(services)
    assert re.fullmatch(r"\$\{MINIO_IMAGE:-minio/minio:[^}]+\}", services["minio"]["image"])  # the real MinIO image
    assert "--ignore-existing" in services["minio-init"]["command"][0]  # the bucket is created idempotently

    # every variable the instance and Celery configs read is set in every Dagster container
    needed = env_names(load_yaml(DOCKER / "dagster.yaml")) | env_names(load_yaml(DOCKER / "celery.yaml"))
    assert {"DAGSTER_POSTGRES_HOST", "DANQING_CELERY_BROKER_URL"} <= needed
    for name in DAGSTER_SERVICES:
        env = services[name]["environment"]
        assert needed <= set(env), f"{name} lacks {needed - set(env)}"
        assert env["DANQING_STORAGE_KIND"] == "s3" and env["DANQING_S3_ENDPOINT"] == "minio:9000"
        assert env["DAGSTER_POSTGRES_HOST"] == "postgres" and env["DANQING_CELERY_BROKER_URL"].startswith("redis://redis:")

    def queues(service: str) -> list[str]:
        command = services[service]["command"]
        assert command[:5] == ["dagster-celery", "worker", "start", "-A", "dagster_celery.app"]
        assert command[command.index("-y") + 1] == "/opt/dagster/celery.yaml"
        return [command[i + 1] for i, arg in enumerate(command) if arg == "-q"]

    assert queues("celery-worker") == ["dagster"]
    assert queues("celery-worker-gpu") == [CELERY_GPU_QUEUE]
    devices = services["celery-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert all("deploy" not in services[name] for name in DAGSTER_SERVICES - {"celery-worker-gpu"})

    # the code server serves the repository's code location; webserver and daemon read the deployment workspace
    target = load_yaml(REPO / "workspace.yaml")["load_from"][0]["python_module"]
    command = services["user-code"]["command"]
    assert command[command.index("-m") + 1] == target["module_name"]
    assert command[command.index("-a") + 1] == target["attribute"]
    grpc = load_yaml(DOCKER / "workspace.yaml")["load_from"][0]["grpc_server"]
    assert (grpc["host"], grpc["port"]) == ("user-code", int(command[command.index("-p") + 1]))
    for name in ("webserver", "daemon"):
        assert "/opt/dagster/workspace.yaml" in services[name]["command"]

    # the Dockerfile puts those files where the services look for them, from sources that exist
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "COPY docker/dagster.yaml /opt/dagster/home/dagster.yaml" in dockerfile
    assert "COPY docker/workspace.yaml docker/celery.yaml /opt/dagster/" in dockerfile
    for line in re.findall(r"^COPY (.+)$", dockerfile, flags=re.M):
        for source in line.split()[:-1]:
            assert (REPO / source).exists(), f"Dockerfile copies missing {source}"


def test_the_compose_schema_check_rejects_a_broken_file(tmp_path):
    broken = load_yaml(COMPOSE)
    gpu = broken["services"]["celery-worker-gpu"]
    gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] = "gpu"  # must be a list
    gpu["gpu_count"] = 1  # no such service key
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    checked = compose_schema_check(path)
    assert checked.returncode != 0
    assert "capabilities" in checked.stdout and "gpu_count" in checked.stdout


def test_deployment_versions_match_the_installed_dagster():
    from importlib.metadata import version

    pins = dict(re.findall(r"^([a-z0-9-]+)(?:\[\w+\])?==(\S+)", (DOCKER / "requirements-deploy.txt").read_text(), re.M))
    assert set(pins) == {"dagster-postgres", "dagster-celery", "dagster-k8s"}
    for package, pinned in pins.items():
        assert version(package) == pinned, package
    assert version("dagster") == "1.13.27" and set(pins.values()) == {"0.29.27"}


def test_celery_worker_config_is_valid_and_equals_the_executors(monkeypatch):
    from dagster_celery.cli import get_validated_config

    from danqing_assets.celery_executor import celery_executor_config
    from danqing_assets.settings import get_settings

    services = load_yaml(COMPOSE)["services"]
    for key in ("DANQING_CELERY_BROKER_URL", "DANQING_CELERY_BACKEND_URL"):
        monkeypatch.setenv(key, services["celery-worker-gpu"]["environment"][key])
    get_settings.cache_clear()
    worker = get_validated_config(str(DOCKER / "celery.yaml"))
    assert worker["broker"] == "redis://redis:6379/0" and worker["backend"] == "redis://redis:6379/1"
    executor = celery_executor_config(resolve_env=True)
    assert {k: worker[k] for k in executor} == executor


def test_deployment_workspace_validates_against_a_real_code_server(tmp_path):
    """docker/workspace.yaml names the compose service `user-code`; here the same command serves on 127.0.0.1."""
    command = load_yaml(COMPOSE)["services"]["user-code"]["command"]
    port = free_port()
    command = [str(BIN / command[0]), *command[1:]]
    command[command.index("-h") + 1] = "127.0.0.1"
    command[command.index("-p") + 1] = str(port)
    workspace = load_yaml(DOCKER / "workspace.yaml")
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=port)
    local_workspace = tmp_path / "workspace.yaml"
    local_workspace.write_text(yaml.safe_dump(workspace))
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    log_path = tmp_path / "code-server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-c", _EXEC_WITH_DEFAULT_SIGNALS, *command], cwd=tmp_path, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while subprocess.run([str(BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True, env=env, timeout=60).returncode != 0:
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "code server not healthy in 180 s:\n" + log_path.read_text()
            time.sleep(1)
        validated = subprocess.run([str(BIN / "dagster"), "definitions", "validate", "-w", str(local_workspace)],
                                   capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert validated.returncode == 0, validated.stdout + validated.stderr
        assert "Validation successful for code location danqing_assets" in validated.stderr + validated.stdout

        # the check can fail: a workspace naming a port nothing serves is refused
        workspace["load_from"][0]["grpc_server"]["port"] = free_port()
        local_workspace.write_text(yaml.safe_dump(workspace))
        refused = subprocess.run([str(BIN / "dagster"), "definitions", "validate", "-w", str(local_workspace)],
                                 capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert refused.returncode != 0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        deadline = time.monotonic() + 10
        while group_alive(server.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not group_alive(server.pid), "code server processes left running"


HELM_VALUES = DOCKER / "helm" / "values.yaml"
HELM_SCHEMA = DOCKER / "helm" / "values.schema.json"


def test_helm_values_match_the_chart_keys_and_serve_the_code_location():
    values = load_yaml(HELM_VALUES)
    validator = jsonschema.Draft7Validator(json.loads(HELM_SCHEMA.read_text()))
    assert list(validator.iter_errors(values)) == []

    deployment = values["dagster-user-deployments"]["deployments"][0]
    target = load_yaml(REPO / "workspace.yaml")["load_from"][0]["python_module"]
    args = deployment["codeServerArgs"]
    assert (args[args.index("-m") + 1], args[args.index("-a") + 1]) == (target["module_name"], target["attribute"])
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["DANQING_STORAGE_KIND"] == "s3"
    assert "DANQING_S3_SECRET_KEY" not in env  # comes from the secret, not the values file

    # the schema catches typos and wrong types
    typo = copy.deepcopy(values)
    typo["runLauncher"]["config"]["k8sRunLauncher"]["envVar"] = []
    wrong_type = copy.deepcopy(values)
    wrong_type["dagster-user-deployments"]["deployments"][0]["port"] = "3030"
    missing = copy.deepcopy(values)
    del missing["runLauncher"]["config"]["k8sRunLauncher"]
    for broken in (typo, wrong_type, missing):
        assert list(validator.iter_errors(broken)), broken


def test_the_gpu_step_asks_kubernetes_for_a_gpu_and_cpu_steps_do_not():
    """dagster-k8s builds each step's Job from the step's tags (k8s job executor); no cluster needed for that."""
    from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

    job_config = DagsterK8sJobConfig(job_image="registry.example.internal/danqing-assets:0.1.0",
                                     dagster_home="/opt/dagster/dagster_home", image_pull_policy="IfNotPresent",
                                     instance_config_map="danqing-dagster-instance")

    def step_job(op: dg.OpDefinition):
        user_config = get_user_defined_k8s_config(op.tags)
        return construct_dagster_k8s_job(job_config, ["dagster", "api", "execute_step"], f"dagster-step-{op.name[:20]}",
                                         user_defined_k8s_config=user_config)

    seen_gpu = seen_cpu = False
    for asset in ALL_ASSETS:
        node = asset.node_def
        for op in (node.iterate_op_defs() if isinstance(node, dg.GraphDefinition) else [node]):
            pod = step_job(op).spec.template.spec
            resources = pod.containers[0].resources
            limits = (resources.limits if resources else None) or {}
            if op.tags.get(GPU_TAG) == "true":
                seen_gpu = True
                assert limits.get("nvidia.com/gpu") == "1" and resources.requests.get("nvidia.com/gpu") == "1"
                assert any(t.key == "nvidia.com/gpu" for t in pod.tolerations)
            else:
                seen_cpu = True
                assert "nvidia.com/gpu" not in limits
    assert seen_gpu and seen_cpu


def test_the_k8s_setting_makes_the_job_executor_the_default(monkeypatch):
    from danqing_assets.definitions import build_definitions
    from danqing_assets.settings import get_settings

    assert build_definitions().executor.name == "danqing_multiprocess"
    monkeypatch.setenv("DANQING_EXECUTOR", "k8s")  # what docker/helm/values.yaml sets
    get_settings.cache_clear()
    assert build_definitions().executor.name == "k8s"
