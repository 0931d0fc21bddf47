"""Self-healing with the whole system as real processes (issue 12): after each fault, once it
is over, the monitor converges to the simulator's truth, job for job and attribute for
attribute, removed flags included, with default knobs, within 60 s.

One test per fault: the monitor away mid-stream, pandad exiting 99 until the configuration
is fixed (no PANDA_URL; a URL answered 404), pandad killed, the plug-in stopped while the log
rotated, a burst bigger than pandad's buffer, SIGTERM while the monitor hangs; and SIGUSR1 for
a monitor that lost its database.
"""

import os
import signal
import time

import pytest

from pandad.dev.demo import RecordingJobStore, counter
from tests.support import wait_until
from tests.support.faultproxy import FaultProxy
from tests.support.pandad_process import assert_accounted
from pandad.dev.simulate import ScheddSimulator
from tests.support.system import System, losses

CONVERGE = 60.0          # seconds from the fault's end to a monitor equal to the truth
BURST = 20000            # procs in one submit
BURST_OVERFLOW = 180.0    # seconds for the burst to reach pandad and overflow its buffer


def _converge(system: System, timeout: float = CONVERGE) -> None:
    """Poll the monitor against the truth until they are equal; fail with the differences."""
    deadline = time.monotonic() + timeout
    while True:
        comparison = system.compare()
        if comparison.ok:
            return
        if time.monotonic() >= deadline:
            counters = system.chain.plugin_counters()
            raise AssertionError(
                f"not converged {timeout:.0f} s after the fault: {comparison.matching} of "
                f"{comparison.truth_jobs} jobs match; plug-in counters {counters}\n"
                + "\n".join(comparison.first_problems(10)))
        time.sleep(0.5)


def _finish(system: System) -> dict:
    """Stop the plug-in (SIGTERM), check pandad's accounting; the plug-in's counters."""
    status = system.stop_plugin(signal.SIGTERM)
    assert status == 0, system.plugin_output()
    system.assert_monitor_matches_truth()
    # Heal records are ordinary records: the last pandad's books balance.
    assert_accounted(system.statistics())
    return system.chain.plugin_counters()


@pytest.mark.slow
def test_monitor_away_mid_stream_heals(tmp_path):
    with System(tmp_path) as system, FaultProxy(system.monitor.url, fault_rate=1.0,
                                                kinds=("500",)) as proxy:
        proxy.stop_faults()
        system.chain.write_config(PANDA_URL=proxy.url)
        system.start_plugin()
        system.start_simulator(seed=5, jobs=60, rate=40, duration=16)
        time.sleep(3)
        proxy.start_faults()
        time.sleep(10)
        proxy.stop_faults()
        system.wait_simulator(30)
        _converge(system)
        counters = _finish(system)
        assert counters["jobs_healed"] > 0
        assert counter(system.statistics(), "records_lost_transport") > 0


def _simulator(system: System, seed: int, **options) -> ScheddSimulator:
    """A schedd simulator driven from the test (each action chosen, not random)."""
    return ScheddSimulator(system.chain.job_queue_log, seed=seed, **options)


def _publish(system: System, sim: ScheddSimulator) -> None:
    """Make what the simulator did visible: the log flushed, the truth written."""
    sim.flush()
    sim.write_truth(system.chain.truth_file)


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _plugin_log(system: System) -> str:
    return _read(system.chain.knobs["PANDA_PLUGIN_LOG"])


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


@pytest.mark.slow
def test_a_burst_bigger_than_pandads_buffer_heals(tmp_path):
    with System(tmp_path) as system:
        sim = _simulator(system, seed=8, jobs=BURST + 10)
        sim.submit(3)
        _publish(system, sim)
        plugin = system.start_plugin()
        _converge(system)
        before = _rss_kib(plugin.pid)
        # The monitor stalls while the burst arrives, so pandad's buffer overflows at default
        # knobs (a flusher that keeps up would take the whole burst in stride).
        with system.monitor.store.held():
            sim.submit(BURST)
            _publish(system, sim)
            wait_until(lambda: "buffer full" in _read(system.chain.knobs["PANDAD_LOG"]),
                       BURST_OVERFLOW, interval=0.2, message="pandad's buffer to overflow")
        started = time.monotonic()          # the fault ends: the monitor answers again
        # Healing re-sends about twice PANDA_QUEUE_SIZE of jobs a cycle: ~25 s for this burst.
        _converge(system)
        took = time.monotonic() - started
        grown = _rss_kib(plugin.pid) - before
        counters = _finish(system)
        dropped = (counter(system.statistics(), "records_dropped_queue_full")
                   + counters.get("records_dropped_pipe_full", 0))
        print(f"burst of {BURST}: {dropped} records dropped, {counters['jobs_healed']:.0f} "
              f"jobs healed, converged in {took:.1f} s; plug-in peak RSS grew {grown} KiB")
        assert dropped > 0, "the burst did not overflow pandad: it proves nothing"
        assert counters["jobs_healed"] >= dropped


@pytest.mark.slow
def test_pandad_killed_mid_stream_heals(tmp_path):
    with System(tmp_path) as system:
        system.start_plugin()
        system.start_simulator(seed=6, jobs=60, rate=60, duration=8)
        time.sleep(3)
        pids = system.chain.pandad_processes()
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
        system.wait_simulator(30)
        _converge(system)
        counters = _finish(system)
        assert counters["pandad_restarts"] >= 1
        assert "pandad may have lost changes of" in _plugin_log(system)


@pytest.mark.slow
@pytest.mark.parametrize("broken", ["unset", "404"])
def test_a_configuration_error_is_visible_and_mended_by_sighup(tmp_path, broken):
    with System(tmp_path) as system:
        good_url = system.chain.knobs["PANDA_URL"]
        if broken == "unset":
            system.chain.write_config(PANDA_URL="")
        else:
            # A monitor answering 404 for the whole URL: everything is rejected, and lost.
            system.chain.write_config(PANDA_URL=good_url.replace("/api/jobs/", "/wrong/"))
        plugin = system.start_plugin()
        system.run_simulator(seed=9, jobs=20, rate=100, duration=3)
        if broken == "unset":
            # pandad exits 99; the plug-in's own log says why, in one line.
            wait_until(lambda: "pandad cannot run, its configuration is unusable: fatal "
                               "configuration error" in _plugin_log(system), 30, interval=0.1,
                       message="the plug-in to log why pandad exits 99")
        else:
            wait_until(lambda: losses(system.statistics()), 30, interval=0.2,
                       message="pandad to count what the 404 cost")
        assert system.monitor.jobs() == {}
        system.chain.write_config(PANDA_URL=good_url)
        fixed = time.monotonic()
        plugin.send_signal(signal.SIGHUP)
        _converge(system)
        # Well before the 60 s back-off a pandad that exited 99 would otherwise wait.
        assert time.monotonic() - fixed < 30
        counters = _finish(system)
        assert counters["jobs_healed"] > 0


@pytest.mark.slow
def test_sigterm_while_the_monitor_hangs_loses_nothing(tmp_path):
    with System(tmp_path) as system, FaultProxy(system.monitor.url, fault_rate=1.0,
                                                kinds=("hang",), hang_seconds=60) as proxy:
        proxy.stop_faults()
        system.chain.write_config(PANDA_URL=proxy.url)
        sim = _simulator(system, seed=10, jobs=100)
        jobs = [job for _ in range(6) for job in sim.submit(3)]
        _publish(system, sim)
        system.start_plugin()
        _converge(system)
        proxy.start_faults()
        for job in jobs[:9]:
            sim.start_job(job)
        jobs += sim.submit(3)
        _publish(system, sim)
        # pandad sends them into a request the monitor never answers.
        wait_until(lambda: proxy.counts().get("hang", 0) > 0, 30, interval=0.1,
                   message="a request to hang")
        assert system.stop_plugin(signal.SIGTERM, timeout=60) == 0
        proxy.stop_faults()
        system.start_plugin()
        _converge(system)
        counters = _finish(system)
        assert counters["jobs_healed"] > 0


@pytest.mark.slow
def test_jobs_that_left_while_the_plugin_was_stopped_are_removed(tmp_path):
    with System(tmp_path) as system:
        # A fixed clock: what a job's leaving writes (JobFinishedHookDone = now) is what the
        # plug-in saw before it stopped. A change written after the stop to a job that then
        # leaves, with the log rotated before the restart, is gone from every file the
        # plug-in can read: no plug-in can send it (docs/admin-guide.md says so).
        sim = _simulator(system, seed=12, jobs=100, clock=lambda: 1767225600.0)
        jobs = [job for _ in range(8) for job in sim.submit(3)]
        for job in jobs[:12]:
            sim.start_job(job)
        for job in jobs[:6]:
            sim.complete(job)
            sim.qedit_job(job, "JobFinishedHookDone", "1767225600")
        _publish(system, sim)
        system.start_plugin()
        _converge(system)
        assert system.stop_plugin(signal.SIGTERM) == 0
        # While it is stopped: the completed jobs leave the queue, new ones come, the log
        # rotates (the saved position now names a file that is gone).
        for job in jobs[:6]:
            sim.leave_queue(job)
        sim.submit(3)
        sim.rotate()
        # Without the kept old file (MAX_JOB_QUEUE_LOG_ROTATIONS = 0): with it, the restart
        # resumes in it at the saved position and the removals are read, not reconciled.
        os.unlink(f"{system.chain.job_queue_log}.{sim.seq - 1}")
        _publish(system, sim)
        system.start_plugin()
        _converge(system)
        counters = _finish(system)
        assert counters["reconciliations"] == 1
        assert "6 announced jobs no longer in the queue get their REMOVE" in _plugin_log(system)


@pytest.mark.slow
def test_sigusr1_resends_the_queue_to_a_monitor_that_lost_its_database(tmp_path):
    with System(tmp_path) as system:
        sim = _simulator(system, seed=13, jobs=100)
        jobs = [job for _ in range(10) for job in sim.submit(3)]
        for job in jobs[:10]:
            sim.start_job(job)
        _publish(system, sim)
        plugin = system.start_plugin()
        _converge(system)
        system.monitor.store = RecordingJobStore()          # the monitor lost everything
        plugin.send_signal(signal.SIGUSR1)
        _converge(system)
        counters = _finish(system)
        assert counters["resyncs"] == 1
        assert counters["jobs_healed"] == len(jobs)
