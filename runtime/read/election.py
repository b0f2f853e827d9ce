"""Who answers a projection's queries: a caught-up replica of the newest version that has one.

**Catching up.** A replica takes no query until it has applied everything the stream held (for
the aggregates it follows) when it started, and is within ``catch_up_lag`` commits of the
stream's end: a fresh replica, one restored from an old snapshot and a new version's first
replica alike. Meanwhile a query goes to the replicas that are caught up, or, with none, gets
"no responders" at once: never an answer from a model that is behind. Caught up is for good: a
replica that falls behind later (a burst of writes) keeps serving, and ``Cqrs-Min-Seq`` gives
read-your-writes as always.

**One version answers.** Every replica publishes its state on the board (:mod:`runtime.read.board`)
and reads the others'. A caught-up replica serves unless a replica of a newer version serves; so
when a new version's first replica catches up it subscribes first, says so on the board, and only
then do the older version's replicas drain their subscriptions: the queue group is never empty. A
replica decides only once its watch has delivered the whole board as it was when the watch began: a
replica of another version it has not seen yet may be serving. The older replicas go on consuming,
so stopping the newer version is a rollback: a replica that stops withdraws its entry (a killed
one's expires within the board's TTL), the older version serves again, and a replica that stops as
the last server of its version waits (up to ``handover_timeout``) until another one has taken over.

While two versions may both answer, every replica that answers is *fenced* (see
:mod:`runtime.read.query_service`): each answer waits until its model reflects the stream's end
as read after the query arrived, so no answer is behind one that another replica already gave.
A switch therefore goes: the taking-over replica is caught up (or the serving one announces it is
leaving); the serving replicas of the other version fence themselves and say so on the board;
only then does the taking-over replica subscribe, fenced too; the others drain. A replica lifts
its fence once no other version serves or is about to, and its model has reached the stream's
end as read after that.

A replica halted by a poison event serves only while no live replica of the projection that has
caught up is healthy (it then answers from its model as it is, and ``stale`` to read-your-writes
beyond it): a new version whose code fails, before or after it took over, leaves the queries to
one that works.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import CqrsError
from ..log import get_logger
from ..transport.cleanup import cleanup_scope
from ..transport.startup import waiting_for_jetstream
from .board import Board, ReplicaState, state_bucket

if TYPE_CHECKING:
    from .projector import Projector
    from .query_service import QueryService

log = get_logger("runtime.read.election")

CATCHING_UP_PERIOD = 0.1  # seconds between looks at the consumer while catching up
PUBLISH_PERIOD = 1.0  # seconds between renewals of a replica's entry on the board
HANDOVER_TIMEOUT = 5.0  # seconds a last server waits on stopping for another to take over


class Election:
    """Decides, for one replica, when it takes queries; publishes its state meanwhile."""

    def __init__(self, projector: Projector[Any], queries: QueryService) -> None:
        self.projector = projector
        self.queries = queries
        settings = projector.settings
        self.settings = settings
        self.state = ReplicaState(
            projection=projector.projection.name,
            version=projector.projection.version,
            replica=projector.replica,
        )
        self.board: Board | None = None
        self.caught_up = anyio.Event()
        self.settled = anyio.Event()  # caught up, or halted before it: run_replica may go on
        self.start_seq = 0  # the stream's end when the replica started
        self.fence_floor: int | None = None
        self._rate_sample: tuple[float, int] | None = None
        self._published: tuple[bool, ...] | None = None
        self.log = log.bind(
            projection=self.state.projection, version=self.state.version, replica=self.state.replica
        )

    @property
    def serving(self) -> bool:
        return self.queries.serving

    def standing(self) -> dict[str, Any]:
        """What ``cqrs status`` shows of it: caught up, serving, fenced, how far to go."""
        state = self.state
        return {
            "caught_up": state.caught_up,
            "serving": self.serving,
            "fenced": self.queries.fenced,
            "pending": state.pending,
            "rate": state.rate,
            "eta_seconds": state.eta_seconds,
        }

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Election]:
        """Publish, watch and decide until the context exits; then hand over and withdraw."""
        with waiting_for_jetstream(self.settings.startup_timeout):
            kv = await state_bucket(
                self.projector.nc, ttl=self.settings.presence_ttl, replicas=self.settings.replicas
            )
            self.start_seq = await self.projector.read_position.read_head()
        self.board = Board(kv, self.state.projection, self.settings.presence_ttl)
        async with self.board.watching():
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._loop)
                    try:
                        yield self
                    finally:
                        tg.cancel_scope.cancel()
            finally:
                with cleanup_scope(HANDOVER_TIMEOUT + self.settings.timeout):
                    await self._leave()

    # -- the loop ------------------------------------------------------------------------------

    async def _loop(self) -> None:
        assert self.board is not None
        published = 0.0
        while True:
            changed = self.board.changed
            try:
                await self._look()
                whole = self.board.complete.is_set()  # what the decision below is made on
                # Shielded: a cancelled flush inside it would break nats-py's connection.
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.settings.timeout):
                    await self._decide()
                # A change others decide on goes out at once; positions once a period (each
                # entry written wakes every replica of the projection).
                decided = self._decided()
                if decided != self._published or time.monotonic() - published >= PUBLISH_PERIOD:
                    await self.board.publish(self.state)
                    self._published = decided
                    published = time.monotonic()
                # Settled only once the board says so: a replica ready for its supervisor is
                # one that `cqrs status` and `cqrs projections retire` see, and that has decided
                # whether to serve on the whole board.
                if whole and (self.state.caught_up or self.state.halted):
                    self.settled.set()
            except CqrsError as exc:  # NATS away for a moment: keep the last decision
                self.log.warning("replica_election_failed", code=exc.code, reason=exc.message)
            period = PUBLISH_PERIOD if self.caught_up.is_set() else CATCHING_UP_PERIOD
            if self.queries.fenced:
                period = CATCHING_UP_PERIOD
            with anyio.move_on_after(period):
                await changed.wait()
            if changed.is_set():
                self.board.changed = anyio.Event()

    def _decided(self) -> tuple[bool, ...]:
        state = self.state
        return state.caught_up, state.serving, state.fenced, state.halted, state.leaving

    def _contended(self, others: list[ReplicaState]) -> bool:
        """Another version serves, or a newer one has caught up to take over: answers may come
        from either, so this replica's must be fenced."""
        mine = self.state.version
        return any(
            o.version != mine
            and (o.serving or (o.version > mine and o.caught_up and not o.halted and not o.leaving))
            for o in others
        )

    async def _look(self) -> None:
        """Bring the replica's own state up to date (position, pending, rate, caught up)."""
        projector = self.projector
        position = projector.read_position
        await position.refresh()
        state = self.state
        state.position = position.value
        state.stream_last_seq = position.head
        state.pending = position.pending
        state.halted = projector.halted is not None
        now = time.monotonic()
        if self._rate_sample is not None:
            then, applied = self._rate_sample
            if now - then >= 1.0:
                state.rate = round((projector.applied - applied) / (now - then), 1)
                self._rate_sample = (now, projector.applied)
        else:
            self._rate_sample = (now, projector.applied)
        if (
            not state.caught_up
            and not state.halted
            and position.value >= self.start_seq
            and position.pending <= self.settings.catch_up_lag
        ):
            state.caught_up = True
            self.caught_up.set()
            self.log.info("replica_caught_up", position=position.value, pending=position.pending)

    def _wants_to_serve(self, others: list[ReplicaState]) -> bool:
        state = self.state
        if state.halted:  # a model that no longer moves: only when nothing better is there
            return not any(o.caught_up and not o.halted and not o.leaving for o in others)
        if not state.caught_up:
            return False
        return not any(
            o.version > state.version and o.serving and not o.leaving and not o.halted
            for o in others
        )

    async def _decide(self) -> None:
        assert self.board is not None
        others = self.board.others(self.state.key)
        # Never on part of the board: a replica of another version not yet seen may be serving.
        want = self.board.complete.is_set() and self._wants_to_serve(others)
        mine = self.state.version
        if want and not self.serving:
            # Not before every server of another version is fenced: until then one of its
            # answers could come after, and behind, one of ours.
            if all(o.fenced for o in others if o.serving and o.version != mine):
                fenced = any(o.serving for o in others)
                await self.queries.serve(fenced=fenced)
                self.fence_floor = None
                self.log.info("replica_serving", fenced=fenced, position=self.state.position)
        elif not want and self.serving:
            await self.queries.unserve()
            self.log.info("replica_standing_by", position=self.state.position)
        elif self.serving and not self.queries.fenced and self._contended(others):
            self.queries.fenced = True
            self.fence_floor = None
            self.log.info("replica_fenced", position=self.state.position)
        self.state.serving = self.serving
        if self.serving and self.queries.fenced:
            await self._lift_fence(others)
        self.state.fenced = self.serving and self.queries.fenced

    async def _lift_fence(self, others: list[ReplicaState]) -> None:
        if self._contended(others):
            self.fence_floor = None  # another version answers or is about to: keep the fence
            return
        position = self.projector.read_position
        if self.fence_floor is None:
            self.fence_floor = await position.read_head()
        if position.value >= self.fence_floor:
            self.queries.fenced = False
            self.log.info("replica_fence_lifted", position=position.value)

    # -- leaving -------------------------------------------------------------------------------

    async def _leave(self) -> None:
        """Hand the queries over when this is the last replica serving and another can take
        them (saying so on the board, then waiting until it serves), drain, then withdraw."""
        board = self.board
        if board is None:
            return
        mine = self.state.key
        others = board.others(mine)
        successor = any(o.caught_up and not o.leaving for o in others)
        if self.serving and successor and not any(o.serving for o in others):
            self.log.info("replica_handing_over")
            self.state.leaving = True
            # Fenced before the successor may serve: no answer of ours comes behind one of its.
            self.queries.fenced = self.state.fenced = True
            with contextlib.suppress(CqrsError):
                await board.publish(self.state)
            with anyio.move_on_after(HANDOVER_TIMEOUT):
                while not any(o.serving and not o.leaving for o in board.others(mine)):
                    changed = board.changed
                    await changed.wait()
                    board.changed = anyio.Event()
        # Drained before the entry goes: a replica that took over stays fenced until then.
        await self.queries.unserve()
        await board.withdraw(self.state)
