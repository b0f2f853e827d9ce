"""An audit from the bank's history: an account as it was, and what changed, without a worker.

Run it while `cqrs dev` runs: ``python audit.py "$(cat .cqrs/nats.url)" a-1``.
"""

import sys

import anyio
from bank.account import account

from runtime import AggregateHistory, ConnectOptions, EventStore, connect


async def main(url: str, account_id: str) -> None:
    async with connect(ConnectOptions(url=url), embedded=False) as nc:
        store = EventStore(nc)
        await store.start()
        try:
            history = AggregateHistory(store, account)
            opened = await history.at_version(account_id, 1)
            print(f"after version {opened.version}: balance {opened.state.balance}")
            _, _, changes = await history.diff(account_id, 1, 2)
            for change in changes:
                print(f"{change.path}: {change.before} -> {change.after}")
        finally:
            await store.stop()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
