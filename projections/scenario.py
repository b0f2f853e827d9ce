"""The demo's read-side steps: queries against the example read models, one of them a
read-your-writes query right after a command, through the public client like any service."""

from __future__ import annotations

from collections.abc import Callable

from runtime import Client, NotFound

Say = Callable[[str], None]


async def run_queries(client: Client, ids: dict[str, str], say: Say) -> None:
    """Ask the read models about what the write-side scenario did (``ids`` names its user and
    its two orders)."""
    user_id, order_a, order_b = ids["user"], ids["order_a"], ids["order_b"]
    say("[bold]7. Read-your-writes: a command, then at once a query that must see it[/bold]")
    email = f"ada.{user_id}@lovelace.dev"
    changed = await client.send("user", user_id, "change_email", {"email": email})
    found = await client.query("users", "find_user_by_email", {"email": email}, min_seq=changed)
    say(
        f"  change_email committed at seq {changed.seq}; find_user_by_email({email}) with "
        f"min_seq={changed.seq} -> {found.result['user_id']} ({found.result['role']}), "
        f"read model at seq {found.seq}"
    )

    say("[bold]8. Queries against the read models[/bold]")
    order = await client.query("orders", "get_order_by_id", {"order_id": order_a})
    row = order.result
    say(f"  get_order_by_id({order_a}) -> {row['status']}, {row['total']} {row['currency']}")
    mine = await client.query("orders", "get_orders_for_user", {"user_id": user_id})
    listed = ", ".join(f"{o['order_id']} ({o['status']})" for o in mine.result["orders"])
    say(f"  get_orders_for_user({user_id}) -> {mine.result['total']} orders: {listed}")
    cancelled = await client.query(
        "orders", "get_orders_for_user", {"user_id": user_id, "status": "cancelled", "limit": 10}
    )
    say(
        f"  get_orders_for_user({user_id}, status=cancelled) -> "
        f"{[o['order_id'] for o in cancelled.result['orders']]}"
    )
    user = await client.query("users", "get_user_by_id", {"user_id": user_id})
    say(f"  get_user_by_id({user_id}) -> {user.result['name']} <{user.result['email']}>")
    try:
        await client.query("orders", "get_order_by_id", {"order_id": f"{order_b}-nope"})
    except NotFound as exc:
        say(f"  get_order_by_id({order_b}-nope) -> {exc.code}: {exc.message}")
