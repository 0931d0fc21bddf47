"""A real ``python -m pandad`` process for the daemon tests: config, stdin, logs, statistics.

    proc = PandadProcess(tmp_path, url=monitor.url, PANDA_FLUSH_INTERVAL="0.1")
    proc.write(encode_add(...))
    proc.close_stdin()
    assert proc.wait(10) == 0
    assert proc.statistics()["records_sent"] == 1

With ``back_channel=True`` pandad runs with ``PANDAD_BACK_CHANNEL=1`` and its stdout is a pipe
that a thread of the test reads (``reports``, ``lost``, ``settled``); ``capture_stdout=True``
captures stdout without the variable.
"""

import os
import subprocess
import threading
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

from pandad.stats import counter, read_statistics, unaccounted
from tests.support import kill_if_running, python_command, python_env, wait_until

FAST_KNOBS = {
    "PANDA_FLUSH_INTERVAL": "0.1",
    "PANDA_STATISTICS_INTERVAL": "1",
    "PANDA_UPDATE_TIMEOUT": "5",
    "PANDA_SHUTDOWN_GRACE": "5",
}


class PandadProcess:
    """pandad reading a pipe we write, configured by its own file in ``directory``."""

    def __init__(self, directory: Path, url: Optional[str] = None,
                 environ: Optional[Dict[str, str]] = None, back_channel: bool = False,
                 capture_stdout: bool = False, **knobs: str) -> None:
        """``environ``: more environment variables for the process (test seams)."""
        self.directory = Path(directory)
        self.config = self.directory / "condor_config"
        self.statistics_log = self.directory / "pandaStatisticsLog"
        self.log = self.directory / "PandadLog"
        self.stderr_path = self.directory / "pandad.stderr"
        self.knobs: Dict[str, str] = dict(FAST_KNOBS)
        self.knobs.update({"PANDA_STATISTICS_LOG": str(self.statistics_log),
                           "PANDAD_LOG": str(self.log)})
        if url is not None:
            self.knobs["PANDA_URL"] = url
        self.knobs.update(knobs)
        self.write_config()
        env = {"CONDOR_CONFIG": str(self.config), **(environ or {})}
        if back_channel:
            env["PANDAD_BACK_CHANNEL"] = "1"
        capture = back_channel or capture_stdout
        self._stdout = bytearray()
        self._stdout_lock = threading.Lock()
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                python_command("pandad"), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                stderr=stderr, env=python_env(env))
        self._stdout_reader: Optional[threading.Thread] = None
        if capture:
            self._stdout_reader = threading.Thread(target=self._read_stdout, daemon=True)
            self._stdout_reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return
            with self._stdout_lock:
                self._stdout += chunk

    def write_config(self, **changes: str) -> None:
        """(Re)write the configuration file; a value of None removes the knob."""
        self.knobs.update(changes)
        lines = [f"{name} = {value}\n" for name, value in self.knobs.items()
                 if value is not None]
        self.config.write_text("".join(lines))

    # -- talking to it ------------------------------------------------------------------------

    def write(self, *records: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"".join(records))
        self.proc.stdin.flush()

    def write_all(self, records: Iterable[bytes], chunk: int = 1000) -> int:
        """Write records in chunks; the number written."""
        batch = []
        written = 0
        for record in records:
            batch.append(record)
            if len(batch) >= chunk:
                self.write(*batch)
                written += len(batch)
                batch = []
        if batch:
            self.write(*batch)
            written += len(batch)
        return written

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Make sure the process is gone (test teardown)."""
        kill_if_running(self.proc)
        if self._stdout_reader is not None:
            self._stdout_reader.join(10)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def __enter__(self) -> "PandadProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what it left behind ------------------------------------------------------------------

    def stdout_bytes(self) -> bytes:
        """What pandad wrote to stdout so far (after ``wait``: all of it)."""
        if self._stdout_reader is not None and self.proc.poll() is not None:
            self._stdout_reader.join(10)
        with self._stdout_lock:
            return bytes(self._stdout)

    def reports(self) -> List[str]:
        """The complete back-channel lines so far, without their newline."""
        text = self.stdout_bytes().decode("utf-8")
        return text.split("\n")[:-1]

    def lost(self) -> Set[str]:
        """The id fields named by LOST lines so far."""
        return {line.split("\t", 1)[1] for line in self.reports() if line.startswith("LOST\t")}

    def settled(self) -> int:
        """The last SETTLED so far (0 before the first)."""
        values = [int(line.split("\t")[1]) for line in self.reports()
                  if line.startswith("SETTLED\t")]
        return values[-1] if values else 0

    def wait_for_settled(self, n: int, timeout: float = 10) -> None:
        wait_until(lambda: self.settled() >= n, timeout, message=f"SETTLED {n}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        wait_until(lambda: text in self.log_text(), timeout, message=f"log line {text!r}")

    def statistics(self) -> Dict[str, str]:
        """The latest value of every figure in the statistics log ({} before the first block)."""
        return read_statistics(str(self.statistics_log))

    def counter(self, name: str) -> int:
        return int(float(self.statistics().get(name, "0")))

    def rss_kib(self) -> int:
        """Resident memory (VmRSS) of the process, in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc/PID/status")


def assert_accounted(stats: Dict[str, str]) -> None:
    """Every record read ended in exactly one counter; nothing is left buffered or pending."""
    problem = unaccounted(stats)
    assert problem is None, problem
    assert counter(stats, "records_pending_retry") == 0
    assert counter(stats, "queue_bytes") == 0

