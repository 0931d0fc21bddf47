"""The start/stop scaffolding the hand-written test servers share.

A server binds 127.0.0.1 (or ::1) on port 0, serves from a daemon thread, offers ``url``,
``stop()`` and works as a context manager. What it does with a connection is its own.
"""

import socket
import socketserver
import threading
from typing import Any, Callable, Type


def netloc(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen(host: str, port: int = 0, backlog: int = 64) -> socket.socket:
    """A listening TCP socket on ``host`` (port 0: an ephemeral one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def close(sock: socket.socket) -> None:
    """Shut down, then close: shutdown() wakes a thread blocked in accept() or recv() on the
    socket, close() alone may not."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class LoopbackServer:
    """``url`` is ``scheme://host:port`` + ``path``; subclasses call ``_serve_in_thread``
    once bound and define ``stop()``."""

    scheme = "http"
    path = "/api/jobs/"

    host: str
    port: int
    url: str
    _thread: threading.Thread

    def _serve_in_thread(self, host: str, port: int, target: Callable[..., Any], name: str,
                         *args: Any) -> None:
        self.host, self.port = host, port
        self.url = f"{self.scheme}://{netloc(host, port)}{self.path}"
        self._thread = threading.Thread(target=target, args=args, daemon=True, name=name)
        self._thread.start()

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SocketServerLoopback(LoopbackServer):
    """A ``socketserver`` server class served by ``serve_forever`` in the thread; its
    handlers reach this object as ``self.server.owner``."""

    _server: socketserver.BaseServer

    def _start_server(self, server_class: Type[socketserver.TCPServer],
                      handler: Type[socketserver.BaseRequestHandler], host: str,
                      name: str) -> None:
        if ":" in host and server_class.address_family != socket.AF_INET6:
            server_class = type(f"{server_class.__name__}6", (server_class,),
                                {"address_family": socket.AF_INET6})
        self._server = server_class((host, 0), handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self._serve_in_thread(host, self._server.server_address[1],
                              self._server.serve_forever, name, 0.05)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
