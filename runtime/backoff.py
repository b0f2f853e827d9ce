"""The one retry back-off policy: how long to wait before trying something again.

Every place that retries (a projection handler that failed, a consumer fetch that failed, a
read-your-writes waiter that polls the server, a process waiting for its server) asks a
:class:`Backoff` for the delay instead of writing its own formula, so they all grow the same way
and all stop growing at a ceiling. Jitter spreads the retries of many processes that failed at
the same moment (a server restart), so they do not all come back in the same instant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential back-off: ``first``, then ``factor`` times longer each retry, up to ``maximum``.

    ``jitter`` (0 to 1) is the share of each delay drawn at random: 0.5 waits between half and
    all of it.
    """

    first: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.maximum:
            raise ConfigurationError(
                f"back-off needs 0 <= first <= maximum, got {self.first} and {self.maximum}"
            )
        if self.factor < 1:
            raise ConfigurationError(f"back-off factor must be at least 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError(f"back-off jitter must be within 0..1, got {self.jitter}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        try:
            grown = self.first * self.factor ** max(attempt - 1, 0)
        except OverflowError:
            grown = self.maximum
        delay = min(grown, self.maximum)
        if self.jitter:
            delay -= delay * self.jitter * random.random()
        return delay
