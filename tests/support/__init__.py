"""Helpers shared by the tests: where the code is, how to start it, how to wait for it.

The other helpers, one concern a module (look here before adding one):

- ``http_client``: one HTTP request to a test server, any status returned (``request``,
  ``request_json``, ``get_json``);
- ``loopback``: the start/stop base of the hand-written servers (127.0.0.1 or ::1, port 0,
  a daemon thread, ``url``, ``stop()``, ``with``); ``faultserver``, ``faultproxy``,
  ``proxyserver`` and ``tlscerts`` build on it;
- ``fake_transport``: the flusher's transport in-process (scripted answers, requests kept);
- ``feed``: a job_queue.log with an in-process follower and plug-in;
- ``pandad_process`` / ``system``: real pandad, plug-in and simulator processes;
- ``chromium``: headless Chromium for the development monitor's page.
"""

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, TypeVar

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
FIXTURES = REPO.parent / "shared" / "fixtures" / "job_queue_log"
IN_CI = os.environ.get("CI", "").lower() == "true"
# PANDA_ATTRIBUTE_MAP for the 2014 BigPanDA monitor, as packaging/60-panda.conf offers it, and
# what pandad.knobs makes of it.
ATTRIBUTE_MAP_2014 = ("Cmd=cmd, Err=p_stderr, JobDescription=p_description, JobPrio=pri, "
                      "Out=p_stdout, Owner=owner, QDate=submitted, "
                      "RemoteWallClockTime=run_time, ResidentSetSize=size")
MAP_2014 = (("cmd", "cmd"), ("err", "p_stderr"), ("jobdescription", "p_description"),
            ("jobprio", "pri"), ("out", "p_stdout"), ("owner", "owner"),
            ("qdate", "submitted"), ("remotewallclocktime", "run_time"),
            ("residentsetsize", "size"))

T = TypeVar("T")

# A stand-in for pandad where what the plug-in wrote is what a test checks: copies its stdin
# to the file named by its first argument, unbuffered, then notes EOF in "<file>.eof".
COPY_STDIN_CHILD = (
    "import os, sys\n"
    "out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)\n"
    "while True:\n"
    "    chunk = os.read(0, 1 << 16)\n"
    "    if not chunk:\n"
    "        break\n"
    "    os.write(out, chunk)\n"
    "open(sys.argv[1] + '.eof', 'w').close()\n"
)


def python_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for a child ``python3 -m pandad`` / ``-m schedd_plugin`` from this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("_CONDOR_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("CONDOR_CONFIG", None)
    env.update(extra or {})
    return env


def python_command(module: str, *args: str) -> list:
    return [sys.executable, "-m", module, *args]


def require_tool(name: str) -> str:
    """The path of an external program; missing is a failure in CI, a skip elsewhere."""
    path = shutil.which(name)
    if path:
        return path
    if IN_CI:
        pytest.fail(f"{name} is required in CI but is not installed")
    pytest.skip(f"{name} is not installed")


def require_module(name: str):
    """Import a dev-only module; missing is a failure in CI, a skip elsewhere."""
    try:
        return __import__(name)
    except ImportError:
        if IN_CI:
            pytest.fail(f"Python module {name} is required in CI but is not installed")
        pytest.skip(f"Python module {name} is not installed")


def kill_if_running(proc, timeout: float = 10.0) -> None:
    """Test teardown: make sure a child started by the test is gone (SIGKILL if it runs)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout)


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.02,
               message: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class FakeClock:
    """A clock (monotonic or epoch seconds) that moves only when the test sets ``now``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
