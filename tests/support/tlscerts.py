"""A throw-away PKI made with the ``openssl`` program, and a real TLS server on loopback.

    pki = TestPKI(tmp_path / "pki", openssl=require_tool("openssl"))
    with TLSServer(pki) as server:                  # https://127.0.0.1:PORT/api/jobs/
        ...
        server.peers                                # client certificate CNs, per request
    with TLSServer(pki, pki.server("v6", ("IP:::1",)), host="::1"):   # https://[::1]:PORT/...

``TestPKI`` makes a CA, server certificates (subjectAltName IP:127.0.0.1 and DNS:localhost),
client certificates, RFC 3820 proxy files (proxy certificate + its key + the user certificate
in one PEM, as grid-proxy-init writes them) and plain combined cert+key files, and a CA
directory with c_rehash-style ``<hash>.0`` names. Keys are EC P-256: fast to make.
"""

import http.server
import shutil
import ssl
import subprocess
import threading
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple

from tests.support.loopback import SocketServerLoopback

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class CertKey(NamedTuple):
    cert: Path
    key: Path


class TestPKI:
    """A CA and whatever certificates a test asks for, in ``directory``."""

    __test__ = False                                     # not a pytest test class

    def __init__(self, directory: Path, openssl: str = "openssl",
                 ca_name: str = "pandad test CA") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.openssl = openssl
        self._serial = 1000
        slug = ca_name.replace(" ", "_")
        self.ca = CertKey(self.dir / f"{slug}.pem", self.dir / f"{slug}.key")
        self._run("req", "-x509", *_EC, "-keyout", self.ca.key, "-out", self.ca.cert,
                  "-days", "2", "-subj", f"/CN={ca_name}",
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def _run(self, *args: object) -> str:
        result = subprocess.run([self.openssl, *map(str, args)], capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(map(str, args))} failed: {result.stderr}")
        return result.stdout

    def _sign(self, name: str, subject: str, extensions: str,
              issuer: Optional[CertKey] = None) -> CertKey:
        issuer = issuer or self.ca
        out = CertKey(self.dir / f"{name}.pem", self.dir / f"{name}.key")
        csr = self.dir / f"{name}.csr"
        ext = self.dir / f"{name}.ext"
        ext.write_text(extensions)
        self._run("req", "-new", *_EC, "-keyout", out.key, "-out", csr, "-subj", subject)
        self._serial += 1
        self._run("x509", "-req", "-in", csr, "-CA", issuer.cert, "-CAkey", issuer.key,
                  "-set_serial", self._serial, "-days", "1", "-sha256", "-extfile", ext,
                  "-out", out.cert)
        out.key.chmod(0o600)
        return out

    def server(self, name: str = "server", hosts: Tuple[str, ...] = ("IP:127.0.0.1",
                                                                      "DNS:localhost")) -> CertKey:
        return self._sign(name, "/CN=127.0.0.1",
                          f"subjectAltName={','.join(hosts)}\nbasicConstraints=CA:FALSE\n"
                          "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")

    def client(self, cn: str) -> CertKey:
        return self._sign(f"client-{cn}", f"/O=pandad tests/CN={cn}",
                          "basicConstraints=CA:FALSE\n"
                          "keyUsage=critical,digitalSignature,keyEncipherment\n"
                          "extendedKeyUsage=clientAuth\n")

    def proxy(self, user: CertKey, path: Path, serial_cn: str = "1234567") -> Path:
        """An RFC 3820 proxy of ``user`` in one file: proxy cert, proxy key, user cert."""
        subject = self._run("x509", "-in", user.cert, "-noout", "-subject",
                            "-nameopt", "compat").strip()
        subject = subject.split("=", 1)[1].strip() + f"/CN={serial_cn}"
        proxy = self._sign(f"proxy-{path.name}", subject,
                           "basicConstraints=CA:FALSE\n"
                           "keyUsage=critical,digitalSignature,keyEncipherment\n"
                           "proxyCertInfo=critical,language:id-ppl-inheritAll\n",
                           issuer=user)
        return self._combine(path, proxy.cert, proxy.key, user.cert)

    def combined(self, pair: CertKey, path: Path) -> Path:
        """A plain client certificate and its key in one PEM (a "proxy file" without RFC 3820)."""
        return self._combine(path, pair.cert, pair.key)

    def _combine(self, path: Path, *parts: Path) -> Path:
        # Written to a new file then renamed over: the way proxy renewal tools replace it.
        tmp = path.with_name(path.name + ".new")
        tmp.write_bytes(b"".join(part.read_bytes() for part in parts))
        tmp.chmod(0o600)
        tmp.replace(path)
        return path

    def ca_dir(self, name: str = "certificates") -> Path:
        """A CA directory as c_rehash/``openssl rehash`` leaves it: ``<subject hash>.0``."""
        directory = self.dir / name
        directory.mkdir(exist_ok=True)
        subject_hash = self._run("x509", "-hash", "-noout", "-in", self.ca.cert).strip()
        shutil.copyfile(self.ca.cert, directory / f"{subject_hash}.0")
        return directory


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"
    _ANSWERS = {"POST": 201, "PUT": 200, "DELETE": 204}

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        cert = self.connection.getpeercert() or {}
        cns = [value for rdn in cert.get("subject", ()) for key, value in rdn
               if key == "commonName"]
        self.server.owner._record(cns, self.headers.get("Authorization"), body)
        status = self._ANSWERS.get(self.command, 200)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = _answer


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: "TLSServer"

    def finish_request(self, request, client_address) -> None:
        # The handshake happens in the request's own thread, so a client that fails it (or
        # stalls) never holds up the accept loop.
        try:
            tls = self.owner.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as error:
            self.owner._handshake_failed(error)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request, client_address) -> None:
        pass


class TLSServer(SocketServerLoopback):
    """HTTPS on ``host`` (default 127.0.0.1) requiring a client certificate from ``pki``'s CA
    (proxies allowed).

    ``peers``: per request, the client certificate's CNs; ``authorizations``: the
    Authorization headers; ``handshake_errors``: why handshakes failed.
    """

    scheme = "https"

    def __init__(self, pki: TestPKI, server_cert: Optional[CertKey] = None,
                 require_client_cert: bool = True, host: str = "127.0.0.1") -> None:
        server_cert = server_cert or pki.server()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(server_cert.cert, server_cert.key)
        self.context.load_verify_locations(cafile=str(pki.ca.cert))
        if require_client_cert:
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
        self._lock = threading.Lock()
        self._peers: List[List[str]] = []
        self._authorizations: List[Optional[str]] = []
        self._handshake_errors: List[str] = []
        self._start_server(_Server, _Handler, host, "tls-server")

    def _record(self, cns: List[str], authorization: Optional[str], body: bytes) -> None:
        with self._lock:
            self._peers.append(cns)
            self._authorizations.append(authorization)

    def _handshake_failed(self, error: BaseException) -> None:
        with self._lock:
            self._handshake_errors.append(str(error))

    @property
    def peers(self) -> List[List[str]]:
        with self._lock:
            return list(self._peers)

    @property
    def authorizations(self) -> List[Optional[str]]:
        with self._lock:
            return list(self._authorizations)

    @property
    def handshake_errors(self) -> List[str]:
        with self._lock:
            return list(self._handshake_errors)


