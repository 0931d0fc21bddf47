"""The contract test: pandad against real Django REST Framework + drf-bulk monitors, and the
dev monitor behaving as they do.

A real DRF monitor (tests/drf_monitor: two BigPanDA HTCondor jobs models, each behind a
``ListCreateBulkUpdateAPIView``) runs as its own process on 127.0.0.1.

* panda-bigmon-htcondor's model (ClassAd spellings): a real ``python -m pandad`` with default
  knobs fills every field of it that the jobs' attributes have.
* the 2014 monitor's model (``cmd``, ``owner``, ``submitted``, ...): the same bulk requests,
  and then the same records through pandad with the 2014 ``PANDA_ATTRIBUTE_MAP``, go to it
  and to DevMonitor: statuses and the final value of every model field must be the same.
"""

import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from pandad.dev.devmonitor import DevMonitor
from pandad.wire import encode_add, encode_remove, encode_update
from tests.support import (ATTRIBUTE_MAP_2014, python_command, python_env, require_module,
                           wait_until)
from tests.support.http_client import get_json, request
from tests.support.pandad_process import PandadProcess, assert_accounted

SCHEDD = "schedd.example.org"


class DRFMonitor:
    """tests.drf_monitor.server in its own process, with its sqlite DB in ``directory``."""

    def __init__(self, directory: Path) -> None:
        for module in ("django", "rest_framework", "rest_framework_bulk"):
            require_module(module)
        self.stderr = directory / "drf.stderr"
        with open(self.stderr, "wb") as stderr:
            self.proc = subprocess.Popen(
                python_command("tests.drf_monitor.server", "--db", str(directory / "drf.db")),
                stdout=subprocess.PIPE, stderr=stderr, env=python_env(), text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise AssertionError(f"DRF monitor did not start: {self.stderr.read_text()}")
        # panda-bigmon-htcondor's model, beside the 2014 one
        self.htcondor_url = self.url.replace("/api/jobs/", "/htcondor/api/jobs/")

    def jobs(self, url: Optional[str] = None) -> Dict[str, dict]:
        return {job["id"]: job for job in get_json(url or self.url)}

    def htcondor_jobs(self) -> Dict[str, dict]:
        return self.jobs(self.htcondor_url)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def drf(tmp_path) -> Iterator[DRFMonitor]:
    monitor = DRFMonitor(tmp_path)
    try:
        yield monitor
    finally:
        monitor.stop()


def comparable(drf_jobs: Dict[str, dict], dev_jobs: Dict[str, dict]) -> Tuple[dict, dict]:
    """Both monitors' jobs restricted to the DRF model's fields, in one representation.

    A field DevMonitor never received is null in the model (``removed``: false); DRF writes
    DateTimeFields in ISO form with a "T"; its FloatField turns 12 into 12.0 (equal anyway).
    """
    fields = sorted({name for job in drf_jobs.values() for name in job})

    def normal(name: str, value: Any) -> Any:
        if name == "submitted" and isinstance(value, str):
            return value.replace("T", " ")
        return value

    drf_view = {job_id: {name: normal(name, job.get(name)) for name in fields}
                for job_id, job in drf_jobs.items()}
    dev_view = {job_id: {name: normal(name, job.get(name, False if name == "removed" else None))
                         for name in fields}
                for job_id, job in dev_jobs.items()}
    return drf_view, dev_view


def post(url: str, method: str, items: List[dict]) -> int:
    return request(url, method, items)[0]


# -- the bulk requests themselves ------------------------------------------------------------

REQUESTS: List[Tuple[str, List[dict]]] = [
    ("POST", [{"id": "s#1.0#1", "condorid": "1.0", "owner": "alice", "JobStatus": 1,
               "submitted": "2024-03-01 12:00:00", "cmd": "/bin/sleep", "pri": 0,
               "NotAModelField": "ignored by DRF"},
              {"id": "s#1.1#1", "condorid": "1.1", "owner": "alice", "JobStatus": 1}]),
    ("POST", [{"id": "s#2.0#1", "condorid": "2.0"}, {"id": "s#1.0#1", "JobStatus": 5}]),
    ("PUT", [{"id": "s#1.0#1", "JobStatus": 2, "RemoteHost": "slot1@node7",
              "EnteredCurrentStatus": 1709294400, "run_time": 12}]),
    ("PUT", [{"id": "s#1.1#1", "JobStatus": 5}, {"id": "s#9.9#1", "JobStatus": 2}]),
    ("PUT", [{"id": "s#1.1#1", "owner": None, "size": 2048}]),
    ("DELETE", [{"id": "s#1.0#1", "JobStatus": 3}, {"id": "s#404.0#1"}]),
    ("POST", [{"id": "s#3.0#1", "condorid": "3.0", "p_stdout": "out", "p_stderr": "err",
               "p_description": "a \"quoted\" \u00e9 description"}]),
]


def test_same_bulk_requests_get_the_same_answers_and_leave_the_same_jobs(drf) -> None:
    with DevMonitor() as dev:
        for method, items in REQUESTS:
            assert post(dev.url, method, items) == post(drf.url, method, items), (method, items)
        statuses = dev.request_counts()
        drf_view, dev_view = comparable(drf.jobs(), dev.jobs())
    assert statuses == {"POST 201": 2, "POST 400": 1, "PUT 200": 2, "PUT 400": 1,
                        "DELETE 204": 1}
    assert sorted(dev_view) == ["s#1.0#1", "s#1.1#1", "s#3.0#1"]
    assert dev_view == drf_view


# -- through a real pandad -------------------------------------------------------------------

def job_id(cluster: int) -> str:
    return f"{SCHEDD}#{cluster}.0#1700000000"


def add(cluster: int, **extra: str) -> bytes:
    attrs = {"Owner": '"user%d"' % cluster, "Cmd": '"/bin/job"', "QDate": "1700000000",
             "JobStatus": "1", "JobPrio": "0", "ClusterId": str(cluster), "ProcId": "0",
             "GlobalJobId": '"%s"' % job_id(cluster), "Out": '"job.out"', "Err": '"job.err"',
             "JobDescription": '"contract test"', "EnteredCurrentStatus": "1700000000"}
    attrs.update(extra)
    return encode_add(job_id(cluster), f"{cluster}.0", attrs.items())


PHASES: List[Tuple[str, List[bytes]]] = [
    ("adds", [add(i) for i in range(5)]),
    ("updates", [encode_update(job_id(0), [("JobStatus", "2"), ("LastJobStatus", "1"),
                                           ("RemoteHost", '"slot1@node1"')]),
                 encode_update(job_id(1), [("RemoteWallClockTime", "12.0")]),
                 encode_update(job_id(2), [("Owner", "null")]),
                 add(5), encode_update(job_id(5), [("JobStatus", "2")])]),
    # One unknown job inside the bulk update: the monitor rejects the whole PUT (400); pandad
    # isolates it, the others land, and the unknown job is created by the upsert.
    ("poisoned update", [encode_update(job_id(3), [("JobStatus", "5")]),
                         encode_update(job_id(99), [("JobStatus", "2")]),
                         encode_update(job_id(4), [("ResidentSetSize", "1024")])]),
    ("removes", [encode_update(job_id(0), [("JobStatus", "4"), ("ExitCode", "0")]),
                 encode_remove(job_id(0)), encode_remove(job_id(1))]),
]

EXPECTED_AFTER: Dict[str, Dict[str, Dict[str, Any]]] = {
    "adds": {job_id(i): {"JobStatus": 1, "owner": "user%d" % i} for i in range(5)},
    "updates": {job_id(0): {"JobStatus": 2}, job_id(1): {"run_time": 12},
                job_id(2): {"owner": None}, job_id(5): {"JobStatus": 2}},
    "poisoned update": {job_id(3): {"JobStatus": 5}, job_id(4): {"size": 1024},
                        job_id(99): {"JobStatus": 2, "condorid": "99.0"}},
    "removes": {job_id(0): {"removed": True, "JobStatus": 4}, job_id(1): {"removed": True}},
}


def holds(jobs: Dict[str, dict], expected: Dict[str, Dict[str, Any]]) -> bool:
    return all(job in jobs and all(jobs[job].get(name) == value
                                   for name, value in fields.items())
               for job, fields in expected.items())


def feed_pandad(directory: Path, url: str, monitor_jobs, phases=None, expected_after=None,
                **knobs: str) -> Dict[str, str]:
    """Run pandad against ``url`` through every phase (by default the 2014 monitor's, with
    its PANDA_ATTRIBUTE_MAP); its final statistics."""
    if phases is None:
        phases, expected_after = PHASES, EXPECTED_AFTER
        knobs.setdefault("PANDA_ATTRIBUTE_MAP", ATTRIBUTE_MAP_2014)
    directory.mkdir()
    with PandadProcess(directory, url=url, PANDA_FLUSH_INTERVAL="0.2", **knobs) as pandad:
        for name, records in phases:
            pandad.write(*records)           # one write: one batch, one bulk request per verb
            wait_until(lambda: holds(monitor_jobs(), expected_after[name]), 30,
                       interval=0.1, message=f"the {name} to reach {url}")
        pandad.close_stdin()
        assert pandad.wait(30) == 0, pandad.stderr_text()
        return pandad.statistics()


@pytest.mark.slow
def test_pandad_leaves_the_same_jobs_in_drf_and_in_devmonitor(tmp_path, drf) -> None:
    drf_stats = feed_pandad(tmp_path / "to-drf", drf.url, drf.jobs)
    with DevMonitor() as dev:
        dev_stats = feed_pandad(tmp_path / "to-dev", dev.url, dev.jobs)
        dev_statuses = dev.request_counts()
        drf_view, dev_view = comparable(drf.jobs(), dev.jobs())
    assert dev_statuses.get("PUT 400", 0) >= 1          # the poisoned update was rejected
    assert len(dev_view) == 7
    assert dev_view == drf_view
    for stats in (drf_stats, dev_stats):
        assert_accounted(stats)
        assert int(float(stats["records_read"])) == sum(len(r) for _, r in PHASES)
    assert {name: drf_stats.get(name) for name in drf_stats if name.startswith("records_")} \
        == {name: dev_stats.get(name) for name in dev_stats if name.startswith("records_")}


# -- panda-bigmon-htcondor's model, default knobs ----------------------------------------------

# Its fields a job attribute fills (the others, factory, state, wmsid, start/end time, are the
# monitor's own; Schedd is no job attribute; submitted is read-only there).
HTCONDOR_FIELDS = ("Cmd", "GlobalJobId", "GridResource", "Environment", "Requirements",
                   "LastJobStatus", "EnteredCurrentStatus")
LONG_INTEGER = "7" * 5000         # more digits than Python's int() takes: sent as its text


def htcondor_add(cluster: int) -> bytes:
    attrs = {"Cmd": '"/usr/libexec/runpilot.sh"', "GlobalJobId": '"%s"' % job_id(cluster),
             "GridResource": '"condor ce%d.example.org ce%d.example.org:9619"' % (cluster,
                                                                                   cluster),
             "Environment": '"PANDA_SITE=SITE_%d X509_USER_PROXY=/tmp/x509up"' % cluster,
             "Requirements": '(TARGET.Arch == "X86_64") && (TARGET.Memory >= %d)' % cluster,
             "JobStatus": "1", "LastJobStatus": "0", "EnteredCurrentStatus": "1700000000",
             "QDate": "1700000000", "Owner": '"pilot"', "ClusterId": str(cluster),
             "ProcId": "0", "Huge": LONG_INTEGER}
    return encode_add(job_id(cluster), f"{cluster}.0", attrs.items())


def stored(cluster: int, **changed: Any) -> Dict[str, Any]:
    fields = {"Cmd": "/usr/libexec/runpilot.sh", "GlobalJobId": job_id(cluster),
              "GridResource": f"condor ce{cluster}.example.org ce{cluster}.example.org:9619",
              "Environment": f"PANDA_SITE=SITE_{cluster} X509_USER_PROXY=/tmp/x509up",
              "Requirements": f'(TARGET.Arch == "X86_64") && (TARGET.Memory >= {cluster})',
              "LastJobStatus": 0, "EnteredCurrentStatus": 1700000000}
    fields.update(changed)
    return fields


HTCONDOR_PHASES: List[Tuple[str, List[bytes]]] = [
    ("adds", [htcondor_add(i) for i in range(5)]),
    ("updates", [encode_update(job_id(0), [("JobStatus", "2"), ("LastJobStatus", "1"),
                                           ("EnteredCurrentStatus", "1700000100")]),
                 encode_update(job_id(1), [("Requirements", "(TARGET.Memory > 10)"),
                                           ("Cmd", '"/bin/true"')]),
                 htcondor_add(5), encode_update(job_id(5), [("LastJobStatus", "1")])]),
    ("poisoned update", [encode_update(job_id(3), [("LastJobStatus", "1")]),
                         encode_update(job_id(99), [("LastJobStatus", "2"),
                                                    ("GlobalJobId", '"%s"' % job_id(99))]),
                         encode_update(job_id(4), [("GridResource", '"batch slurm"')])]),
    ("removes", [encode_update(job_id(2), [("LastJobStatus", "2")]),
                 encode_remove(job_id(2))]),
]
HTCONDOR_EXPECTED: Dict[str, Dict[str, Dict[str, Any]]] = {
    "adds": {job_id(i): stored(i) for i in range(5)},
    "updates": {job_id(0): stored(0, LastJobStatus=1, EnteredCurrentStatus=1700000100),
                job_id(1): stored(1, Requirements="(TARGET.Memory > 10)", Cmd="/bin/true"),
                job_id(5): stored(5, LastJobStatus=1)},
    "poisoned update": {job_id(3): stored(3, LastJobStatus=1),
                        job_id(4): stored(4, GridResource="batch slurm"),
                        job_id(99): {"LastJobStatus": 2, "GlobalJobId": job_id(99)}},
    "removes": {job_id(2): stored(2, LastJobStatus=2)},
}


@pytest.mark.slow
def test_pandad_with_default_knobs_fills_every_field_of_panda_bigmon_htcondor(tmp_path, drf):
    stats = feed_pandad(tmp_path / "to-htcondor", drf.htcondor_url, drf.htcondor_jobs,
                        HTCONDOR_PHASES, HTCONDOR_EXPECTED)
    jobs = drf.htcondor_jobs()
    assert sorted(jobs) == sorted(job_id(i) for i in (0, 1, 2, 3, 4, 5, 99))
    expected = {job: fields for phase in HTCONDOR_EXPECTED.values()
                for job, fields in phase.items()}
    for job, fields in expected.items():
        assert {name: jobs[job][name] for name in fields} == fields, job
    # Every field a job attribute fills is filled, in every job pandad added.
    assert all(jobs[job_id(i)][name] not in (None, "") for i in range(6)
               for name in HTCONDOR_FIELDS)
    assert all(job["submitted"] is None for job in jobs.values())     # read-only there
    assert_accounted(stats)
    assert int(float(stats["records_read"])) == sum(len(r) for _, r in HTCONDOR_PHASES)
    assert int(float(stats["records_sent"])) == int(float(stats["records_read"]))
