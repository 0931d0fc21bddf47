"""One HTTP/1.1 connection whose every step is bounded by one deadline (docs/design.md §4.5).

``DeadlineConnection`` is ``http.client.HTTPConnection`` with name resolution, connect, the
proxy's CONNECT, the TLS handshake, sending and every read of the answer under a ``Deadline``:
a watchdog timer shuts the socket down when the deadline passes, so whatever the request was
blocked in fails at once (a server trickling a byte a second cannot hold the caller). Sockets
get TCP keep-alive (``KEEPALIVE``), so a vanished peer is found even with no deadline.
``pandad.transport`` uses it; nothing here knows about PanDA.
"""

import http.client
import ipaddress
import select
import socket
import ssl
import threading
import time
from typing import Any, List, Optional, Tuple

KINDS = ("refused", "timeout", "reset", "tls", "other")
# TCP keep-alive: first probe after 60 s idle, then every 15 s, given up after 4 missed
# (a dead peer is found in 2 minutes). Options missing on a platform are skipped.
KEEPALIVE = (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4))


class TransportError(Exception):
    """No complete HTTP answer. ``kind``: one of KINDS; str(e): one line, no credentials."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Deadline:
    """The whole request's deadline; at it, the watched socket is shut down.

    Shutting a socket down (not closing it) wakes a thread blocked in connect, send, recv or
    a TLS handshake on it, and cannot touch a file descriptor number reused by someone else:
    once the socket object is closed the call fails with EBADF instead.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.at: Optional[float] = time.monotonic() + timeout if timeout > 0 else None
        self.expired = False
        self._lock = threading.Lock()
        self._socks: List[socket.socket] = []
        self._timer: Optional[threading.Timer] = None
        if self.at is not None:
            self._timer = threading.Timer(timeout, self._expire)
            self._timer.daemon = True
            try:
                self._timer.start()
            except RuntimeError:       # no thread to be had: the socket timeouts still bound it
                self._timer = None

    def remaining(self) -> Optional[float]:
        """Seconds left (None: no deadline); raises socket.timeout once it has passed."""
        if self.at is None:
            return None
        left = self.at - time.monotonic()
        if left <= 0 or self.expired:
            raise socket.timeout("deadline passed")
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.expired:
                shutdown_socket(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._socks:
                shutdown_socket(sock)

    def finish(self) -> None:
        """The request is over: disarm before its socket is closed."""
        with self._lock:
            self._socks = []
        if self._timer is not None:
            self._timer.cancel()


def shutdown_socket(sock: socket.socket) -> None:
    try:
        # The base-class method on purpose: SSLSocket.shutdown() would also drop its TLS
        # state under the feet of the thread reading from it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def keep_alive(sock: socket.socket) -> None:
    """Turn TCP keep-alive on, with the ``KEEPALIVE`` timing where the platform has it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in KEEPALIVE:
        option = getattr(socket, name, None)
        if option is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
            except OSError:
                pass


def bracketed(host: str) -> str:
    """``host`` as it stands before ":port": an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def resolve(host: str, port: int, deadline: Deadline) -> List[Tuple[Any, ...]]:
    """getaddrinfo bounded by the deadline (it has no timeout of its own)."""
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    if literal or deadline.at is None:
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    result: List[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except OSError as error:
            result.append(error)
        done.set()

    # A resolver stuck past the deadline leaves this daemon thread behind until it returns.
    threading.Thread(target=lookup, daemon=True, name="pandad-resolve").start()
    if not done.wait(deadline.remaining()):
        raise socket.timeout(f"resolving {host} took too long")
    if isinstance(result[0], OSError):
        raise result[0]
    return result[0]


# -- the connection and the response ----------------------------------------------------

class _EOFWatchingReader:
    """The response's socket reader, noting whether a header line ended at EOF."""

    def __init__(self, fp: Any) -> None:
        self.fp = fp
        self.eof_in_line = False

    def readline(self, limit: int = -1) -> bytes:
        line = self.fp.readline(limit)
        if not line.endswith(b"\n") and (limit < 0 or len(line) < limit):
            self.eof_in_line = True
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fp, name)


class _Response(http.client.HTTPResponse):
    """http.client takes a connection closed inside the headers for their end, which would
    turn "201 Created\\r\\nContent-Le<EOF>" into a success; this makes it an error."""

    def begin(self) -> None:
        reader = self.fp = _EOFWatchingReader(self.fp)
        try:
            super().begin()
        finally:
            if self.fp is reader:
                self.fp = reader.fp
        if reader.eof_in_line:
            raise TornHeaders("connection closed inside the response headers")


class TornHeaders(http.client.RemoteDisconnected):
    """Part of an answer came, then the connection closed: never sent again."""


class TunnelRefused(OSError):
    """The proxy answered CONNECT with something other than 200."""


class DeadlineConnection(http.client.HTTPConnection):
    """An HTTP(S) connection whose every step is bounded by one ``Deadline``."""

    response_class = _Response

    def __init__(self, host: str, port: int, context: Optional[ssl.SSLContext]) -> None:
        super().__init__(host, port)
        self._deadline = Deadline(0)
        self.context = context

    def arm(self, deadline: Deadline) -> None:
        """Bound the next request by ``deadline``, the socket kept from the last one too."""
        self._deadline = deadline
        if self.sock is not None:
            deadline.watch(self.sock)

    def idle_and_open(self) -> bool:
        """Whether the kept socket is quiet: readable between requests means the server
        closed it (or sent what no request asked for), so it must not carry the next one."""
        if self.sock is None:
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def connect(self) -> None:
        deadline = self._deadline
        errors: List[OSError] = []
        for family, kind, proto, _, address in resolve(self.host, self.port, deadline):
            sock = socket.socket(family, kind, proto)
            deadline.watch(sock)
            try:
                sock.settimeout(deadline.remaining())
                sock.connect(address)
            except OSError as error:
                sock.close()
                if deadline.expired or isinstance(error, socket.timeout):
                    raise
                errors.append(error)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            keep_alive(sock)
            sock.settimeout(deadline.remaining())
            self.sock = sock
            if self._tunnel_host:
                self._connect_tunnel()
            if self.context is not None:
                # The handshake starts only once the TLS socket is watched: wrap_socket
                # detaches the plain socket, so the watchdog could not wake a handshake
                # begun inside it. Through a tunnel the MONITOR's name is verified.
                tls = self.context.wrap_socket(
                    self.sock, server_hostname=self._tunnel_host or self.host,
                    do_handshake_on_connect=False)
                self.sock = tls
                deadline.watch(tls)
                tls.settimeout(deadline.remaining())
                tls.do_handshake()
            return
        refused = [e for e in errors if isinstance(e, ConnectionRefusedError)]
        raise (refused or errors or [OSError(f"no address for {self.host}")])[0]

    def _connect_tunnel(self) -> None:
        """CONNECT through the proxy (set_tunnel was called); a refusal says so clearly."""
        host = self._tunnel_host
        # http.client before 3.12 writes an IPv6 address into the CONNECT line without its
        # brackets ("CONNECT ::1:443"), which no proxy can parse; 3.12 and later add them
        # unless they are there already. The bare address is put back for TLS, which
        # verifies the monitor's certificate against it.
        self._tunnel_host = bracketed(host)
        target = f"{self._tunnel_host}:{self._tunnel_port}"
        try:
            self._tunnel()
        except OSError as error:
            text = str(error)
            prefix = "Tunnel connection failed: "
            if type(error) is not OSError or not text.startswith(prefix):
                raise
            raise TunnelRefused(f"the proxy refused the tunnel to {target}:"
                                 f" {text[len(prefix):]}") from None
        finally:
            self._tunnel_host = host

    # Each blocking step also gets what is left of the deadline as its socket timeout, so
    # the request ends in time even if the watchdog could not run.

    def send(self, data: Any) -> None:
        if self.sock is not None:
            self.sock.settimeout(self._deadline.remaining())
        super().send(data)

    def getresponse(self) -> http.client.HTTPResponse:
        if self.sock is not None:
            self.sock.settimeout(self._deadline.remaining())
        return super().getresponse()


# -- the web proxy ---------------------------------------------------------------------------
