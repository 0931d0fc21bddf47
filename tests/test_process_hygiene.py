"""Both programs as condor_master starts them: signals possibly blocked, DaemonCore flags.

A child started with SIGTERM and SIGHUP blocked (the mask survives exec) must still stop on
SIGTERM; panda_plugin must start despite -f / -p 0 and say it ignored them, but must refuse a
mistyped long option rather than run for real.
"""

import signal
import subprocess

from tests.support import FIXTURES, kill_if_running, python_command, python_env, wait_until

BLOCKED = {signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGINT}


def block_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)


def write_config(tmp_path, text: str) -> str:
    path = tmp_path / "condor_config"
    path.write_text(f"LOCAL_CONFIG_FILE =\nLOCAL_CONFIG_DIR =\nLIBEXEC = {tmp_path}\n{text}")
    return str(path)


def test_pandad_started_with_signals_blocked_still_stops_on_sigterm(tmp_path):
    log = tmp_path / "PandadLog"
    config = write_config(tmp_path, "PANDA_URL = http://127.0.0.1:9/api/jobs/\n"
                                    f"PANDA_STATISTICS_LOG = {tmp_path / 'stats'}\n"
                                    f"PANDAD_LOG = {log}\n")
    proc = subprocess.Popen(python_command("pandad", "-f"), stdin=subprocess.PIPE,
                            env=python_env({"CONDOR_CONFIG": config}),
                            preexec_fn=block_signals)
    try:
        wait_until(lambda: (log.exists() and "pandad starting" in log.read_text())
                   or proc.poll() is not None, 20, message="pandad to start")
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        kill_if_running(proc)


def test_panda_plugin_ignores_daemoncore_flags_and_unblocks_signals(tmp_path):
    log = tmp_path / "job_queue.log"
    log.write_bytes((FIXTURES / "01_real_first_log_spooled_submit.log").read_bytes())
    config = write_config(tmp_path, "SCHEDD.PLUGINS = $(LIBEXEC)/panda_plugin\n"
                                    f"JOB_QUEUE_LOG = {log}\n"
                                    f"PANDA_PLUGIN_STATE_FILE = {tmp_path / 'position'}\n"
                                    "PANDA_PLUGIN_POLL_INTERVAL = 0.1\n"
                                    "PANDAD = /bin/cat\n")
    stderr = tmp_path / "stderr"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(python_command("schedd_plugin", "-f", "-p", "0"),
                                stdout=subprocess.DEVNULL, stderr=err,
                                env=python_env({"CONDOR_CONFIG": config}),
                                preexec_fn=block_signals)
    try:
        wait_until(lambda: (tmp_path / "position").exists() or proc.poll() is not None, 20,
                   message="the plug-in to follow the log")
        assert proc.poll() is None, stderr.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        kill_if_running(proc)
    assert "ignoring arguments panda_plugin does not know: -f -p 0" in stderr.read_text()


def test_panda_plugin_refuses_a_mistyped_long_option(tmp_path):
    config = write_config(tmp_path, "")
    result = subprocess.run(python_command("schedd_plugin", "--dry-rn", "--once"),
                            capture_output=True, text=True, timeout=30,
                            env=python_env({"CONDOR_CONFIG": config}))
    assert result.returncode == 2
    assert "unrecognized arguments: --dry-rn" in result.stderr
