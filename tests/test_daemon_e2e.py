"""End to end: a real ``python -m pandad`` fed through its stdin, sending to a real DevMonitor.

The monitor's jobs must equal the final state the records describe, and the final statistics
block must account for every record read.
"""

import random
from typing import Dict, List, Tuple

import pytest

from pandad.dev.devmonitor import DevMonitor
from pandad.wire import encode_add, encode_remove, encode_update
from tests.support import wait_until
from tests.support.pandad_process import PandadProcess, assert_accounted

SCHEDD = "schedd.example.org"


def job_id(cluster: int) -> str:
    return f"{SCHEDD}#{cluster}.0#1700000000"


def workload(jobs: int, seed: int = 7) -> Tuple[List[bytes], Dict[str, dict]]:
    """Records for ``jobs`` jobs (add, several updates, some removes) and the expected state."""
    rng = random.Random(seed)
    records: List[bytes] = []
    expected: Dict[str, dict] = {}
    for i in range(jobs):
        records.append(encode_add(job_id(i), f"{i}.0", [
            ("Owner", '"user%d"' % (i % 17)), ("JobStatus", "1"), ("Cmd", '"/bin/job"'),
            ("RequestCpus", "1"), ("ImageSize", "1000")]))
        expected[job_id(i)] = {"condorid": f"{i}.0", "Owner": "user%d" % (i % 17),
                               "JobStatus": 1, "Cmd": "/bin/job", "ImageSize": 1000,
                               "removed": False}
    for i in range(jobs):
        records.append(encode_update(job_id(i), [("JobStatus", "2"),
                                                 ("RemoteHost", '"slot1@node%d"' % (i % 50))]))
        expected[job_id(i)].update(JobStatus=2, RemoteHost="slot1@node%d" % (i % 50))
    for i in rng.sample(range(jobs), jobs // 2):
        size = rng.randrange(1000, 100000)
        records.append(encode_update(job_id(i), [("ImageSize", str(size))]))
        records.append(encode_update(job_id(i), [("ImageSize", str(size + 1))]))
        expected[job_id(i)].update(ImageSize=size + 1)
    for i in range(0, jobs, 4):
        records.append(encode_update(job_id(i), [("JobStatus", "4"), ("ExitCode", "0")]))
        records.append(encode_remove(job_id(i)))
        expected[job_id(i)].update(JobStatus=4, ExitCode=0, removed=True)
    return records, expected


def differences(monitor_jobs: Dict[str, dict], expected: Dict[str, dict]) -> List[str]:
    problems = []
    if set(monitor_jobs) != set(expected):
        problems.append(f"{len(set(expected) - set(monitor_jobs))} jobs missing, "
                        f"{len(set(monitor_jobs) - set(expected))} unexpected")
    for job, fields in expected.items():
        stored = monitor_jobs.get(job, {})
        for name, value in fields.items():
            if stored.get(name) != value:
                problems.append(f"{job} {name}: {stored.get(name)!r} != {value!r}")
    return problems


@pytest.mark.slow
def test_ten_thousand_jobs_reach_the_monitor_exactly(tmp_path):
    records, expected = workload(10_000)
    with DevMonitor() as monitor, PandadProcess(
            tmp_path, url=monitor.url, PANDA_QUEUE_SIZE=str(64 << 20),
            PANDA_QUEUE_MAX_SIZE=str(128 << 20), PANDA_FLUSH_INTERVAL="0.2") as pandad:
        written = pandad.write_all(records, chunk=2000)
        wait_until(lambda: not differences(monitor.jobs(), expected), 60,
                   interval=0.2, message="the monitor to hold the expected jobs")
        pandad.close_stdin()
        assert pandad.wait(30) == 0
        stats = pandad.statistics()
    assert int(stats["records_read"]) == written
    assert int(stats["records_sent"]) == written
    assert_accounted(stats)
    # Coalescing: far fewer commands than records.
    assert int(stats["commands_sent"]) < written
    assert "400" not in "".join(monitor.request_counts())


def test_an_integer_longer_than_int_takes_arrives_as_its_text(tmp_path):
    """5,000 digits: more than Python's int-to-string limit. The job and the update still
    arrive (through coalesce, convert and the flusher), the value as its digits."""
    digits = "8" * 5000
    with DevMonitor() as monitor, PandadProcess(tmp_path, url=monitor.url) as pandad:
        pandad.write(encode_add(job_id(1), "1.0", [("JobStatus", "1"), ("Huge", digits)]),
                     encode_add(job_id(2), "2.0", [("JobStatus", "1")]))
        wait_until(lambda: len(monitor.jobs()) == 2, 10, message="both jobs")
        pandad.write(encode_update(job_id(2), [("Huge", "-" + digits)]))
        wait_until(lambda: "Huge" in monitor.jobs()[job_id(2)], 10, message="the update")
        pandad.close_stdin()
        assert pandad.wait(10) == 0
        stats = pandad.statistics()
        jobs = monitor.jobs()
    assert jobs[job_id(1)]["Huge"] == digits and jobs[job_id(2)]["Huge"] == "-" + digits
    assert int(stats["records_sent"]) == int(stats["records_read"]) == 3
    assert "records_bad_unconvertible" not in stats
    assert_accounted(stats)


def test_bad_and_overlong_records_are_counted_and_the_rest_delivered(tmp_path):
    with DevMonitor() as monitor, PandadProcess(
            tmp_path, url=monitor.url, PANDA_MAX_RECORD_BYTES="1000") as pandad:
        pandad.write(encode_add(job_id(1), "1.0", [("JobStatus", "1")]),
                     b"\vFROB\t\"x\"\n",
                     b"not a record at all\n",
                     b"\vUPDATE\t\"" + job_id(1).encode() + b"\"\tA\t" + b"x" * 5000 + b"\n",
                     b"\xff\x00\xfe garbage\n",
                     encode_update(job_id(1), [("JobStatus", "2")]),
                     b"\vREMOVE\t\"torn")                     # no newline: bad at EOF
        wait_until(lambda: monitor.jobs().get(job_id(1), {}).get("JobStatus") == 2, 10,
                   message="job 1 running")
        pandad.close_stdin()
        assert pandad.wait(10) == 0
        stats = pandad.statistics()
    assert int(stats["records_read"]) == 7
    assert int(stats["records_sent"]) == 2
    assert int(stats["records_bad"]) == 5
    assert int(stats["records_bad_too_long"]) == 1
    assert int(stats["records_bad_unterminated"]) == 1
    assert_accounted(stats)
    assert "skipped" in pandad.log_text()
