"""pandad.transport over real TLS: server verification, client certificates, proxies, tokens.

A throw-away CA made with openssl signs the server and client certificates; the server is a
real HTTPS server on 127.0.0.1 that requires a client certificate from that CA.
"""

import logging
import os
from pathlib import Path

import pytest

from pandad.transport import Transport, TransportError
from tests.support import require_tool, wait_until
from tests.support.tlscerts import TestPKI, TLSServer
from tests.test_transport import BODY, settings_for


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki"), openssl=require_tool("openssl"))


@pytest.fixture(scope="module")
def server(pki: TestPKI):
    with TLSServer(pki) as running:
        yield running


@pytest.fixture(scope="module")
def alice(pki: TestPKI):
    return pki.client("alice")


def send(tmp_path: Path, url: str, **changes) -> int:
    return Transport(settings_for(tmp_path, url, **changes)).send("POST", BODY)


def fails(tmp_path: Path, url: str, **changes) -> TransportError:
    with pytest.raises(TransportError) as caught:
        send(tmp_path, url, **changes)
    assert "\n" not in str(caught.value)
    return caught.value


# -- the server's identity -------------------------------------------------------------------

def test_unknown_ca_fails_verification_by_default(tmp_path, server, alice) -> None:
    error = fails(tmp_path, server.url, cert_file=str(alice.cert), key_file=str(alice.key))
    assert error.kind == "tls"
    assert "certificate verify failed" in str(error)


def test_ca_file_verifies_the_server(tmp_path, pki, server, alice) -> None:
    assert send(tmp_path, server.url, ca_file=str(pki.ca.cert),
                cert_file=str(alice.cert), key_file=str(alice.key)) == 201
    assert server.peers[-1] == ["alice"]


def test_ca_dir_with_hashed_names_verifies_the_server(tmp_path, pki, server, alice) -> None:
    ca_dir = pki.ca_dir()
    assert [name.endswith(".0") for name in os.listdir(ca_dir)] == [True]
    assert send(tmp_path, server.url, ca_dir=str(ca_dir),
                cert_file=str(alice.cert), key_file=str(alice.key)) == 201


def test_localhost_name_matches_the_subject_alt_name(tmp_path, pki, server, alice) -> None:
    url = server.url.replace("127.0.0.1", "localhost")
    assert send(tmp_path, url, ca_file=str(pki.ca.cert),
                cert_file=str(alice.cert), key_file=str(alice.key)) == 201


def test_certificate_for_another_host_is_refused(tmp_path, pki, alice) -> None:
    with TLSServer(pki, pki.server("elsewhere", ("DNS:elsewhere.example",))) as other:
        error = fails(tmp_path, other.url, ca_file=str(pki.ca.cert),
                      cert_file=str(alice.cert), key_file=str(alice.key))
    assert error.kind == "tls"
    assert "127.0.0.1" in str(error)


def test_verify_server_false_skips_verification_with_a_warning(tmp_path, server, alice,
                                                               caplog) -> None:
    assert send(tmp_path, server.url, verify_server=False,
                cert_file=str(alice.cert), key_file=str(alice.key)) == 201
    assert "NOT checked" in caplog.text


def test_missing_ca_file_fails_at_construction_naming_it(tmp_path, server) -> None:
    missing = tmp_path / "no-ca.pem"
    with pytest.raises(TransportError) as caught:
        Transport(settings_for(tmp_path, server.url, ca_file=str(missing)))
    assert caught.value.kind == "other"
    assert str(missing) in str(caught.value)


# -- the client's identity -------------------------------------------------------------------

def test_server_requires_a_client_certificate(tmp_path, pki, server) -> None:
    before = len(server.peers)
    error = fails(tmp_path, server.url, ca_file=str(pki.ca.cert))
    # TLS 1.3: the server's refusal arrives as an alert or as the connection closing.
    assert error.kind in ("tls", "reset")
    assert len(server.peers) == before
    # The server thread notes why a moment after the client has given up.
    wait_until(lambda: any("certificate" in reason for reason in server.handshake_errors),
               timeout=10, message="the server to refuse the missing client certificate")


def test_client_certificate_from_another_ca_is_refused(tmp_path, pki, server) -> None:
    stranger = TestPKI(tmp_path / "other-ca", openssl=pki.openssl, ca_name="stranger CA")
    mallory = stranger.client("mallory")
    error = fails(tmp_path, server.url, ca_file=str(pki.ca.cert),
                  cert_file=str(mallory.cert), key_file=str(mallory.key))
    assert error.kind in ("tls", "reset")


def test_proxy_file_presents_the_rfc3820_proxy_chain(tmp_path, pki, server, alice) -> None:
    proxy = pki.proxy(alice, tmp_path / "x509up_u1000")
    assert send(tmp_path, server.url, ca_file=str(pki.ca.cert), x509_proxy=str(proxy)) == 201
    assert server.peers[-1] == ["alice", "1234567"]


def test_plain_cert_and_key_in_one_file_work_as_a_proxy(tmp_path, pki, server) -> None:
    carol = pki.combined(pki.client("carol"), tmp_path / "carol.pem")
    assert send(tmp_path, server.url, ca_file=str(pki.ca.cert), x509_proxy=str(carol)) == 201
    assert server.peers[-1] == ["carol"]


def test_renewed_proxy_is_used_without_a_new_transport(tmp_path, pki, server, alice,
                                                       caplog) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "x509up_u1000"
    pki.proxy(alice, path, serial_cn="1111")
    transport = Transport(settings_for(tmp_path, server.url, ca_file=str(pki.ca.cert),
                                       x509_proxy=str(path)))
    assert transport.send("POST", BODY) == 201
    assert server.peers[-1] == ["alice", "1111"]
    assert transport.send("PUT", BODY) == 200                 # unchanged: not re-read
    assert "re-read" not in caplog.text

    pki.proxy(pki.client("robert"), path, serial_cn="2222")   # renewed by rename
    assert transport.send("POST", BODY) == 201
    assert server.peers[-1] == ["robert", "2222"]
    assert f"re-read X.509 proxy {path}" in caplog.text

    path.write_bytes((pki.proxy(alice, tmp_path / "again", serial_cn="33333")).read_bytes())
    assert transport.send("POST", BODY) == 201                # rewritten in place
    assert server.peers[-1] == ["alice", "33333"]


def test_missing_or_broken_proxy_fails_the_request_naming_it(tmp_path, pki, server,
                                                              alice) -> None:
    path = tmp_path / "x509up_u1000"
    transport = Transport(settings_for(tmp_path, server.url, ca_file=str(pki.ca.cert),
                                       x509_proxy=str(path)))
    with pytest.raises(TransportError) as missing:
        transport.send("POST", BODY)
    path.write_text("-----BEGIN CERTIFICATE-----\ntruncated\n")
    with pytest.raises(TransportError) as broken:
        transport.send("POST", BODY)
    for error in (missing.value, broken.value):
        assert error.kind == "other"
        assert str(path) in str(error)
    pki.proxy(alice, path)
    assert transport.send("POST", BODY) == 201


def test_encrypted_key_fails_without_prompting(tmp_path, pki, server, alice) -> None:
    locked = tmp_path / "locked.key"
    pki._run("ec", "-in", alice.key, "-out", locked, "-aes256", "-passout", "pass:secret")
    error = fails(tmp_path, server.url, ca_file=str(pki.ca.cert),
                  cert_file=str(alice.cert), key_file=str(locked))
    assert error.kind == "other"
    assert str(locked) in str(error)


# -- bearer token over TLS -------------------------------------------------------------------

def test_renewed_token_is_picked_up_and_never_logged(tmp_path, pki, server, alice,
                                                     caplog) -> None:
    caplog.set_level(logging.DEBUG)
    token = tmp_path / "bearer_token"
    token.write_text("eyJ0eXAi.first.SIGNATURE\n")
    transport = Transport(settings_for(tmp_path, server.url, ca_file=str(pki.ca.cert),
                                       x509_proxy=str(pki.proxy(alice, tmp_path / "proxy")),
                                       token_file=str(token)))
    assert transport.send("POST", BODY) == 201
    renewed = tmp_path / "bearer_token.tmp"
    renewed.write_text("eyJ0eXAi.second.SIGNATURE\n")
    renewed.replace(token)
    assert transport.send("PUT", BODY) == 200
    assert server.authorizations[-2:] == ["Bearer eyJ0eXAi.first.SIGNATURE",
                                          "Bearer eyJ0eXAi.second.SIGNATURE"]
    token.unlink()
    with pytest.raises(TransportError) as caught:
        transport.send("POST", BODY)
    assert str(token) in str(caught.value)
    assert "SIGNATURE" not in caplog.text and "SIGNATURE" not in str(caught.value)
