"""The batched read and the pipelined writes of instance entries against a real nats-server:
each entry read in one request must be what a read of that entry alone gives (state, position
and the revision a compare-and-set is based on), whatever happened to it before (updated
several times, deleted, purged, never stored), and a write based on it must conflict when the
entry changed after the read, while the other entries of the batch are stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace
from nats.aio.client import Client as NATS
from nats.js import api

from aggregates.order import StatusUpdated, order
from runtime import Client, ProcessManager, Reaction
from runtime.processes.instances import CasConflict, Instance, InstanceStore
from runtime.processes.parking import ParkedStore
from runtime.processes.reaction import Reactions
from runtime.processes.timers import TimerStore
from runtime.processes.triggers import Trigger, event_triggers
from runtime.transport.connection import ConnectOptions, open_connection
from runtime.transport.direct_get import MULTI_LAST_LIMIT
from runtime.transport.embedded import EmbeddedServer
from runtime.wire.envelope import Commit, StoredEvent
from tests.ports import free_port

V = 1  # the state version written with the entries
NOW = "2026-01-01T00:00:00+00:00"


def entry(state: Any, seq: int) -> Instance:
    return Instance(state=state, position=(seq, 0))


async def test_a_batched_read_gives_what_each_read_alone_gives(nc: NATS) -> None:
    store = InstanceStore(nc, bucket="batched")
    await store.start()
    try:
        first = await store.put("pm", "updated", entry({"n": 1}, 1), V)
        again = await store.put("pm", "updated", replace(first, state={"n": 2}), V)
        await store.put("pm", "updated", replace(again, state={"n": 3}, position=(9, 1)), V)
        await store.put("pm", "other", entry({"n": 7}, 4), V)
        await store.put("pm", "deleted", entry({"n": 5}, 2), V)
        await store.kv.delete("pm.deleted")
        await store.put("pm", "purged", entry({"n": 6}, 3), V)
        await store.kv.purge("pm.purged")
        await store.put("other-pm", "missing", entry({"n": 8}, 5), V)  # another manager's key
        keys = ["updated", "other", "deleted", "purged", "missing"]

        read = await store.get_many("pm", keys)

        assert set(read) == set(keys)
        for key in keys:
            assert read[key] == await store.get("pm", key), key
        assert read["updated"].state == {"n": 3}
        assert read["updated"].position == (9, 1)
        assert read["updated"].revision > again.revision
        assert read["deleted"] == read["purged"] == read["missing"] == Instance(state=None)
    finally:
        await store.stop()


async def test_more_keys_than_one_request_may_name_are_all_read(nc: NATS) -> None:
    store = InstanceStore(nc, bucket="many")
    await store.start()
    try:
        count = MULTI_LAST_LIMIT + 10
        keys = [f"k{i}" for i in range(count)]
        stored = await store.put_many(
            "pm", [(k, entry({"i": i}, i)) for i, k in enumerate(keys)], V
        )
        assert all(isinstance(s, Instance) for s in stored)

        read = await store.get_many("pm", keys)

        assert [read[k].state for k in keys] == [{"i": i} for i in range(count)]
        assert [read[k].revision for k in keys] == [
            s.revision for s in stored if isinstance(s, Instance)
        ]
    finally:
        await store.stop()


async def test_a_write_based_on_a_batched_read_conflicts_when_its_entry_changed_since(
    nc: NATS,
) -> None:
    store = InstanceStore(nc, bucket="conflicts")
    await store.start()
    try:
        await store.put("pm", "a", entry({"n": 1}, 1), V)
        await store.put("pm", "b", entry({"n": 1}, 2), V)
        await store.put("pm", "gone", entry({"n": 1}, 3), V)
        read = await store.get_many("pm", ["a", "b", "gone", "new", "raced"])
        # Meanwhile another replica writes "a" and creates "raced"; "gone" is deleted.
        await store.put("pm", "a", replace(read["a"], state={"n": "theirs"}), V)
        await store.put("pm", "raced", entry({"n": "theirs"}, 9), V)
        await store.kv.delete("pm.gone")

        written = await store.put_many(
            "pm", [(k, replace(read[k], state={"n": "mine"})) for k in read], V
        )

        outcome = dict(zip(read, written, strict=True))
        assert isinstance(outcome["a"], CasConflict)
        assert isinstance(outcome["raced"], CasConflict)
        assert isinstance(outcome["gone"], CasConflict)  # re-created by put(), not blindly
        for key in ("b", "new"):
            mine = outcome[key]
            assert isinstance(mine, Instance)
            assert await store.get("pm", key) == mine
            assert mine.state == {"n": "mine"}
        assert (await store.get("pm", "a")).state == {"n": "theirs"}
        assert (await store.get("pm", "raced")).state == {"n": "theirs"}
        # The ordinary write takes over where the pipelined one conflicted.
        again = await store.get("pm", "gone")
        assert again == Instance(state=None)
        stored = await store.put("pm", "gone", replace(again, state={"n": "mine"}), V)
        assert await store.get("pm", "gone") == stored
    finally:
        await store.stop()


async def test_a_bucket_without_direct_gets_is_read_one_entry_at_a_time(nc: NATS) -> None:
    await nc.jetstream().create_key_value(api.KeyValueConfig(bucket="plain", direct=False))
    store = InstanceStore(nc, bucket="plain")
    await store.start()
    try:
        stored = await store.put("pm", "a", entry({"n": 1}, 1), V)

        read = await store.get_many("pm", ["a", "missing"])

        assert read == {"a": stored, "missing": Instance(state=None)}
    finally:
        await store.stop()


async def test_a_user_refused_the_batched_form_reads_one_entry_at_a_time(tmp_path: Path) -> None:
    """A user allowed only the per-key direct gets (one that runs some of the managers, see
    runtime.ops.permissions) reads one by one: the refusal is not an error of the reaction."""
    batched = "$JS.API.DIRECT.GET.KV_cqrs-processes"
    config = tmp_path / "server.conf"
    config.write_text(
        "authorization { users = [{user: pm, password: pm, permissions: {"
        f'publish: {{allow: [">"], deny: ["{batched}"]}}, subscribe: [">"]}}}}] }}\n'
    )
    server = EmbeddedServer(tmp_path / "js", port=free_port(), config_file=config)
    server.start()
    await server.wait_ready()
    nc = await open_connection(server.url, ConnectOptions(user="pm", password="pm"))
    store = InstanceStore(nc)
    try:
        await store.start()
        stored = await store.put("pm", "a", entry({"n": 1}, 1), V)
        for _ in range(2):  # refused once, then not asked again
            assert await store.get_many("pm", ["a", "missing"]) == {
                "a": stored,
                "missing": Instance(state=None),
            }
    finally:
        await store.stop()
        await nc.close()
        server.stop()


# -- reacting through the batched read --------------------------------------------------------

counting: ProcessManager[int] = ProcessManager("counting", 0, follows=[order])


@counting.on("order.status_updated.v1")
def _count(state: int, event: StatusUpdated) -> Reaction[int]:
    return Reaction(state + 1)


def triggers(order_id: str, seqs: list[int]) -> list[Trigger]:
    found: list[Trigger] = []
    for seq in seqs:
        data = {"status": "paid", "previous": "created", "at": NOW}
        commit = Commit(
            aggregate="order",
            aggregate_id=order_id,
            command="update_status",
            command_id=f"c{seq}",
            correlation_id="",
            causation_id=None,
            version=seq,
            events=[StoredEvent("order.status_updated.v1", data)],
            recorded_at=NOW,
            seq=seq,
        )
        found += event_triggers(counting, commit)
    return found


class RacedStore(InstanceStore):
    """A real store where another replica writes ``raced``'s entry (as if it had reacted to
    the first event) between the batched read and the pipelined writes."""

    raced = "o-1"

    async def put_many(
        self, manager: str, entries: list[tuple[str, Instance]], state_version: int
    ) -> list[Instance | Exception]:
        theirs = await self.get(manager, self.raced)
        await self.put(manager, self.raced, replace(theirs, state=100, position=(1, 0)), V)
        return await super().put_many(manager, entries, state_version)


@pytest.mark.parametrize("store_type", [InstanceStore, RacedStore])
async def test_instances_react_once_to_each_event_also_when_written_concurrently(
    nc: NATS, store_type: type[InstanceStore]
) -> None:
    store = store_type(nc, bucket="reacting")
    await store.start()
    timers, parked = TimerStore(nc), ParkedStore(nc)
    await timers.start()
    await parked.start()
    reactions = Reactions(counting, store, timers, parked, Client(nc))
    await store.put("counting", "o-2", Instance(state=10, position=(4, 0)), V)  # saw seq 4
    runs = [triggers("o-1", [1, 2, 3]), triggers("o-2", [4, 5]), triggers("o-3", [6])]
    try:
        outcomes = await reactions.react_runs(runs)

        raced = store_type is RacedStore
        assert outcomes[0] == ((None, None) if raced else (3, None))
        assert outcomes[1:] == [(2, None), (1, None)]
        if raced:  # the ordinary way: read again, skip what the other replica did
            assert await reactions.react_run(runs[0]) == 3
        states = await store.get_many("counting", ["o-1", "o-2", "o-3"])
        assert states["o-1"].state == (102 if raced else 3)
        assert states["o-1"].position == (3, 0)
        assert (states["o-2"].state, states["o-2"].position) == (11, (5, 0))
        assert (states["o-3"].state, states["o-3"].position) == (1, (6, 0))
        # Everything again (a redelivery): every event is found done, nothing is written.
        before = {k: v.revision for k, v in states.items()}
        assert await reactions.react_runs(runs) == [(3, None), (2, None), (1, None)]
        after = await store.get_many("counting", ["o-1", "o-2", "o-3"])
        assert {k: v.revision for k, v in after.items()} == before
    finally:
        await store.stop()
