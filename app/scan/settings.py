"""How a scan behaves unless a task says otherwise, and the bounds a task may choose within.

The one place for these numbers: the model's column defaults, the task form, CSV import,
the service's validation and the command line all read them from here.
"""

from __future__ import annotations

from typing import Final

CONNECT_TIMEOUT: Final = 3.0  # seconds to open the TCP connection
HANDSHAKE_TIMEOUT: Final = 5.0  # seconds for the TLS handshake once connected
CONCURRENCY: Final = 256  # connections in flight per shard
PORTS: Final = "443"

MAX_CONNECT_TIMEOUT: Final = 60.0
MAX_HANDSHAKE_TIMEOUT: Final = 120.0
MAX_CONCURRENCY: Final = 10_000
RATE: Final = 0.0  # new connections per second; 0 = no cap
MAX_RATE: Final = 100_000.0
