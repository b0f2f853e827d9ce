"""The demo's seed scenario, driven through the public client exactly as another service would."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from runtime import Client, CommandResult, CqrsError

Say = Callable[[str], None]


async def run_scenario(client: Client, say: Say) -> dict[str, str]:
    """Create a user and two orders, walk them through their lifecycles, show a rejection.

    Ids get a fresh suffix per run so the scenario can run again on the same store.
    """
    run = uuid.uuid4().hex[:6]
    user_id, order_a, order_b = f"u-{run}", f"ord-{run}-a", f"ord-{run}-b"

    def show(result: CommandResult) -> None:
        types = ", ".join(e["type"] for e in result.events) or "(no change)"
        say(f"  {result.aggregate}/{result.id} v{result.version} @seq {result.seq}: {types}")

    say(f"[bold]1. A user signs up[/bold] ({user_id})")
    show(
        await client.send(
            "user",
            user_id,
            "create",
            {"name": "Ada", "email": "ada@example.com", "role": "customer"},
        )
    )
    show(await client.send("user", user_id, "change_email", {"email": "ada@lovelace.dev"}))
    show(await client.send("user", user_id, "change_role", {"role": "support"}))

    say("[bold]2. Two orders[/bold]")
    lines_a = [{"sku": "book-42", "quantity": 2, "unit_price": "19.90"}]
    lines_b = [{"sku": "pen-7", "quantity": 10, "unit_price": "1.25"}]
    created = await client.send("order", order_a, "create", {"user_id": user_id, "lines": lines_a})
    show(created)
    say(f"    total computed by the aggregate: {created.events[0]['data']['total']}")
    show(await client.send("order", order_b, "create", {"user_id": user_id, "lines": lines_b}))

    say(f"[bold]3. {order_a} goes all the way[/bold]")
    for status in ("paid", "shipped", "delivered"):
        show(await client.send("order", order_a, "update_status", {"status": status}))

    say(f"[bold]4. {order_b} is cancelled[/bold]")
    show(await client.send("order", order_b, "cancel", {"reason": "changed my mind"}))

    say("[bold]5. A business rule says no[/bold]")
    try:
        await client.send("order", order_a, "cancel", {"reason": "too late"})
    except CqrsError as exc:
        say(f"  cancel {order_a} -> {exc.code}: {exc.message}")
    else:
        raise AssertionError("cancelling a delivered order must be rejected")
    return {"user": user_id, "order_a": order_a, "order_b": order_b}
