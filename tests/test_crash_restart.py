"""Crashes and restarts in the middle of a run: the feed recovers by itself, and what the
counters say was lost is exactly what the monitor is missing against the truth.

Real processes (panda_plugin, the pandad it forks), a real development monitor with an sqlite
file, and the schedd simulator in this process, so the test knows exactly which changes were
made while a part was down:

- pandad SIGKILLed: the plug-in restarts it after its backoff; the changes made meanwhile are
  dropped and counted (``records_dropped_pandad_down``), exactly, and healed: the plug-in
  re-sends those jobs, and the monitor ends equal to the truth;
- panda_plugin SIGKILLed, restarted, then SIGTERMed and restarted: each pandad flushes at end of
  input and its books balance with no loss; the restarted plug-in resumes from its saved
  position and the monitor ends equal to the truth (a re-sent record is applied idempotently);
- the development monitor restarted (same port, same --db file): with PANDA_RETRY_LIMIT > 0
  nothing is lost and the monitor converges; with PANDA_RETRY_LIMIT = 0 the records of the
  failed cycles are counted ``records_lost_transport``, exactly, and the plug-in heals those
  jobs once pandad reports them lost, so the monitor converges too.
"""

import math
import os
import signal
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from pandad.dev.demo import Chain, compare
from pandad.dev.devmonitor import DevMonitor
from pandad.dev.simulate import RUNNING, ScheddSimulator
from pandad.stats import OUTCOMES, counter
from tests.support import python_env, wait_until
from tests.support.pandad_process import assert_accounted

pytestmark = pytest.mark.slow

MARK = "PandaCrashMark"


class CrashRun:
    """A monitor on an sqlite file, a Chain (plug-in + pandad) and an in-process simulator."""

    def __init__(self, directory: Path, **knobs: str) -> None:
        self.directory = directory
        self.db = str(directory / "monitor.sqlite")
        self.monitor = DevMonitor(db=self.db)
        self.monitor.start()
        settings = {"PANDA_PLUGIN_POLL_INTERVAL": "0.05", "PANDA_FLUSH_INTERVAL": "0.2",
                    "PANDA_STATISTICS_INTERVAL": "1", "PANDA_UPDATE_TIMEOUT": "5"}
        settings.update(knobs)
        self.chain = Chain(str(directory), self.monitor.url, settings, env=python_env())
        self.sim = ScheddSimulator(self.chain.job_queue_log, seed=17, jobs=1 << 30,
                                   schedd_name="crash.example.org")
        self.stats_logs = 0
        self.new_statistics_log()
        self.start_plugin()

    # -- the parts ----------------------------------------------------------------------------

    def new_statistics_log(self) -> str:
        """Give the next pandad its own statistics log (each counts from zero)."""
        self.stats_logs += 1
        path = os.path.join(self.chain.directory, "log", f"PandaStatistics.{self.stats_logs}")
        self.chain.write_config(PANDA_STATISTICS_LOG=path)
        return path

    def start_plugin(self) -> None:
        """Start panda_plugin and wait until it follows the log (changes made before it
        runs would be seen only as the state at its start-up replay)."""
        mark = len(self.plugin_log())
        self.chain.start_plugin()
        self.wait_plugin_log("following", after=mark)
        self.pandad()

    def pandad(self) -> int:
        return wait_until(lambda: self.chain.pandad_processes(), 20,
                          message="a running pandad")[0]

    def restart_monitor(self, down_while=None) -> None:
        port = self.monitor.port
        self.monitor.stop()
        if down_while is not None:
            down_while()
        self.monitor = DevMonitor(port=port, db=self.db)
        self.monitor.start()

    def plugin_log(self) -> str:
        path = self.chain.knobs["PANDA_PLUGIN_LOG"]
        return Path(path).read_text(errors="replace") if os.path.exists(path) else ""

    def wait_plugin_log(self, text: str, after: int, timeout: float = 15) -> str:
        def found() -> str:
            return next((line for line in self.plugin_log()[after:].splitlines()
                         if text in line), "")
        return wait_until(found, timeout, message=f"{text!r} in the plug-in's log")

    # -- the schedd ---------------------------------------------------------------------------

    def activity(self, steps: int, pace: float = 0.004) -> None:
        for _ in range(steps):
            self.sim.step()
            time.sleep(pace)
        self.sim.flush()

    def queued_jobs(self, n: int) -> List[Tuple[int, int]]:
        """``n`` jobs in the queue and not running (whatever happens to them later, nothing
        sets the mark attribute again)."""
        truth = self.sim.truth()
        jobs = []
        for entry in truth.values():
            if entry["removed"] or entry["attrs"].get("JobStatus") == str(RUNNING):
                continue
            cluster, proc = map(int, entry["condorid"].split("."))
            jobs.append((cluster, proc))
        assert len(jobs) >= n, f"only {len(jobs)} queued jobs"
        return jobs[:n]

    def mark(self, jobs: List[Tuple[int, int]], tag: str) -> None:
        """One qedit (one transaction, one UPDATE record) per job, of an attribute the
        simulator never touches again."""
        for job in jobs:
            self.sim.qedit_job(job, MARK, f'"{tag}"')

    # -- waiting and judging ------------------------------------------------------------------

    def changes(self) -> int:
        return sum(self.monitor.request_counts().values())

    def wait_quiet(self, timeout: float = 60) -> None:
        self.sim.flush()
        assert self.chain.wait_quiet(self.changes, timeout, settle=0.8), (
            f"the feed did not go quiet: {self.chain.statistics()}")

    def problems(self) -> List[str]:
        return compare(self.sim.truth(), self.monitor.jobs()).problems

    def close(self) -> None:
        try:
            self.chain.kill_all()
        finally:
            self.monitor.stop()
            self.sim.finish()


@pytest.fixture
def run_factory(tmp_path):
    runs: List[CrashRun] = []

    def make(**knobs: str) -> CrashRun:
        run = CrashRun(tmp_path, **knobs)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.close()


def pandad_losses(stats: Dict[str, str]) -> Dict[str, int]:
    return {name: counter(stats, name) for name in OUTCOMES
            if name != "records_sent" and counter(stats, name)}


def test_pandad_sigkill_is_restarted_and_the_drops_are_counted_and_healed(run_factory):
    run = run_factory()
    run.activity(300)
    run.wait_quiet()
    problems = run.problems()
    assert problems == [], "\n".join(problems)
    victims = run.queued_jobs(4)

    killed = run.pandad()
    mark = len(run.plugin_log())
    os.kill(killed, signal.SIGKILL)
    run.wait_plugin_log("restarting it in", after=mark)
    # pandad is down for its restart backoff (1 s): these changes cannot reach it.
    run.mark(victims, "while pandad was down")
    dropped_line = run.wait_plugin_log("dropped", after=mark)
    wait_until(lambda: run.chain.pandad_processes() and killed not in
               run.chain.pandad_processes(), 20, message="pandad restarted")

    run.activity(200)                  # the run goes on with the new pandad
    run.wait_quiet()
    wait_until(lambda: run.problems() == [], 60, interval=0.2,
               message="the dropped changes to be healed")
    assert run.chain.stop_plugin(signal.SIGTERM) == 0
    plugin = run.chain.plugin_counters()
    assert plugin.get("pandad_restarts") == 1, plugin
    reported = int(plugin.get("records_dropped_pandad_down", 0))

    # The drops were counted exactly, and healed: the monitor equals the truth.
    assert reported == len(victims), (reported, dropped_line)
    assert f"dropped {len(victims)} records" in dropped_line
    assert run.problems() == []
    assert plugin.get("jobs_healed", 0) >= len(victims), plugin
    # The new pandad lost nothing.
    stats = run.chain.statistics()
    assert_accounted(stats)
    assert pandad_losses(stats) == {}


def test_plugin_sigkill_and_sigterm_restarts_lose_nothing(run_factory):
    run = run_factory()
    for sig in (signal.SIGKILL, signal.SIGTERM):
        run.activity(250)
        pandad = run.pandad()
        stats_log = run.chain.knobs["PANDA_STATISTICS_LOG"]
        status = run.chain.stop_plugin(sig)
        assert status == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
        # pandad saw end of input: it flushes what it read, writes its final books, exits.
        wait_until(lambda: pandad not in run.chain.pandad_processes(), 30,
                   message="the orphaned pandad to finish")
        from pandad.stats import read_statistics

        stats = read_statistics(stats_log)
        assert_accounted(stats)
        assert pandad_losses(stats) == {}, (sig, stats)
        run.activity(100)              # the schedd goes on while no plug-in runs
        run.new_statistics_log()
        run.start_plugin()             # resumes from the saved position
    run.activity(200)
    run.wait_quiet()
    assert run.chain.stop_plugin(signal.SIGTERM) == 0
    stats = run.chain.statistics()
    assert_accounted(stats)
    assert pandad_losses(stats) == {}
    plugin = run.chain.plugin_counters()
    assert plugin.get("records_dropped_pandad_down", 0) == 0
    assert plugin.get("records_dropped_pipe_full", 0) == 0
    assert run.problems() == []


def test_monitor_restart_with_retries_converges(run_factory):
    run = run_factory(PANDA_RETRY_LIMIT="1000")
    run.activity(250)

    def down() -> None:
        run.activity(250)
        # Down until pandad has met it (on a busy machine the activity can be over first).
        wait_until(lambda: counter(run.chain.statistics(), "transport_failures") > 0, 30,
                   message="pandad to find the monitor down")

    run.restart_monitor(down_while=down)
    run.activity(150)
    run.wait_quiet(timeout=90)         # a retry may wait out a backoff of some seconds
    assert run.chain.stop_plugin(signal.SIGTERM) == 0
    stats = run.chain.statistics()
    assert_accounted(stats)
    assert counter(stats, "transport_failures") > 0
    assert counter(stats, "retries") > 0
    assert pandad_losses(stats) == {}
    assert run.problems() == []


def test_monitor_restart_without_retries_counts_its_losses_and_heals_them(run_factory):
    run = run_factory(PANDA_RETRY_LIMIT="0")
    run.activity(300)
    run.wait_quiet()
    victims = run.queued_jobs(5)

    down_for = []

    def down() -> None:
        started = time.monotonic()
        run.mark(victims, "while the monitor was down")
        wait_until(lambda: counter(run.chain.statistics(), "records_lost_transport")
                   >= len(victims), 20, message="pandad to give the marks up")
        down_for.append(time.monotonic() - started)

    run.restart_monitor(down_while=down)
    run.activity(200)
    run.wait_quiet()
    wait_until(lambda: run.problems() == [], 60, interval=0.2,
               message="the lost marks to be healed")
    assert run.chain.stop_plugin(signal.SIGTERM) == 0
    stats = run.chain.statistics()
    assert_accounted(stats)
    losses = pandad_losses(stats)
    assert set(losses) == {"records_lost_transport"}, stats
    # The marks, and heals of them sent while the monitor was still away: those back off
    # (1, 2, 4, … s between rounds), so a few rounds at most, never one per flush.
    rounds = 2 + math.ceil(math.log2(max(1.0, down_for[0])))
    assert len(victims) <= losses["records_lost_transport"] <= len(victims) * (1 + rounds)
    assert run.chain.plugin_counters().get("jobs_healed", 0) >= len(victims)
