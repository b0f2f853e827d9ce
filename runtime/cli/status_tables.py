"""The tables ``cqrs status`` prints: projection replicas (and who serves), process managers."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from .common import console


def print_status(report: dict[str, Any]) -> None:
    table = Table(
        title=f"projections on stream {report['stream']} (last seq {report['stream_last_seq']})"
    )
    columns = ("projection", "version", "replica", "applied", "stream last", "lag", "pending")
    for column in (*columns, "snapshot", "state"):
        numeric = column in ("version", "applied", "stream last", "lag", "pending")
        table.add_column(column, justify="right" if numeric else "left")
    for r in report["replicas"]:
        snap = r.get("last_snapshot")
        snapshot = f"seq {snap['seq']}, {snap.get('age_seconds', 0):.0f}s ago" if snap else "-"
        state = _serving_state(r)
        if r.get("halted"):
            h = r["halted"]
            state = f"[red]halted[/red] at seq {h['seq']} ({h['type']}): {h['error']}"[:120]
        elif r.get("retrying"):
            state = f"[yellow]retrying[/yellow] seq {r['retrying']['seq']}"
        elif r.get("dead_lettered"):
            state += f", {r['dead_lettered']} dead-lettered"
        table.add_row(
            r["projection"],
            str(r.get("version", r.get("schema", "-"))),
            r["replica"],
            str(r["applied_seq"]),
            str(r["stream_last_seq"]),
            str(r["lag"]),
            "-" if r.get("pending") is None else str(r["pending"]),
            snapshot,
            state,
        )
    for name in report["not_running"]:
        snaps = [s for s in report["snapshots"] if s["projection"] == name]
        snapshot = f"seq {snaps[0]['seq']}, {snaps[0]['age_seconds']:.0f}s ago" if snaps else "-"
        none = "[dim]no replica running[/dim]"
        table.add_row(name, "-", "-", "-", "-", "-", "-", snapshot, none)
    console.print(table)
    for orphan in report.get("orphaned_consumers", []):
        idle = orphan["idle_seconds"]
        console.print(
            f"[yellow]orphaned consumer[/yellow] {orphan['consumer']}: no live replica uses it "
            f"(delivered up to seq {orphan['delivered_seq']}"
            + (f", idle {idle:.0f}s" if idle is not None else "")
            + "); the server removes it once unused for its inactive threshold"
        )
    if report.get("process_managers"):
        print_process_status(report["process_managers"])


def _serving_state(replica: dict[str, Any]) -> str:
    """Whether a replica takes queries, or why not (catching up, a newer version serves)."""
    if replica.get("caught_up") is False:
        eta = replica.get("eta_seconds")
        when = f", serves in ~{eta:.0f}s" if eta is not None else ""
        return f"[yellow]catching up[/yellow] ({replica.get('pending', '?')} to go{when})"
    if replica.get("serving") is False:
        return "standing by (a newer version serves)"
    return "serving" if replica.get("serving") else str(replica["state"])


def print_process_status(managers: list[dict[str, Any]]) -> None:
    table = Table(title="process managers")
    columns = ("process manager", "position", "lag", "pending", "pending timers", "parked")
    for column in (*columns, "replicas"):
        table.add_column(column, justify="left" if column == "process manager" else "right")
    for m in managers:
        table.add_row(
            m["process_manager"],
            str(m["position"]),
            str(m["lag"]),
            str(m["pending"]),
            str(m["pending_timers"]),
            (
                f"[red]{m['parked_instances']} ({m['parked_triggers']} triggers)[/red]"
                if m.get("parked_instances")
                else "0"
            ),
            str(m["replicas"]) if m["replicas"] else "[dim]none running[/dim]",
        )
    console.print(table)
