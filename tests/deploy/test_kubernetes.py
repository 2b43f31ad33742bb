"""deploy/ (kustomize base + cpu and gpu overlays) without a cluster: each overlay rendered by
kubectl's kustomize, every object validated against the Kubernetes API schemas that
kubernetes-validate ships, and every port, probe, path, command and variable checked against
the server."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from service.api.rest.routes.health import router as health_router
from service.settings import ENV_PREFIX, Settings
from tests.support.deploy import (
    DOCKERFILES,
    FOLLOW,
    PROGRAM,
    ROOT,
    check_command,
    commands_in_shell,
    effective_settings,
    exposition,
    follow_lands_with_the_replica_branch,
    image_settings,
    load_yaml,
    load_yaml_documents,
    run_offline,
    setting_of_variable,
    substitute_kubernetes_variables,
    tool,
    unknown_names,
)

DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
OVERLAYS = ("cpu", "gpu")
#: The newest API the package ships, and the oldest these manifests are meant for (preStop
#: `sleep` is on by default from 1.30).
KUBERNETES_VERSIONS = (kubernetes_validate.latest_version(), "1.30.0")
IMAGE_OF_OVERLAY = {"cpu": DOCKERFILES[0], "gpu": DOCKERFILES[1]}
SAMPLE_NAMESPACE = "advantage"

Object = dict[str, Any]


def _render(overlay: str) -> list[Object]:
    done = run_offline([tool("kubectl"), "kustomize", str(DEPLOY / "overlays" / overlay)])
    assert done.returncode == 0, done.stderr
    return load_yaml_documents(done.stdout)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Object]]:
    return {overlay: _render(overlay) for overlay in OVERLAYS}


def _base_files() -> list[Path]:
    return sorted(p for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")


def _one(objects: list[Object], kind: str, name: str | None = None) -> Object:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def _workloads(objects: list[Object]) -> dict[str, Object]:
    return {
        "learner": _one(objects, "StatefulSet", "advantage-learner"),
        "replica": _one(objects, "Deployment", "advantage-replica"),
    }


def _server(workload: Object) -> Object:
    (server,) = [c for c in workload["spec"]["template"]["spec"]["containers"]]
    assert server["name"] == "server"
    return server


def _containers(workload: Object) -> list[Object]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _environment(container: Object) -> dict[str, str]:
    """The container's env with Kubernetes' $(VAR) expansion (the namespace of a sample)."""
    values: dict[str, str] = {}
    for variable in container.get("env", []):
        if "value" in variable:
            values[variable["name"]] = substitute_kubernetes_variables(variable["value"], values)
        elif variable["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            values[variable["name"]] = SAMPLE_NAMESPACE
        else:
            values[variable["name"]] = "from-elsewhere"
    return values


def _settings(container: Object, overlay: str) -> Settings:
    values = image_settings(IMAGE_OF_OVERLAY[overlay])
    for name, value in _environment(container).items():
        if name.startswith(ENV_PREFIX):
            values[name.removeprefix(ENV_PREFIX).lower()] = value
    command = [*container.get("command", [PROGRAM, "serve"]), *container.get("args", [])]
    if command[1:2] == ["serve"]:
        values.update(check_command(command))
    return effective_settings(values)


def _pod_labels(workload: Object) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# ---- schemas ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_strictly(
    rendered: dict[str, list[Object]], overlay: str, version: str
) -> None:
    kinds = set()
    for manifest in rendered[overlay]:
        kubernetes_validate.validate(manifest, version, strict=True)
        kinds.add(manifest["kind"])
    assert kinds == {
        "StatefulSet",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }


@pytest.mark.parametrize("path", _base_files(), ids=lambda path: path.name)
def test_every_base_file_is_a_valid_manifest_on_its_own(path: Path) -> None:
    for manifest in load_yaml_documents(path.read_text()):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSIONS[0], strict=True)


def test_the_schema_check_catches_a_mistake(rendered: dict[str, list[Object]]) -> None:
    replica = copy.deepcopy(_workloads(rendered["cpu"])["replica"])
    _server(replica)["readinessProbe"]["grpc"]["port"] = "grpc"  # gRPC probes take a number
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(replica, KUBERNETES_VERSIONS[0], strict=True)
    replica = copy.deepcopy(_workloads(rendered["cpu"])["replica"])
    replica["spec"]["replica"] = 3  # a typo, refused under strict validation
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(replica, KUBERNETES_VERSIONS[0], strict=True)


def test_the_kustomizations_name_existing_files() -> None:
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        spec = load_yaml(kustomization)
        for entry in [*spec.get("resources", []), *(p["path"] for p in spec.get("patches", []))]:
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry}"


def test_the_gpu_patches_target_objects_and_containers_of_the_base() -> None:
    base = [m for path in _base_files() for m in load_yaml_documents(path.read_text())]
    patches = load_yaml(DEPLOY / "overlays" / "gpu" / "kustomization.yaml")["patches"]
    assert patches
    for entry in patches:
        patch = load_yaml(DEPLOY / "overlays" / "gpu" / entry["path"])
        target = _one(base, patch["kind"], patch["metadata"]["name"])
        assert target["apiVersion"] == patch["apiVersion"]
        names = {c["name"] for c in target["spec"]["template"]["spec"]["containers"]}
        for container in patch["spec"]["template"]["spec"]["containers"]:
            assert container["name"] in names, entry["path"]


# ---- what the objects say ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_learner_with_a_persistent_model_repository(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    learner = _workloads(rendered[overlay])["learner"]
    assert learner["spec"]["replicas"] == 1
    (claim,) = learner["spec"]["volumeClaimTemplates"]
    server = _server(learner)
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    repository = _settings(server, overlay).model_repository
    assert repository is not None and mounts[claim["metadata"]["name"]] == str(repository)
    # the init container writes the demo model into that repository on the first start
    (init,) = learner["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][:2] == ["sh", "-c"]
    (export,) = commands_in_shell(init["command"][2])
    check_command(export)
    assert export[1] == "export-model" and Path(export[2]).parent == repository
    assert {m["mountPath"] for m in init["volumeMounts"]} == {str(repository)}
    assert learner["spec"]["serviceName"] == "advantage-learner"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_their_pods_and_name_their_ports(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    objects = rendered[overlay]
    workloads = _workloads(objects)
    learner_service = _one(objects, "Service", "advantage-learner")
    replica_service = _one(objects, "Service", "advantage-replicas")
    assert learner_service["spec"]["type"] == "ClusterIP"
    assert "clusterIP" not in learner_service["spec"]  # a virtual IP, for writes
    # headless: DNS lists each ready replica pod, for dns:/// round robin
    assert replica_service["spec"]["clusterIP"] == "None"
    assert not replica_service["spec"].get("publishNotReadyAddresses", False)
    for service, role, other in (
        (learner_service, "learner", "replica"),
        (replica_service, "replica", "learner"),
    ):
        selector = service["spec"]["selector"]
        assert _selects(selector, _pod_labels(workloads[role]))
        assert not _selects(selector, _pod_labels(workloads[other]))
        server = _server(workloads[role])
        container_ports = {p["name"]: p["containerPort"] for p in server["ports"]}
        settings = _settings(server, overlay)
        assert container_ports == {"grpc": settings.port, "http": settings.rest_port}
        for port in service["spec"]["ports"]:
            assert container_ports[port["targetPort"]] == port["port"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_the_servers_health_endpoints(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    routes = {route.path for route in health_router.routes}  # type: ignore[attr-defined]
    for role, workload in _workloads(rendered[overlay]).items():
        server = _server(workload)
        settings = _settings(server, overlay)
        named = {p["name"]: p["containerPort"] for p in server["ports"]}
        # ready = gRPC health SERVING (a replica: only once it is current)
        readiness = server["readinessProbe"]
        assert readiness["grpc"]["port"] == settings.port, role
        assert readiness["grpc"].get("service", "") == ""
        # alive = the process answers: REST /healthz (any Host header), never the gRPC status,
        # so a lagging replica is taken out of rotation, not restarted
        liveness = server["livenessProbe"]
        assert "grpc" not in liveness, role
        assert liveness["httpGet"]["path"] == "/healthz" and "/healthz" in routes
        assert named[liveness["httpGet"]["port"]] == settings.rest_port
        assert settings.rest_host == "0.0.0.0"  # the kubelet probes the pod IP
        startup = server["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, role
        if role == "replica":  # catching up must not count against starting
            assert "grpc" not in startup
    # REST is reached by the Services' names
    for role, service in (("learner", "advantage-learner"), ("replica", "advantage-replicas")):
        settings = _settings(_server(_workloads(rendered[overlay])[role]), overlay)
        assert service in settings.rest_allowed_hosts
        assert f"{service}.{SAMPLE_NAMESPACE}.svc" in settings.rest_allowed_hosts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_autoscaler_scales_the_replicas_on_a_metric_the_server_exports(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    objects = rendered[overlay]
    hpa = _one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    replica = _workloads(objects)["replica"]
    assert (target["kind"], target["name"]) == (replica["kind"], replica["metadata"]["name"])
    assert "replicas" not in replica["spec"]  # the autoscaler owns the count
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    kinds = {metric["type"]: metric for metric in hpa["spec"]["metrics"]}
    name = kinds["Pods"]["pods"]["metric"]["name"]
    assert f"# TYPE {name} gauge" in exposition()
    assert kinds["Resource"]["resource"]["name"] == "cpu"  # the fallback without an adapter


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_disruption_budget_covers_the_replicas(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    objects = rendered[overlay]
    budget = _one(objects, "PodDisruptionBudget")
    workloads = _workloads(objects)
    selector = budget["spec"]["selector"]["matchLabels"]
    assert _selects(selector, _pod_labels(workloads["replica"]))
    assert not _selects(selector, _pod_labels(workloads["learner"]))
    assert budget["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_requests_resources_and_runs_unprivileged(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    for workload in _workloads(rendered[overlay]).values():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the images' USER
        for container in _containers(workload):
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= set(requests), container["name"]
            assert container["resources"]["limits"]["memory"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_gpu_overlay_asks_for_a_gpu_and_runs_the_cuda_image(
    rendered: dict[str, list[Object]],
) -> None:
    for overlay in OVERLAYS:
        for role, workload in _workloads(rendered[overlay]).items():
            server = _server(workload)
            gpus = server["resources"].get("limits", {}).get("nvidia.com/gpu")
            images = {c["image"] for c in _containers(workload)}
            assert len(images) == 1
            tolerations = workload["spec"]["template"]["spec"].get("tolerations", [])
            if overlay == "gpu":
                assert gpus == 1, role
                assert images.pop().endswith("-cuda")
                assert _settings(server, overlay).device == "cuda"
                assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)
            else:
                assert gpus is None and not tolerations, role
                assert not images.pop().endswith("-cuda")
                assert _settings(server, overlay).device == "auto"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_command_variable_and_flag_is_the_servers(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    """Except `follow`, checked by the test below."""
    unknown = []
    for workload in _workloads(rendered[overlay]).values():
        for container in _containers(workload):
            command = [*container.get("command", []), *container.get("args", [])]
            commands = commands_in_shell(command[2]) if command[:2] == ["sh", "-c"] else []
            if command and Path(command[0]).name == PROGRAM:
                commands = [command]
            tokens = [token for words in commands for token in words]
            # _environment also checks that every $(VAR) is defined before its use
            names = unknown_names(_environment(container), tokens)
            unknown += [f"{container['name']}: {what}" for what in names]
            for words in commands:
                check_command(words)
            _settings(container, overlay)  # every value valid
    assert unknown == []


@follow_lands_with_the_replica_branch
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicas_follow_the_learner_service_with_a_real_setting(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    objects = rendered[overlay]
    server = _server(_workloads(objects)["replica"])
    learner_service = _one(objects, "Service", "advantage-learner")
    grpc_port = next(p["port"] for p in learner_service["spec"]["ports"] if p["name"] == "grpc")
    assert _environment(server)[f"{ENV_PREFIX}FOLLOW"] == f"advantage-learner:{grpc_port}"
    assert setting_of_variable(f"{ENV_PREFIX}FOLLOW") == FOLLOW
    assert _settings(server, overlay).follow  # type: ignore[attr-defined]
    learner = _server(_workloads(objects)["learner"])
    assert not getattr(_settings(learner, overlay), FOLLOW)
