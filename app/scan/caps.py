"""Connection caps shared by every sweep of a process (rate and in-flight, thread-safe); no sockets or event loop here."""

from __future__ import annotations

import threading
import time


class SharedCap:
    """Caps shared by every sweep of a process (a scanning agent's own limits across all the
    shards it runs at once), safe to use from several sweep threads:

    - ``rate``: new connections a second (0: none), a token bucket holding at most a tenth
      of a second of tokens (at least one), so the cap holds over any one-second window
      within that burst;
    - ``in_flight``: connections open at once (0: none), from the connect until the target
      ends (refused, timed out, handshake done or failed).

    A reactor takes ``grant(n)`` slots before it connects, gives back what it did not use
    (``give_back``) and releases a slot when a target ends (``release``). ``configure``
    changes both caps while sweeps run; a lower in-flight cap takes effect as connections
    end.
    """

    def __init__(self, rate: float = 0.0, in_flight: int = 0) -> None:
        self._lock = threading.Lock()
        self.rate = float(rate)
        self.in_flight = int(in_flight)
        self.held = 0  # connections open now, over every reactor
        self._tokens = 1.0
        self._tokens_at = time.monotonic()

    def configure(self, rate: float, in_flight: int) -> None:
        with self._lock:
            self._refill(time.monotonic())
            self.rate, self.in_flight = float(rate), int(in_flight)

    def _refill(self, now: float) -> None:
        if self.rate:
            self._tokens = min(
                max(1.0, self.rate / 10), self._tokens + (now - self._tokens_at) * self.rate
            )
        self._tokens_at = now

    def grant(self, wanted: int) -> int:
        """Up to ``wanted`` new connections allowed now (each holds a slot until released)."""
        with self._lock:
            n = wanted
            if self.in_flight:
                n = min(n, max(0, self.in_flight - self.held))
            if self.rate:
                self._refill(time.monotonic())
                n = min(n, int(self._tokens))
                self._tokens -= n
            self.held += n
            return n

    def give_back(self, unused: int) -> None:
        """Granted but not used: the slots and the tokens return."""
        if unused > 0:
            with self._lock:
                self.held -= unused
                if self.rate:
                    self._tokens = min(max(1.0, self.rate / 10), self._tokens + unused)

    def release(self, count: int = 1) -> None:
        if count > 0:
            with self._lock:
                self.held = max(0, self.held - count)

    def retry_after(self) -> float:
        """Seconds until ``grant`` may give something again (a short poll when waiting for
        a slot, which another sweep frees)."""
        with self._lock:
            if self.rate and self._tokens < 1:
                return max(0.001, (1 - self._tokens) / self.rate)
            return 0.01
