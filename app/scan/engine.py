"""The two-stage sweep reactor behind app.scan.sweep (internal; use sweep.py).

Stage 1 calls ``connect_ex`` on raw non-blocking sockets: no asyncio Transport, Future or
Task per address. A refusal that is already known (loopback, a near LAN) costs two connect
calls on a reused socket; connects still in progress wait in a private ``selectors`` object
(epoll on Linux) whose own descriptor is registered with the asyncio loop, so thousands of
sockets cost the loop one reader. Stage 2 runs TLS handshakes only on connected sockets: a
non-blocking ``ssl.SSLSocket`` driven by the same selector, one shared SSLContext, bounded
by ``tls_concurrency``. Stage 1 pauses while stage 2 has a full backlog.

Every socket is owned by exactly one table (connecting, waiting, handshaking) and every
transition closes it in a ``finally`` unless ownership moved on; ``close_all`` empties the
tables on stop, cancellation or error.
"""

from __future__ import annotations

import asyncio
import errno
import os
import selectors
import socket
import ssl
from collections import deque
from collections.abc import Callable, Iterator

from app.scan.caps import SharedCap
from app.scan.probe import (
    ErrorKind,
    ProbeResult,
    classify_errno,
    classify_handshake_error,
    failed_tls_result,
    sni_problem,
    sockaddr_for,
    tls_result,
)
from app.scan.shards import Target
from app.scan.starttls import Dialogue, Protocol, UpgradeFailed

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_CONNECTS_PER_CALLBACK = 512
_RETRY_LATER = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL}

Finish = Callable[[Target, ErrorKind | None, ProbeResult | None], None]


_CONNECTING, _CONNECTED, _HANDSHAKING, _DONE = range(4)


class _Job:
    """One target in flight: its socket (plain, then TLS), stage and selector interest.

    ``fd`` is fixed at creation: wrapping the socket in TLS keeps the descriptor.
    """

    __slots__ = (
        "dialogue",
        "events",
        "fd",
        "outgoing",
        "protocol",
        "sock",
        "stage",
        "stage_started",
        "started",
        "target",
        "tls",
    )

    def __init__(self, target: Target, sock: socket.socket, started: float) -> None:
        self.target = target
        self.sock = sock
        self.fd = sock.fileno()
        self.tls: ssl.SSLSocket | None = None
        self.started = started
        self.stage_started = started  # when the current stage's deadline started
        self.stage = _CONNECTING
        self.events = 0
        self.protocol = Protocol.TLS
        self.dialogue: Dialogue | None = None  # the plaintext upgrade, while it runs
        self.outgoing = b""


class Reactor:
    """Drives targets through connect and handshake on the running loop; see module doc."""

    def __init__(
        self,
        targets: Iterator[Target],
        *,
        context: ssl.SSLContext,
        connect_timeout: float,
        handshake_timeout: float,
        connect_concurrency: int,
        tls_concurrency: int,
        finish: Finish,
        on_idle: Callable[[], None],
        protocol_of: Callable[[int], Protocol] | None = None,
        rate: Callable[[], float] | None = None,
        shared: SharedCap | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._targets = targets
        self._retry: deque[Target] = deque()
        self._context = context
        self._connect_timeout = connect_timeout
        self._handshake_timeout = handshake_timeout
        self._connect_limit = connect_concurrency
        self._tls_limit = tls_concurrency
        self._finish_target = finish
        self._on_idle = on_idle
        # Caps shared with other sweeps of this process (an agent's own limits); _held is
        # how many of its slots this reactor holds (one per target from connect to end).
        self._shared = shared
        self._held = 0
        self._protocol_of = protocol_of or (lambda port: Protocol.TLS)
        # Rate cap: at most ``rate()`` new connections per second (0: no cap; read at every
        # fill, so a caller may change it while the sweep runs), a token bucket holding at
        # most a tenth of a second of tokens so a cap is never exceeded in bursts.
        self._rate_of = rate or (lambda: 0.0)
        self._rate = self._rate_of()
        self._tokens = 1.0
        self._tokens_at = self.loop.time()
        self._rate_wakeup: asyncio.TimerHandle | None = None
        self._selector = selectors.DefaultSelector()
        self._connecting: dict[int, _Job] = {}
        self._waiting: deque[_Job] = deque()
        self._handshaking: dict[int, _Job] = {}
        # (deadline, job); timeouts are constant, so each deque is sorted by deadline.
        self._connect_deadlines: deque[tuple[float, _Job]] = deque()
        self._tls_deadlines: deque[tuple[float, _Job]] = deque()
        self._spares: dict[int, socket.socket] = {}  # one reusable socket per family
        self._reuse = True
        self.failure: BaseException | None = None
        self._closed = False
        self._exhausted = False
        self._stopping = False
        self._fill_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._tick = max(0.005, min(0.05, connect_timeout / 4, handshake_timeout / 4))

    def in_flight_credit(self) -> float:
        """Targets in flight, each counted as the share of its stage's timeout already
        spent (below 1): on a silent range, where targets end only by timing out, done +
        credit grows linearly with time instead of in steps one timeout long."""
        now = self.loop.time()
        credit = 0.0
        for jobs, timeout in (
            (self._connecting.values(), self._connect_timeout),
            (self._handshaking.values(), self._handshake_timeout),
        ):
            for job in jobs:
                credit += min(0.99, (now - job.stage_started) / timeout)
        return credit

    @property
    def idle(self) -> bool:
        return (self._exhausted or self._stopping) and not (
            self._connecting or self._waiting or self._handshaking
        )

    def start(self) -> None:
        self.loop.add_reader(self._selector.fileno(), self._on_events)
        self._timer = self.loop.call_later(self._tick, self._on_tick)
        self._schedule_fill()

    def stop(self) -> None:
        """Start nothing new and drop what is in flight (no results for it)."""
        self._stopping = True
        self.close_all()
        self._on_idle()

    def close_all(self) -> None:
        """Close every socket still owned; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._rate_wakeup is not None:
            self._rate_wakeup.cancel()
            self._rate_wakeup = None
        try:
            for spare in self._spares.values():
                spare.close()
            for job in [*self._connecting.values(), *self._waiting, *self._handshaking.values()]:
                self._release(job)
        finally:
            if self._shared is not None:
                self._shared.release(self._held)
                self._held = 0
            self._spares.clear()
            self._connecting.clear()
            self._waiting.clear()
            self._handshaking.clear()
            if not self.loop.is_closed():
                self.loop.remove_reader(self._selector.fileno())
            self._selector.close()

    def _fail(self, exc: BaseException) -> None:
        """An unexpected error inside a callback: stop and let sweep() re-raise it."""
        if self.failure is None:
            self.failure = exc
        self.stop()

    def _finish(self, target: Target, kind: ErrorKind | None, result: ProbeResult | None) -> None:
        """A target ended: its shared slot is free again, then the sweep counts it."""
        if self._shared is not None and self._held:
            self._held -= 1
            self._shared.release()
        self._finish_target(target, kind, result)

    def _release(self, job: _Job) -> None:
        job.stage = _DONE
        if job.events:
            self._selector.unregister(job.fd)
            job.events = 0
        try:
            if job.tls is not None:
                job.tls.close()
        finally:
            job.sock.close()

    # stage 1: connect -------------------------------------------------------------------

    def _schedule_fill(self) -> None:
        if not self._fill_scheduled and not self._stopping:
            self._fill_scheduled = True
            self.loop.call_soon(self._fill)

    def _fill(self) -> None:
        """Start connects up to the limits; yields to the loop every few hundred."""
        self._fill_scheduled = False
        try:
            while self._waiting and len(self._handshaking) < self._tls_limit:
                self._start_tls(self._waiting.popleft())
            budget = _CONNECTS_PER_CALLBACK
            self._rate = self._rate_of()
            if self._rate:
                budget = min(budget, self._take_tokens())
            shared = self._shared
            granted = 0
            blocked = False  # waiting for the shared caps: a timer fills again
            if shared is not None and budget and not self._stopping:
                room = min(budget, self._connect_limit - len(self._connecting))
                if room > 0 and len(self._waiting) < self._tls_limit:
                    granted = budget = shared.grant(room)
                    if not granted:
                        blocked = True
                        self._wait_for_tokens(shared.retry_after())
            while (
                budget
                and not self._stopping
                and len(self._connecting) < self._connect_limit
                and len(self._waiting) < self._tls_limit
            ):
                target = self._retry.popleft() if self._retry else next(self._targets, None)
                if target is None:
                    self._exhausted = True
                    break
                budget -= 1
                if self._rate:
                    self._tokens -= 1
                if shared is not None:
                    granted -= 1
                    self._held += 1
                self._connect(target)
            if shared is not None and granted > 0:
                shared.give_back(granted)
            if (
                not blocked
                and self._rate
                and not budget
                and not self._exhausted
                and not self._stopping
            ):
                self._wait_for_tokens()
                budget = 1  # not out of work: the rate timer refills
            if budget == 0 and not self._exhausted and not blocked:
                self._schedule_fill()
        except Exception as exc:  # surfaced by sweep(), never swallowed
            self._fail(exc)
        if self.idle:
            self._on_idle()

    def _take_tokens(self) -> int:
        now = self.loop.time()
        self._tokens = min(
            max(1.0, self._rate / 10), self._tokens + (now - self._tokens_at) * self._rate
        )
        self._tokens_at = now
        return int(self._tokens)

    def _wait_for_tokens(self, delay: float | None = None) -> None:
        """Fill again after ``delay`` seconds (default: when this sweep's own bucket has a
        token again)."""
        if self._rate_wakeup is None:
            if delay is None:
                delay = max(0.001, (1 - self._tokens) / self._rate)

            def wake() -> None:
                self._rate_wakeup = None
                self._schedule_fill()

            self._rate_wakeup = self.loop.call_later(delay, wake)

    def _connect(self, target: Target) -> None:
        family, sockaddr = sockaddr_for(target.ip, target.port)
        sock = self._spares.pop(family, None)
        reused = sock is not None
        if sock is None:
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as exc:
                self._connect_failed(target, exc.errno)
                return
        owned = True  # this frame closes sock unless a table or the spare slot takes it
        try:
            if not reused:
                sock.setblocking(False)
            code = sock.connect_ex(sockaddr)
            if code == errno.EINPROGRESS:
                # A RST that already arrived (loopback, a near LAN) is reported by a second
                # connect, which on Linux also resets the socket so it can be reused: a
                # refused port then costs two syscalls, not socket + connect + close.
                code = sock.connect_ex(sockaddr)
                if code in (errno.EALREADY, errno.EINPROGRESS):
                    self._await_connect(target, sock)
                    owned = False
                    return
                if code not in (0, errno.EISCONN) and self._reuse:
                    self._spares[family] = sock
                    owned = False
            elif reused and code in (errno.EINVAL, errno.EALREADY, errno.EISCONN):
                # This platform does not reset a failed socket; stop reusing.
                self._reuse = False
                self._connect(target)
                return
            if code in (0, errno.EISCONN):
                owned = False
                self._connected(_Job(target, sock, self.loop.time()))
                return
            self._connect_failed(target, code)
        finally:
            if owned:
                sock.close()

    def _await_connect(self, target: Target, sock: socket.socket) -> None:
        job = _Job(target, sock, self.loop.time())
        self._selector.register(sock.fileno(), _WRITE, job)
        job.events = _WRITE
        self._connecting[sock.fileno()] = job
        self._connect_deadlines.append((job.started + self._connect_timeout, job))

    def _connect_failed(self, target: Target, code: int | None) -> None:
        if code in _RETRY_LATER:
            if not (self._connecting or self._handshaking):
                raise OSError(code, f"cannot open a socket: {os.strerror(code or 0)}")
            # Out of descriptors or local ports: retry once something in flight finishes.
            if self._shared is not None and self._held:
                self._held -= 1
                self._shared.release()
            self._retry.append(target)
            self._connect_limit = max(1, len(self._connecting))
            return
        self._finish(target, classify_errno(code), None)

    def _on_connect_ready(self, job: _Job) -> None:
        fd = job.sock.fileno()
        del self._connecting[fd]
        self._selector.unregister(fd)
        job.events = 0
        code = job.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._release(job)
            self._finish(job.target, classify_errno(code), None)
        else:
            self._connected(job)
        self._schedule_fill()

    # stage 2: TLS handshake -------------------------------------------------------------

    def _connected(self, job: _Job) -> None:
        job.stage = _CONNECTED
        if len(self._handshaking) < self._tls_limit:
            self._start_tls(job)
        else:
            self._waiting.append(job)

    def _start_tls(self, job: _Job) -> None:
        """Admit a connected job to stage 2: the upgrade conversation (if its port's
        protocol has one), then the handshake; one deadline covers both."""
        job.stage = _HANDSHAKING
        job.protocol = self._protocol_of(job.target.port)
        self._handshaking[job.fd] = job
        job.stage_started = self.loop.time()
        self._tls_deadlines.append((job.stage_started + self._handshake_timeout, job))
        if Dialogue.needed(job.protocol):
            job.dialogue = Dialogue(job.protocol, job.target.host_name or job.target.ip)
            self._converse(job, readable=False)
        else:
            self._wrap(job)

    def _converse(self, job: _Job, *, readable: bool) -> None:
        """One step of the plaintext upgrade: read what arrived, send what is due."""
        dialogue = job.dialogue
        assert dialogue is not None  # only called while the upgrade runs
        try:
            if readable:
                try:
                    data = job.sock.recv(4096)
                except BlockingIOError:
                    pass
                else:
                    dialogue.receive(data)
            job.outgoing += dialogue.take_outgoing()
            if job.outgoing:
                try:
                    sent = job.sock.send(job.outgoing)
                except BlockingIOError:
                    sent = 0
                job.outgoing = job.outgoing[sent:]
        except UpgradeFailed as exc:
            self._upgrade_failed(job, ErrorKind.STARTTLS_FAILURE, str(exc))
            return
        except OSError as exc:
            kind = classify_errno(exc.errno)
            kind = ErrorKind.RESET if kind is ErrorKind.REFUSED else kind
            self._upgrade_failed(job, kind, exc.strerror or type(exc).__name__)
            return
        if job.outgoing:
            self._want(job, job.fd, _WRITE)
        elif dialogue.done:
            job.dialogue = None
            self._wrap(job)
        else:
            self._want(job, job.fd, _READ)

    def _upgrade_failed(self, job: _Job, kind: ErrorKind, detail: str) -> None:
        self._end_tls(job)
        self._tls_failed(job, kind, detail)

    def _wrap(self, job: _Job) -> None:
        if job.events:  # registered as a plain socket during the upgrade
            self._selector.unregister(job.fd)
            job.events = 0
        failure = sni_problem(job.target.host_name)
        if failure is None:
            try:
                job.tls = self._context.wrap_socket(
                    job.sock, server_hostname=job.target.host_name, do_handshake_on_connect=False
                )
            except (ssl.SSLError, OSError) as exc:
                failure = classify_handshake_error(exc)[1]
        if job.tls is None:
            self._end_tls(job)
            self._tls_failed(job, ErrorKind.HANDSHAKE_FAILURE, failure or "wrap failed")
            return
        self._step(job)

    def _step(self, job: _Job) -> None:
        tls = job.tls
        assert tls is not None  # set by _start_tls before any step
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            self._want(job, tls.fileno(), _READ)
            return
        except ssl.SSLWantWriteError:
            self._want(job, tls.fileno(), _WRITE)
            return
        except (ssl.SSLError, OSError) as exc:
            error: BaseException | None = exc
        else:
            error = None
        target = job.target
        elapsed = self.loop.time() - job.started
        try:
            if error is None:
                result = tls_result(
                    tls, target.ip, target.port, target.host_name, elapsed, job.protocol
                )
            else:
                result = failed_tls_result(
                    tls, error, target.ip, target.port, target.host_name, elapsed, job.protocol
                )
        finally:
            self._end_tls(job)
        self._finish(target, result.error, result)

    def _want(self, job: _Job, fd: int, events: int) -> None:
        if job.events == 0:
            self._selector.register(fd, events, job)
        elif job.events != events:
            self._selector.modify(fd, events, job)
        job.events = events

    def _end_tls(self, job: _Job) -> None:
        self._handshaking.pop(job.fd, None)
        self._release(job)
        self._schedule_fill()  # starts waiting handshakes too; no recursion here
        if self.idle:
            self._on_idle()

    def _tls_failed(self, job: _Job, kind: ErrorKind, detail: str) -> None:
        target = job.target
        elapsed = self.loop.time() - job.started
        result = ProbeResult(
            target.ip,
            target.port,
            target.host_name,
            error=kind,
            detail=detail,
            elapsed=elapsed,
            protocol=job.protocol,
        )
        self._finish(target, kind, result)

    # events and timers ------------------------------------------------------------------

    def _on_events(self) -> None:
        try:
            for key, mask in self._selector.select(0):
                job: _Job = key.data
                if job.stage == _CONNECTING:
                    self._on_connect_ready(job)
                elif job.stage == _HANDSHAKING and job.dialogue is not None:
                    self._converse(job, readable=bool(mask & _READ))
                elif job.stage == _HANDSHAKING:
                    self._step(job)
        except Exception as exc:  # surfaced by sweep(), never swallowed
            self._fail(exc)

    def _on_tick(self) -> None:
        now = self.loop.time()
        try:
            self._expire(self._connect_deadlines, now, _CONNECTING, self._expire_connect)
            self._expire(self._tls_deadlines, now, _HANDSHAKING, self._expire_tls)
        except Exception as exc:  # surfaced by sweep(), never swallowed
            self._fail(exc)
        if not self._stopping:
            self._timer = self.loop.call_later(self._tick, self._on_tick)

    @staticmethod
    def _expire(
        deadlines: deque[tuple[float, _Job]],
        now: float,
        stage: int,
        expire: Callable[[_Job], None],
    ) -> None:
        while deadlines and (deadlines[0][1].stage != stage or deadlines[0][0] <= now):
            _, job = deadlines.popleft()
            if job.stage == stage:
                expire(job)

    def _expire_connect(self, job: _Job) -> None:
        self._connecting.pop(job.sock.fileno(), None)
        self._release(job)
        self._finish(job.target, ErrorKind.TIMEOUT, None)
        self._schedule_fill()

    def _expire_tls(self, job: _Job) -> None:
        target = job.target
        upgrading = job.dialogue is not None
        self._end_tls(job)
        elapsed = self.loop.time() - job.started
        kind = ErrorKind.HANDSHAKE_TIMEOUT
        result = ProbeResult(
            target.ip,
            target.port,
            target.host_name,
            error=kind,
            detail=f"no answer during the {job.protocol} upgrade" if upgrading else None,
            elapsed=elapsed,
            protocol=job.protocol,
        )
        self._finish(target, kind, result)
