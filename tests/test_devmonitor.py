"""pandad.dev.devmonitor: the BigPanDA bulk jobs contract, on a real server on 127.0.0.1."""

import http.client
import json
import signal
import subprocess
import urllib.parse
from typing import Iterator

import pytest

from pandad.dev.devmonitor import BadBody, DevMonitor, main, parse_job_array
from tests.support import kill_if_running, python_command, python_env
from tests.support.http_client import get_json, request, request_json


@pytest.fixture
def monitor() -> Iterator[DevMonitor]:
    with DevMonitor() as running:
        yield running


# -- pure parsing ----------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"", b"{", b'{"id": "a"}', b'["a"]', b'[{"id": 1}]',
                                  b'[{"x": 1}]', b"[NaN]", b"\xff\xfe", b"null"])
def test_parse_job_array_rejects_what_is_not_an_array_of_jobs(body: bytes) -> None:
    with pytest.raises(BadBody):
        parse_job_array(body)


def test_parse_job_array_accepts_jobs() -> None:
    assert parse_job_array(b'[{"id": "s#1.0#1", "JobStatus": 2}]') == [
        {"id": "s#1.0#1", "JobStatus": 2}]
    assert parse_job_array(b"[]") == []


# -- the contract ----------------------------------------------------------------------------

def test_post_creates_put_merges_delete_marks_removed(monitor: DevMonitor) -> None:
    url = monitor.url
    assert request_json(url, "POST", [{"id": "a", "condorid": "1.0", "JobStatus": 1},
                                      {"id": "b", "condorid": "1.1", "owner": "alice"}]) \
        == (201, {"created": 2})
    assert request_json(url, "PUT", [{"id": "a", "JobStatus": 2, "cmd": "/bin/x"},
                                     {"id": "b", "owner": None}]) == (200, {"updated": 2})
    assert request(url, "DELETE", [{"id": "a"}, {"id": "never-seen"}]) == (204, b"")
    assert monitor.jobs() == {
        "a": {"id": "a", "condorid": "1.0", "JobStatus": 2, "cmd": "/bin/x", "removed": True},
        "b": {"id": "b", "condorid": "1.1", "owner": None, "removed": False},
    }
    assert {job["id"]: job for job in get_json(url)} == monitor.jobs()


def test_post_with_an_existing_id_rejects_the_whole_array(monitor: DevMonitor) -> None:
    assert request(monitor.url, "POST", [{"id": "a"}])[0] == 201
    status, answer = request_json(monitor.url, "POST",
                                  [{"id": "new"}, {"id": "a", "JobStatus": 5}])
    assert status == 400
    assert "already exists" in answer["detail"]
    assert monitor.jobs() == {"a": {"id": "a", "removed": False}}


@pytest.mark.parametrize("bad", [[{"id": "new"}, {"no_id": 1}], [{"id": "new"}, {"id": 7}],
                                 [{"id": "new"}, {"id": "new"}], [{"id": "new"}, "text"]])
def test_post_with_a_bad_element_applies_nothing(monitor: DevMonitor, bad: list) -> None:
    assert request(monitor.url, "POST", bad)[0] == 400
    assert monitor.jobs() == {}


def test_put_with_one_unknown_id_rejects_the_whole_array(monitor: DevMonitor) -> None:
    assert request(monitor.url, "POST", [{"id": "a", "JobStatus": 1}])[0] == 201
    status, answer = request_json(monitor.url, "PUT", [{"id": "a", "JobStatus": 2}, {"id": "zz"}])
    assert status == 400
    assert "zz" in answer["detail"]
    assert monitor.jobs()["a"]["JobStatus"] == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
@pytest.mark.parametrize("raw", [b"not json", b'{"id": "a"}', b"[1, 2]", b""])
def test_bodies_that_are_not_arrays_of_objects_are_400(monitor: DevMonitor, method: str,
                                                        raw: bytes) -> None:
    assert request(monitor.url, method, raw=raw)[0] == 400
    assert monitor.jobs() == {}


def test_oversize_body_is_413_without_reading_it(monitor: DevMonitor) -> None:
    parts = urllib.parse.urlsplit(monitor.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.putrequest("POST", parts.path)
    conn.putheader("Content-Length", str(64 * 1024 * 1024 + 1))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    conn.close()


def test_unknown_path_is_404(monitor: DevMonitor) -> None:
    assert request(monitor.url, "POST", [{"id": "a"}], path="/elsewhere/")[0] == 404
    assert request(monitor.url, "GET", path="/nothing")[0] == 404


def test_keep_alive_connection_serves_many_requests(monitor: DevMonitor) -> None:
    parts = urllib.parse.urlsplit(monitor.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    for i in range(20):
        conn.request("POST", parts.path, body=json.dumps([{"id": f"j{i}"}]).encode())
        response = conn.getresponse()
        response.read()
        assert response.status == 201
    conn.close()
    assert len(monitor.jobs()) == 20


def test_stats_count_jobs_by_status_and_requests(monitor: DevMonitor) -> None:
    jobs = [{"id": "i", "JobStatus": 1}, {"id": "r", "JobStatus": 2},
            {"id": "h", "JobStatus": 5}, {"id": "x"}, {"id": "gone", "JobStatus": 4}]
    request(monitor.url, "POST", jobs)
    request(monitor.url, "DELETE", [{"id": "gone"}])
    request(monitor.url, "PUT", [{"id": "nope"}])
    stats = get_json(urllib.parse.urljoin(monitor.url, "/api/stats/"))
    assert stats["jobs"] == {"by_status": {"Idle": 1, "Running": 1, "Held": 1, "unknown": 1},
                             "removed": 1, "total": 5}
    assert stats["requests"] == {"POST 201": 1, "DELETE 204": 1, "PUT 400": 1}


def test_page_escapes_everything(monitor: DevMonitor) -> None:
    evil = "<script>alert('x')</script>"
    request(monitor.url, "POST", [{"id": evil, "owner": evil, evil: evil, "JobStatus": 2}])
    status, body = request(monitor.url, "GET", path="/")
    page = body.decode()
    assert status == 200
    assert evil not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Running" in page


def test_page_counts_left_the_queue_apart_from_jobstatus_removed(monitor: DevMonitor) -> None:
    request(monitor.url, "POST", [{"id": "a", "JobStatus": 3}, {"id": "b", "JobStatus": 4},
                                  {"id": "c", "JobStatus": 2}])
    request(monitor.url, "DELETE", [{"id": "b"}])
    assert monitor.store.tally() == {(3, False): 1, (4, True): 1, (2, False): 1}
    page = request(monitor.url, "GET", path="/")[1].decode()
    assert 'data-status="Removed" data-count="1"' in page
    assert 'data-status="left" data-count="1"' in page
    assert 'data-total="3"' in page


def test_the_page_lists_the_newest_jobs_first(monitor: DevMonitor) -> None:
    request(monitor.url, "POST", [{"id": "a"}, {"id": "b"}, {"id": "c"}])
    assert [job["id"] for job in monitor.store.newest(2)] == ["c", "b"]
    page = request(monitor.url, "GET", path="/")[1].decode()
    assert page.index('data-id="c"') < page.index('data-id="b"') < page.index('data-id="a"')


def test_jobs_survive_in_a_db_file(tmp_path) -> None:
    db = str(tmp_path / "jobs.sqlite")
    with DevMonitor(db=db) as first:
        request(first.url, "POST", [{"id": "a", "JobStatus": 2}])
    with DevMonitor(db=db) as second:
        assert second.jobs() == {"a": {"id": "a", "JobStatus": 2, "removed": False}}


def test_main_prints_url_first_and_exits_0_on_sigterm(tmp_path) -> None:
    process = subprocess.Popen(python_command("pandad", "devmonitor", "--db",
                                              str(tmp_path / "m.db")),
                               env=python_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api/jobs/")
        assert request(url, "POST", [{"id": "a"}])[0] == 201
        assert get_json(url) == [{"id": "a", "removed": False}]
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        kill_if_running(process)
        process.stdout.close()
        process.stderr.close()


def test_an_ipv6_address_is_listened_on() -> None:
    with DevMonitor("::1") as monitor:
        assert monitor.url.startswith("http://[::1]:")
        assert request(monitor.url, "POST", [{"id": "a"}])[0] == 201
        assert monitor.jobs() == {"a": {"id": "a", "removed": False}}


def test_main_exits_1_when_the_port_is_taken(monitor: DevMonitor, capsys) -> None:
    assert main(["--port", str(monitor.port)]) == 1
    assert "cannot start" in capsys.readouterr().err
