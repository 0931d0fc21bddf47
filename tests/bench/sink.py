"""A minimal, fast HTTP sink on 127.0.0.1 for the benchmarks: answers 201/200/204, keeps nothing.

It runs in its own process (so it does not share pandad's or the benchmark's GIL) and counts
the JSON objects of every body it accepts by counting ``{"id":`` (every object the flusher
builds starts with its id; the compact separators make that exact), in a shared counter the
benchmark reads without asking::

    with Sink() as sink:
        ...POST to sink.url...
        print(sink.objects, sink.requests)

Standard library only; HTTP/1.1 with keep-alive, or one request per connection when the client
says ``Connection: close`` (urllib does).
"""

import multiprocessing
import socketserver
import threading
from typing import Optional

HOST = "127.0.0.1"
PATH = "/api/jobs/"
MARK = b'{"id":'
STATUS_LINES = {b"POST": b"HTTP/1.1 201 Created\r\n", b"PUT": b"HTTP/1.1 200 OK\r\n",
                b"DELETE": b"HTTP/1.1 204 No Content\r\n"}


class _Handler(socketserver.StreamRequestHandler):
    rbufsize = 1 << 20

    def handle(self) -> None:
        rfile, wfile = self.rfile, self.wfile
        server = self.server
        while True:
            request_line = rfile.readline(65537)
            if not request_line:
                return
            method = request_line.split(b" ", 1)[0]
            length = 0
            close = False
            while True:
                header = rfile.readline(65537)
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            body = rfile.read(length) if length else b""
            objects = body.count(MARK)
            with server.lock:
                server.objects.value += objects
                server.requests.value += 1
                server.body_bytes.value += len(body)
            status = STATUS_LINES.get(method, b"HTTP/1.1 405 Method Not Allowed\r\n")
            wfile.write(status + b"Content-Length: 0\r\nConnection: "
                        + (b"close" if close else b"keep-alive") + b"\r\n\r\n")
            wfile.flush()
            if close:
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def _serve(ready, objects, requests, body_bytes) -> None:
    server = _Server((HOST, 0), _Handler)
    server.lock = threading.Lock()
    server.objects, server.requests, server.body_bytes = objects, requests, body_bytes
    ready.send(server.server_address[1])
    ready.close()
    server.serve_forever(poll_interval=0.5)


class Sink:
    """The sink server in a child process; ``objects``/``requests`` are live counters."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self._objects = context.Value("q", 0, lock=False)
        self._requests = context.Value("q", 0, lock=False)
        self._bytes = context.Value("q", 0, lock=False)
        receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve, daemon=True,
                                        args=(send, self._objects, self._requests, self._bytes))
        self._process.start()
        send.close()
        if not receive.poll(10):
            self.stop()
            raise RuntimeError("the benchmark sink did not start")
        self.port: int = receive.recv()
        self.url = f"http://{HOST}:{self.port}{PATH}"

    @property
    def objects(self) -> int:
        return self._objects.value

    @property
    def requests(self) -> int:
        return self._requests.value

    @property
    def body_bytes(self) -> int:
        return self._bytes.value

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(5)

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def post(url: str, method: str, body: bytes) -> int:
    """One request the way a bare client would send it (urllib, new connection)."""
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        return response.status


__all__ = ["Sink", "post", "MARK"]
