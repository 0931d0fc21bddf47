"""pandad.transport over plain HTTP: real servers on 127.0.0.1 that answer, fail and stall."""

import dataclasses
import json
import logging
import threading
import time
from pathlib import Path

import pytest

from pandad.config import HTCondorConfig
from pandad.dev.devmonitor import DevMonitor
from pandad.knobs import load_pandad_settings
from pandad.transport import Transport, TransportError
from tests.support import wait_until
from tests.support.faultserver import (CloseMidResponseServer, FaultServer, HangServer,
                                       RefusedPort, StallServer, StatusServer, TrickleServer,
                                       respond)

BODY = b'[{"id": "schedd#1.0#1700000000", "JobStatus": 2}]'


def settings_for(tmp_path: Path, url: str, **changes):
    """PandadSettings from a real config file, with ``changes`` applied."""
    # The URL goes in afterwards: knobs would (rightly) refuse the broken ones tested here.
    config = tmp_path / "condor_config"
    config.write_text(f"PANDA_URL = http://127.0.0.1:9/api/jobs/\n"
                      f"PANDA_STATISTICS_LOG = {tmp_path}/stats\nPANDA_UPDATE_TIMEOUT = 5\n")
    settings = load_pandad_settings(HTCondorConfig.load("PANDAD",
                                                        {"CONDOR_CONFIG": str(config)}))
    return dataclasses.replace(settings, url=url, **changes)


def transport(tmp_path: Path, url: str, **changes) -> Transport:
    return Transport(settings_for(tmp_path, url, **changes))


def failure(tmp_path: Path, url: str, body: bytes = BODY, **changes) -> TransportError:
    with pytest.raises(TransportError) as caught:
        transport(tmp_path, url, **changes).send("POST", body)
    assert "\n" not in str(caught.value)
    return caught.value


# -- answers ---------------------------------------------------------------------------------

def test_devmonitor_answers_201_200_204_and_gets_the_body(tmp_path) -> None:
    with DevMonitor() as monitor:
        sender = transport(tmp_path, monitor.url)
        assert sender.send("POST", BODY) == 201
        assert sender.send("PUT", b'[{"id": "schedd#1.0#1700000000", "JobStatus": 4}]') == 200
        assert sender.send("DELETE", b'[{"id": "schedd#1.0#1700000000"}]') == 204
        assert monitor.jobs() == {"schedd#1.0#1700000000": {
            "id": "schedd#1.0#1700000000", "JobStatus": 4, "removed": True}}


@pytest.mark.parametrize("status", [301, 400, 404, 429, 500, 503])
def test_every_status_is_returned_not_raised(tmp_path, status: int) -> None:
    with StatusServer(status, b'{"detail": "no"}') as server:
        assert transport(tmp_path, server.url).send("PUT", BODY) == status
        (request,) = server.received
    assert request.method == "PUT"
    assert request.path == "/api/jobs/"
    assert request.body == BODY
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert "authorization" not in request.headers


def test_redirect_is_not_followed(tmp_path) -> None:
    with StatusServer(302, headers={"Location": "http://127.0.0.1:9/elsewhere"}) as server:
        assert transport(tmp_path, server.url).send("POST", BODY) == 302
        assert server.requests == 1


def test_query_string_is_kept_and_credentials_in_the_url_become_basic_auth(tmp_path) -> None:
    with StatusServer(201) as server:
        url = server.url.replace("http://", "http://feeder:s3cret%21@") + "?site=X"
        sender = transport(tmp_path, url)
        assert sender.send("POST", BODY) == 201
        (request,) = server.received
    assert request.path == "/api/jobs/?site=X"
    assert request.headers["authorization"] == "Basic ZmVlZGVyOnMzY3JldCE="   # feeder:s3cret!
    error = failure(tmp_path, url)          # the server has stopped: refused
    assert "s3cret" not in str(error) and "feeder:***@" in str(error)


# -- failures --------------------------------------------------------------------------------

def test_refused(tmp_path) -> None:
    with RefusedPort() as port:
        error = failure(tmp_path, port.url)
    assert error.kind == "refused"
    assert port.url in str(error)


@pytest.mark.parametrize("partial", ["nothing", "status", "headers", "body"])
def test_connection_closed_mid_answer_is_reset(tmp_path, partial: str) -> None:
    with CloseMidResponseServer(partial) as server:
        assert failure(tmp_path, server.url).kind == "reset"
        assert server.requests == 1


def test_headers_cut_at_a_line_end_are_not_taken_for_a_complete_answer(tmp_path) -> None:
    partial = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
    with CloseMidResponseServer(partial) as server:
        assert failure(tmp_path, server.url).kind == "reset"


def test_an_answer_that_is_not_http_is_other(tmp_path) -> None:
    with CloseMidResponseServer(b"SSH-2.0-OpenSSH_9.6\r\n") as server:
        assert failure(tmp_path, server.url).kind == "other"


def test_unresolvable_host_is_other(tmp_path) -> None:
    error = failure(tmp_path, "http://no-such-host.invalid/api/jobs/")
    assert error.kind == "other"
    assert "resolve" in str(error)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/api/jobs/", "http:///nohost",
                                 "http://127.0.0.1:99999/"])
def test_unusable_url_fails_at_construction(tmp_path, url: str) -> None:
    with pytest.raises(TransportError) as caught:
        transport(tmp_path, url)
    assert caught.value.kind == "other"


# -- the whole-request deadline --------------------------------------------------------------

def test_server_that_never_answers_is_given_up_at_the_deadline(tmp_path) -> None:
    with HangServer() as server:
        start = time.monotonic()
        error = failure(tmp_path, server.url, update_timeout=1.0)
        elapsed = time.monotonic() - start
        assert server.requests == 1
    assert error.kind == "timeout"
    assert 0.9 <= elapsed < 2.0


def test_server_trickling_a_byte_a_second_cannot_hold_longer_than_the_deadline(tmp_path):
    # Every read gets a byte within a second, so per-read socket timeouts never fire:
    # only a whole-request deadline stops this.
    with TrickleServer(interval=1.0) as server:
        start = time.monotonic()
        error = failure(tmp_path, server.url, update_timeout=1.5)
        elapsed = time.monotonic() - start
    assert error.kind == "timeout"
    assert "1.5 s" in str(error)
    assert 1.4 <= elapsed < 2.5


def test_big_body_to_a_server_that_does_not_read_is_given_up(tmp_path) -> None:
    # 8 MiB fills the socket buffers, so the send itself blocks until the deadline ends it.
    with StallServer() as server:
        start = time.monotonic()
        error = failure(tmp_path, server.url, b"[" + b" " * (8 << 20) + b"]",
                        update_timeout=1.0)
        elapsed = time.monotonic() - start
    assert error.kind == "timeout"
    assert elapsed < 2.0


def test_timeout_0_waits_for_a_slow_answer(tmp_path) -> None:
    with TrickleServer(interval=0.005, status=201, body=b"[]") as server:
        assert transport(tmp_path, server.url, update_timeout=0).send("POST", BODY) == 201


def test_deadline_watchdog_leaves_no_thread_behind(tmp_path) -> None:
    before = threading.active_count()
    with StatusServer(201) as server:
        sender = transport(tmp_path, server.url, update_timeout=30)
        for _ in range(20):
            assert sender.send("POST", BODY) == 201
    wait_until(lambda: threading.active_count() <= before, 5, message="threads to end")


# -- bearer token ----------------------------------------------------------------------------

def test_token_is_sent_stripped_and_reread_when_it_changes(tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    token = tmp_path / "token"
    token.write_text("first-token-AAAA\n")
    def refuse_quoting_the_token(server, conn, request) -> bool:
        detail = f"bad token {request.headers['authorization']}"
        return respond(conn, 401, json.dumps({"detail": detail}).encode())

    with FaultServer(refuse_quoting_the_token) as server:
        sender = transport(tmp_path, server.url, token_file=str(token))
        assert sender.send("POST", BODY) == 401
        replacement = tmp_path / "token.new"
        replacement.write_text("  second-token-BBBB  \n")
        replacement.replace(token)
        assert sender.send("POST", BODY) == 401
        assert sender.send("POST", BODY) == 401
        headers = [request.headers["authorization"] for request in server.received]
    assert headers == ["Bearer first-token-AAAA", "Bearer second-token-BBBB",
                       "Bearer second-token-BBBB"]
    assert "token-AAAA" not in caplog.text and "token-BBBB" not in caplog.text


@pytest.mark.parametrize("content", [None, "", "two\nlines\n", "bad\x00byte"])
def test_unusable_token_file_fails_the_request_naming_the_file(tmp_path, content) -> None:
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    with StatusServer(201) as server:
        sender = transport(tmp_path, server.url, token_file=str(token))
        with pytest.raises(TransportError) as caught:
            sender.send("POST", BODY)
        assert server.requests == 0
        token.write_text("fixed\n")
        assert sender.send("POST", BODY) == 201
    assert caught.value.kind == "other"
    assert str(token) in str(caught.value)
