"""pandad.flusher against endpoints that answer about themselves, not the jobs (issue 13):
real loopback servers, a real Transport; the flusher's clock seam for the retry timing."""

import base64
import dataclasses
import json
import logging
import socket
import threading

import pytest

from pandad.buffer import RecordBuffer
from pandad.flusher import BACKOFF_MAX, Flusher
from pandad.stats import Statistics
from pandad.transport import Answer, Transport, keep_alive
from pandad.wire import encode_add, encode_update
from tests.support import FakeClock, wait_until
from tests.support.fake_transport import FakeTransport
from tests.support.faultserver import FaultServer, HangServer, respond
from tests.test_flusher import Rig as FlusherRig, base_settings, job, line  # noqa: F401


class Rig(FlusherRig):
    def feed_jobs(self, n: int, start: int = 0) -> None:
        lines = [line(encode_update(job(i), [("JobStatus", "2"), ("Args", '"' + "a" * 200
                                                                   + '"')]))
                 for i in range(start, start + n)]
        assert self.buffer.put_many(lines) == n
        self.put += n


def endpoint_lines(caplog):
    return [r.getMessage() for r in caplog.records if "monitor endpoint" in r.getMessage()]


@pytest.mark.parametrize("status,reason", [(404, "not_found"), (401, "unauthorized"),
                                           (403, "forbidden"), (405, "method_not_allowed"),
                                           (407, "proxy_auth")])
@pytest.mark.parametrize("retry_limit", [0, 3])
def test_an_endpoint_refusal_is_one_request_per_cycle_and_one_line(base_settings, caplog,
                                                                   status, reason, retry_limit):
    transport = FakeTransport(otherwise=status)
    rig = Rig(base_settings, transport=transport, max_request_bytes=20000,
              retry_limit=retry_limit)
    rig.feed_jobs(2000)
    with caplog.at_level(logging.DEBUG, logger="pandad"):
        rig.flusher.flush_once()
        rig.feed_jobs(500, start=5000)
        rig.flusher.flush_once()
    # No bisection, no other verb: the cycle stops at the first answer.
    assert transport.methods == ["PUT", "PUT"]
    assert rig.count("upserts_sent") == 0
    assert rig.count("records_lost_endpoint") == 2500
    assert rig.count(f"records_lost_endpoint_{reason}") == 2500
    assert rig.count("records_rejected") == rig.count("records_lost_transport") == 0
    assert rig.flusher.pending_records == 0 and len(rig.buffer) == 0
    (episode,) = endpoint_lines(caplog)
    assert f"HTTP {status}" in episode and transport.url_for_log in episode
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                and r.getMessage() != episode]
    rig.assert_accounted()


def test_a_new_status_or_a_success_starts_a_new_episode(base_settings, caplog):
    rig = Rig(base_settings, transport=FakeTransport([404, 404, 401, 201, 401]))
    with caplog.at_level(logging.WARNING, logger="pandad"):
        for _ in range(5):
            rig.feed_jobs(1)
            rig.flusher.flush_once()
    statuses = [m.split("HTTP ")[1][:3] for m in endpoint_lines(caplog)]
    assert statuses == ["404", "401", "401"]
    rig.assert_accounted()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_names_its_location(base_settings, caplog, status):
    location = "https://127.0.0.1:8443/api/jobs/"
    transport = FakeTransport(otherwise=Answer(status, location))
    rig = Rig(base_settings, transport=transport)
    rig.feed_jobs(30)
    with caplog.at_level(logging.WARNING, logger="pandad"):
        rig.flusher.flush_once()
    assert transport.requests == 1
    (episode,) = endpoint_lines(caplog)
    assert f"HTTP {status} (Location: {location})" in episode
    assert rig.count("records_lost_endpoint_redirect") == 30
    rig.assert_accounted()


def test_400_is_still_isolated_and_upserted(base_settings):
    bad = job(3)

    def answer(method: str, body: bytes) -> int:
        return 400 if bad in [obj["id"] for obj in json.loads(body)] else 200

    transport = FakeTransport(otherwise=answer)
    rig = Rig(base_settings, transport=transport)
    rig.feed_jobs(8)
    rig.flusher.flush_once()
    assert rig.count("records_sent") == 7 and rig.count("records_rejected") == 1
    assert rig.count("upserts_sent") == 1 and transport.requests > 2
    rig.assert_accounted()


def test_413_splits_a_large_body_but_not_a_small_one(base_settings):
    transport = FakeTransport(otherwise=413)
    rig = Rig(base_settings, transport=transport, max_request_bytes=1_000_000)
    rig.feed_jobs(1000)                    # one body of ~250 KB
    rig.flusher.flush_once()
    sizes = [len(r.body) for r in transport.received]
    # Halved while over 64 KiB (the first half each time); the first small 413 ends it.
    assert len(sizes) >= 2 and sizes[-1] <= 64 * 1024
    assert all(size > 64 * 1024 for size in sizes[:-1])
    assert all(later < earlier * 0.6 for earlier, later in zip(sizes, sizes[1:]))
    assert rig.count("records_lost_endpoint_too_large") == 1000
    rig.assert_accounted()


def echo_authorization(server, conn, request):
    """A monitor that quotes the credential it refuses, in its body and its Location."""
    credential = request.headers.get("authorization", "")
    return respond(conn, 401, json.dumps({"detail": f"bad credential {credential}"}).encode(),
                   {"Location": f"http://127.0.0.1/login?auth={credential.split()[-1]}"})


def test_a_basic_credential_never_reaches_the_log(base_settings, caplog):
    password = "s3cr3t-Pa55"
    encoded = base64.b64encode(f"alice:{password}".encode()).decode()
    with FaultServer(echo_authorization) as server:
        url = server.url.replace("http://", f"http://alice:{password}@")
        with caplog.at_level(logging.DEBUG, logger="pandad"):
            rig = Rig(base_settings, url)
            rig.feed_jobs(100)
            rig.flusher.flush_once()
        assert server.received[0].headers["authorization"] == f"Basic {encoded}"
        assert server.requests == 1
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert "answered 401" in text and "HTTP 401" in text     # the debug and episode lines
        assert password not in text and encoded not in text
        assert "Basic authentication over http" in text
        rig.assert_accounted()


@pytest.mark.parametrize("header,delay", [
    ("30", 30.0), ("0", 1.0), ("3600", BACKOFF_MAX), ("", None), ("garbage", None)])
def test_retry_after_sets_the_wait_within_the_backoff_cap(base_settings, header, delay):
    clock = FakeClock()
    transport = FakeTransport([Answer(429, "", header)] * 4)
    settings = dataclasses.replace(base_settings, retry_limit=3)
    buffer = RecordBuffer(1 << 30, 0, 1 << 30)
    stats = Statistics()
    flusher = Flusher(buffer, transport, stats, settings, clock=clock)
    buffer.put_many([line(encode_add(job(1), "1.0"))])
    waits = []
    for _ in range(4):
        flusher.flush_once()
        if flusher.pending_records:
            waits.append(flusher._retry_at - clock.now)
            clock.now = flusher._retry_at
    assert transport.requests == 4 and stats.get("records_lost_transport") == 1
    backoffs = [1.0, 2.0, 4.0]
    expected = backoffs if delay is None else [min(max(b, delay), BACKOFF_MAX) for b in backoffs]
    assert waits == expected


def test_the_backoff_counts_from_the_end_of_the_failed_cycle(base_settings):
    """A slow failing request does not eat into the wait before the retry."""
    clock = FakeClock()
    transport = FakeTransport(otherwise=503, clock=clock, takes=7.0)
    rig = Rig(base_settings, transport=transport, clock=clock, retry_limit=3)
    rig.feed_jobs(1)
    rig.flusher.flush_once()
    assert clock.now == 1007.0 and rig.flusher.pending_records == 1
    assert rig.flusher._retry_at == 1007.0 + 1.0
    rig.assert_accounted()


def test_a_request_in_flight_is_named_after_stall_warning(base_settings, caplog):
    with HangServer() as server:
        rig = Rig(base_settings, server.url, stall_warning=0.3, update_timeout=0.0)
        rig.feed_jobs(5)
        assert rig.flusher.in_flight.age() is None
        assert rig.flusher.watch_stall() == pytest.approx(0.3)
        thread = threading.Thread(target=rig.flusher.flush_once, daemon=True)
        with caplog.at_level(logging.WARNING, logger="pandad"):
            thread.start()
            wait_until(lambda: server.requests == 1, 10)
            age, what = rig.flusher.in_flight.age()
            assert what == f"PUT {server.url}"

            def named() -> bool:
                wait = rig.flusher.watch_stall()
                assert 0 <= wait <= 300
                return any("no answer yet" in r.getMessage() for r in caplog.records)

            wait_until(named, 10)
            server.stop()                  # the connection closes: the request fails
            thread.join(10)
        (stall,) = [r.getMessage() for r in caplog.records if "no answer yet" in r.getMessage()]
        assert f"PUT {server.url}" in stall and "PANDA_UPDATE_TIMEOUT 0" in stall
        assert rig.flusher.in_flight.age() is None


def test_the_connection_has_tcp_keepalive():
    sock = socket.socket()
    try:
        keep_alive(sock)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
    finally:
        sock.close()


def test_a_token_echoed_in_location_or_a_garbage_status_line_is_masked(base_settings, tmp_path,
                                                                      caplog):
    from pandad.transport import TransportError
    token = "eyJhbGciOiJub25lIn0.c2VjcmV0LXRva2Vu.sig"
    (tmp_path / "token").write_text(token + "\n")

    def echo(server, conn, request):
        credential = request.headers.get("authorization", "")
        if server.requests == 1:
            return respond(conn, 302, credential.encode(),
                           {"Location": f"http://127.0.0.1/?t={credential}"})
        conn.sendall(f"GARBAGE {credential}\r\n\r\n".encode())
        return False

    with FaultServer(echo) as server, caplog.at_level(logging.DEBUG, logger="pandad"):
        settings = dataclasses.replace(base_settings, url=server.url,
                                       token_file=str(tmp_path / "token"))
        transport = Transport(settings)
        answer = transport.exchange("POST", b"[]")
        assert answer.status == 302 and answer.location.startswith("http://127.0.0.1/?t=")
        assert token not in answer.location and "***" in answer.location
        with pytest.raises(TransportError) as error:
            transport.exchange("POST", b"[]")
        assert "GARBAGE" in str(error.value) and token not in str(error.value)
        assert server.received[0].headers["authorization"] == f"Bearer {token}"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "answered 302" in text and token not in text
    assert "bearer token is sent" in text and "without TLS" in text


@pytest.mark.parametrize("status", [503, 429, 408])
def test_a_busy_endpoint_is_one_loss_line_per_episode(base_settings, caplog, status):
    transport = FakeTransport(otherwise=status)
    rig = Rig(base_settings, transport=transport)
    with caplog.at_level(logging.WARNING, logger="pandad"):
        for i in range(4):
            rig.feed_jobs(10, start=100 * i)
            rig.flusher.flush_once()
    assert transport.requests == 4 and rig.count("records_lost_transport") == 40
    (lost,) = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert f"PUT {transport.url_for_log} answered HTTP {status}" in lost
    rig.assert_accounted()


def test_a_reconfiguration_starts_a_new_episode(base_settings, caplog):
    rig = Rig(base_settings, transport=FakeTransport(otherwise=404))
    with caplog.at_level(logging.WARNING, logger="pandad"):
        rig.feed_jobs(1)
        rig.flusher.flush_once()
        rig.flusher.reconfigure(rig.settings, FakeTransport(otherwise=404))   # SIGHUP
        rig.feed_jobs(1, start=10)
        rig.flusher.flush_once()
    assert len(endpoint_lines(caplog)) == 2


def test_a_busy_endpoint_with_retries_logs_its_first_loss(base_settings, caplog):
    clock = FakeClock()
    rig = Rig(base_settings, transport=FakeTransport(otherwise=503), clock=clock, retry_limit=2)
    with caplog.at_level(logging.WARNING, logger="pandad"):
        rig.feed_jobs(5)
        for _ in range(6):
            rig.flusher.flush_once()
            clock.now += 100
            rig.feed_jobs(1, start=100 + rig.put)
    lost = [r.getMessage() for r in caplog.records if r.getMessage().startswith("lost")]
    # Cycles 1-2 retry; from cycle 3 on, commands run out of attempts: one line.
    assert len(lost) == 1 and "answered HTTP 503" in lost[0]
    assert rig.count("records_lost_transport") > 5
    rig.assert_accounted()


def test_a_new_stall_warning_counts_while_the_request_still_hangs(base_settings, caplog):
    """SIGHUP with a shorter PANDA_STALL_WARNING while a request hangs: it names that request,
    though the new settings apply to sending only from the next cycle."""
    with HangServer() as server:
        rig = Rig(base_settings, server.url, update_timeout=0.0)
        rig.feed_jobs(5)
        thread = threading.Thread(target=rig.flusher.flush_once, daemon=True)
        with caplog.at_level(logging.WARNING, logger="pandad"):
            thread.start()
            wait_until(lambda: server.requests == 1, 10)
            assert rig.flusher.watch_stall() > 50          # the default: a minute
            rig.flusher.reconfigure(dataclasses.replace(rig.settings, stall_warning=0.2))

            def named() -> bool:
                rig.flusher.watch_stall()
                return any("no answer yet" in r.getMessage() for r in caplog.records)

            wait_until(named, 10)
            server.stop()
            thread.join(10)
