"""Hostile files under the real programs: a clear log line, no damage, no crash.

- job_queue.log is a symlink swapped to another log under a running panda_plugin, truncated to
  zero, overwritten with NULs, or replaced by a directory: the plug-in says so in its log,
  keeps running, and never writes to the files it reads (the symlink's targets are unchanged);
- PANDA_STATISTICS_LOG is a symlink, or a file owned by another user: pandad refuses it with one
  log line naming the path, never writes through the symlink or into the other user's file,
  keeps feeding the monitor, and exits 0.

The plug-in runs with ``--dry-run`` (records to stdout, read here), so what it did with each
file can be checked record by record. Tests run as root here; the "other user" is ``nobody``.
"""

import hashlib
import os
import pwd
import signal
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from pandad.dev.devmonitor import DevMonitor
from pandad.wire import decode, encode_add
from pandad.dev.simulate import ScheddSimulator
from tests.support import IN_CI, python_command, python_env, wait_until
from tests.support.feed import Feed
from tests.support.pandad_process import PandadProcess

pytestmark = pytest.mark.slow


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def simulated_log(path: Path, seed: int, steps: int = 30) -> None:
    """A log whose queue still holds jobs at its end (a replay sends them)."""
    now = [1767225600.0 + seed * 1000]
    sim = ScheddSimulator(str(path), seed=seed, jobs=20, schedd_name=f"s{seed}.example.org",
                          clock=lambda: now[0])
    for _ in range(steps):
        if sim.done:
            break
        sim.step()
        now[0] += 1
    sim.finish()


class DryRunPlugin:
    """``python -m schedd_plugin --dry-run`` following ``log``; records collected from stdout."""

    def __init__(self, directory: Path, log: Path) -> None:
        self.log_file = directory / "PandaPluginLog"
        config = directory / "condor_config"
        config.write_text(
            f"JOB_QUEUE_LOG = {log}\n"
            f"PANDA_PLUGIN_STATE_FILE = {directory / 'panda_plugin.state'}\n"
            f"PANDA_PLUGIN_LOG = {self.log_file}\n"
            "PANDA_PLUGIN_POLL_INTERVAL = 0.05\n"
            "PANDA_URL = http://127.0.0.1:9/api/jobs/\n")
        self.stdout = directory / "records"
        with open(self.stdout, "wb") as out:
            self.proc = subprocess.Popen(python_command("schedd_plugin", "--dry-run"),
                                         stdout=out, stderr=subprocess.STDOUT,
                                         env=python_env({"CONDOR_CONFIG": str(config)}))

    def records(self) -> List[bytes]:
        return [line for line in self.stdout.read_bytes().split(b"\n") if line.startswith(b"\v")]

    def job_ids(self) -> set:
        return {decode(line).job_id for line in self.records()}

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def wait_log(self, text: str, after: int = 0, timeout: float = 10) -> str:
        def found() -> str:
            tail = self.log_text()[after:]
            return next((line for line in tail.splitlines() if text in line), "")
        return wait_until(found, timeout, message=f"plug-in log line with {text!r}:\n"
                                                  f"{self.log_text()[-2000:]}")

    def assert_alive(self) -> None:
        assert self.proc.poll() is None, f"panda_plugin exited:\n{self.log_text()[-3000:]}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def plugin_on_symlink(tmp_path):
    first, second = tmp_path / "logs" / "first.log", tmp_path / "logs" / "second.log"
    first.parent.mkdir()
    simulated_log(first, seed=1)
    simulated_log(second, seed=2)
    link = tmp_path / "spool" / "job_queue.log"
    link.parent.mkdir()
    link.symlink_to(first)
    # The records of the whole first log, from an in-process follower: the tests count
    # records from the moment the plug-in has written all of them.
    (tmp_path / "expected").mkdir()
    expected = len(Feed(tmp_path / "expected", first.read_bytes()).records())
    plugin = DryRunPlugin(tmp_path, link)
    try:
        wait_until(lambda: len(plugin.records()) >= expected, 15,
                   message=f"the {expected} records of the first log")
        assert len(plugin.records()) == expected
        assert any(j.startswith("s1.") for j in plugin.job_ids())
        yield plugin, link, first, second
    finally:
        plugin.stop()


def test_symlink_swapped_to_another_log(plugin_on_symlink):
    plugin, link, first, second = plugin_on_symlink
    before = {first: digest(first), second: digest(second)}
    mark = len(plugin.log_text())
    tmp = link.with_name("job_queue.log.new")
    tmp.symlink_to(second)
    os.replace(tmp, link)                   # the swap is atomic, as an admin's `ln -sfn` is
    line = plugin.wait_log("rotated", after=mark)
    assert str(link) in line
    wait_until(lambda: any(j.startswith("s2.") for j in plugin.job_ids()), 15,
               message="records of the second log")
    plugin.assert_alive()
    assert link.is_symlink() and os.readlink(link) == str(second)
    assert {first: digest(first), second: digest(second)} == before


def test_log_truncated_to_zero(plugin_on_symlink):
    plugin, link, first, _ = plugin_on_symlink
    mark = len(plugin.log_text())
    sent = len(plugin.records())
    os.truncate(first, 0)
    line = plugin.wait_log("not a job queue snapshot", after=mark)
    assert "job_queue.log" in line and "removing none" in line
    plugin.assert_alive()
    # An emptied log is no news about the jobs: nothing was sent, least of all REMOVEs.
    assert len(plugin.records()) == sent
    # Written again from scratch (a wiped spool): the plug-in follows the new content.
    simulated_log(first, seed=3)
    wait_until(lambda: any(j.startswith("s3.") for j in plugin.job_ids()), 15,
               message="records of the rewritten log")
    plugin.assert_alive()
    assert link.is_symlink()


def test_log_overwritten_with_nuls(plugin_on_symlink):
    plugin, link, first, _ = plugin_on_symlink
    size = first.stat().st_size
    records_before = len(plugin.records())
    mark = len(plugin.log_text())
    with open(first, "r+b") as f:           # same inode, same size, every byte NUL
        f.write(b"\0" * size)
    plugin.wait_log("rotated", after=mark)
    with open(first, "ab") as f:            # complete lines after the NULs: now it is corrupt
        f.write(b"103 1.0 JobStatus 2\n105\n106\n")
    line = plugin.wait_log("corrupt", after=mark)
    assert "job_queue.log" in line
    plugin.assert_alive()
    for record in plugin.records()[records_before:]:
        decode(record)                      # whatever it wrote is a well-formed record


def test_log_replaced_by_a_directory(plugin_on_symlink):
    plugin, link, first, _ = plugin_on_symlink
    first_digest = digest(first)
    mark = len(plugin.log_text())
    link.unlink()
    link.mkdir()
    line = plugin.wait_log(str(link), after=mark)
    assert "directory" in line.lower() or "rotated" in line or "does not exist" in line, line
    wait_until(lambda: "directory" in plugin.log_text()[mark:].lower(), 10,
               message=f"a log line saying the log is a directory:\n{plugin.log_text()[mark:]}")
    assert "Traceback" not in plugin.log_text()[mark:]     # one line, not the catch-all's
    plugin.assert_alive()
    # The admin puts a log back: it is followed again.
    link.rmdir()
    link.symlink_to(first)
    wait_until(lambda: plugin.log_text()[mark:].count("\n") >= 2, 10, message="recovery")
    plugin.assert_alive()
    assert digest(first) == first_digest
    assert plugin.stop() == 0


# -- pandad's statistics log --------------------------------------------------------------------


def nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.fail("user nobody is needed to own the other user's file")


def run_pandad_with_statistics_at(tmp_path: Path, stats_path: Path) -> Dict[str, object]:
    """pandad feeding a real monitor with PANDA_STATISTICS_LOG = ``stats_path``."""
    with DevMonitor() as monitor:
        with PandadProcess(tmp_path, url=monitor.url, PANDA_STATISTICS_LOG=str(stats_path)) as pandad:
            pandad.write(encode_add("h#1.0#1", "1.0", [("JobStatus", "1")]))
            wait_until(lambda: "h#1.0#1" in monitor.jobs(), 10, message="the job in the monitor")
            pandad.wait_for_log("statistics not written")
            alive = pandad.proc.poll() is None
            pandad.close_stdin()
            status = pandad.wait(20)
            return {"log": pandad.log_text(), "alive": alive, "status": status}


def test_statistics_log_symlink_is_not_followed(tmp_path):
    target = tmp_path / "precious"
    target.write_text("do not touch\n")
    target.chmod(0o644)
    link = tmp_path / "stats.link"
    link.symlink_to(target)
    result = run_pandad_with_statistics_at(tmp_path, link)
    lines = [line for line in result["log"].splitlines() if "statistics not written" in line]
    assert len(lines) == 1, lines         # once per distinct problem, not every interval
    assert str(link) in lines[0]
    assert result["alive"] and result["status"] == 0
    assert target.read_text() == "do not touch\n"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert link.is_symlink()


def test_statistics_log_hard_linked_to_another_file_is_refused(tmp_path):
    other = tmp_path / "etc-shadow-stand-in"
    other.write_text("do not touch\n")
    stats = tmp_path / "pandaStatisticsLog"
    os.link(other, stats)
    result = run_pandad_with_statistics_at(tmp_path, stats)
    lines = [line for line in result["log"].splitlines() if "statistics not written" in line]
    assert len(lines) == 1, lines
    assert f"statistics log {stats} has 2 hard links; refusing to write to it" in lines[0]
    assert result["alive"] and result["status"] == 0
    assert other.read_text() == "do not touch\n"
    assert stats.stat().st_nlink == 2


def test_a_refused_pandad_log_is_used_again_after_sighup_once_it_is_safe(tmp_path):
    other = tmp_path / "someone-elses"
    other.write_text("precious\n")
    log = tmp_path / "PandadLog"
    os.link(other, log)
    with DevMonitor() as monitor, PandadProcess(tmp_path, url=monitor.url) as pandad:
        wait_until(lambda: "logging to stderr" in pandad.stderr_text(), 10,
                   message="the refusal on stderr")
        assert f"log file {log} has 2 hard links" in pandad.stderr_text()
        log.unlink()                            # the admin removes what was planted
        pandad.send_signal(signal.SIGHUP)
        pandad.wait_for_log("configuration re-read")
        pandad.close_stdin()
        assert pandad.wait(20) == 0
    assert other.read_text() == "precious\n"
    assert (log.stat().st_mode & 0o777) == 0o600 and log.stat().st_nlink == 1


def as_root_for_another_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI runs the tests as root, to create a file owned by another user")
        pytest.skip("needs root to create a file owned by another user")
    return nobody()


def test_pandad_log_planted_by_another_user_is_refused(tmp_path):
    """PANDAD_LOG in a world-writable directory, pre-created by another user: pandad says
    why on stderr, logs there instead and keeps working; the file is left as it was."""
    other = as_root_for_another_user()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    planted = shared / "PandadLog"
    planted.write_text("someone else's\n")
    planted.chmod(0o666)
    os.chown(planted, other.pw_uid, other.pw_gid)
    with DevMonitor() as monitor:
        with PandadProcess(tmp_path, url=monitor.url, PANDAD_LOG=str(planted)) as pandad:
            pandad.write(encode_add("h#1.0#1", "1.0", [("JobStatus", "1")]))
            wait_until(lambda: "h#1.0#1" in monitor.jobs(), 10, message="the job in the monitor")
            pandad.close_stdin()
            assert pandad.wait(20) == 0
    stderr = pandad.stderr_text().splitlines()
    refused = [line for line in stderr if "refusing" in line]
    assert len(refused) == 1, stderr
    assert (f"log file {planted} is owned by uid {other.pw_uid}, not by this user (uid 0);"
            " refusing to write to it; logging to stderr") in refused[0]
    assert any("pandad starting" in line for line in stderr)
    assert planted.read_text() == "someone else's\n"
    assert planted.stat().st_uid == other.pw_uid


def test_statistics_log_owned_by_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI runs the tests as root, to create a file owned by another user")
        pytest.skip("needs root to create a file owned by another user")
    other = nobody()
    tmp_path.chmod(0o755)
    stats = tmp_path / "pandaStatisticsLog"
    stats.write_text("someone else's\n")
    stats.chmod(0o666)
    os.chown(stats, other.pw_uid, other.pw_gid)
    result = run_pandad_with_statistics_at(tmp_path, stats)
    lines = [line for line in result["log"].splitlines() if "statistics not written" in line]
    assert len(lines) == 1, lines
    assert str(stats) in lines[0]
    assert result["alive"] and result["status"] == 0
    assert stats.read_text() == "someone else's\n"
    assert stats.stat().st_uid == other.pw_uid
