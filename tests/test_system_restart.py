"""Restarting panda_plugin in the middle of a run, with the whole system as real processes.

- SIGTERM: the plug-in polls once more, saves its position and closes the pipe; pandad
  flushes and exits. Started again it resumes at that position: the monitor receives nothing
  it already has, and in the end holds exactly the simulator's truth.
- SIGKILL: its pandad sees end of input, sends what it read and exits, so nothing written to
  the pipe is lost. The position saved last may be behind what the killed plug-in had already
  written (it is saved after each poll), so the restarted plug-in re-sends the records from
  the saved position on (the test counts them against a dry run from that position), plus,
  because the killed run did not exit cleanly, every job in the queue (the reconciliation).
  Re-sent records are applied again idempotently (an ADD of a known job is turned into an
  UPDATE by pandad's upsert), so the final state still equals the truth.

The simulator is paused with SIGSTOP around each restart so that "what is new since the
saved position" is a fixed amount of log.
"""

import contextlib
import os
import re
import signal
import subprocess
import time
from typing import Dict, Iterator

import pytest

from pandad.dev.demo import counter
from tests.support import python_command, wait_until
from tests.support.pandad_process import assert_accounted
from tests.support.system import System, losses

RATE = 300.0
# After SIGCONT the simulator catches up on the changes it owes for the pause in one burst.
# Rotations are far enough apart that a burst never holds two: a follower that sees two
# rotations between two polls cannot know the final attributes of jobs that came and went
# within the skipped file (see the report), and that is not what these tests are about.
ROTATE_EVERY = 6.0


def _records_sent_over(system: System, n: int):
    return lambda: counter(system.statistics(), "records_sent") > n


def _use_new_statistics_log(system: System, name: str) -> None:
    """Each pandad counts from zero: give the next one its own statistics log."""
    system.chain.write_config(
        PANDA_STATISTICS_LOG=os.path.join(system.chain.directory, "log", name))


def _plugin_starts(system: System) -> int:
    path = system.chain.knobs["PANDA_PLUGIN_LOG"]
    if not os.path.exists(path):
        return 0
    with open(path, errors="replace") as f:
        return sum(" following " in line for line in f)


def _plugin_log(system: System) -> str:
    with open(system.chain.knobs["PANDA_PLUGIN_LOG"], errors="replace") as f:
        return f.read()


def _dry_run_from_saved_position(system: System) -> int:
    """How many records a plug-in resuming at the saved position produces from the log now."""
    chain = system.chain
    log = os.path.join(chain.directory, "log", "dry-run.log")
    result = subprocess.run(
        python_command("schedd_plugin", "--dry-run", "--resume", "--once"),
        env=dict(chain.env, _CONDOR_PANDA_PLUGIN_LOG=log),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout.count(b"\v") == result.stdout.count(b"\n")    # one record a line
    return result.stdout.count(b"\n")


def _healed_records(system: System):
    """Records the plug-in's heal re-sent, once it says it is done (None before)."""
    text = _plugin_log(system)
    text = text[text.rfind(" following "):]                # the last run's lines
    match = re.search(r"healed: \d+ jobs re-sent \((\d+) records\)", text)
    return int(match.group(1)) if match else None


def _stays(predicate, seconds: float, message: str) -> None:
    """``predicate`` holds throughout ``seconds`` (an observation window: proving that
    nothing happens needs one)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), message
        time.sleep(0.05)


def _flowing(system: System, seed: int) -> subprocess.Popen:
    """The plug-in and a simulator started, and the feed reaching the monitor."""
    system.start_plugin()
    sim = system.start_simulator(seed=seed, jobs=100_000, rate=RATE, duration=16,
                                 rotate_every=ROTATE_EVERY)
    wait_until(_records_sent_over(system, 150), 30, interval=0.1,
               message="the feed to be flowing")
    return sim


@contextlib.contextmanager
def _log_held(sim: subprocess.Popen) -> Iterator[None]:
    """The simulator stopped for the block: the log holds still."""
    os.kill(sim.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(sim.pid, signal.SIGCONT)


def _ends_clean(system: System) -> Dict[str, str]:
    """The run finished: every record accounted for, nothing lost; the statistics."""
    system.wait_simulator(60)
    stats = system.finish()
    assert_accounted(stats)
    assert losses(stats) == {}
    return stats


@pytest.mark.slow
def test_sigterm_restart_resends_nothing_and_misses_nothing(tmp_path):
    with System(tmp_path) as system:
        sim = _flowing(system, seed=5)
        with _log_held(sim):
            assert system.stop_plugin(signal.SIGTERM) == 0
            assert system.chain.processes() == [sim.pid]      # pandad flushed and exited
            first = system.statistics()
            assert_accounted(first)
            assert losses(first) == {}
            before = system.monitor.request_counts()
            mark = system.monitor.store.change_count()

            _use_new_statistics_log(system, "PandaStatistics.2")
            system.start_plugin()
            wait_until(lambda: _plugin_starts(system) == 2, 20, message="the plug-in to restart")
            starts = [line for line in _plugin_log(system).splitlines() if " following " in line]
            assert " from offset " in starts[-1], starts[-1]      # resumed, not replayed
            # The log does not move: whatever the restarted plug-in sent now would be a
            # re-send. Several poll and flush intervals pass without a request.
            _stays(lambda: system.monitor.request_counts() == before, 3.0,
                   "the restarted plug-in re-sent something")
            assert counter(system.statistics(), "records_read") == 0

        second = _ends_clean(system)
        assert counter(second, "records_read") > 0          # the run went on after the restart
        # No job was ever added twice (that would be a POST refused with 400).
        assert system.monitor.request_counts().get("POST 400", 0) == 0
        assert counter(second, "upserts_sent") == 0
        created_before = {c.job["id"] for c in system.monitor.store.changes[:mark]
                          if c.action == "create"}
        assert not any(c.action == "create" and c.job["id"] in created_before
                       for c in system.monitor.store.changes_since(mark))
        assert system.chain.simulator_summary()[2] >= 2       # rotations
        system.assert_monitor_matches_truth()


@pytest.mark.slow
def test_sigkill_restart_resends_at_most_the_last_poll_and_still_ends_right(tmp_path, capsys):
    with System(tmp_path) as system:
        sim = _flowing(system, seed=6)
        pandads = system.chain.pandad_processes()
        assert len(pandads) == 1

        # Kill it while it works, then hold the log still.
        assert system.stop_plugin(signal.SIGKILL) == -signal.SIGKILL
        with _log_held(sim):
            # The orphaned pandad sees end of input, sends everything it read, exits.
            system.wait_pandads_gone(pandads)
            first = system.statistics()
            assert_accounted(first)
            assert losses(first) == {}
            held = {job_id: dict(job) for job_id, job in system.monitor.jobs().items()}
            mark = system.monitor.store.change_count()

            pending = _dry_run_from_saved_position(system)
            _use_new_statistics_log(system, "PandaStatistics.2")
            system.start_plugin()
            # It sends the records from the saved position on, and, since the killed run did
            # not exit cleanly (what its pandad held is unknown), re-sends every job in the
            # queue, paced: the reconciliation, which says when it is done.
            wait_until(lambda: _healed_records(system) is not None, 30, interval=0.1,
                       message="the reconciliation to finish")
            expected = pending + _healed_records(system)
            wait_until(lambda: counter(system.statistics(), "records_read") == expected
                       and counter(system.statistics(), "records_sent") == expected, 30,
                       interval=0.1, message=f"the restarted feed to send {expected} records")
            assert "reconciling the monitor with the queue" in _plugin_log(system)
            again = [c for c in system.monitor.store.changes_since(mark)
                     if c.job["id"] in held and all(
                         held[c.job["id"]].get(name) == value for name, value in c.job.items())]
            with capsys.disabled():
                print(f"\nSIGKILL: {pending} records from the saved position were sent again "
                      f"after the restart; {len(again)} of the job objects they made were "
                      f"already at the monitor (re-sent), "
                      f"{counter(system.statistics(), 'upserts_sent')} re-sent ADDs of known "
                      f"jobs became updates")

        second = _ends_clean(system)
        assert counter(second, "records_rejected") == 0
        system.assert_monitor_matches_truth()
