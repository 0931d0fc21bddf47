"""A real pandad against endpoints that answer about themselves (issue 13, rows 1-5, 13, 15):
bounded requests, one named log line, counted losses, no credential in the log."""

import base64
import json
import time

import pytest

from pandad.wire import encode_add
from tests.support import wait_until
from tests.support.faultserver import FaultServer, HangServer, StatusServer, respond
from tests.support.pandad_process import PandadProcess, assert_accounted


def adds(n: int, start: int = 0):
    return [encode_add(f"schedd.example.org#{i}.0#1700000000", f"{i}.0",
                       [("Owner", '"alice"'), ("JobStatus", "1")])
            for i in range(start, start + n)]


def endpoint_lines(text: str):
    return [line for line in text.splitlines() if "monitor endpoint" in line]


def test_a_404_endpoint_costs_at_most_one_request_per_body(tmp_path):
    with StatusServer(404) as server, PandadProcess(tmp_path, url=server.url) as pandad:
        pandad.write_all(adds(5000))
        pandad.close_stdin()
        assert pandad.wait(30) == 0
        stats = pandad.statistics()
        requests = server.received
    # 5,000 small ADDs fit in a few bodies; the old bisection made ~15,000 requests.
    assert 1 <= len(requests) <= int(stats["batches"]) and len(requests) < 50
    assert {r.method for r in requests} == {"POST"}
    assert int(stats["records_lost_endpoint"]) == 5000
    assert int(stats["records_lost_endpoint_not_found"]) == 5000
    assert int(stats["records_rejected"]) == 0 and int(stats["upserts_sent"]) == 0
    assert_accounted(stats)
    (line,) = endpoint_lines(pandad.log_text())
    assert f"monitor endpoint {server.url} answered POST with HTTP 404" in line
    assert "rejected" not in pandad.log_text()


def echo_authorization(server, conn, request):
    """A monitor that refuses and quotes the credential it got, in the body and Location."""
    status = 403 if server.requests > 1 else 401
    credential = request.headers.get("authorization", "")
    return respond(conn, status, json.dumps({"detail": f"refused {credential}"}).encode(),
                   {"Location": f"http://127.0.0.1/login?auth={credential.split()[-1]}"})


def test_401_and_403_are_not_bisected_and_the_credential_stays_out_of_the_log(tmp_path):
    password = "Tr0ub4dor-3"
    encoded = base64.b64encode(f"condor:{password}".encode()).decode()
    with FaultServer(echo_authorization) as server:
        url = server.url.replace("http://", f"http://condor:{password}@")
        with PandadProcess(tmp_path, url=url, PANDAD_DEBUG="D_FULLDEBUG") as pandad:
            pandad.write_all(adds(1000))
            wait_until(lambda: server.requests >= 1, 10)
            pandad.write_all(adds(1000, start=1000))
            pandad.close_stdin()
            assert pandad.wait(30) == 0
            stats = pandad.statistics()
        assert server.received[0].headers["authorization"] == f"Basic {encoded}"
        assert 2 <= server.requests <= int(stats["batches"])
    assert {r.method for r in server.received} == {"POST"}
    assert int(stats["records_lost_endpoint"]) == 2000
    assert int(stats["records_lost_endpoint_unauthorized"]) > 0
    assert int(stats["records_lost_endpoint_forbidden"]) > 0
    assert_accounted(stats)
    text = pandad.log_text() + pandad.stderr_text()
    assert "answered 401" in text          # the D_FULLDEBUG line quoting the answer
    assert password not in text and encoded not in text
    assert "Basic authentication over http" in text
    lines = endpoint_lines(text)
    assert len(lines) == 2 and "HTTP 401" in lines[0] and "HTTP 403" in lines[1]
    assert "condor:***@" in lines[0]


@pytest.mark.parametrize("status", [301, 307])
def test_a_redirect_is_logged_with_its_location(tmp_path, status):
    location = "https://monitor.example:8443/api/jobs/"
    with StatusServer(status, headers={"Location": location}) as server, \
            PandadProcess(tmp_path, url=server.url) as pandad:
        pandad.write_all(adds(300))
        pandad.close_stdin()
        assert pandad.wait(30) == 0
        stats = pandad.statistics()
    assert int(stats["records_lost_endpoint_redirect"]) == 300
    assert_accounted(stats)
    (line,) = endpoint_lines(pandad.log_text())
    assert f"HTTP {status} (Location: {location})" in line


def test_a_request_without_answer_is_named_and_the_buffer_full_line_says_why(tmp_path):
    with HangServer() as server, PandadProcess(
            tmp_path, url=server.url, PANDA_STALL_WARNING="1",
            PANDA_UPDATE_TIMEOUT="0", PANDA_QUEUE_SIZE="20000", PANDA_QUEUE_GRACE="0",
            PANDA_QUEUE_MAX_SIZE="20000", PANDA_SHUTDOWN_GRACE="1") as pandad:
        pandad.write_all(adds(10))
        wait_until(lambda: server.requests == 1, 10)
        # Named after 1 s: old enough to be named in the buffer-full line too.
        pandad.wait_for_log(f"no answer yet to POST {server.url} after", 10)
        pandad.write_all(adds(2000, start=10))
        pandad.wait_for_log("the flusher has been waiting", 10)
    text = pandad.log_text()
    assert "PANDA_UPDATE_TIMEOUT 0 waits as long as the connection is alive" in text
    full = [line for line in text.splitlines() if "buffer full" in line]
    assert f"for the answer to POST {server.url}" in full[0]


def test_retry_after_is_honoured(tmp_path):
    times = []

    def busy_once(server, conn, request):
        times.append(time.monotonic())
        if len(times) == 1:
            return respond(conn, 429, b"{}", {"Retry-After": "3"})
        return respond(conn, 201, b"[]")

    with FaultServer(busy_once) as server, PandadProcess(
            tmp_path, url=server.url, PANDA_RETRY_LIMIT="3") as pandad:
        pandad.write_all(adds(20))
        wait_until(lambda: len(times) >= 2, 15)
        pandad.close_stdin()
        assert pandad.wait(30) == 0
        stats = pandad.statistics()
    # The backoff alone would have retried after 1 s.
    assert times[1] - times[0] >= 2.9
    assert int(stats["records_sent"]) == 20
    assert_accounted(stats)


@pytest.mark.parametrize("url", ["http://h/a b/", "http://h/a\tb/", "https:///api/",
                                 "http://h:99999/", "ftp://h/"])
def test_a_bad_panda_url_is_a_configuration_error(tmp_path, url):
    with PandadProcess(tmp_path, url=url) as pandad:
        assert pandad.wait(15) == 99
    assert "PANDA_URL" in pandad.stderr_text() + pandad.log_text()
