"""One panda_plugin per job queue log (issue 13, row 9): real plug-in processes.

A second plug-in on the same state file exits 99 with one line naming the first one's pid;
``--dry-run`` beside a running plug-in still works; the lock goes with the process.
"""

import shutil
import signal
import subprocess

from schedd_plugin.instancelock import lock_path
from schedd_plugin.state import load_position
from tests.support import kill_if_running, python_command, python_env, wait_until
from tests.test_plugin_main import FIXTURE_01, log_lines, plugin_config, run_plugin


def test_second_plugin_on_the_same_log_exits_99_naming_the_first(tmp_path):
    log = tmp_path / "job_queue.log"
    shutil.copyfile(FIXTURE_01, log)
    config = plugin_config(tmp_path, log)
    with open(tmp_path / "first.stderr", "wb") as err:
        first = subprocess.Popen(python_command("schedd_plugin"), stdout=subprocess.DEVNULL,
                                 stderr=err, env=python_env({"CONDOR_CONFIG": config}))
    try:
        wait_until(lambda: load_position(str(tmp_path / "position")), timeout=20,
                   message="the first plug-in to save its position")
        second = run_plugin(["--once"], config)
        lines = log_lines(second.stderr)
        assert second.returncode == 99, lines
        assert len(lines) == 1, lines
        assert f"pid {first.pid}" in lines[0] and str(log) in lines[0], lines
        assert lock_path(str(tmp_path / "position")) in lines[0]
        assert not (tmp_path / "received.1").exists()

        # The diagnosis tool stays usable on a live schedd: --dry-run takes no lock.
        dry = run_plugin(["--dry-run", "--once"], config)
        assert dry.returncode == 0, log_lines(dry.stderr)
        assert dry.stdout.count(b"\n") == 1

        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
    finally:
        kill_if_running(first)
    # The lock went with the process: the next plug-in runs.
    again = run_plugin(["--once"], config)
    assert again.returncode == 0, log_lines(again.stderr)
    assert oct((tmp_path / "position.lock").stat().st_mode & 0o777) == "0o600"


def test_lock_file_symlink_is_refused_not_followed(tmp_path):
    log = tmp_path / "job_queue.log"
    shutil.copyfile(FIXTURE_01, log)
    config = plugin_config(tmp_path, log)
    target = tmp_path / "precious"
    target.write_bytes(b"keep me\n")
    (tmp_path / "position.lock").symlink_to(target)
    result = run_plugin(["--once"], config)
    assert result.returncode == 0, log_lines(result.stderr)
    assert target.read_bytes() == b"keep me\n"
    warning = [line for line in log_lines(result.stderr) if "cannot lock" in line]
    assert len(warning) == 1 and "symlink" in warning[0], log_lines(result.stderr)
