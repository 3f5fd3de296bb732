"""Test bed for app.scan: test certificates and real TLS / plain / silent servers on loopback.

Servers only ever bind 127.0.0.0/8 or ::1. A ServerFarm runs an asyncio loop in one thread;
``close()`` stops every server and connection. Run as a script it serves many TLS listeners
for benchmarks (see ``python tests/tlsbed/farm.py --help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import resource
import selectors
import signal
import socket
import ssl
import struct
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tests.tlsbed.certs import Issued, issue, make_key


def server_context(
    chain: Sequence[Issued],
    *,
    maximum: ssl.TLSVersion | None = None,
    minimum: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A server context presenting ``chain`` (leaf first) exactly as given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            context.minimum_version = minimum
        if maximum is not None:
            context.maximum_version = maximum
    if minimum is not None and minimum < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("ALL:@SECLEVEL=0")
    context.num_tickets = 0
    with tempfile.TemporaryDirectory() as tmp:
        cert_path = os.path.join(tmp, "chain.pem")
        key_path = os.path.join(tmp, "key.pem")
        with open(cert_path, "wb") as handle:
            handle.write(b"".join(item.pem for item in chain))
        with open(key_path, "wb") as handle:
            handle.write(chain[0].key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context


def sni_context(default: ssl.SSLContext, by_name: dict[str, ssl.SSLContext]) -> ssl.SSLContext:
    """``default`` with an sni_callback switching to ``by_name[server_name]``."""

    def pick(ssl_object: Any, server_name: str | None, _: ssl.SSLContext) -> None:
        if server_name in by_name:
            ssl_object.context = by_name[server_name]

    default.sni_callback = pick
    return default


@dataclass(frozen=True)
class Endpoints:
    """Where each kind of server listens; every one on the same ``port``."""

    port: int
    rsa: str = "127.0.10.1"
    ec: str = "127.0.10.2"
    missing_intermediate: str = "127.0.10.3"
    self_signed: str = "127.0.10.4"
    expired: str = "127.0.10.5"
    sni: str = "127.0.10.6"
    tls12_only: str = "127.0.10.7"
    http: str = "127.0.10.8"
    silent: str = "127.0.10.9"
    closed: str = "127.0.10.10"
    closing: str = "127.0.10.11"
    misordered: str = "127.0.10.12"
    legacy: str = "127.0.10.13"
    resetting: str = "127.0.10.14"
    client_auth: str = "127.0.10.15"
    ssh: str = "127.0.10.16"
    ipv6: str = "::1"


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port(hosts: Sequence[str]) -> int:
    """A port free on every one of ``hosts`` (all loopback)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        try:
            for host in hosts:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                with socket.socket(family) as sock:
                    sock.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no common free port")


@contextlib.contextmanager
def silent_listeners(hosts: Sequence[str], port: int) -> Iterator[None]:
    """Addresses that drop every SYN, without root: on each of ``hosts`` a listener with
    a backlog of 0 that never accepts, its one queue slot taken by a connection of ours;
    the kernel then drops further SYNs, so a scanner's connects time out as on a
    firewalled network (``iptables -j DROP``)."""
    sockets: list[socket.socket] = []
    try:
        for host in hosts:
            _check_loopback(host)
            listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sockets.append(listener)
            listener.bind((host, port))
            listener.listen(0)
            filler = socket.socket(listener.family)
            sockets.append(filler)
            filler.settimeout(5)
            filler.connect((host, port))
        yield
    finally:
        for sock in sockets:
            sock.close()


def _check_loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"test servers bind loopback only, not {host}")


class ServerFarm:
    """Many small servers on one asyncio loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, context: None)
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.handshakes = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def _track(self, handler: Callable[..., Coroutine[Any, Any, None]]) -> Any:
        async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await handler(reader, writer)
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            finally:
                self._tasks.discard(task)
                writer.transport.abort()

        return wrapped

    def _start(self, host: str, port: int, handler: Any, **kwargs: Any) -> None:
        _check_loopback(host)

        async def start() -> asyncio.Server:
            return await asyncio.start_server(
                self._track(handler), host, port, reuse_address=True, backlog=512, **kwargs
            )

        self._servers.append(self._run(start()))

    def add_tls(self, host: str, port: int, context: ssl.SSLContext) -> None:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.handshakes += 1
            await asyncio.wait_for(reader.read(1024), timeout=10)

        self._start(host, port, hold, ssl=context, ssl_handshake_timeout=10)

    def add_gated_tls(
        self, host: str, port: int, context: ssl.SSLContext, gate: threading.Event
    ) -> None:
        """A TLS server that accepts at once but answers the ClientHello only once ``gate``
        is set (a slow server): a client's handshake stays in flight until then."""
        _check_loopback(host)
        farm = self

        class Held(asyncio.Protocol):
            def __init__(self) -> None:
                self.closed = farm.loop.create_future()

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                assert isinstance(transport, asyncio.Transport)
                transport.pause_reading()  # the ClientHello waits in the kernel
                task = farm.loop.create_task(self.serve(transport))
                farm._tasks.add(task)
                task.add_done_callback(farm._tasks.discard)

            def connection_lost(self, exc: Exception | None) -> None:
                if not self.closed.done():
                    self.closed.set_result(None)

            async def serve(self, transport: asyncio.Transport) -> None:
                try:
                    while not gate.is_set():
                        await asyncio.sleep(0.02)
                    await farm.loop.start_tls(
                        transport, self, context, server_side=True, ssl_handshake_timeout=10
                    )
                    farm.handshakes += 1
                    await asyncio.wait_for(self.closed, timeout=10)
                except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
                    pass
                finally:
                    transport.abort()

        async def start() -> asyncio.Server:
            return await self.loop.create_server(Held, host, port, reuse_address=True, backlog=512)

        self._servers.append(self._run(start()))

    def add_plain(self, host: str, port: int, payload: bytes) -> None:
        """Answers every connection with ``payload`` (e.g. an HTTP response) and closes."""

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(payload)
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(1024), timeout=0.2)

        self._start(host, port, answer)

    def add_silent(self, host: str, port: int) -> None:
        """Accepts and never says anything (a TLS handshake timeout)."""

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.wait_for(reader.read(), timeout=30)

        self._start(host, port, silent)

    def add_closing(self, host: str, port: int) -> None:
        """Reads the client's first bytes, then closes (FIN) without answering."""

        async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.wait_for(reader.read(4096), timeout=10)
            writer.close()
            await writer.wait_closed()

        self._start(host, port, close)

    def add_starttls(
        self, host: str, port: int, protocol: str, context: ssl.SSLContext, *, refuse: bool = False
    ) -> None:
        """A server of ``protocol`` (smtp, imap, pop3, ftp, ldap, xmpp, postgres, rdp) that
        upgrades to TLS with ``context`` (tests/tlsbed/starttls.py), or declines to."""
        from tests.tlsbed.starttls import upgrade_handler

        self._start(host, port, upgrade_handler(protocol, context, refuse=refuse))

    def add_resetting(self, host: str, port: int) -> None:
        """Reads the client's first bytes, then aborts with a TCP RST."""

        async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.wait_for(reader.read(4096), timeout=10)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

        self._start(host, port, reset)

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for server in self._servers:
                await server.wait_closed()

        try:
            self._run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()

    def __enter__(self) -> ServerFarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def loopback_hosts(count: int, base: str = "127.10.0.1") -> list[str]:
    start = int(ipaddress.IPv4Address(base))
    hosts = [str(ipaddress.IPv4Address(start + i)) for i in range(count)]
    for host in hosts:
        _check_loopback(host)
    return hosts


async def handshake_loop(
    items: Sequence[tuple[str, str | None]], port: int, concurrency: int, timeout: float
) -> int:
    """The reference: a bare asyncio handshake loop over (address, SNI name or None), no
    storage, no parsing; the handshakes completed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    limit = asyncio.Semaphore(concurrency)

    async def one(host: str, name: str | None) -> bool:
        async with limit:
            try:
                connect = asyncio.open_connection(host, port, ssl=context, server_hostname=name)
                _, writer = await asyncio.wait_for(connect, timeout)
            except (OSError, TimeoutError):
                return False
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True

    return sum(await asyncio.gather(*(one(host, name) for host, name in items)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["serve", "baseline"])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--base", default="127.10.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--key", default="ec256", help="serve: ec256 | rsa2048 | ...")
    parser.add_argument("--concurrency", type=int, default=128, help="baseline only")
    args = parser.parse_args(argv)
    raise_nofile()
    hosts = loopback_hosts(args.count, args.base)
    if args.mode == "baseline":
        started = time.perf_counter()
        items = [(host, None) for host in hosts]
        ok = asyncio.run(handshake_loop(items, args.port, args.concurrency, 10.0))
        elapsed = time.perf_counter() - started
        print(f"baseline: {ok}/{len(hosts)} handshakes in {elapsed:.3f}s = {ok / elapsed:.0f}/s")
        return
    root = issue("Bench Root", ca=True, key=make_key(args.key))
    intermediate = issue("Bench Intermediate", ca=True, issuer=root, key=make_key(args.key))
    leaf = issue("bench.test", issuer=intermediate, sans=["bench.test"], key=make_key(args.key))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    served = serve_handshakes(
        hosts,
        args.port,
        server_context([leaf, intermediate]),
        stopped,
        ready=lambda: print(f"serving {len(hosts)} TLS listeners from {hosts[0]}", flush=True),
    )
    print(f"handshakes served: {served}", flush=True)


def serve_handshakes(
    hosts: Sequence[str],
    port: int,
    contexts: ssl.SSLContext | Sequence[ssl.SSLContext],
    stopped: threading.Event,
    *,
    ready: Callable[[], None] | None = None,
) -> int:
    """Benchmark server: one selector, non-blocking server-side handshakes, then close.

    ``contexts``: one for every host, or one per host. Cheaper per handshake than asyncio
    streams, so a benchmark measures the client. ``ready`` is called once every listener
    is bound. Returns the handshakes completed.
    """
    per_host = [contexts] * len(hosts) if isinstance(contexts, ssl.SSLContext) else contexts
    selector = selectors.DefaultSelector()
    sockets: dict[int, socket.socket] = {}
    served = 0

    def drop(sock: socket.socket) -> None:
        if sockets.pop(sock.fileno(), None) is not None:
            selector.unregister(sock)
        sock.close()

    def step(tls: ssl.SSLSocket) -> None:
        nonlocal served
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            selector.modify(tls, selectors.EVENT_READ, tls)
            return
        except ssl.SSLWantWriteError:
            selector.modify(tls, selectors.EVENT_WRITE, tls)
            return
        except (ssl.SSLError, OSError):
            drop(tls)
            return
        served += 1
        drop(tls)

    try:
        for host, context in zip(hosts, per_host, strict=True):
            _check_loopback(host)
            listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sockets[listener.fileno()] = listener
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(1024)
            listener.setblocking(False)
            selector.register(listener, selectors.EVENT_READ, context)
        if ready is not None:
            ready()
        while not stopped.is_set():
            for key, _ in selector.select(timeout=0.2):
                if isinstance(key.data, ssl.SSLSocket):
                    step(key.data)
                    continue
                with contextlib.suppress(BlockingIOError, ConnectionAbortedError):
                    while True:
                        conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                        conn.setblocking(False)
                        tls = key.data.wrap_socket(
                            conn, server_side=True, do_handshake_on_connect=False
                        )
                        sockets[tls.fileno()] = tls
                        selector.register(tls, selectors.EVENT_READ, tls)
                        step(tls)
    finally:
        for sock in list(sockets.values()):
            drop(sock)
        selector.close()
    return served


if __name__ == "__main__":
    main()
