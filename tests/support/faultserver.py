"""Misbehaving HTTP servers on 127.0.0.1 for transport and daemon tests.

Every server listens on 127.0.0.1 (an ephemeral port), accepts in a thread and handles each
connection in its own thread, so a hanging connection never blocks another. Each has ``.url``
(``http://127.0.0.1:PORT/api/jobs/``), thread-safe counters ``.connections`` and ``.requests``,
``.received`` (the requests read so far), ``.stop()``, and works as a context manager::

    with HangServer() as server:
        ...send to server.url...
        assert server.requests == 1

Servers:

- ``refused_url()`` / ``RefusedPort``: a port with nothing listening (connect is refused);
- ``HangServer``: accepts, reads the request, never answers;
- ``StallServer``: accepts, never reads (a sender of a big body blocks in send);
- ``TrickleServer``: answers, one byte per ``interval`` seconds;
- ``StatusServer``: answers a fixed status (500, 429, 503, 201, ...) with a body;
- ``CloseMidResponseServer``: sends part of a response (``"status"``, ``"headers"``, ``"body"``
  or explicit bytes), then closes;
- ``FaultServer(handler)``: the generic hook; ``handler(server, conn, request)`` does anything,
  e.g. ``respond(conn, 503, b"busy")``.

``stop()`` shuts every open connection down, so handlers blocked in ``recv`` or in a trickle
wake up and the threads are joined.
"""

import socket
import threading
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple, Union

from http.client import responses as _REASONS

from tests.support.loopback import LoopbackServer, close as _shutdown, listen

HOST = "127.0.0.1"
PATH = "/api/jobs/"
_MAX_HEAD = 64 * 1024


class Request(NamedTuple):
    method: str
    path: str
    headers: Dict[str, str]          # names lower-cased
    body: bytes


def read_request(conn: socket.socket, pending: bytearray) -> Optional[Request]:
    """Read one HTTP/1.1 request (Content-Length bodies); None at EOF or on garbage.

    ``pending`` holds bytes already read past the previous request on a kept-alive connection.
    """
    while b"\r\n\r\n" not in pending:
        if len(pending) > _MAX_HEAD:
            return None
        chunk = _recv(conn)
        if not chunk:
            return None
        pending += chunk
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2:
        return None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        return None
    body = bytearray(rest)
    while len(body) < length:
        chunk = _recv(conn)
        if not chunk:
            return None
        body += chunk
    pending[:] = body[length:]
    return Request(parts[0], parts[1], headers, bytes(body[:length]))


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(65536)
    except OSError:
        return b""


def response_bytes(status: int, body: bytes = b"", headers: Optional[Dict[str, str]] = None,
                   keep_alive: bool = False) -> bytes:
    """A complete HTTP/1.1 response with Content-Length."""
    all_headers = {"Content-Type": "application/json", "Content-Length": str(len(body)),
                   "Connection": "keep-alive" if keep_alive else "close"}
    all_headers.update(headers or {})
    head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in all_headers.items())
    return head.encode("latin-1") + b"\r\n" + body


def respond(conn: socket.socket, status: int, body: bytes = b"",
            headers: Optional[Dict[str, str]] = None, keep_alive: bool = False) -> bool:
    """Send a whole response; False if the client has gone."""
    try:
        conn.sendall(response_bytes(status, body, headers, keep_alive))
        return True
    except OSError:
        return False


Handler = Callable[["FaultServer", socket.socket, Request], Optional[bool]]


class FaultServer(LoopbackServer):
    """A TCP server on 127.0.0.1 that reads HTTP requests and lets ``handle`` misbehave.

    ``handler(server, conn, request)`` is called per request; returning True keeps the
    connection open for the next request (keep-alive), anything else closes it.
    """

    def __init__(self, handler: Optional[Handler] = None) -> None:
        self._handler = handler
        self._lock = threading.Lock()
        self._connections = 0
        self._received: List[Request] = []
        self._open: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self.stopping = threading.Event()
        self._listener = listen(HOST)
        self._serve_in_thread(HOST, self._listener.getsockname()[1], self._accept_loop,
                              f"{type(self).__name__}-accept")

    # -- counters -----------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self._received)

    @property
    def received(self) -> List[Request]:
        with self._lock:
            return list(self._received)

    # -- life cycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        self.stopping.set()
        for sock in [self._listener] + self._take_open():
            _shutdown(sock)
        self._thread.join(5)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)

    def _take_open(self) -> List[socket.socket]:
        with self._lock:
            open_now, self._open = self._open, []
        return open_now

    # -- serving ------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self.stopping.is_set():
                    _shutdown(conn)
                    return
                self._connections += 1
                self._open.append(conn)
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                          name=f"{type(self).__name__}-conn")
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        pending = bytearray()
        try:
            while not self.stopping.is_set():
                request = read_request(conn, pending)
                if request is None:
                    return
                with self._lock:
                    self._received.append(request)
                if not self.handle(conn, request):
                    return
        finally:
            with self._lock:
                if conn in self._open:
                    self._open.remove(conn)
            _shutdown(conn)

    def handle(self, conn: socket.socket, request: Request) -> Optional[bool]:
        if self._handler is None:
            return respond(conn, 200, b"[]")
        return self._handler(self, conn, request)


class HangServer(FaultServer):
    """Accepts, reads the request, never answers (until stopped)."""

    def handle(self, conn: socket.socket, request: Request) -> Optional[bool]:
        self.stopping.wait()
        return False


class StallServer(FaultServer):
    """Accepts and never reads: a big request fills the socket buffers and the send blocks."""

    def _serve(self, conn: socket.socket) -> None:
        self.stopping.wait()
        _shutdown(conn)


class TrickleServer(FaultServer):
    """Answers ``status`` with ``body``, one byte every ``interval`` seconds."""

    def __init__(self, interval: float = 1.0, status: int = 200,
                 body: bytes = b"[]" * 100) -> None:
        self.interval = interval
        self.response = response_bytes(status, body)
        super().__init__()

    def handle(self, conn: socket.socket, request: Request) -> Optional[bool]:
        for i in range(len(self.response)):
            try:
                conn.sendall(self.response[i:i + 1])
            except OSError:
                return False
            if self.stopping.wait(self.interval):
                return False
        return False


class StatusServer(FaultServer):
    """Answers every request with ``status`` and ``body`` (keep-alive unless told not to)."""

    def __init__(self, status: int = 500, body: bytes = b'{"detail": "fault"}',
                 headers: Optional[Dict[str, str]] = None, keep_alive: bool = True) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.keep_alive = keep_alive
        super().__init__()

    def handle(self, conn: socket.socket, request: Request) -> Optional[bool]:
        sent = respond(conn, self.status, self.body, self.headers, self.keep_alive)
        return sent and self.keep_alive


_PARTIALS: Dict[str, bytes] = {
    "status": b"HTTP/1.1 20",
    "headers": b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Le",
    "body": b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\nConnection: close\r\n\r\n[{\"id\": ",
    "nothing": b"",
}


class CloseMidResponseServer(FaultServer):
    """Sends part of a response, then closes the connection.

    ``partial`` is ``"status"`` (half a status line), ``"headers"`` (half the headers),
    ``"body"`` (a body shorter than its Content-Length), ``"nothing"`` (close at once),
    or explicit bytes.
    """

    def __init__(self, partial: Union[str, bytes] = "headers") -> None:
        self.partial = _PARTIALS[partial] if isinstance(partial, str) else partial
        super().__init__()

    def handle(self, conn: socket.socket, request: Request) -> Optional[bool]:
        try:
            conn.sendall(self.partial)
        except OSError:
            pass
        return False


class RefusedPort(LoopbackServer):
    """A port bound on 127.0.0.1 but not listening: connecting is refused (ECONNREFUSED).

    Holding the bound socket keeps another process from taking the port meanwhile.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((HOST, 0))
        self.host, self.port = HOST, self._sock.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}{PATH}"
        self.connections = 0
        self.requests = 0

    def stop(self) -> None:
        self._sock.close()


def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was free a moment ago)."""
    port = RefusedPort()
    port.stop()
    return port.url


def free_port() -> Tuple[str, int]:
    """A (host, port) on 127.0.0.1 that was free a moment ago."""
    port = RefusedPort()
    port.stop()
    return HOST, port.port
