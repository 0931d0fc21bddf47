"""A stopped pandad never slows the schedd side: the plug-in drops and counts, and resumes.

Real parts: the PanDA plug-in's callbacks (PandaPlugin over a Mirror), the PandadPipe, and a
real pandad child process feeding a development monitor (or, before pandad.daemon exists in
this checkout, a child that copies its stdin to a file). pandad is SIGSTOPped, 100,000
job-ad changes go through the plug-in, and then:

* no callback waited: the longest single write is reported and must be small;
* every record the plug-in produced is accounted for: written + dropped == generated;
* after SIGCONT the flow resumes: a job created afterwards reaches the other side.
"""

import importlib.util
import os
import signal
import sys
import time

import pytest

from pandad.stats import Statistics
from schedd_plugin.callbacks import PandaPlugin
from schedd_plugin.mirror import Mirror
from schedd_plugin.pipe import PandadPipe
from tests.support import COPY_STDIN_CHILD, python_command, python_env, wait_until

CHANGES = 100_000
JOBS = 1000
SCHEDD = "sigstop-schedd.example.org"
# Generous bounds: this checks that nothing waits on pandad (a write that waited would take
# until SIGCONT), it is not a benchmark. The longest single write also catches the odd
# preemption of a loaded 2-core CI machine, so it gets more room than the 99.9th percentile.
P999_WRITE_LIMIT = 0.050
LONGEST_WRITE_LIMIT = 0.250



def global_job_id(proc: int) -> str:
    return f"{SCHEDD}#1.{proc}#1767225600"


class Schedd:
    """Drives the mirror and the plug-in's hooks exactly as the follower replays a schedd's log
    (``Follower._apply``: the mirror first, then the callback)."""

    def __init__(self, mirror: Mirror, plugin: PandaPlugin) -> None:
        self.mirror = mirror
        self.plugin = plugin
        self.changes = 0
        self.longest_callback = 0.0

    def _timed(self, hook, *args) -> None:
        started = time.perf_counter()
        hook(*args)
        self.longest_callback = max(self.longest_callback, time.perf_counter() - started)

    def _txn(self, ops) -> None:
        self._timed(self.plugin.begin_transaction)
        for op in ops:
            if op[0] == "new":
                self.mirror.new_classad(*op[1:])
                self._timed(self.plugin.new_classad, *op[1:])
            else:
                self.mirror.set_attribute(*op[1:])
                self._timed(self.plugin.set_attribute, *op[1:])
                self.changes += 1
        self._timed(self.plugin.end_transaction)

    def submit_cluster(self) -> None:
        self._txn([("new", "01.-1", "Job", "Machine")] + [
            ("set", "01.-1", name, value)
            for name, value in (("ClusterId", "1"), ("Owner", '"alice"'),
                                ("Cmd", '"/bin/sleep"'), ("JobUniverse", "5"),
                                ("QDate", "1767225600"))])

    def submit(self, proc: int) -> None:
        key = f"1.{proc}"
        self._txn([("new", key, "Job", "Machine")] + [
            ("set", key, name, value)
            for name, value in (("GlobalJobId", f'"{global_job_id(proc)}"'),
                                ("ClusterId", "1"), ("ProcId", str(proc)), ("JobStatus", "1"))])

    def update(self, proc: int, value: int) -> None:
        self._txn([("set", f"1.{proc}", "ImageSize", str(value))])


@pytest.mark.slow
def test_stopped_pandad_never_blocks_and_every_record_is_counted(tmp_path, capsys):
    stats = Statistics()
    real_pandad = all(importlib.util.find_spec(name) is not None
                      for name in ("pandad.config", "pandad.knobs", "pandad.daemon"))
    monitor = None
    received = str(tmp_path / "received")
    if real_pandad:
        from pandad.dev.devmonitor import DevMonitor

        monitor = DevMonitor()
        url = monitor.start()
        config = tmp_path / "condor_config"
        config.write_text(
            f"PANDA_URL = {url}\n"
            f"PANDA_STATISTICS_LOG = {tmp_path / 'pandad.stats'}\n"
            f"PANDAD_LOG = {tmp_path / 'pandad.log'}\n"
            "PANDA_FLUSH_INTERVAL = 0.2\n")
        argv = python_command("pandad")
        env = python_env({"CONDOR_CONFIG": str(config)})
    else:
        argv = [sys.executable, "-c", COPY_STDIN_CHILD, received]
        env = python_env()

    pipe = PandadPipe(argv, spill_bytes=65536, pipe_bytes=65536, stats=stats, env=env)
    generated = 0
    write_times = []

    def write(record: bytes) -> bool:
        nonlocal generated
        generated += 1
        started = time.perf_counter()
        accepted = pipe.write(record)
        write_times.append(time.perf_counter() - started)
        return accepted

    def accounted() -> int:
        snap = stats.snapshot()
        return int(snap.get("records_written", 0) + snap.get("records_dropped_pipe_full", 0)
                   + snap.get("records_dropped_pandad_down", 0))

    def arrived(job_id: str) -> bool:
        if monitor is not None:
            return job_id in monitor.jobs()
        return os.path.exists(received) and job_id.encode() in open(received, "rb").read()

    try:
        mirror = Mirror()
        plugin = PandaPlugin(mirror, write, None, SCHEDD)
        plugin.initialize()
        schedd = Schedd(mirror, plugin)
        schedd.submit_cluster()
        assert pipe.running
        pandad_pid = pipe.pid
        os.kill(pandad_pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            for proc in range(JOBS):
                schedd.submit(proc)
            value = 0
            while schedd.changes < CHANGES:
                schedd.update(value % JOBS, value)
                value += 1
            elapsed = time.monotonic() - started
            stopped_spill = pipe.spill_records
            snap = stats.snapshot()
            assert generated == accounted() + stopped_spill
        finally:
            os.kill(pandad_pid, signal.SIGCONT)

        write_times.sort()
        longest_write = write_times[-1]
        p999_write = write_times[int(len(write_times) * 0.999)]
        with capsys.disabled():
            print(f"\n[sigstop] {schedd.changes} changes, {generated} records in {elapsed:.2f} s "
                  f"with pandad stopped ({'real pandad' if real_pandad else 'stdin copier'}): "
                  f"write p99.9 {p999_write * 1000:.3f} ms, longest write "
                  f"{longest_write * 1000:.2f} ms, longest callback "
                  f"{schedd.longest_callback * 1000:.2f} ms, written "
                  f"{int(snap.get('records_written', 0))}, dropped (pipe full) "
                  f"{int(snap.get('records_dropped_pipe_full', 0))}, in spill {stopped_spill}")
        assert schedd.changes == CHANGES
        assert p999_write < P999_WRITE_LIMIT
        assert longest_write < LONGEST_WRITE_LIMIT
        assert snap.get("records_dropped_pipe_full", 0) > 0, "the pipe never filled"
        assert snap.get("records_dropped_pandad_down", 0) == 0
        assert pipe.pid == pandad_pid, "pandad was restarted, it should only have been stopped"

        # Flow resumes: the spill buffer drains, and a job submitted now gets through.
        wait_until(lambda: (pipe.pump(), pipe.spill_records == 0)[1], timeout=20,
                   message="the spill buffer to drain after SIGCONT")
        assert generated == accounted()
        schedd.submit(JOBS)
        wait_until(lambda: (pipe.pump(), arrived(global_job_id(JOBS)))[1], timeout=30,
                   message="a record written after SIGCONT to arrive")
        assert generated == accounted()
        assert stats.snapshot().get("records_dropped_pandad_down", 0) == 0
    finally:
        status = pipe.close(timeout=30)
        if monitor is not None:
            monitor.stop()
    assert status == 0
