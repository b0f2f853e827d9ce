"""Another Python service using the bank: commands and a read-your-writes query over NATS.

Run it while `cqrs dev` runs: ``python teller.py "$(cat .cqrs/nats.url)"``.
"""

import sys

import anyio

from runtime import Client, Rejected


async def main(url: str) -> None:
    async with Client.connect(url) as bank:
        await bank.send("account", "t-1", "open", {"owner": "Grace"})
        paid_in = await bank.send("account", "t-1", "deposit", {"amount": "20.00"})
        try:
            await bank.send("account", "t-1", "withdraw", {"amount": "25.00"})
        except Rejected as exc:
            print(f"refused: {exc.message} ({exc.details['rule']})")
        # min_seq: an answer that already includes the deposit
        answer = await bank.query("balances", "get_balance", {"account_id": "t-1"}, min_seq=paid_in)
        print(f"balance of t-1: {answer.result['balance']}")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
