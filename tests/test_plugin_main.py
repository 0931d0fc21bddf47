"""panda_plugin as a program: dry run on real fixtures, enabling, exit codes, signals, systemd.

Every run is a real ``python3 -m schedd_plugin`` process with its own configuration file; the
pandad it forks is a small stand-in that copies its stdin to a file (what pandad does with the
records is tested elsewhere), so these tests see exactly what the plug-in wrote.
"""

import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional

import pytest

from pandad.wire import decode
from schedd_plugin.main import sd_notify
from schedd_plugin.state import load_position
from tests.support import FIXTURES, kill_if_running, python_command, python_env, wait_until

FIXTURE_01 = FIXTURES / "01_real_first_log_spooled_submit.log"
JOB_01 = "test_schedd_96043@f4hp7ql65f-2.local#1.0#1763853169"

# Stands in for pandad: notes its pid, copies stdin to a file, notes each SIGHUP and EOF,
# exits 0.
FAKE_PANDAD = """\
import os, signal, sys
out = sys.argv[1]
signal.signal(signal.SIGHUP, lambda *_: open(out + ".hup", "a").write("HUP\\n"))
open(out + ".pid", "w").write(str(os.getpid()))
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
while True:
    chunk = os.read(0, 1 << 16)
    if not chunk:
        break
    os.write(fd, chunk)
open(out + ".eof", "w").close()
"""

ENABLE = "SCHEDD.PLUGINS = $(LIBEXEC)/panda_plugin\n"


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "condor_config"
    path.write_text(f"LOCAL_CONFIG_FILE =\nLOCAL_CONFIG_DIR =\nLIBEXEC = {tmp_path}\n{text}")
    return str(path)


def plugin_config(tmp_path: Path, log: Path, extra: str = "") -> str:
    fake = tmp_path / "fake_pandad.py"
    fake.write_text(FAKE_PANDAD)
    return write_config(tmp_path, (
        ENABLE
        + f"JOB_QUEUE_LOG = {log}\n"
        + f"PANDA_PLUGIN_STATE_FILE = {tmp_path / 'position'}\n"
        + "PANDA_PLUGIN_POLL_INTERVAL = 0.1\n"
        + f"PANDAD = {sys.executable} {fake} {tmp_path / 'received'}\n"
        + extra))


def run_plugin(args: List[str], config: str, timeout: float = 30,
               extra_env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    env = python_env({"CONDOR_CONFIG": config, **(extra_env or {})})
    return subprocess.run(python_command("schedd_plugin", *args), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)


def log_lines(stderr: bytes) -> List[str]:
    return [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]


def test_dry_run_once_prints_the_records_of_a_real_log(tmp_path):
    # Not enabled in this configuration: --dry-run works regardless.
    config = write_config(tmp_path, f"PANDA_PLUGIN_STATE_FILE = {tmp_path / 'position'}\n")
    result = run_plugin(["--dry-run", "--once", "--log", str(FIXTURE_01)], config)
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.split(b"\n")
    assert lines[-1] == b""
    records = [decode(line) for line in lines[:-1]]
    # The header ad, the user record, the cluster ad and ClusterPvt are never sent: one job.
    assert [(r.verb, r.job_id, r.condor_id) for r in records] == [("ADD", JOB_01, "1.0")]
    attrs = {name.lower(): value for name, value in records[0].attrs}
    assert attrs["cmd"] == '"sleep"'                  # set twice in the transaction: last wins
    assert attrs["iwd"].endswith('/spool/1/0/cluster1.proc0.subproc0"')
    assert attrs["jobstatus"] == "5"
    assert attrs["owner"] == '"bbockelm"'             # from the cluster ad: the effective ad
    assert not (tmp_path / "position").exists()       # a dry run never saves the position


def test_dry_run_once_on_every_fixture_never_fails(tmp_path):
    config = write_config(tmp_path, f"PANDA_PLUGIN_STATE_FILE = {tmp_path / 'position'}\n")
    for fixture in sorted(FIXTURES.glob("*.log")):
        result = run_plugin(["--dry-run", "--once", "--log", str(fixture)], config)
        assert result.returncode == 0, (fixture.name, result.stderr.decode())
        for line in result.stdout.split(b"\n")[:-1]:
            decode(line)                              # every output line is a good record


def test_once_sends_to_pandad_saves_position_then_resumes(tmp_path):
    log = tmp_path / "job_queue.log"
    shutil.copyfile(FIXTURE_01, log)
    config = plugin_config(tmp_path, log)
    result = run_plugin(["--once"], config)
    assert result.returncode == 0, result.stderr.decode()
    received = (tmp_path / "received").read_bytes()
    assert [decode(line).verb for line in received.split(b"\n")[:-1]] == ["ADD"]
    assert (tmp_path / "received.eof").exists()       # pandad saw EOF before the plug-in exited
    position = load_position(str(tmp_path / "position"))
    assert position is not None and position.offset == log.stat().st_size

    # The next run resumes there: nothing new in the log, nothing sent again.
    result = run_plugin(["--once"], config)
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "received").read_bytes() == b""
    # ... and a dry run asked to resume agrees.
    result = run_plugin(["--dry-run", "--once", "--resume"], config)
    assert result.returncode == 0 and result.stdout == b""


def test_not_enabled_exits_0_with_one_log_line(tmp_path):
    config = write_config(tmp_path, f"JOB_QUEUE_LOG = {FIXTURE_01}\n")
    notify = NotifySocket()
    try:
        result = run_plugin([], config, extra_env={"NOTIFY_SOCKET": notify.name})
        # Under systemd Type=notify this is a clean start and stop, not a failed start.
        assert [notify.next(), notify.next()] == ["READY=1", "STOPPING=1"]
    finally:
        notify.close()
    assert result.returncode == 0
    assert result.stdout == b""
    lines = log_lines(result.stderr)
    assert len(lines) == 1, lines
    assert "not enabled" in lines[0] and "PLUGINS" in lines[0]


@pytest.mark.parametrize("bad", [
    "PANDA_PLUGIN_POLL_INTERVAL = soon\n",
    "PANDA_PLUGIN_SPILL_BYTES = -5x\n",
])
def test_bad_config_exits_99_with_one_log_line(tmp_path, bad):
    config = write_config(tmp_path, ENABLE + f"JOB_QUEUE_LOG = {FIXTURE_01}\n" + bad)
    result = run_plugin([], config)
    assert result.returncode == 99, result.stderr.decode()
    lines = log_lines(result.stderr)
    assert len(lines) == 1, lines


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self) -> None:
        self.name = f"@pandad-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.settimeout(20)

    def next(self) -> str:
        return self.sock.recv(4096).decode()

    def close(self) -> None:
        self.sock.close()


def test_sd_notify_sends_to_path_and_abstract_sockets(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": path})
        assert sock.recv(100) == b"READY=1"
    notify = NotifySocket()
    try:
        assert sd_notify("STOPPING=1", {"NOTIFY_SOCKET": notify.name})
        assert notify.next() == "STOPPING=1"
    finally:
        notify.close()
    assert not sd_notify("READY=1", {})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})


def start_plugin(tmp_path: Path, config: str, notify: NotifySocket) -> subprocess.Popen:
    env = python_env({"CONDOR_CONFIG": config, "NOTIFY_SOCKET": notify.name})
    stderr = open(tmp_path / "plugin.stderr", "wb")
    proc = subprocess.Popen(python_command("schedd_plugin"), env=env,
                            stdout=subprocess.DEVNULL, stderr=stderr)
    stderr.close()
    return proc


def pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


class Running(NamedTuple):
    log: Path
    config: str
    notify: NotifySocket
    proc: subprocess.Popen


@pytest.fixture
def running_plugin(tmp_path: Path) -> Iterator[Running]:
    """The plug-in on a copy of FIXTURE_01 (pandad: the copying stand-in), its READY=1 read;
    killed if it still runs, and its notify socket closed, at the end."""
    log = tmp_path / "job_queue.log"
    shutil.copyfile(FIXTURE_01, log)
    config = plugin_config(tmp_path, log)
    notify = NotifySocket()
    proc = start_plugin(tmp_path, config, notify)
    try:
        assert notify.next() == "READY=1"
        yield Running(log, config, notify, proc)
    finally:
        kill_if_running(proc)
        notify.close()


def test_sigterm_saves_position_and_stops_pandad(tmp_path, running_plugin):
    log, config, notify, proc = running_plugin
    position = wait_until(lambda: load_position(str(tmp_path / "position")), timeout=20,
                          message="the position to be saved")
    assert position.offset == log.stat().st_size
    pandad_pid = int(wait_until(
        lambda: (tmp_path / "received.pid").exists()
        and (tmp_path / "received.pid").read_text(), timeout=20))
    wait_until(lambda: (tmp_path / "received").exists()
               and (tmp_path / "received").read_bytes().count(b"\n") == 1, timeout=20,
               message="the ADD to reach pandad")

    # A transaction appended now is picked up, and SIGTERM's final poll keeps its position.
    with open(log, "ab") as f:
        f.write(b"105 \n103 1.0 JobStatus 1\n106 \n")
    wait_until(lambda: (tmp_path / "received").read_bytes().count(b"\n") == 2, timeout=20,
               message="the UPDATE to reach pandad")
    proc.send_signal(signal.SIGTERM)
    assert notify.next() == "STOPPING=1"
    assert proc.wait(timeout=30) == 0
    stderr = (tmp_path / "plugin.stderr").read_text()
    assert load_position(str(tmp_path / "position")).offset == log.stat().st_size, stderr
    assert (tmp_path / "received.eof").exists(), stderr   # pandad saw EOF: it could flush
    assert pid_gone(pandad_pid)
    lines = (tmp_path / "received").read_bytes().split(b"\n")[:-1]
    assert [decode(line).verb for line in lines] == ["ADD", "UPDATE"]
    assert "counters:" in stderr


def test_sighup_reloads_and_keeps_running_on_a_bad_config(tmp_path, running_plugin):
    log, config, notify, proc = running_plugin
    good = Path(config).read_text()
    Path(config).write_text(good + "PANDA_PLUGIN_POLL_INTERVAL = never\n")
    proc.send_signal(signal.SIGHUP)
    assert notify.next() == "RELOADING=1"
    assert notify.next() == "READY=1"
    assert proc.poll() is None
    stderr = (tmp_path / "plugin.stderr").read_text()
    assert "keeping the running configuration" in stderr

    # A good configuration is applied: only JobStatus is sent from now on. (pandad's
    # stand-in writes its pid once its SIGHUP handler is in place.)
    wait_until(lambda: (tmp_path / "received.pid").exists(), timeout=20)
    # "JobStatus;Owner" is no attribute name: it matches nothing, and a warning says so.
    Path(config).write_text(good + "PANDA_JOB_ATTRIBUTES = JobStatus JobStatus;Owner\n")
    proc.send_signal(signal.SIGHUP)
    assert notify.next() == "RELOADING=1"
    assert notify.next() == "READY=1"
    # The reload reaches pandad too, once per good reload.
    hups = tmp_path / "received.hup"
    wait_until(lambda: hups.exists() and hups.read_text() == "HUP\n", timeout=20,
               message="pandad to get the SIGHUP")
    wait_until(lambda: (tmp_path / "received").exists()
               and (tmp_path / "received").read_bytes().count(b"\n") == 1, timeout=20)
    with open(log, "ab") as f:
        f.write(b"105 \n103 1.0 JobStatus 1\n103 1.0 ImageSize 1000\n106 \n")
    wait_until(lambda: (tmp_path / "received").read_bytes().count(b"\n") == 2, timeout=20)
    update = decode((tmp_path / "received").read_bytes().split(b"\n")[1])
    assert [name for name, _ in update.attrs] == ["JobStatus"]
    warnings = [line for line in (tmp_path / "plugin.stderr").read_text().splitlines()
                if "PANDA_JOB_ATTRIBUTES" in line]
    assert len(warnings) == 1 and "SIGHUP: PANDA_JOB_ATTRIBUTES: 'JobStatus;Owner' is " \
        "not an attribute name" in warnings[0], warnings
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_sigquit_exits_at_once_and_pandad_still_sees_eof(tmp_path, running_plugin):
    log, config, notify, proc = running_plugin
    wait_until(lambda: load_position(str(tmp_path / "position")), timeout=20,
               message="the position to be saved")
    wait_until(lambda: (tmp_path / "received.pid").exists(), timeout=20)
    proc.send_signal(signal.SIGQUIT)
    assert proc.wait(timeout=10) == 0
    # The plug-in's exit closed the pipe: its pandad gets EOF and finishes on its own.
    wait_until((tmp_path / "received.eof").exists, timeout=20, message="pandad to see EOF")
    assert load_position(str(tmp_path / "position")).offset == log.stat().st_size
