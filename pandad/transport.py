"""One HTTP(S) request to PANDA_URL, bounded in all by PANDA_UPDATE_TIMEOUT (docs/design.md §4.5).

``Transport(settings).exchange(method, body)`` returns the ``Answer`` to a request: its HTTP
status (2xx to 5xx: the flusher decides what it means) and the ``Location`` and
``Retry-After`` headers; ``send`` returns the status alone. Both raise ``TransportError`` when
no complete answer came: ``kind`` is "refused", "timeout", "reset", "tls" or "other", and
``str(error)`` is one line that never holds a credential. Nothing a server sends back reaches
the log or the caller with the credential in it (a monitor may echo the Authorization header).

The connection has TCP keep-alive on, so a peer that vanished (half-open connection) is found
within minutes even with no deadline (``PANDA_UPDATE_TIMEOUT`` 0); a peer that is alive but
does not answer is waited for, and the flusher names the request in the log while it waits.

The deadline covers everything: name resolution, connect, the TLS handshake, sending, and
every read of the answer. Socket timeouts alone cannot do that (they bound each read, so a
server trickling a byte a second holds the caller for ever), so each request also arms a
watchdog timer that shuts the socket down at the deadline; whatever the request was blocked
in then fails at once and is reported as "timeout".

Requests go through ``http.client`` on one connection kept open between requests (HTTP/1.1
keep-alive; the headers are the ones ``urllib.request`` wrote, without ``Connection: close``).
3xx, 4xx and 5xx come back as statuses, never as exceptions or followed redirects. The
connection is opened again when the server closed it (an answer saying so, or an idle
connection found readable before a request), when the TLS client credentials changed, and
after any failure. A request on a kept connection that dies before any answer (reset, or
closed without a byte) is sent once more on a new connection within the same deadline, as
libcurl does: a server may close an idle connection just as a request goes out.

TLS verifies the server by default (the system CAs, or ``PANDA_CA_FILE``/``PANDA_CA_DIR``).
The client certificate (``PANDA_CERT_FILE`` + ``PANDA_KEY_FILE``, or an X.509 proxy file
holding certificate, key and chain) and the bearer-token file are checked before every
request and re-read when they change on disk (device, inode, size, mtime), so a renewed proxy
or token is used without a restart. A missing or unreadable credential fails that request
("other", naming the file), it never crashes the daemon.

A web proxy (``PANDA_HTTP_PROXY``, or when that is empty the environment as libcurl reads it:
``https_proxy``/``HTTPS_PROXY`` for https, ``http_proxy`` for http, ``no_proxy``/``NO_PROXY``)
is chosen once, when the Transport is made. Only http:// proxies: an https monitor is reached
through a CONNECT tunnel (``http.client``'s set_tunnel, ``Proxy-Authorization`` on the CONNECT
only), inside which TLS verifies the MONITOR's certificate and host name and the client
certificate and Authorization header go to the monitor; an http monitor gets absolute-URI
requests. The deadline covers the proxy's socket as it covers a direct one.

The connection with its deadline is ``pandad.httpconn``; the choice of proxy is
``pandad.proxies``.
"""

import base64
import http.client
import logging
import os
import socket
import ssl
import sys
import threading
from typing import Any, Callable, List, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import unquote, urlsplit, urlunsplit

from pandad.httpconn import (KINDS, Deadline, DeadlineConnection, TornHeaders, TransportError,
                             TunnelRefused, keep_alive)
from pandad.logsetup import redact_url
from pandad.proxies import Proxy, choose_proxy, no_proxy_matches, parse_proxy

__all__ = ["KINDS", "USER_AGENT", "Answer", "Transport", "TransportError", "choose_proxy",
           "keep_alive", "no_proxy_matches", "scrub"]

log = logging.getLogger("pandad.transport")

_ERROR_BODY_LOG_BYTES = 200
_LOCATION_LOG_CHARS = 200
# The User-Agent urllib.request sent, kept so that monitors' logs see the same client.
USER_AGENT = "Python-urllib/%d.%d" % sys.version_info[:2]


class Answer(NamedTuple):
    """An HTTP answer: status, and the headers the flusher acts on (credentials removed)."""
    status: int
    location: str = ""
    retry_after: str = ""


def scrub(text: bytes, secrets: List[bytes]) -> bytes:
    """``text`` with every one of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, b"***")
    return text


def _signature(path: str, what: str) -> Tuple[int, int, int, int]:
    try:
        st = os.stat(path)
    except OSError as error:
        raise TransportError("other", f"cannot read {what} {path}: {error.strerror}") from None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class _CredentialFiles:
    """Files re-read only when they change; ``load`` builds what they hold."""

    def __init__(self, paths: List[Tuple[str, str]], load: Callable[[], Any]) -> None:
        self._paths = paths            # (path, what) e.g. ("/tmp/x509up_u1", "X.509 proxy")
        self._load = load
        self._signature: Optional[tuple] = None
        self.value: Any = None

    def current(self) -> Any:
        signature = tuple(_signature(path, what) for path, what in self._paths)
        if signature != self._signature:
            # Stat before loading: a change during the load is seen again next time.
            self.value = self._load()
            reloaded = self._signature is not None
            self._signature = signature
            if reloaded:
                log.info("re-read %s", " and ".join(f"{what} {path}"
                                                    for path, what in self._paths))
        return self.value


# -- the transport ---------------------------------------------------------------------------

class Transport:
    """Sends one request at a time to ``settings.url``; see the module docstring."""

    def __init__(self, settings: Any, environ: Optional[Mapping[str, str]] = None) -> None:
        """``environ`` (default os.environ) is where an empty PANDA_HTTP_PROXY looks."""
        self._timeout = float(settings.update_timeout or 0)
        self._url_for_log = redact_url(settings.url)
        parts = urlsplit(settings.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError("other", f"PANDA_URL {self._url_for_log} is not an http:// or"
                                 f" https:// URL")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        try:
            self._port = parts.port or (443 if self._https else 80)
        except ValueError:
            raise TransportError("other", f"PANDA_URL {self._url_for_log} has a bad port") \
                from None
        netloc = parts.netloc.rpartition("@")[2]
        self._url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        self._selector = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        self._host_header = unquote(netloc)
        self._conn: Optional[DeadlineConnection] = None     # kept between requests
        self._basic_auth: Optional[str] = None
        # What must never reach a log: the password as written and decoded, the Basic value.
        self._secrets: List[bytes] = []
        if parts.username is not None:
            password = parts.password or ""
            pair = f"{unquote(parts.username)}:{unquote(password)}"
            self._basic_auth = "Basic " + base64.b64encode(pair.encode()).decode()
            self._secrets = [self._basic_auth.split()[1].encode(), pair.encode(),
                             password.encode(), unquote(password).encode()]
            if parts.scheme != "https":
                log.warning("the password in PANDA_URL is sent to %s without TLS (Basic"
                            " authentication over http)", self._url_for_log)
        self._lock = threading.Lock()
        self._settings = settings
        self._ssl: Optional[_CredentialFiles] = None
        self._static_context: Optional[ssl.SSLContext] = None
        if self._https:
            self._static_context = self._make_context()     # CA problems show at start-up
            if not settings.verify_server:
                log.warning("PANDA_VERIFY_SERVER is false: the identity of %s is NOT checked",
                            self._url_for_log)
            client = self._client_cert_files()
            if client:
                self._ssl = _CredentialFiles(client, self._make_client_context)
        elif settings.x509_proxy or settings.cert_file:
            log.warning("a client certificate is configured but PANDA_URL %s is not https:"
                        " it is not used", self._url_for_log)
        self._proxy = self._proxy_for(parts.scheme, os.environ if environ is None else environ)
        if self._proxy is not None and self._proxy.authorization:
            self._secrets.append(self._proxy.authorization.split()[1].encode())
        self._token: Optional[_CredentialFiles] = None
        if settings.token_file:
            self._token = _CredentialFiles([(settings.token_file, "token file")],
                                           self._read_token)
            if not self._https:
                log.warning("the bearer token is sent to %s without TLS", self._url_for_log)

    # -- the web proxy ------------------------------------------------------------------------

    def _proxy_for(self, scheme: str, environ: Mapping[str, str]) -> Optional[Proxy]:
        choice = choose_proxy(getattr(self._settings, "http_proxy", "") or "", scheme,
                              self._host, environ)
        if choice.url is None:
            if choice.skipped_by:
                log.info("not using the web proxy in %s for %s (%s)", choice.source,
                         self._url_for_log, choice.skipped_by)
            return None
        proxy = parse_proxy(choice.url, choice.source)
        log.info("sending to %s through the web proxy %s (from %s)", self._url_for_log,
                 proxy.for_log, choice.source)
        return proxy

    # -- TLS ----------------------------------------------------------------------------------

    def _client_cert_files(self) -> List[Tuple[str, str]]:
        settings = self._settings
        if settings.x509_proxy:
            return [(settings.x509_proxy, "X.509 proxy")]
        if settings.cert_file:
            key = settings.key_file or settings.cert_file
            return [(settings.cert_file, "certificate file"), (key, "key file")]
        if settings.key_file:
            raise TransportError("other", "PANDA_KEY_FILE is set without PANDA_CERT_FILE")
        return []

    def _make_context(self) -> ssl.SSLContext:
        settings = self._settings
        try:
            context = ssl.create_default_context(cafile=settings.ca_file or None,
                                                 capath=settings.ca_dir or None)
        except (OSError, ssl.SSLError) as error:
            where = " and ".join(filter(None, [settings.ca_file, settings.ca_dir]))
            raise TransportError("other", f"cannot load CA certificates from {where}:"
                                 f" {_reason(error)}") from None
        if not settings.verify_server:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _make_client_context(self) -> ssl.SSLContext:
        """A fresh context with the client certificate: a context cannot unload a chain."""
        settings = self._settings
        context = self._make_context()
        if settings.x509_proxy:
            cert, key, what = settings.x509_proxy, settings.x509_proxy, "X.509 proxy"
        else:
            cert = settings.cert_file
            key = settings.key_file or settings.cert_file
            what = "client certificate/key"
        try:
            # The password callback stops OpenSSL prompting on a terminal for an encrypted key.
            context.load_cert_chain(cert, key, password=lambda: b"")
        except (OSError, ssl.SSLError) as error:
            files = cert if cert == key else f"{cert} + {key}"
            raise TransportError("other", f"cannot load {what} {files}: {_reason(error)}") \
                from None
        return context

    def _context(self) -> Optional[ssl.SSLContext]:
        if not self._https:
            return None
        if self._ssl is None:
            return self._static_context
        return self._ssl.current()

    # -- token --------------------------------------------------------------------------------

    def _read_token(self) -> str:
        path = self._settings.token_file
        try:
            with open(path, "rb") as handle:
                raw = handle.read(1 << 20)
        except OSError as error:
            raise TransportError("other", f"cannot read token file {path}:"
                                 f" {error.strerror}") from None
        try:
            token = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise TransportError("other", f"token file {path} holds non-ASCII bytes") from None
        if not token:
            raise TransportError("other", f"token file {path} is empty")
        if any(ord(c) < 32 or ord(c) == 127 for c in token):
            raise TransportError("other", f"token file {path} holds more than one line"
                                 f" or a control character")
        return token

    # -- sending ------------------------------------------------------------------------------

    def send(self, method: str, body: bytes) -> int:
        """Send ``body`` (JSON) with ``method``; the HTTP status, or raises TransportError."""
        return self.exchange(method, body).status

    @property
    def url_for_log(self) -> str:
        """PANDA_URL with any password replaced by ``***``."""
        return self._url_for_log

    def exchange(self, method: str, body: bytes) -> Answer:
        """Send ``body`` (JSON) with ``method``; the answer, or raises TransportError."""
        with self._lock:
            context = self._context()
            token = self._token.current() if self._token else None
        deadline = Deadline(self._timeout)
        try:
            status, location, retry_after, answer = self._round_trip(
                method, body, self._headers(len(body), token), context, deadline)
        except (OSError, http.client.HTTPException, ValueError) as error:
            self.close()
            raise self._error(method, error, deadline, token) from None
        finally:
            deadline.finish()
        # A server may quote the credential it refuses, in its body or its Location.
        secrets = self._secrets + ([token.encode()] if token else [])
        if status >= 300 and log.isEnabledFor(logging.DEBUG):
            # Scrubbed whole, before the cut: a cut could keep a credential's first half.
            excerpt = scrub(answer, secrets)[:_ERROR_BODY_LOG_BYTES]
            log.debug("%s %s answered %d: %r", method, self._url_for_log, status, excerpt)
        if location:
            location = scrub(location.encode("utf-8", "replace"), secrets).decode(
                "utf-8", "replace")
            location = redact_url("".join(c if c.isprintable() else "?" for c in location))
            location = location[:_LOCATION_LOG_CHARS]
        return Answer(status, location, retry_after.strip()[:100])

    def _headers(self, length: int, token: Optional[str]) -> dict:
        """The request headers, in the order urllib.request wrote them."""
        headers = {}
        if self._proxy is not None and self._proxy.authorization and not self._https:
            headers["Proxy-Authorization"] = self._proxy.authorization   # absolute-URI form
        headers.update({"Content-Length": str(length), "Host": self._host_header,
                        "User-Agent": USER_AGENT, "Content-Type": "application/json",
                        "Accept": "application/json"})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif self._basic_auth:
            headers["Authorization"] = self._basic_auth
        return headers

    def _round_trip(self, method: str, body: bytes, headers: dict,
                    context: Optional[ssl.SSLContext],
                    deadline: Deadline) -> Tuple[int, str, str, bytes]:
        """(status, Location, Retry-After, body) of one request, on the kept connection when
        there is one; sent once more on a new connection when a kept one died unanswered."""
        conn = self._connection(context, deadline)
        reused = conn.sock is not None
        # An http monitor behind a proxy gets absolute URIs; through a tunnel, the path.
        target = self._url if self._proxy is not None and not self._https else self._selector
        try:
            return self._request_on(conn, method, target, body, headers)
        except (ConnectionResetError, BrokenPipeError) as error:
            if (not reused or isinstance(error, TornHeaders) or deadline.expired):
                raise
        self.close()
        conn = self._connection(context, deadline)
        return self._request_on(conn, method, target, body, headers)

    @staticmethod
    def _request_on(conn: "DeadlineConnection", method: str, target: str, body: bytes,
                    headers: dict) -> Tuple[int, str, str, bytes]:
        conn.request(method, target, body, headers)
        response = conn.getresponse()
        try:
            answer = response.read()
        finally:
            response.close()
        return (response.status, response.headers.get("Location", ""),
                response.headers.get("Retry-After", ""), answer)

    def _connection(self, context: Optional[ssl.SSLContext],
                    deadline: Deadline) -> "DeadlineConnection":
        """The kept connection if it can carry a request, else a new one (not connected yet:
        http.client connects on the first send)."""
        conn = self._conn
        if conn is not None and (conn.context is not context or
                                 (conn.sock is not None and not conn.idle_and_open())):
            self.close()                # new credentials, or the server closed it
            conn = None
        if conn is None:
            proxy = self._proxy
            if proxy is None:
                conn = DeadlineConnection(self._host, self._port, context)
            else:
                conn = DeadlineConnection(proxy.host, proxy.port, context)
                if self._https:
                    # A CONNECT tunnel: Proxy-Authorization goes on the CONNECT only.
                    tunnel = ({"Proxy-Authorization": proxy.authorization}
                              if proxy.authorization else None)
                    conn.set_tunnel(self._host, self._port, headers=tunnel)
            self._conn = conn
        conn.arm(deadline)
        return conn

    def close(self) -> None:
        """Close the kept connection (the next request opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _error(self, method: str, error: BaseException, deadline: Deadline,
               token: Optional[str]) -> TransportError:
        # A server's garbage status line may quote the credential it was sent.
        kind, what = _classify(error, self._secrets + ([token.encode()] if token else []))
        if deadline.expired or kind == "timeout":
            kind, what = "timeout", f"no complete answer within {deadline.timeout:g} s"
        if self._proxy is not None:
            what += f" (through the web proxy {self._proxy.for_log})"
        return TransportError(kind, f"{method} {self._url_for_log}: {what}")


def _classify(error: BaseException, secrets: Optional[List[bytes]] = None) -> Tuple[str, str]:
    """(kind, one-line reason) for an exception raised while sending; ``secrets`` are
    masked in anything quoted from the server."""
    if isinstance(error, socket.timeout):
        return "timeout", "timed out"
    if isinstance(error, TunnelRefused):
        return "refused", str(error)
    if isinstance(error, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(error, (ssl.SSLError, ssl.CertificateError)):
        return "tls", f"TLS: {_reason(error)}"
    if isinstance(error, (ConnectionError, http.client.RemoteDisconnected,
                          http.client.IncompleteRead)):
        return "reset", f"connection closed before the answer was complete" \
                        f" ({type(error).__name__})"
    if isinstance(error, http.client.BadStatusLine):
        line = str(error.args[0]) if error.args else ""
        if not line.endswith("\n"):
            return "reset", "connection closed inside the status line"
        line = scrub(line.encode("utf-8", "replace"), secrets or []).decode("utf-8", "replace")
        return "other", f"not an HTTP answer: {line.strip()[:80]!r}"
    if isinstance(error, socket.gaierror):
        return "other", f"cannot resolve the host: {_reason(error)}"
    return "other", f"{type(error).__name__}: {_reason(error)}"


def _reason(error: BaseException) -> str:
    """An exception's message on one line, without OpenSSL's source location."""
    if isinstance(error, ssl.SSLError) and getattr(error, "verify_message", None):
        text = f"certificate verify failed: {error.verify_message}"
    elif isinstance(error, OSError) and error.strerror:
        text = error.strerror
    else:
        text = str(error) or type(error).__name__
    text = text.split(" (_ssl.c:")[0]
    return " ".join(text.split())
