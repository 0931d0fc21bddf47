"""A small forwarding web proxy on 127.0.0.1 that records what it saw.

    with ForwardingProxy() as proxy:                 # http://127.0.0.1:PORT
        ...
        proxy.requests                               # [Seen("CONNECT", "127.0.0.1:8443", {...})]
        proxy.client_bytes                           # every byte clients sent it, tunnels too

``CONNECT host:port`` (``[address]:port`` for IPv6) opens a byte tunnel to the target; an
absolute-URI request (``POST http://host:port/path``, any method) is forwarded with its path
only and without the hop-by-hop ``Proxy-*`` headers, and the answer relayed back. Targets must
be on loopback.

Misbehaviours for tests: ``mode="hang"`` reads the request and never answers;
``mode="stall_tunnel"`` answers CONNECT with 200 and then relays nothing;
``status=407`` (or 502, ...) answers every request with that status;
``require_authorization="Basic ..."`` answers 407 unless Proxy-Authorization is exactly that.
"""

import select
import socket
import socketserver
import threading
from typing import Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

from tests.support.loopback import SocketServerLoopback

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_REASONS = {200: "Connection established", 400: "Bad Request", 403: "Forbidden",
            407: "Proxy Authentication Required", 502: "Bad Gateway"}


class Seen(NamedTuple):
    method: str
    target: str                    # "host:port" for CONNECT, the absolute URI otherwise
    headers: Dict[str, str]        # names lower-cased


class _Handler(socketserver.StreamRequestHandler):
    rbufsize = 0                   # unbuffered: no tunnel byte may stay behind in a buffer
    server: "_Server"

    def handle(self) -> None:
        proxy = self.server.owner
        head = self._read_head()
        if head is None:
            return
        method, target, headers = head
        proxy._record(Seen(method, target, headers))
        if proxy.mode == "hang":
            proxy._stopping.wait(60)
            return
        status = proxy.status
        if status is None and proxy.require_authorization is not None and \
                headers.get("proxy-authorization") != proxy.require_authorization:
            status = 407
        if status is not None:
            self._answer(status)
            return
        if method == "CONNECT":
            self._tunnel(target)
        else:
            self._forward(method, target, headers)

    def _read_head(self) -> Optional[Tuple[str, str, Dict[str, str]]]:
        lines: List[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                break
            lines.append(line)
            self.server.owner._note_bytes(line)
        self.server.owner._note_bytes(b"\r\n")
        method, target, _ = lines[0].decode("latin-1").split(" ", 2)
        headers: Dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return method, target, headers

    def _answer(self, status: int) -> None:
        extra = "Proxy-Authenticate: Basic realm=\"test\"\r\n" if status == 407 else ""
        self.wfile.write(f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n{extra}"
                         f"Content-Length: 0\r\nConnection: close\r\n\r\n".encode())

    def _upstream(self, host: str, port: int) -> Optional[socket.socket]:
        if host.strip("[]") not in _LOOPBACK:
            self._answer(403)
            return None
        try:
            return socket.create_connection((host.strip("[]"), port), timeout=5)
        except OSError:
            self._answer(502)
            return None

    def _tunnel(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            self._answer(400)          # RFC 3986 authority: an IPv6 address is in brackets
            return
        upstream = self._upstream(host, int(port))
        if upstream is None:
            return
        with upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if self.server.owner.mode == "stall_tunnel":
                self.server.owner._stopping.wait(60)
                return
            self._relay(upstream)

    def _forward(self, method: str, target: str, headers: Dict[str, str]) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            self._answer(403)
            return
        upstream = self._upstream(parts.hostname, parts.port or 80)
        if upstream is None:
            return
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        lines = [f"{method} {path} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()
                  if not name.startswith("proxy-") and name != "connection"]
        # One request per connection: the relay below is bytes both ways, so the upstream
        # must close after its answer (its "Connection: close" tells the client so too).
        lines.append("Connection: close")
        with upstream:
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            self._relay(upstream)

    def _relay(self, upstream: socket.socket) -> None:
        """Bytes both ways until either side closes (or the proxy stops)."""
        client = self.connection
        owner = self.server.owner
        while not owner._stopping.is_set():
            readable, _, _ = select.select([client, upstream], [], [], 0.2)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if sock is client:
                    owner._note_bytes(data)
                    upstream.sendall(data)
                else:
                    client.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: "ForwardingProxy"

    def handle_error(self, request, client_address) -> None:
        pass


class ForwardingProxy(SocketServerLoopback):
    """An HTTP proxy on 127.0.0.1; see the module docstring."""

    path = ""

    def __init__(self, mode: str = "forward", status: Optional[int] = None,
                 require_authorization: Optional[str] = None) -> None:
        assert mode in ("forward", "hang", "stall_tunnel"), mode
        self.mode = mode
        self.status = status
        self.require_authorization = require_authorization
        self._lock = threading.Lock()
        self._requests: List[Seen] = []
        self._bytes = bytearray()
        self._stopping = threading.Event()
        self._start_server(_Server, _Handler, "127.0.0.1", "forwarding-proxy")

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self._requests.append(seen)

    def _note_bytes(self, data: bytes) -> None:
        with self._lock:
            self._bytes += data

    @property
    def requests(self) -> List[Seen]:
        with self._lock:
            return list(self._requests)

    @property
    def client_bytes(self) -> bytes:
        with self._lock:
            return bytes(self._bytes)

    def stop(self) -> None:
        self._stopping.set()
        super().stop()
