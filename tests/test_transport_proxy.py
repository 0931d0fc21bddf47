"""pandad.transport through a web proxy (PANDA_HTTP_PROXY, or the environment as libcurl).

A real forwarding proxy on 127.0.0.1 (tests/support/proxyserver.py) records what it saw; the
monitors behind it are the dev monitor (http) and a real TLS server that requires a client
certificate from a throw-away CA (https).
"""

import base64
import logging
import subprocess
import time
from pathlib import Path

import pytest

from pandad.config import ConfigError, HTCondorConfig
from pandad.dev.devmonitor import DevMonitor
from pandad.knobs import EXIT_CONFIG_ERROR, load_pandad_settings
from pandad.transport import Transport, TransportError, choose_proxy, no_proxy_matches
from tests.support import python_command, python_env, require_tool
from tests.support.proxyserver import ForwardingProxy
from tests.support.tlscerts import TestPKI, TLSServer
from tests.test_transport import BODY, settings_for

TOKEN = "tok-3f9a1c-never-in-clear"
PASSWORD = "s3cr@t pw"
NO_ENV: dict = {}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki"), openssl=require_tool("openssl"))


@pytest.fixture(scope="module")
def alice(pki: TestPKI):
    return pki.client("alice")


@pytest.fixture
def monitor():
    with DevMonitor() as running:
        yield running


@pytest.fixture
def proxy():
    with ForwardingProxy() as running:
        yield running


def transport(tmp_path: Path, url: str, environ=NO_ENV, **changes) -> Transport:
    return Transport(settings_for(tmp_path, url, **changes), environ=environ)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- choosing the proxy: pure functions --------------------------------------------------------

def test_environment_variables_are_read_as_libcurl_reads_them() -> None:
    env = {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2",
           "HTTP_PROXY": "http://upper-http:3"}
    assert choose_proxy("", "https", "m.example", env).url == "http://lower:1"
    assert choose_proxy("", "https", "m.example", {"HTTPS_PROXY": "http://u:2"}).url == \
        "http://u:2"
    # curl reads http_proxy in lower case only (HTTP_PROXY can be set by a CGI client).
    assert choose_proxy("", "http", "m.example", env).url is None
    assert choose_proxy("", "http", "m.example", {"http_proxy": "p:3128"}) == \
        (("p:3128", "http_proxy", ""))
    # An empty variable counts as unset.
    assert choose_proxy("", "https", "m", {"https_proxy": " ", "HTTPS_PROXY": "h:1"}).url == "h:1"


def test_the_knob_wins_over_the_environment_and_none_turns_it_off() -> None:
    env = {"https_proxy": "http://env:1", "no_proxy": "*"}
    assert choose_proxy("http://knob:2", "https", "m", env) == ("http://knob:2",
                                                                "PANDA_HTTP_PROXY", "")
    assert choose_proxy("none", "https", "m", env) == (None, "https_proxy",
                                                       "PANDA_HTTP_PROXY = none")
    assert choose_proxy("NONE", "http", "m", {}) == (None, "", "")


@pytest.mark.parametrize("no_proxy, host, matches", [
    ("*", "anything.example", True),
    ("example.org", "example.org", True),
    ("example.org", "panda.Example.ORG", True),
    (".example.org", "panda.example.org", True),
    ("example.org", "notexample.org", False),
    ("other.org, example.org", "a.example.org", True),
    ("other.org example.org", "a.example.org", True),
    ("127.0.0.1", "127.0.0.1", True),
    ("10.0.0.0/8,192.168.1.1", "10.20.30.40", True),
    ("10.0.0.0/8", "11.0.0.1", False),
    ("::1", "[::1]", True),
    ("localhost", "127.0.0.1", False),
    ("", "example.org", False),
])
def test_no_proxy_matching(no_proxy: str, host: str, matches: bool) -> None:
    assert no_proxy_matches(no_proxy, host) is matches


def test_no_proxy_upper_case_is_read_too() -> None:
    env = {"https_proxy": "http://p:1", "NO_PROXY": ".example.org"}
    assert choose_proxy("", "https", "panda.example.org", env) == (None, "https_proxy",
                                                                   "NO_PROXY")


# -- an http monitor: absolute-URI requests ---------------------------------------------------

def test_http_monitor_through_the_proxy(tmp_path, monitor, proxy) -> None:
    sender = transport(tmp_path, monitor.url, http_proxy=proxy.url)
    assert sender.send("POST", BODY) == 201
    assert sender.send("PUT", BODY) == 200
    assert sender.send("DELETE", BODY) == 204
    assert [(seen.method, seen.target) for seen in proxy.requests] == \
        [(method, monitor.url) for method in ("POST", "PUT", "DELETE")]
    assert monitor.request_counts() == {"POST 201": 1, "PUT 200": 1, "DELETE 204": 1}
    assert monitor.jobs()["schedd#1.0#1700000000"]["removed"]


def test_http_proxy_from_the_environment_and_no_proxy_bypass(tmp_path, monitor,
                                                            proxy) -> None:
    assert transport(tmp_path, monitor.url, {"http_proxy": proxy.url}).send("POST", BODY) == 201
    assert len(proxy.requests) == 1
    bypass = {"http_proxy": proxy.url, "no_proxy": "example.org, 127.0.0.1"}
    assert transport(tmp_path, monitor.url, bypass).send("PUT", BODY) == 200
    assert len(proxy.requests) == 1                  # the PUT went straight to the monitor
    assert monitor.request_counts() == {"POST 201": 1, "PUT 200": 1}


def test_none_overrides_the_environment(tmp_path, monitor, proxy, caplog) -> None:
    caplog.set_level(logging.INFO, logger="pandad.transport")
    env = {"http_proxy": proxy.url, "https_proxy": proxy.url}
    assert transport(tmp_path, monitor.url, env, http_proxy="none").send("POST", BODY) == 201
    assert proxy.requests == []
    assert "not using the web proxy in http_proxy" in caplog.text


# -- an https monitor: CONNECT, TLS to the monitor inside the tunnel ---------------------------

@pytest.mark.parametrize("credential", ["cert_and_key", "x509_proxy"])
def test_https_monitor_through_connect(tmp_path, pki, alice, proxy, credential) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    if credential == "x509_proxy":
        client = {"x509_proxy": str(pki.proxy(alice, tmp_path / "x509up"))}
    else:
        client = {"cert_file": str(alice.cert), "key_file": str(alice.key)}
    # The monitor's certificate names only "localhost"; the proxy is 127.0.0.1: verification
    # passes only if the MONITOR's host name is checked, not the proxy's.
    with TLSServer(pki, pki.server("localhost-only", ("DNS:localhost",))) as server:
        url = server.url.replace("127.0.0.1", "localhost")
        sender = transport(tmp_path, url, {"https_proxy": proxy.url}, ca_file=str(pki.ca.cert),
                           token_file=str(token_file), **client)
        assert sender.send("POST", BODY) == 201
        assert server.peers == [["alice"] if credential == "cert_and_key" else
                                ["alice", "1234567"]]
        assert server.authorizations == [f"Bearer {TOKEN}"]
    assert [(seen.method, seen.target) for seen in proxy.requests] == \
        [("CONNECT", f"localhost:{server.port}")]
    assert "authorization" not in proxy.requests[0].headers
    assert TOKEN.encode() not in proxy.client_bytes          # the tunnel carried only TLS
    assert BODY not in proxy.client_bytes


def test_https_monitor_at_an_ipv6_address_through_connect(tmp_path, pki, alice, proxy) -> None:
    # http.client before 3.12 writes "CONNECT ::1:PORT", which a proxy cannot parse; the
    # monitor's certificate names only the address, so TLS checks it without brackets.
    with TLSServer(pki, pki.server("ipv6-only", ("IP:::1",)), host="::1") as server:
        sender = transport(tmp_path, server.url, http_proxy=proxy.url, ca_file=str(pki.ca.cert),
                           cert_file=str(alice.cert), key_file=str(alice.key))
        assert sender.send("POST", BODY) == 201
        assert server.peers == [["alice"]]
    assert [(seen.method, seen.target) for seen in proxy.requests] == \
        [("CONNECT", f"[::1]:{server.port}")]


def test_http_monitor_at_an_ipv6_address_through_the_proxy(tmp_path, proxy) -> None:
    with DevMonitor("::1") as monitor:
        assert monitor.url.startswith("http://[::1]:")
        assert transport(tmp_path, monitor.url, http_proxy=proxy.url).send("POST", BODY) == 201
        assert [(seen.method, seen.target) for seen in proxy.requests] == \
            [("POST", monitor.url)]
        assert monitor.request_counts() == {"POST 201": 1}


def test_https_monitor_with_a_wrong_certificate_fails_through_the_tunnel(tmp_path, pki, alice,
                                                                         proxy) -> None:
    with TLSServer(pki, pki.server("elsewhere", ("DNS:elsewhere.example",))) as server:
        with pytest.raises(TransportError) as caught:
            transport(tmp_path, server.url, http_proxy=proxy.url, ca_file=str(pki.ca.cert),
                      cert_file=str(alice.cert), key_file=str(alice.key)).send("POST", BODY)
    assert caught.value.kind == "tls"
    assert "127.0.0.1" in str(caught.value) and proxy.url in str(caught.value)
    assert proxy.requests[0].method == "CONNECT"


# -- proxy credentials ------------------------------------------------------------------------

def test_proxy_authorization_from_the_url_and_never_logged(tmp_path, pki, alice,
                                                          monitor, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="pandad")
    quoted = PASSWORD.replace("@", "%40").replace(" ", "%20")
    with ForwardingProxy(require_authorization=basic("site", PASSWORD)) as proxy, \
            TLSServer(pki) as server:
        proxy_url = f"http://site:{quoted}@127.0.0.1:{proxy.port}"
        plain = transport(tmp_path, monitor.url, http_proxy=proxy_url)
        assert plain.send("POST", BODY) == 201
        tls = transport(tmp_path, server.url, http_proxy=proxy_url, ca_file=str(pki.ca.cert),
                        cert_file=str(alice.cert), key_file=str(alice.key))
        assert tls.send("POST", BODY) == 201
        assert tls.send("PUT", BODY) == 200
        seen = proxy.requests
    assert [s.method for s in seen] == ["POST", "CONNECT"]     # the tunnel carries both
    assert all(s.headers["proxy-authorization"] == basic("site", PASSWORD) for s in seen)
    assert server.authorizations == [None, None]     # Proxy-Authorization stays at the proxy
    assert caplog.text.count("through the web proxy") == 2     # once per Transport
    assert f"site:***@127.0.0.1:{proxy.port}" in caplog.text
    for secret in (PASSWORD, quoted, basic("site", PASSWORD).split()[1]):
        assert secret not in caplog.text


def test_wrong_proxy_password_is_a_clear_refusal_without_the_password(tmp_path, proxy) -> None:
    proxy.require_authorization = basic("site", "right")
    proxy_url = f"http://site:wrong-pw@127.0.0.1:{proxy.port}"
    with pytest.raises(TransportError) as caught:
        transport(tmp_path, "https://127.0.0.1:9/api/jobs/",
                  http_proxy=proxy_url).send("POST", BODY)
    assert caught.value.kind == "refused"
    assert "407" in str(caught.value) and "wrong-pw" not in str(caught.value)
    assert "site:***@" in str(caught.value)


# -- bad days: the deadline covers the proxy --------------------------------------------------

@pytest.mark.parametrize("mode, url", [
    ("hang", "https://127.0.0.1:9/api/jobs/"),          # CONNECT never answered
    ("hang", "http://127.0.0.1:9/api/jobs/"),           # absolute-URI request never answered
    ("stall_tunnel", "https://127.0.0.1:9/api/jobs/"),  # 200, then the TLS handshake stalls
])
def test_a_hanging_proxy_is_given_up_at_the_deadline(tmp_path, pki, mode, url) -> None:
    with ForwardingProxy(mode=mode) as proxy:
        if mode == "stall_tunnel":                     # CONNECT needs a live target
            server = TLSServer(pki)
            url = server.url
        sender = transport(tmp_path, url, http_proxy=proxy.url, update_timeout=1.0,
                           ca_file=str(pki.ca.cert))
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            sender.send("POST", BODY)
        elapsed = time.monotonic() - started
        if mode == "stall_tunnel":
            server.stop()
    assert caught.value.kind == "timeout", caught.value
    assert "within 1 s" in str(caught.value)
    assert 0.9 <= elapsed < 2.0


@pytest.mark.parametrize("status", [407, 502])
def test_a_proxy_refusing_connect_is_a_clear_error(tmp_path, status) -> None:
    with ForwardingProxy(status=status) as proxy:
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            transport(tmp_path, "https://127.0.0.1:9/api/jobs/", http_proxy=proxy.url,
                      update_timeout=5.0).send("POST", BODY)
    assert time.monotonic() - started < 2
    assert caught.value.kind == "refused"
    assert f"the proxy refused the tunnel to 127.0.0.1:9: {status}" in str(caught.value)
    assert proxy.url in str(caught.value) and "\n" not in str(caught.value)


def test_a_refused_tunnel_to_an_ipv6_address_names_it_in_brackets(tmp_path) -> None:
    with ForwardingProxy(status=502) as proxy:
        with pytest.raises(TransportError) as caught:
            transport(tmp_path, "https://[::1]:9/api/jobs/", http_proxy=proxy.url,
                      update_timeout=5.0).send("POST", BODY)
    assert "the proxy refused the tunnel to [::1]:9: 502" in str(caught.value)
    assert [(seen.method, seen.target) for seen in proxy.requests] == [("CONNECT", "[::1]:9")]


def test_an_https_url_without_a_port_tunnels_to_443(tmp_path) -> None:
    with ForwardingProxy(status=502) as proxy:
        with pytest.raises(TransportError):
            transport(tmp_path, "https://monitor.example/api/jobs/", http_proxy=proxy.url,
                      update_timeout=5.0).send("POST", BODY)
    assert [(seen.method, seen.target) for seen in proxy.requests] == [
        ("CONNECT", "monitor.example:443")]


def test_an_unreachable_proxy_is_named(tmp_path) -> None:
    with ForwardingProxy() as proxy:
        url = proxy.url                                 # a port that was just freed
    with pytest.raises(TransportError) as caught:
        transport(tmp_path, "https://127.0.0.1:9/api/jobs/", http_proxy=url).send("POST", BODY)
    assert caught.value.kind == "refused"
    assert f"through the web proxy {url}" in str(caught.value)


# -- configuration ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["socks5://127.0.0.1:1080", "https://proxy:3128",
                                   "http://proxy:3128/path", "http://proxy:99999", "http://"])
def test_a_proxy_knob_that_is_not_an_http_url_is_a_config_error(value) -> None:
    text = f"PANDA_URL = https://m.example/api/\nPANDA_HTTP_PROXY = {value}\n"
    with pytest.raises(ConfigError) as caught:
        load_pandad_settings(HTCondorConfig.from_text(text, "PANDAD", {}, "/etc/x.conf"))
    assert "PANDA_HTTP_PROXY" in str(caught.value)


def test_the_proxy_knob_values() -> None:
    def value(text: str) -> str:
        config = f"PANDA_URL = https://m.example/api/\n{text}\n"
        return load_pandad_settings(HTCondorConfig.from_text(config, "PANDAD", {},
                                                             "/x")).http_proxy
    assert value("") == ""
    assert value("PANDA_HTTP_PROXY = None") == "none"
    assert value("PANDA_HTTP_PROXY = http://u:p@proxy.example:3128") == \
        "http://u:p@proxy.example:3128"


def test_an_unusable_environment_proxy_fails_naming_the_variable(tmp_path) -> None:
    env = {"https_proxy": "socks5://user:hunter2@127.0.0.1:1080"}
    with pytest.raises(TransportError) as caught:
        transport(tmp_path, "https://127.0.0.1:9/api/jobs/", env)
    assert "https_proxy" in str(caught.value) and "hunter2" not in str(caught.value)
    # No scheme means http://, and no port means 1080, as in curl.
    assert transport(tmp_path, "http://m.example/", {"http_proxy": "proxy.example"}) \
        ._proxy[:2] == ("proxy.example", 1080)


def test_pandad_exits_99_on_a_bad_proxy_knob(tmp_path) -> None:
    config = tmp_path / "condor_config"
    config.write_text("PANDA_URL = https://m.example/api/\n"
                      "PANDA_HTTP_PROXY = socks5://site:hunter2@127.0.0.1:1080\n")
    result = subprocess.run(python_command("pandad"), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=30,
                            env=python_env({"CONDOR_CONFIG": str(config)}))
    assert result.returncode == EXIT_CONFIG_ERROR
    assert "PANDA_HTTP_PROXY" in result.stderr and "hunter2" not in result.stderr
