"""The grant of a processes user: the batched read of instances only for one that runs every
process manager, since the request names its keys in its body, out of the grant's reach."""

from __future__ import annotations

from aggregates.order import order
from runtime import App, ProcessManager
from runtime.ops.permissions import Resources, UserPlan, plan_users

first: ProcessManager[int] = ProcessManager("first", 0, follows=[order])
second: ProcessManager[int] = ProcessManager("second", 0, follows=[order])
APP = App(aggregates=[order], process_managers=[first, second])
BATCHED = "$JS.API.DIRECT.GET.KV_cqrs-processes"


def publish_of(user: str, plan: UserPlan) -> tuple[str, ...]:
    users = {u.name: u for u in plan_users(APP, plan, Resources.of_runtime())}
    grant = users[user].grant
    assert grant is not None
    return grant.publish


def test_a_user_running_every_manager_may_read_instances_in_batches() -> None:
    publish = publish_of("processes", UserPlan())
    assert BATCHED in publish
    assert f"{BATCHED}.$KV.cqrs-processes.first.*" in publish


def test_a_user_running_some_managers_reads_its_own_keys_only() -> None:
    plan = UserPlan(processes={"only-first": ("first",)})
    publish = publish_of("only-first", plan)
    assert BATCHED not in publish
    assert f"{BATCHED}.$KV.cqrs-processes.first.*" in publish
    assert not [s for s in publish if "cqrs-processes.second" in s]
