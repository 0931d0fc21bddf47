"""An unreliable HTTP proxy on 127.0.0.1 in front of a real monitor (soak and resilience tests).

    with FaultProxy(monitor_url, seed=3, fault_rate=0.3, hang_seconds=3) as proxy:
        ...point PANDA_URL at proxy.url, set PANDA_UPDATE_TIMEOUT below hang_seconds...
        proxy.stop_faults()        # from now on every request is forwarded faithfully
        print(proxy.counts())      # {"forwarded": 812, "refused": 9, "hang": 11, ...}

Each request pandad makes is read whole, then, with probability ``fault_rate`` (chosen with
``random.Random(seed)``), one fault among ``kinds`` happens instead of a faithful forward:

- ``refuse``: the listening socket is closed for ``refuse_seconds`` and bound again on the same
  port, so new connections are refused (ECONNREFUSED) meanwhile; the current request is reset;
- ``hang``: the request is read and never answered; the connection is closed after
  ``hang_seconds`` (longer than pandad's PANDA_UPDATE_TIMEOUT, which must give up first);
- ``reset``: the connection is reset (RST) without forwarding: the monitor never saw it;
- ``reset_after``: the request is forwarded and applied, then the connection is reset before the
  answer: pandad counts a loss the monitor does not have (at-least-once territory);
- ``500`` / ``429``: answered at once with that status, not forwarded.

Forwarding uses a new upstream connection per request (``http.client``), and answers with the
upstream's status and body. A refused or unreachable upstream (the monitor restarting) is
answered 502. Counters are per outcome; ``stop()`` releases every hanging connection.
"""

import http.client
import random
import socket
import struct
import threading
import time
import urllib.parse
from typing import Dict, List, Optional, Sequence, Tuple

from tests.support.faultserver import HOST, PATH, read_request, respond
from tests.support.loopback import LoopbackServer, close as _close, listen

KINDS = ("refuse", "hang", "reset", "reset_after", "500", "429")


def _reset(conn: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()


class FaultProxy(LoopbackServer):
    """A TCP/HTTP proxy to ``upstream`` (a monitor URL) that misbehaves at random."""

    def __init__(self, upstream: str, seed: int = 1, fault_rate: float = 0.3,
                 kinds: Sequence[str] = KINDS, hang_seconds: float = 5.0,
                 refuse_seconds: float = 1.0, upstream_timeout: float = 30.0) -> None:
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        parts = urllib.parse.urlsplit(upstream)
        self.upstream_host = parts.hostname or HOST
        self.upstream_port = parts.port or 80
        self.upstream_path = parts.path or PATH
        self.fault_rate = fault_rate
        self.kinds = tuple(kinds)
        self.hang_seconds = hang_seconds
        self.refuse_seconds = refuse_seconds
        self.upstream_timeout = upstream_timeout
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._counts: Dict[str, int] = {}
        self._open: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._faults_on = threading.Event()
        self._faults_on.set()
        self.stopping = threading.Event()
        self.path = self.upstream_path
        self._listener: Optional[socket.socket] = listen(HOST)
        self._serve_in_thread(HOST, self._listener.getsockname()[1], self._accept_loop,
                              "faultproxy-accept")

    # -- control ------------------------------------------------------------------------------

    def stop_faults(self) -> None:
        """Forward every request faithfully from now on (a refusal under way still ends)."""
        self._faults_on.clear()

    def start_faults(self) -> None:
        self._faults_on.set()

    @property
    def faulty(self) -> bool:
        return self._faults_on.is_set()

    def counts(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            listener, self._listener = self._listener, None
            open_now, self._open = self._open, []
            threads = list(self._threads)
        if listener is not None:
            _close(listener)
        for conn in open_now:
            _close(conn)
        self._thread.join(5)
        for thread in threads:
            thread.join(5)

    # -- serving ------------------------------------------------------------------------------

    def _count(self, outcome: str) -> None:
        with self._lock:
            self._counts[outcome] = self._counts.get(outcome, 0) + 1

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                # Refusing: the port is closed until _refuse binds it again.
                self.stopping.wait(0.02)
                continue
            try:
                conn, _ = listener.accept()
            except OSError:
                continue              # closed for a refusal, or for stop()
            with self._lock:
                if self.stopping.is_set():
                    _close(conn)
                    return
                self._open.append(conn)
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                          name="faultproxy-conn")
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _choose(self) -> Optional[str]:
        with self._lock:
            if not self._faults_on.is_set() or self._random.random() >= self.fault_rate:
                return None
            return self._random.choice(self.kinds)

    def _serve(self, conn: socket.socket) -> None:
        try:
            request = read_request(conn, bytearray())
            if request is None:
                return
            fault = self._choose()
            self._count(fault or "forwarded")
            if fault is None:
                self._forward(conn, request)
            elif fault == "refuse":
                _reset(conn)
                self._refuse()
            elif fault == "hang":
                self.stopping.wait(self.hang_seconds)
            elif fault == "reset":
                _reset(conn)
            elif fault == "reset_after":
                self._upstream(request)
                _reset(conn)
            else:
                respond(conn, int(fault), b'{"detail": "injected fault"}')
        finally:
            with self._lock:
                if conn in self._open:
                    self._open.remove(conn)
            _close(conn)

    def _refuse(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is None:
            return                    # another connection is refusing already
        _close(listener)
        self.stopping.wait(self.refuse_seconds)
        deadline = time.monotonic() + 5
        while not self.stopping.is_set():
            try:
                sock = listen(HOST, self.port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        else:
            return
        with self._lock:
            self._listener = sock

    def _upstream(self, request) -> Optional[Tuple[int, bytes]]:
        """Send ``request`` to the monitor; (status, body), or None if it cannot be reached."""
        upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port,
                                              timeout=self.upstream_timeout)
        try:
            headers = {name: value for name, value in request.headers.items()
                       if name not in ("connection", "host", "content-length")}
            upstream.request(request.method, request.path, body=request.body, headers=headers)
            response = upstream.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return None
        finally:
            upstream.close()

    def _forward(self, conn: socket.socket, request) -> None:
        answer = self._upstream(request)
        if answer is None:
            self._count("upstream_unreachable")
            respond(conn, 502, b'{"detail": "monitor unreachable"}')
            return
        respond(conn, answer[0], answer[1])
