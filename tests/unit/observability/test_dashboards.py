"""The operations files in deploy/ refer only to series the runtime exposes, on the port the
manifests open."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from runtime.observability.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
OBSERVABILITY = DEPLOY / "observability"
# Series names (process_*: the client's own); process_manager is a label, not a series.
SERIES = re.compile(r"\b((?:cqrs|process)_(?!manager\b)[a-z0-9_]+)\b")
PROMETHEUS_OWN = {"up"}  # made by Prometheus itself for every target
CONTRACT = {
    "cqrs_commands_total",
    "cqrs_command_duration_seconds_bucket",
    "cqrs_occ_conflicts_total",
    "cqrs_live_actors",
    "cqrs_mailbox_full_total",
    "cqrs_queries_total",
    "cqrs_query_duration_seconds_bucket",
    "cqrs_projection_applied_sequence",
    "cqrs_projection_lag_events",
    "cqrs_projection_halted",
    "cqrs_projection_snapshot_age_seconds",
    "cqrs_projection_serving",
    "cqrs_projection_catching_up_pending",
    "cqrs_owned_partitions",
    "cqrs_partitions",
    "cqrs_partition_handoffs_total",
    "cqrs_process_parked_instances",
    "cqrs_process_triggers_parked_total",
}


def expressions(node: Any) -> Iterator[str]:
    """Every PromQL expression of a dashboard: panel targets and template variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def dashboard_expressions() -> list[str]:
    return list(expressions(json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())))


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def used(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in SERIES.findall(expr)}


def test_the_dashboard_refers_only_to_series_that_exist() -> None:
    """Every series a Grafana panel or variable queries is one the metrics registry exposes."""
    exposed = Metrics().series_names()
    exprs = dashboard_expressions()
    assert exprs
    assert used(exprs) - exposed == set()


def test_the_dashboard_shows_every_series_of_the_contract() -> None:
    """No series of the documented contract is left off the dashboard."""
    assert CONTRACT - used(dashboard_expressions()) == set()
    assert Metrics().series_names() >= CONTRACT


def test_the_alerts_refer_only_to_series_that_exist() -> None:
    """Every alert rule's expression uses exposed series (or Prometheus's own ``up``)."""
    exposed = Metrics().series_names() | PROMETHEUS_OWN
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert {
        "CqrsProjectionHalted",
        "CqrsProjectionLagGrowing",
        "CqrsCommandErrorRate",
        "CqrsPartitionWithoutOwner",
    } <= names
    for rule in rules:
        found = used([rule["expr"]]) | set(re.findall(r"\bup\b", rule["expr"]))
        assert found, rule["alert"]
        assert found - exposed == set(), rule["alert"]


def test_prometheus_scrapes_the_port_the_manifests_open() -> None:
    """The scrape config loads the alert rules; the pods open, annotate and set one port."""
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert (OBSERVABILITY / rule_file).is_file()
    for name in ("worker", "projector", "processes", "gateway"):
        documents = yaml.safe_load_all((DEPLOY / "k8s" / f"{name}.yaml").read_text())
        (workload,) = [d for d in documents if d and d["kind"] in ("Deployment", "StatefulSet")]
        template = workload["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        (container,) = template["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == int(env["CQRS_METRICS_PORT"])
        assert ports["metrics"] == int(env["CQRS_METRICS_PORT"])
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
