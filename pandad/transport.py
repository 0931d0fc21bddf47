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
"""

import base64
import http.client
import ipaddress
import logging
import os
import re
import select
import socket
import ssl
import sys
import threading
import time
from typing import Any, Callable, List, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import unquote, urlsplit, urlunsplit

from pandad.logsetup import redact_url

log = logging.getLogger("pandad.transport")

KINDS = ("refused", "timeout", "reset", "tls", "other")
_ERROR_BODY_LOG_BYTES = 200
_CURL_PROXY_PORT = 1080        # libcurl's port for a proxy URL without one
_LOCATION_LOG_CHARS = 200
# TCP keep-alive: first probe after 60 s idle, then every 15 s, given up after 4 missed
# (a dead peer is found in 2 minutes). Options missing on a platform are skipped.
KEEPALIVE = (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4))
# The User-Agent urllib.request sent, kept so that monitors' logs see the same client.
USER_AGENT = "Python-urllib/%d.%d" % sys.version_info[:2]


class Answer(NamedTuple):
    """An HTTP answer: status, and the headers the flusher acts on (credentials removed)."""
    status: int
    location: str = ""
    retry_after: str = ""


class TransportError(Exception):
    """No complete HTTP answer. ``kind``: one of KINDS; str(e): one line, no credentials."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# -- the deadline and its watchdog -----------------------------------------------------------

class _Deadline:
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
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._socks:
                _shutdown(sock)

    def finish(self) -> None:
        """The request is over: disarm before its socket is closed."""
        with self._lock:
            self._socks = []
        if self._timer is not None:
            self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
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


def scrub(text: bytes, secrets: List[bytes]) -> bytes:
    """``text`` with every one of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, b"***")
    return text


def _bracketed(host: str) -> str:
    """``host`` as it stands before ":port": an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def _resolve(host: str, port: int, deadline: _Deadline) -> List[Tuple[Any, ...]]:
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
            raise _TornHeaders("connection closed inside the response headers")


class _TornHeaders(http.client.RemoteDisconnected):
    """Part of an answer came, then the connection closed: never sent again."""


class _TunnelRefused(OSError):
    """The proxy answered CONNECT with something other than 200."""


class _DeadlineConnection(http.client.HTTPConnection):
    """An HTTP(S) connection whose every step is bounded by one ``_Deadline``."""

    response_class = _Response

    def __init__(self, host: str, port: int, context: Optional[ssl.SSLContext]) -> None:
        super().__init__(host, port)
        self._deadline = _Deadline(0)
        self.context = context

    def arm(self, deadline: _Deadline) -> None:
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
        for family, kind, proto, _, address in _resolve(self.host, self.port, deadline):
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
        self._tunnel_host = _bracketed(host)
        target = f"{self._tunnel_host}:{self._tunnel_port}"
        try:
            self._tunnel()
        except OSError as error:
            text = str(error)
            prefix = "Tunnel connection failed: "
            if type(error) is not OSError or not text.startswith(prefix):
                raise
            raise _TunnelRefused(f"the proxy refused the tunnel to {target}:"
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

class ProxyChoice(NamedTuple):
    """What ``choose_proxy`` decided, and why (for the one start-up log line)."""
    url: Optional[str]         # the proxy to use; None = connect directly
    source: str                # where the proxy URL came from ("" if none was configured)
    skipped_by: str = ""       # why a configured proxy is not used ("no_proxy", ...)


def choose_proxy(setting: str, scheme: str, host: str,
                 environ: Mapping[str, str]) -> ProxyChoice:
    """The proxy for ``scheme://host``, from PANDA_HTTP_PROXY or the environment as libcurl.

    ``setting`` is PANDA_HTTP_PROXY: a URL is used whatever the environment says, ``none``
    means never a proxy, empty leaves it to the environment: ``https_proxy`` then
    ``HTTPS_PROXY`` for https, only ``http_proxy`` (lower-case, as curl) for http, unless
    ``no_proxy`` (or ``NO_PROXY``) names the host. An empty variable counts as unset.
    """
    setting = setting.strip()
    if setting and setting.lower() != "none":
        return ProxyChoice(setting, "PANDA_HTTP_PROXY")
    names = ("https_proxy", "HTTPS_PROXY") if scheme == "https" else ("http_proxy",)
    name, url = next(((n, environ[n].strip()) for n in names if environ.get(n, "").strip()),
                     ("", ""))
    if not url:
        return ProxyChoice(None, "")
    if setting:
        return ProxyChoice(None, name, "PANDA_HTTP_PROXY = none")
    no_proxy_name = "no_proxy" if environ.get("no_proxy") else "NO_PROXY"
    if no_proxy_matches(environ.get(no_proxy_name, ""), host):
        return ProxyChoice(None, name, no_proxy_name)
    return ProxyChoice(url, name)


def no_proxy_matches(no_proxy: str, host: str) -> bool:
    """Whether ``host`` is in a no_proxy list, as curl matches it.

    Entries are separated by commas or blanks; ``*`` matches every host; a name matches
    itself and its subdomains (a leading dot changes nothing); an IP address matches an
    equal address or a network written as address/bits.
    """
    host = host.strip("[]").rstrip(".").lower()
    try:
        address: Any = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in re.split(r"[\s,]+", no_proxy.lower()):
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.strip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


class _Proxy(NamedTuple):
    host: str
    port: int
    authorization: Optional[str]   # "Basic ..." from the URL's user:password
    for_log: str                   # the URL with its password replaced by ***


def _parse_proxy(url: str, source: str) -> _Proxy:
    """An http:// proxy URL (no scheme = http://, as curl); anything else: TransportError."""
    text = url if "://" in url else "http://" + url
    for_log = redact_url(text)
    try:
        parts = urlsplit(text)
        port = parts.port or _CURL_PROXY_PORT
    except ValueError:
        raise TransportError("other", f"{source} = {for_log} is not a valid proxy URL") \
            from None
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise TransportError("other", f"{source} = {for_log} is not an http://host:port proxy"
                             f" (pandad supports only http:// proxies; PANDA_HTTP_PROXY sets"
                             f" one, or none)")
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
    return _Proxy(parts.hostname, port, authorization, for_log)


# -- credential files ------------------------------------------------------------------------

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
        self._conn: Optional[_DeadlineConnection] = None     # kept between requests
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

    def _proxy_for(self, scheme: str, environ: Mapping[str, str]) -> Optional[_Proxy]:
        choice = choose_proxy(getattr(self._settings, "http_proxy", "") or "", scheme,
                              self._host, environ)
        if choice.url is None:
            if choice.skipped_by:
                log.info("not using the web proxy in %s for %s (%s)", choice.source,
                         self._url_for_log, choice.skipped_by)
            return None
        proxy = _parse_proxy(choice.url, choice.source)
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
        deadline = _Deadline(self._timeout)
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
                    deadline: _Deadline) -> Tuple[int, str, str, bytes]:
        """(status, Location, Retry-After, body) of one request, on the kept connection when
        there is one; sent once more on a new connection when a kept one died unanswered."""
        conn = self._connection(context, deadline)
        reused = conn.sock is not None
        # An http monitor behind a proxy gets absolute URIs; through a tunnel, the path.
        target = self._url if self._proxy is not None and not self._https else self._selector
        try:
            return self._request_on(conn, method, target, body, headers)
        except (ConnectionResetError, BrokenPipeError) as error:
            if (not reused or isinstance(error, _TornHeaders) or deadline.expired):
                raise
        self.close()
        conn = self._connection(context, deadline)
        return self._request_on(conn, method, target, body, headers)

    @staticmethod
    def _request_on(conn: "_DeadlineConnection", method: str, target: str, body: bytes,
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
                    deadline: _Deadline) -> "_DeadlineConnection":
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
                conn = _DeadlineConnection(self._host, self._port, context)
            else:
                conn = _DeadlineConnection(proxy.host, proxy.port, context)
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

    def _error(self, method: str, error: BaseException, deadline: _Deadline,
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
    if isinstance(error, _TunnelRefused):
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
