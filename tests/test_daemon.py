"""The pandad process: signals, end of input, fatal configuration errors (real processes)."""

import signal
import subprocess
import time

import pytest

from pandad.dev.devmonitor import DevMonitor
from pandad.wire import encode_add, encode_update
from tests.support import python_command, python_env, wait_until
from tests.support.faultserver import HangServer
from tests.support.pandad_process import PandadProcess, assert_accounted


def job_id(i: int) -> str:
    return f"schedd.example.org#{i}.0#1700000000"


def adds(start: int, count: int, size: int = 0) -> list:
    extra = [("Args", '"' + "a" * size + '"')] if size else []
    return [encode_add(job_id(i), f"{i}.0", [("JobStatus", "1")] + extra)
            for i in range(start, start + count)]


def test_stdin_eof_flushes_and_exits_0(tmp_path):
    with DevMonitor() as monitor, PandadProcess(
            tmp_path, url=monitor.url, PANDA_FLUSH_INTERVAL="30") as pandad:
        pandad.write(*adds(0, 1))
        wait_until(lambda: len(monitor.jobs()) == 1, 10, message="the first cycle")
        # The next cycle is 30 s away: only the final flush can send these.
        pandad.write(*adds(1, 99))
        pandad.close_stdin()
        assert pandad.wait(10) == 0
        assert len(monitor.jobs()) == 100
        stats = pandad.statistics()
    assert int(stats["records_sent"]) == 100
    assert_accounted(stats)
    assert "end of input" in pandad.log_text()


def test_sigterm_flushes_within_shutdown_grace_and_exits_0(tmp_path):
    with DevMonitor() as monitor, PandadProcess(
            tmp_path, url=monitor.url, PANDA_FLUSH_INTERVAL="30") as pandad:
        pandad.write(*adds(0, 1))
        wait_until(lambda: len(monitor.jobs()) == 1, 10, message="the first cycle")
        pandad.write(*adds(1, 49))
        wait_until(lambda: pandad.counter("records_queued") == 50, 10,
                   message="records queued")
        pandad.send_signal(signal.SIGTERM)
        assert pandad.wait(10) == 0
        assert len(monitor.jobs()) == 50
        stats = pandad.statistics()
    assert_accounted(stats)
    assert "SIGTERM" in pandad.log_text()


def test_sigterm_gives_up_a_hanging_monitor_after_shutdown_grace(tmp_path):
    with HangServer() as server, PandadProcess(
            tmp_path, url=server.url, PANDA_UPDATE_TIMEOUT="0",
            PANDA_SHUTDOWN_GRACE="1") as pandad:
        pandad.write(*adds(0, 10))
        wait_until(lambda: server.requests >= 1, 10, message="a hanging request")
        pandad.write(*adds(10, 5))
        wait_until(lambda: pandad.counter("records_queued") == 15, 10,
                   message="records queued")
        started = time.monotonic()
        pandad.send_signal(signal.SIGTERM)
        assert pandad.wait(10) == 0
        assert time.monotonic() - started < 4
        stats = pandad.statistics()
    assert int(stats["records_discarded_shutdown"]) == 15
    assert_accounted(stats)


def test_sigquit_exits_at_once_with_a_log_line_and_final_statistics(tmp_path):
    with HangServer() as server, PandadProcess(
            tmp_path, url=server.url, PANDA_UPDATE_TIMEOUT="0", PANDA_SHUTDOWN_GRACE="60",
            PANDA_QUEUE_SIZE="16M") as pandad:
        pandad.write(*adds(0, 10))
        wait_until(lambda: server.requests >= 1, 10, message="a hanging request")
        pandad.write_all(adds(10, 2990))
        wait_until(lambda: pandad.counter("records_queued") == 3000, 10,
                   message="3,000 records queued")
        started = time.monotonic()
        pandad.send_signal(signal.SIGQUIT)
        assert pandad.wait(10) == 0
        # A SIGTERM would have waited up to the 60 s grace for the hanging request.
        assert time.monotonic() - started < 5
        stats = pandad.statistics()
    log = pandad.log_text().splitlines()
    start = next(i for i, line in enumerate(log) if "SIGQUIT" in line)
    assert len(log[start:]) == 1, log[start:]           # one line, nothing after it
    assert "SIGQUIT: exiting at once without flushing; discarded 3000 record(s)" in log[start]
    assert server.requests == 1
    assert int(stats["records_discarded_shutdown"]) == 3000
    assert int(stats["records_sent"]) == 0
    assert_accounted(stats)


def test_sigquit_cuts_a_sigterm_flush_short(tmp_path):
    with HangServer() as server, PandadProcess(
            tmp_path, url=server.url, PANDA_UPDATE_TIMEOUT="0",
            PANDA_SHUTDOWN_GRACE="60") as pandad:
        pandad.write(*adds(0, 20))
        wait_until(lambda: server.requests >= 1, 10, message="a hanging request")
        pandad.send_signal(signal.SIGTERM)
        pandad.wait_for_log("SIGTERM: stopping")
        started = time.monotonic()
        pandad.send_signal(signal.SIGQUIT)
        assert pandad.wait(10) == 0
        assert time.monotonic() - started < 5
        stats = pandad.statistics()
    assert "SIGQUIT: exiting at once without flushing; discarded 20 record(s)" in \
        pandad.log_text()
    assert int(stats["records_discarded_shutdown"]) == 20
    assert_accounted(stats)


def test_sighup_applies_new_url_queue_size_grace_and_timeout(tmp_path):
    with DevMonitor() as first, DevMonitor() as second, PandadProcess(
            tmp_path, url=first.url) as pandad:
        pandad.write(*adds(0, 10))
        wait_until(lambda: len(first.jobs()) == 10, 10, message="jobs at the first monitor")
        pandad.write_config(PANDA_URL=second.url, PANDA_QUEUE_SIZE="2000",
                            PANDA_QUEUE_GRACE="0", PANDA_QUEUE_MAX_SIZE="3000",
                            PANDA_UPDATE_TIMEOUT="7", PANDA_FLUSH_INTERVAL="2")
        pandad.send_signal(signal.SIGHUP)
        pandad.wait_for_log("configuration re-read")
        log = pandad.log_text()
        assert second.url in log and "queue 2000 bytes (grace 0 s, ceiling 3000)" in log
        assert "timeout 7 s" in log
        # Later records land at the second monitor only.
        pandad.write(*adds(100, 5))
        wait_until(lambda: len(second.jobs()) == 5, 10, message="jobs at the second monitor")
        assert len(first.jobs()) == 10
        # The new queue size holds: a burst of 100 records of ~400 bytes overflows it.
        pandad.write(*adds(200, 100, size=400))
        wait_until(lambda: pandad.counter("records_dropped_queue_full") > 0, 10,
                   message="drops at the new queue size")
        pandad.close_stdin()
        assert pandad.wait(10) == 0
        stats = pandad.statistics()
    assert_accounted(stats)


def test_sighup_applies_a_new_attribute_map_and_keeps_the_old_one_when_it_is_bad(tmp_path):
    def owned(job: int, key: str) -> bool:
        return monitor.jobs().get(job_id(job), {}).get(key) == "alice"

    def add(job: int) -> bytes:
        return encode_add(job_id(job), f"{job}.0", [("Owner", '"alice"')])

    with DevMonitor() as monitor, PandadProcess(tmp_path, url=monitor.url) as pandad:
        pandad.wait_for_log("attribute names: as the schedd spells them")
        pandad.write(add(0))
        wait_until(lambda: owned(0, "Owner"), 10, message="job 0 with Owner")
        pandad.write_config(PANDA_ATTRIBUTE_MAP="Owner=owner, QDate=submitted")
        pandad.send_signal(signal.SIGHUP)
        pandad.wait_for_log("SIGHUP: attribute names")
        assert "renamed by PANDA_ATTRIBUTE_MAP: owner=owner, qdate=submitted" \
            in pandad.log_text()
        pandad.write(add(1))
        wait_until(lambda: owned(1, "owner"), 10, message="job 1 with owner")
        pandad.write_config(PANDA_ATTRIBUTE_MAP="Owner")
        pandad.send_signal(signal.SIGHUP)
        pandad.wait_for_log("keeping the old one")
        assert "PANDA_ATTRIBUTE_MAP = 'Owner' has a bad entry" in pandad.log_text()
        pandad.write(add(2))
        wait_until(lambda: owned(2, "owner"), 10, message="job 2 with owner, as before")
        assert "Owner" not in monitor.jobs()[job_id(1)]
        pandad.close_stdin()
        assert pandad.wait(10) == 0


@pytest.mark.parametrize("knob,value,complaint", [
    ("PANDA_QUEUE_SIZE", "lots", "PANDA_QUEUE_SIZE = 'lots'"),                  # not a number
    ("PANDA_SHUTDOWN_GRACE", "1e308", "PANDA_SHUTDOWN_GRACE = '1e308' must be at most")])
def test_sighup_with_a_bad_knob_keeps_the_old_configuration(tmp_path, knob, value, complaint):
    with DevMonitor() as monitor, PandadProcess(tmp_path, url=monitor.url) as pandad:
        pandad.write(*adds(0, 3))
        wait_until(lambda: len(monitor.jobs()) == 3, 10, message="first jobs")
        pandad.write_config(**{knob: value})
        pandad.send_signal(signal.SIGHUP)
        pandad.wait_for_log("keeping the old one")
        lines = [line for line in pandad.log_text().splitlines() if "SIGHUP" in line]
        assert len(lines) == 1 and complaint in lines[0]
        pandad.write(*adds(3, 3), encode_update(job_id(0), [("JobStatus", "2")]))
        wait_until(lambda: len(monitor.jobs()) == 6, 10, message="jobs after the bad SIGHUP")
        # The old values still hold: the old grace (5 s) bounds the final flush, no
        # OverflowError at exit.
        pandad.close_stdin()
        assert pandad.wait(10) == 0
        assert "Traceback" not in pandad.log_text() + pandad.stderr_text()


def test_statistics_log_is_written_periodically_and_at_exit(tmp_path):
    with DevMonitor() as monitor, PandadProcess(tmp_path, url=monitor.url) as pandad:
        pandad.write(*adds(0, 5))
        wait_until(lambda: pandad.counter("records_sent") == 5, 10,
                   message="a periodic statistics block")
        pandad.close_stdin()
        assert pandad.wait(10) == 0
    assert (pandad.statistics_log.stat().st_mode & 0o777) == 0o600
    text = pandad.statistics_log.read_text()
    assert "queue full count: 0" in text and "request success %: 100.00" in text


def test_unwritable_statistics_log_is_not_fatal(tmp_path):
    with DevMonitor() as monitor, PandadProcess(
            tmp_path, url=monitor.url,
            PANDA_STATISTICS_LOG=str(tmp_path / "no" / "such" / "dir" / "stats")) as pandad:
        pandad.write(*adds(0, 2))
        wait_until(lambda: len(monitor.jobs()) == 2, 10, message="jobs")
        pandad.close_stdin()
        assert pandad.wait(10) == 0
    assert pandad.log_text().count("statistics not written") == 1


@pytest.mark.parametrize("knobs, phrase", [
    ({}, "PANDA_URL"),
    ({"PANDA_URL": "http://127.0.0.1:9/api/jobs/", "PANDA_QUEUE_SIZE": "lots"},
     "PANDA_QUEUE_SIZE"),
    ({"PANDA_URL": "ftp://monitor.example.org/jobs/"}, "ftp"),
    ({"PANDA_URL": "ftp://user:s3cret@monitor.example.org/jobs/"}, "user:***@"),
    ({"PANDA_URL": "http://127.0.0.1:9/api/jobs/", "PANDA_ATTRIBUTE_MAP": "Cmd=cmd Owner"},
     "PANDA_ATTRIBUTE_MAP = 'Cmd=cmd Owner' has a bad entry: 'Owner' is not"),
    # Out of range (issue 13): these loaded, then raised OverflowError or busy-looped.
    ({"PANDA_URL": "http://127.0.0.1:9/", "PANDA_UPDATE_TIMEOUT": "1e10"},
     "PANDA_UPDATE_TIMEOUT = '1e10' must be at most 86400 (range 0 to 86400)"),
    ({"PANDA_URL": "http://127.0.0.1:9/", "PANDA_SHUTDOWN_GRACE": "1e308"},
     "PANDA_SHUTDOWN_GRACE = '1e308' must be at most 86400"),
    ({"PANDA_URL": "http://127.0.0.1:9/", "PANDA_QUEUE_SIZE": "1e99"},
     "PANDA_QUEUE_SIZE = '1e99' must be at most 4G"),
    ({"PANDA_URL": "http://127.0.0.1:9/", "PANDA_STATISTICS_INTERVAL": "1e-300"},
     "PANDA_STATISTICS_INTERVAL = '1e-300' must be at least 1"),
    ({"PANDA_URL": "http://127.0.0.1:9/", "PANDA_FLUSH_INTERVAL": "1e999 - 1e999"},
     "PANDA_FLUSH_INTERVAL = '1e999 - 1e999' is not a number"),
])
def test_fatal_configuration_error_exits_99_with_one_line(tmp_path, knobs, phrase):
    config = tmp_path / "condor_config"
    config.write_text("".join(f"{k} = {v}\n" for k, v in knobs.items()))
    result = subprocess.run(python_command("pandad"), stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=30,
                            env=python_env({"CONDOR_CONFIG": str(config)}))
    assert result.returncode == 99
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert phrase in lines[0]
    assert "s3cret" not in lines[0]


@pytest.mark.parametrize("module, option, phrase", [
    ("pandad", "--help", "pandad --config-val"),
    ("pandad", "-h", "pandad --config-val"),
    ("schedd_plugin", "--help", "--dry-run"),
])
def test_help_prints_usage_and_exits_0_without_reading_stdin(tmp_path, module, option, phrase):
    config = tmp_path / "condor_config"
    config.write_text("PANDA_URL = http://127.0.0.1:9/\n")
    # stdin stays open: a daemon started by mistake would wait on it until the timeout.
    with subprocess.Popen(python_command(module, option), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=python_env({"CONDOR_CONFIG": str(config)})) as proc:
        try:
            out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.decode().startswith("usage:") and phrase in out.decode()
    assert err == b""


def test_daemoncore_flags_are_ignored_with_a_warning_and_long_typos_exit_99(tmp_path):
    config = tmp_path / "condor_config"
    config.write_text("PANDA_URL = http://127.0.0.1:9/\n"
                      f"PANDA_STATISTICS_LOG = {tmp_path / 'stats'}\n")
    env = python_env({"CONDOR_CONFIG": str(config)})
    ran = subprocess.run(python_command("pandad", "-f", "-p", "0"), stdin=subprocess.DEVNULL,
                         capture_output=True, timeout=30, env=env)
    assert ran.returncode == 0
    assert "ignoring arguments pandad does not know: -f -p 0" in ran.stderr.decode()
    typo = subprocess.run(python_command("pandad", "--confg-val", "PANDA_URL"),
                          stdin=subprocess.PIPE, capture_output=True, timeout=30, env=env)
    assert typo.returncode == 99
    assert typo.stderr.decode().splitlines() == [
        "pandad: unknown option --confg-val (pandad --help lists the options)"]


def test_drops_are_logged_once_per_episode_with_counts(caplog):
    from pandad.daemon import DropEpisodes

    now = [100.0]
    drops = DropEpisodes(clock=lambda: now[0])
    settings = type("S", (), {"queue_size": 10, "queue_grace": 3.0, "queue_max_size": 20})()
    with caplog.at_level("WARNING", logger="pandad"):
        for _ in range(50):                  # full and accepting alternate every chunk
            drops.update(7, 20, settings)
            now[0] += 0.1
            drops.update(0, 5, settings)
        now[0] += DropEpisodes.QUIET
        drops.update(0, 5, settings)
        drops.finish()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "dropping records" in messages[0] and "PANDA_QUEUE_SIZE 10" in messages[0]
    assert "350 record(s) were dropped" in messages[1]
