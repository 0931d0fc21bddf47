"""Hostile job queue logs (issue 13, rows 8 and 12): bounded, logged once, counted, quoted short.

- A NUL run or a line without a newline at the end of the log (what a crash can leave; a
  sparse file) is logged once with its offset and length, counted in
  ``log_unterminated_tails``, and not read again at each poll; records appended after it, or
  written over it, are picked up.  The plug-in's memory stays bounded on such files.
- A corrupt line is quoted in log lines by at most its first 32 printable characters.

Files are real; big ones are sparse (``os.truncate``), which costs nothing on disk.
"""

import logging
import os
import subprocess
import sys
import time

from schedd_plugin.tailscan import MAX_LINE_BYTES
from tests.support import python_command, python_env, wait_until
from tests.support.feed import Feed
from tests.test_hostile_files import DryRunPlugin

HEAD = b"107 3 CreationTimestamp 1767000000\n"
GIB = 1 << 30


def job(cluster: int) -> bytes:
    return (b'105 \n101 %d.0 Job Machine\n103 %d.0 GlobalJobId "s#%d.0#1"\n106 \n'
            % (cluster, cluster, cluster))


def bytes_read() -> int:
    """What this process has read so far (Linux /proc/self/io ``rchar``; pread counts)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def added(feed: Feed) -> list:
    return [r[2] for r in feed.records() if r[0] == "ADD"]


def warnings(caplog) -> list:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_nul_tail_is_logged_once_not_reread_and_records_after_it_are_picked_up(
        tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="panda_plugin")
    feed = Feed(tmp_path, HEAD + job(1), schedd_name="s")
    assert added(feed) == ["1.0"]
    start = feed.path.stat().st_size
    run = 3 * MAX_LINE_BYTES                   # written NULs, not a hole
    feed.append(b"\0" * run)
    assert feed.records() == []
    assert feed.count("log_unterminated_tails") == 1
    [line] = warnings(caplog)
    assert f"NUL run or sparse hole (what a crash can leave) at offset {start}, {run} bytes" in line
    before = bytes_read()
    for _ in range(20):
        assert feed.records() == []
    assert bytes_read() - before < 20 * 16384      # a few small reads a poll, not the run
    assert len(warnings(caplog)) == 1 and feed.count("log_unterminated_tails") == 1

    feed.append(job(2))
    assert added(feed) == ["2.0"]
    assert feed.count("log_corrupt_lines") == 1
    assert any(f"offset {start} (NUL run of {run} bytes)" in w for w in warnings(caplog))
    feed.append(job(3))
    assert added(feed) == ["3.0"]


def test_nul_tail_written_over_in_place_is_picked_up(tmp_path, caplog):
    feed = Feed(tmp_path, HEAD + job(1), schedd_name="s")
    assert added(feed) == ["1.0"]
    start = feed.path.stat().st_size
    feed.append(b"\0" * (2 * MAX_LINE_BYTES))
    assert feed.records() == [] and feed.count("log_unterminated_tails") == 1
    with open(feed.path, "r+b") as f:
        f.seek(start)
        f.write(job(4))
    assert added(feed) == ["4.0"]


def test_corrupt_line_then_nul_run_then_records(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="panda_plugin")
    feed = Feed(tmp_path, HEAD + job(1), schedd_name="s")
    assert added(feed) == ["1.0"]
    feed.append(b"garbage\n" + b"\0" * (2 * MAX_LINE_BYTES))
    assert feed.records() == []
    before = bytes_read()
    for _ in range(10):
        assert feed.records() == []
    assert bytes_read() - before < 10 * 16384
    feed.append(job(8))
    assert added(feed) == ["8.0"]
    assert feed.count("log_unterminated_tails") == 1
    assert sum("NUL run or sparse hole" in w for w in warnings(caplog)) == 1


def test_two_gib_sparse_tail_costs_little_and_data_after_it_is_read(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="panda_plugin")
    feed = Feed(tmp_path, HEAD + job(1), schedd_name="s")
    os.truncate(feed.path, 2 * GIB)
    cpu, read = time.process_time(), bytes_read()
    assert added(feed) == ["1.0"]
    assert feed.records() == []
    assert time.process_time() - cpu < 1.0
    assert bytes_read() - read < 16 << 20
    assert feed.count("log_unterminated_tails") == 1
    feed.append(job(5))
    assert added(feed) == ["5.0"]
    assert time.process_time() - cpu < 2.0


def test_overlong_line_is_bounded_and_skipped_at_its_newline(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="panda_plugin")
    feed = Feed(tmp_path, HEAD + job(1), schedd_name="s")
    assert added(feed) == ["1.0"]
    start = feed.path.stat().st_size
    feed.append(b"103 1.0 Huge " + b"x" * (MAX_LINE_BYTES + 100))
    assert feed.records() == []
    assert any(f"a line without a newline at offset {start}" in w for w in warnings(caplog))
    feed.append(b"\n" + job(6))
    assert added(feed) == ["6.0"]
    assert any(f"corrupt line at offset {start} (line of {MAX_LINE_BYTES + 114} bytes"
               in w for w in warnings(caplog))


# A wrapper whose only child is the plug-in: its RUSAGE_CHILDREN peak is the plug-in's.
PEAK = ("import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
# The documented bound on these files: the interpreter and the (here tiny) mirror, plus the
# few MiB of one line (docs/admin-guide.md).
MEMORY_BOUND_KIB = 64 << 10


def test_dry_run_once_on_a_two_gib_sparse_log_stays_small(tmp_path):
    log = tmp_path / "job_queue.log"
    log.write_bytes(HEAD + job(1))
    os.truncate(log, 2 * GIB)
    with open(log, "ab") as f:
        f.write(job(2))
    config = tmp_path / "condor_config"
    config.write_text(f"JOB_QUEUE_LOG = {log}\nPANDA_URL = http://127.0.0.1:9/x/\n")
    out = subprocess.run([sys.executable, "-c", PEAK,
                          *python_command("schedd_plugin", "--dry-run", "--once")],
                         env=python_env({"CONDOR_CONFIG": str(config)}),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    code, peak_kib = map(int, out.stdout.split())
    assert code == 0, out.stderr.decode(errors="replace")[-2000:]
    assert peak_kib < MEMORY_BOUND_KIB, f"peak {peak_kib} KiB"


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_running_plugin_on_a_nul_tail_is_bounded_in_memory_and_cpu(tmp_path):
    log = tmp_path / "spool" / "job_queue.log"
    log.parent.mkdir()
    log.write_bytes(HEAD + job(1) + b"\0" * (64 << 20))    # written NULs: no hole to skip
    plugin = DryRunPlugin(tmp_path, log)
    try:
        line = plugin.wait_log("NUL run", timeout=30)
        assert f"{64 << 20} bytes" in line
        cpu = cpu_seconds(plugin.proc.pid)
        time.sleep(1.0)                         # twenty polls at 0.05 s: measure their cost
        plugin.assert_alive()
        assert cpu_seconds(plugin.proc.pid) - cpu < 0.3
        assert vm_hwm_kib(plugin.proc.pid) < MEMORY_BOUND_KIB
        with open(log, "ab") as f:
            f.write(job(7))
        wait_until(lambda: "7.0" in {r.split(b"\x1f")[0] for r in plugin.records()} or
                   any(b"s#7.0#1" in r for r in plugin.records()), 15,
                   message="the job appended after the NUL run")
        assert plugin.log_text().count("NUL run or sparse hole") == 1
        assert vm_hwm_kib(plugin.proc.pid) < MEMORY_BOUND_KIB
    finally:
        assert plugin.stop() == 0
    assert "log_unterminated_tails 1" in plugin.log_text()


def test_corrupt_line_of_a_secret_file_is_quoted_at_most_32_characters(tmp_path):
    secret = "root:$6$secretsecretsecretsecretsecret$hashhashhash:19000:0:99999:7:::"
    log = tmp_path / "spool" / "job_queue.log"
    log.parent.mkdir()
    log.write_bytes(HEAD + job(1))
    plugin = DryRunPlugin(tmp_path, log)
    try:
        wait_until(lambda: plugin.records(), 15, message="the first job")
        with open(log, "ab") as f:
            f.write(secret.encode() + b"\n" + job(2))
        line = plugin.wait_log("corrupt line", timeout=30)
        wait_until(lambda: any(b"s#2.0#1" in r for r in plugin.records()), 15,
                   message="the job after the corrupt line")
    finally:
        assert plugin.stop() == 0
    text = plugin.log_text()
    assert repr(secret[:32]) in line and f"({len(secret)} bytes)" in line
    assert secret[:33] not in text and "hashhash" not in text
