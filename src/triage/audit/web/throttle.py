"""Sign-in throttling for the review app: failed sign-ins counted per name and per client
address in a sliding window, in this process only (one app process serves a review team)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from threading import Lock


class SlidingWindow:
    """At most ``limit`` events per key within ``window`` seconds.

    Args:
        limit: events allowed per key within the window.
        window: the window in seconds.
        clock: seconds, monotonic (tests pass a fake one).
        max_keys: keys kept at most; beyond it the stale ones are dropped first.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.limit, self.window, self.clock, self.max_keys = limit, window, clock, max_keys
        self._events: dict[str, deque[float]] = {}
        self._lock = Lock()

    def _live(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        if not events:
            self._events.pop(key, None)
        return events

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 while under the limit."""
        with self._lock:
            now = self.clock()
            events = self._live(key, now)
            if len(events) < self.limit:
                return 0
            return max(1, math.ceil(events[-self.limit] + self.window - now))

    def record(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            events = self._live(key, now)
            events.append(now)
            self._events[key] = events
            if len(self._events) > self.max_keys:
                for stale in list(self._events):
                    self._live(stale, now)
                while len(self._events) > self.max_keys:  # still full: forget the oldest
                    self._events.pop(next(iter(self._events)))

    def clear(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)


class SignInThrottle:
    """Failed sign-ins per reviewer name and per client address (defaults: 5 per name and 20
    per address within 5 minutes)."""

    def __init__(
        self,
        per_name: int = 5,
        per_address: int = 20,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.names = SlidingWindow(per_name, window, clock)
        self.addresses = SlidingWindow(per_address, window, clock)

    def retry_after(self, name: str, address: str) -> int:
        """Seconds to wait before this name may try from this address; 0 when it may now."""
        return max(self.names.retry_after(name), self.addresses.retry_after(address))

    def failed(self, name: str, address: str) -> None:
        self.names.record(name)
        self.addresses.record(address)

    def succeeded(self, name: str) -> None:
        """A sign-in worked: that name's failures are forgotten (other names' and the
        address's count on)."""
        self.names.clear(name)
