"""pandad.transport over plain HTTP: real servers on 127.0.0.1 that answer, fail and stall."""

import dataclasses
import json
import logging
import socket
import struct
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

# -- the kept connection --------------------------------------------------------------------

def test_requests_share_one_kept_connection(tmp_path) -> None:
    with StatusServer(200) as server:
        sender = transport(tmp_path, server.url)
        assert [sender.send(method, BODY) for method in ("POST", "PUT", "PUT", "DELETE")] == [
            200] * 4
        assert (server.connections, server.requests) == (1, 4)
        assert all("connection" not in r.headers for r in server.received)   # HTTP/1.1 default


def test_an_answer_with_connection_close_ends_the_connection(tmp_path) -> None:
    with StatusServer(201, keep_alive=False) as server:
        sender = transport(tmp_path, server.url)
        assert [sender.send("POST", BODY) for _ in range(3)] == [201] * 3
        assert (server.connections, server.requests) == (3, 3)


def test_a_kept_connection_the_server_closed_while_idle_is_opened_again(tmp_path) -> None:
    closed = threading.Event()

    def answer_then_close(server, conn, request):
        respond(conn, 200, b"[]", keep_alive=True)     # says keep-alive, closes anyway
        closed.set()
        return False

    with FaultServer(answer_then_close) as server:
        sender = transport(tmp_path, server.url)
        assert sender.send("PUT", BODY) == 200
        assert closed.wait(5)
        wait_until(lambda: server.connections == 1 and not server._open, 5)
        assert sender.send("PUT", BODY) == 200
        assert (server.connections, server.requests) == (2, 2)     # nothing sent in vain


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_kept_connection_that_dies_unanswered_is_sent_once_more_on_a_new_one(
        tmp_path, how: str) -> None:
    """A server may close a kept connection just as a request goes out (libcurl's case)."""
    served: dict = {}

    def second_request_dropped(server, conn, request):
        served[conn] = served.get(conn, 0) + 1
        if served[conn] == 2:
            if how == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False                               # no answer at all
        return respond(conn, 200, b"[]", keep_alive=True)

    with FaultServer(second_request_dropped) as server:
        sender = transport(tmp_path, server.url)
        assert sender.send("PUT", BODY) == 200
        assert sender.send("PUT", b"[2]") == 200
        assert server.connections == 2
        assert [r.body for r in server.received] == [BODY, b"[2]", b"[2]"]


def test_a_new_connection_that_dies_unanswered_is_not_sent_again(tmp_path) -> None:
    with CloseMidResponseServer("nothing") as server:
        assert failure(tmp_path, server.url).kind == "reset"
        assert (server.connections, server.requests) == (1, 1)


def test_a_kept_connection_cut_inside_the_answer_is_not_sent_again(tmp_path) -> None:
    served: dict = {}

    def second_answer_torn(server, conn, request):
        served[conn] = served.get(conn, 0) + 1
        if served[conn] == 2:
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Le")
            return False
        return respond(conn, 200, b"[]", keep_alive=True)

    with FaultServer(second_answer_torn) as server:
        sender = transport(tmp_path, server.url)
        assert sender.send("PUT", BODY) == 200
        with pytest.raises(TransportError) as caught:
            sender.send("POST", BODY)
        assert caught.value.kind == "reset"
        assert (server.connections, server.requests) == (1, 2)
        assert sender.send("PUT", BODY) == 200                      # and a new one after
        assert server.connections == 2


def test_the_deadline_bounds_a_request_on_a_kept_connection(tmp_path) -> None:
    served: dict = {}
    stop = threading.Event()

    def second_never_answered(server, conn, request):
        served[conn] = served.get(conn, 0) + 1
        if served[conn] == 2:
            stop.wait(30)
            return False
        return respond(conn, 200, b"[]", keep_alive=True)

    with FaultServer(second_never_answered) as server:
        sender = transport(tmp_path, server.url, update_timeout=1)
        assert sender.send("PUT", BODY) == 200
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            sender.send("PUT", BODY)
        assert caught.value.kind == "timeout" and time.monotonic() - started < 3
        assert (server.connections, server.requests) == (1, 2)
        stop.set()


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
