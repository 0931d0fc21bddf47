"""pandad.process, in process: the start-up both programs share, the wake-up self-pipe and
the drop episode.

The programs' own start-up (exit 99, DaemonCore flags, blocked signals) is tested on real
processes in test_process_hygiene.py, test_daemon.py and test_plugin_main.py.
"""

import logging
import os
import signal
import time
from types import SimpleNamespace

import pytest

from pandad.config import ConfigError
from pandad.process import DropEpisode, WakeupPipe, start_up
from tests.support import FakeClock


@pytest.fixture
def program(monkeypatch):
    """A logger name of its own, left without handlers afterwards; never under systemd."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    name = "test_start_up"
    yield name
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def test_start_up_sets_up_logging_as_the_settings_say_and_names_ignored_arguments(
        tmp_path, program):
    log = tmp_path / "Log"
    settings = SimpleNamespace(log=str(log), max_log=1 << 20, debug="")
    refused = []
    assert start_up(program, lambda: settings, refused.append, ["-f", "-p", "0"]) is settings
    assert refused == []
    assert log.read_text().endswith(f" ignoring arguments {program} does not know: -f -p 0\n")
    assert oct(log.stat().st_mode & 0o777) == "0o600"


def test_start_up_refuses_a_bad_configuration_with_the_url_redacted(program, capsys):
    def load():
        raise ConfigError("PANDA_URL = https://user:secret@monitor.example/api: bad value")

    refused = []
    assert start_up(program, load, refused.append, ["-f"]) is None
    assert refused == ["PANDA_URL = https://user:***@monitor.example/api: bad value"]
    assert "ignoring" not in capsys.readouterr().err


def test_wakeup_pipe_carries_signals_and_codes_in_order():
    wakeup = WakeupPipe()
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: None)
    try:
        wakeup.install()
        wakeup.wake(0)
        os.kill(os.getpid(), signal.SIGUSR2)
        wakeup.wake(254)
        assert wakeup.wait(5) == bytes([0, signal.SIGUSR2, 254])
        started = time.monotonic()
        assert wakeup.wait(0.05) == b""
        assert time.monotonic() - started >= 0.04
    finally:
        wakeup.close()
        signal.signal(signal.SIGUSR2, previous)
    assert signal.set_wakeup_fd(-1) == -1           # close gave back the fd it found


def test_wakeup_pipe_returns_when_another_fd_is_readable():
    wakeup = WakeupPipe()
    read, write = os.pipe()
    try:
        os.write(write, b"x")
        started = time.monotonic()
        assert wakeup.wait(10, others=[read]) == b""
        assert time.monotonic() - started < 5
    finally:
        wakeup.close()
        os.close(read)
        os.close(write)


def test_a_drop_episode_says_when_a_line_is_due_and_keeps_its_counts_after_it_ends():
    clock = FakeClock(100.0)
    episode = DropEpisode(clock, remind=60.0)
    assert not episode.active and not episode.end()
    assert episode.drop(3, 30) == DropEpisode.STARTED and episode.active
    clock.now += 59.0
    assert episode.drop(1, 10) == ""
    clock.now += 1.0
    assert episode.drop(2, 20) == DropEpisode.REMIND
    clock.now += 1.0
    assert episode.drop(1) == ""
    assert episode.end() and not episode.active and not episode.end()
    assert (episode.records, episode.nbytes, episode.started, episode.last_drop) == (
        7, 60, 100.0, 161.0)
    assert episode.drop(5) == DropEpisode.STARTED
    assert (episode.records, episode.nbytes, episode.started) == (5, 0, 161.0)


def test_a_drop_episode_without_reminders_stays_quiet_until_it_ends():
    clock = FakeClock()
    episode = DropEpisode(clock)
    assert episode.drop(1) == DropEpisode.STARTED
    clock.now += 3600.0
    assert episode.drop(1) == ""
