"""``pandad demo``: the whole feed on one machine, and a check that the monitor got it right.

    pandad demo [--seconds N] [--jobs N] [--rate R] [--seed N] [--keep]

In a private temporary directory it starts the development monitor (in this process), writes
an HTCondor configuration, and runs the schedd simulator and ``panda_plugin`` as real
processes; the plug-in forks ``pandad`` (``PANDAD = <this python> -m pandad``). While the
simulator writes its job_queue.log (rotating it a few times) one status line a second shows
the simulator's queue, pandad's counters (from its statistics log) and the monitor's jobs.
When the simulator is done the demo waits until the feed is quiet, stops the plug-in with
SIGTERM (pandad flushes and exits) and prints a summary: the monitor against the simulator's
truth, pandad's final accounting and the submit-to-monitor latency of new jobs.

Exit status 0 only when every job in the monitor matches the truth. Every child runs in its
own session, so Ctrl-C reaches only the demo, which then stops them all (their process groups,
and any process still carrying the demo's CONDOR_CONFIG) and removes the directory. ``--keep``
leaves the monitor serving its page until Ctrl-C; the files are removed even then.

The pieces are reusable: ``Chain`` starts and stops the processes, ``compare`` is the matching
rule (pure), ``RecordingMonitor`` is a DevMonitor that remembers every change it applied, and
``LogWatcher`` follows job_queue.log for the queue size and when each job appeared. The
whole-system tests (tests/support/system.py) are built on them.
"""

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import (Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional,
                    Sequence, Set, Tuple)


import pandad
from pandad.convert import AttributeMap
from pandad.dev.devmonitor import JOBS_PATH, DevMonitor, JobStore
from pandad.stats import counter, drained, read_statistics, unaccounted

DEFAULT_SECONDS = 20.0
DEFAULT_JOBS = 200
DEFAULT_RATE = 300.0

# Keys the monitor's objects carry that are not ClassAd attributes.
IDENTITY_KEYS = frozenset({"id", "condorid", "removed"})

_ROTATIONS = re.compile(r"simulate: (\d+) jobs submitted, (\d+) changes written, (\d+) rotations")

# ------------------------------------------------------------------ configuration (pure)


def chain_knobs(directory: str, url: str, python: str = sys.executable) -> Dict[str, str]:
    """The HTCondor configuration of a whole feed living in ``directory``.

    Paths are absolute so the file reads the same whatever the reader's working directory.
    Everything that tunes the feed (queue size and grace, timeouts, retries) keeps its
    default: the demo shows what a site gets out of the box. Only the statistics come every
    half second, because the status line reads them.
    """
    spool = os.path.join(directory, "spool")
    logs = os.path.join(directory, "log")
    return {
        "SPOOL": spool,
        "LOG": logs,
        "JOB_QUEUE_LOG": os.path.join(spool, "job_queue.log"),
        "PANDA_PLUGIN_STATE_FILE": os.path.join(spool, "panda_plugin.state"),
        # The feed is on when an entry of SCHEDD.PLUGINS has the base name panda_plugin.
        "SCHEDD.PLUGINS": os.path.join(directory, "libexec", "panda_plugin"),
        "PANDA_URL": url,
        # The monitor is local: never through a web proxy from the environment.
        "PANDA_HTTP_PROXY": "none",
        "PANDAD": " ".join(shlex.quote(part) for part in (python, "-m", "pandad")),
        "PANDA_STATISTICS_LOG": os.path.join(logs, "PandaStatistics"),
        "PANDA_STATISTICS_INTERVAL": "1",
        "PANDAD_LOG": os.path.join(logs, "PandadLog"),
        "PANDA_PLUGIN_LOG": os.path.join(logs, "PandaPluginLog"),
    }


def config_text(knobs: Mapping[str, str]) -> str:
    """``NAME = value`` lines, in the order given."""
    return "".join(f"{name} = {value}\n" for name, value in knobs.items())


# ------------------------------------------------------------------ statistics (pure)


def parse_plugin_counters(text: str) -> Dict[str, float]:
    """The plug-in's counters from the last ``counters: name value, ...`` line of its log."""
    values: Dict[str, float] = {}
    for line in text.splitlines():
        _, found, rest = line.partition(" counters: ")
        if not found:
            continue
        values = {}
        for item in rest.split(", "):
            name, _, value = item.strip().rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                pass
    return values


# ------------------------------------------------------------------ the matching rule (pure)


class Comparison(NamedTuple):
    truth_jobs: int
    monitor_jobs: int
    matching: int            # truth jobs the monitor holds exactly
    problems: List[str]      # one line per difference

    @property
    def ok(self) -> bool:
        return not self.problems and self.matching == self.truth_jobs

    def first_problems(self, n: int = 5) -> List[str]:
        more = len(self.problems) - n
        return self.problems[:n] + ([f"... and {more} more"] if more > 0 else [])


def expected_object(job_id: str, entry: Mapping[str, Any],
                    attribute_map: AttributeMap = ()) -> Dict[str, Any]:
    """What the monitor should hold for one job of the simulator's truth, from a pandad
    with ``attribute_map`` (PANDA_ATTRIBUTE_MAP)."""
    from pandad.convert import job_object

    expected = job_object(job_id, entry["condorid"], entry["attrs"], attribute_map)
    expected["removed"] = bool(entry["removed"])
    return expected


def compare(truth: Mapping[str, Mapping[str, Any]],
            monitor_jobs: Mapping[str, Mapping[str, Any]],
            attribute_map: AttributeMap = ()) -> Comparison:
    """The monitor against the simulator's truth.

    ``truth`` is ``{GlobalJobId: {"condorid": "C.P", "removed": bool, "attrs": {Name:
    new-syntax value}}}``. A job matches when the monitor has it with the same ``removed``
    and ``condorid``, every truth attribute under the name pandad sends it as (its ClassAd
    name unless ``attribute_map`` renames it) with
    ``job_object``'s value, and every other key null (an attribute deleted since) unless it
    is one of id/condorid/removed. Jobs the monitor has and the truth does not are problems.
    """
    problems: List[str] = []
    matching = 0
    for job_id in sorted(truth):
        stored = monitor_jobs.get(job_id)
        if stored is None:
            problems.append(f"{job_id}: missing from the monitor")
            continue
        diffs = job_differences(expected_object(job_id, truth[job_id], attribute_map), stored)
        if diffs:
            problems.append(f"{job_id}: " + "; ".join(diffs))
        else:
            matching += 1
    for job_id in sorted(set(monitor_jobs) - set(truth)):
        problems.append(f"{job_id}: in the monitor but not in the truth")
    return Comparison(len(truth), len(monitor_jobs), matching, problems)


def job_differences(expected: Mapping[str, Any], stored: Mapping[str, Any]) -> List[str]:
    """How one stored job differs from what is expected (empty when it matches)."""
    missing = object()
    diffs = []
    for name in sorted(expected):
        value = stored.get(name, missing)
        if value is missing:
            diffs.append(f"{name} missing (expected {expected[name]!r})")
        elif not _same(value, expected[name]):
            diffs.append(f"{name} = {value!r}, expected {expected[name]!r}")
    for name in sorted(set(stored) - set(expected) - IDENTITY_KEYS):
        if stored[name] is not None:
            diffs.append(f"{name} = {stored[name]!r}, expected null or absent")
    return diffs


def _same(a: Any, b: Any) -> bool:
    """JSON equality: True is not 1, 2 is 2.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def percentile(values: Sequence[float], fraction: float) -> Optional[float]:
    """Nearest-rank percentile (``fraction`` in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-fraction * len(ordered) // 1)))    # ceil without math
    return ordered[min(rank, len(ordered)) - 1]


# ------------------------------------------------------------------ the monitor that remembers


class Change(NamedTuple):
    when: float              # time.monotonic() when it was applied
    action: str              # "create" (POST), "update" (PUT) or "remove" (DELETE)
    job: Dict[str, Any]      # the object as received


class RecordingJobStore(JobStore):
    """A JobStore that keeps every change it applied, in order (requests it refused are not
    kept: they changed nothing)."""

    def __init__(self, db: str = ":memory:", clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(db)
        self._clock = clock
        self._changes_lock = threading.Lock()
        self.changes: List[Change] = []
        self.created_at: Dict[str, float] = {}

    def create(self, jobs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        received = [dict(job) for job in jobs]        # the store may keep and change them
        result = super().create(jobs)
        self._record("create", received)
        return result

    def update(self, jobs: List[Dict[str, Any]], remove: bool = False,
               ignore_unknown: bool = False) -> List[Dict[str, Any]]:
        received = [dict(job) for job in jobs]
        result = super().update(jobs, remove=remove, ignore_unknown=ignore_unknown)
        self._record("remove" if remove else "update", received)
        return result

    def _record(self, action: str, jobs: List[Dict[str, Any]]) -> None:
        now = self._clock()
        with self._changes_lock:
            for job in jobs:
                self.changes.append(Change(now, action, job))
                if action == "create":
                    self.created_at.setdefault(job["id"], now)

    def changes_since(self, index: int) -> List[Change]:
        with self._changes_lock:
            return self.changes[index:]

    def change_count(self) -> int:
        with self._changes_lock:
            return len(self.changes)


class RecordingMonitor(DevMonitor):
    """The development monitor, keeping every applied change (``store.changes``) and when
    each job was created (``store.created_at``)."""

    store: RecordingJobStore

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.store.close()
        self.store = RecordingJobStore()

    @property
    def page_url(self) -> str:
        return self.url[:-len(JOBS_PATH)] + "/"


# ------------------------------------------------------------------ following job_queue.log


def log_event(line: bytes) -> Optional[Tuple[str, str]]:
    """What one job_queue.log line means for the watcher (pure).

    ``("new", "C.P")`` / ``("destroy", "C.P")`` for a job's ad (not clusters, the header or
    user records), ``("job", GlobalJobId)`` when a job's GlobalJobId is set, else None.
    """
    fields = line.split(b" ", 3)
    if len(fields) < 2 or fields[0] not in (b"101", b"102", b"103"):
        return None
    key = fields[1].decode("ascii", "replace")
    cluster, _, proc = key.partition(".")
    if key.startswith("0") or not cluster.isdigit() or not proc.isdigit():
        return None
    if fields[0] == b"101":
        return ("new", key)
    if fields[0] == b"102":
        return ("destroy", key)
    if len(fields) == 4 and fields[2] == b"GlobalJobId":
        value = fields[3].strip()
        if len(value) >= 2 and value[:1] == value[-1:] == b'"':
            return ("job", value[1:-1].decode("utf-8", "replace"))
    return None


class LogWatcher:
    """Follows job_queue.log (read only) in a thread: the jobs in the simulator's queue, and
    when each GlobalJobId first reached the file. On rotation it drains the old file and
    reads the new snapshot from its start, which lists every ad in the queue again."""

    def __init__(self, path: str, interval: float = 0.02,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: Set[str] = set()
        self.first_seen: Dict[str, float] = {}
        self._fd: Optional[int] = None
        self._identity: Optional[Tuple[int, int]] = None
        self._partial = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def queue_size(self) -> int:
        with self._lock:
            return len(self._queue)

    def seen(self) -> Dict[str, float]:
        with self._lock:
            return dict(self.first_seen)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        if self._fd is None:
            self._open()
            if self._fd is None:
                return
        self._read()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) != self._identity:
            self._read()                       # what landed in the old file before the rename
            os.close(self._fd)
            self._fd = None
            self._open()
            if self._fd is not None:
                self._read()

    def _open(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return
        st = os.fstat(fd)
        self._fd, self._identity, self._partial = fd, (st.st_dev, st.st_ino), b""
        with self._lock:
            self._queue.clear()

    def _read(self) -> None:
        assert self._fd is not None
        while True:
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                return
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            now = self._clock()
            with self._lock:
                for line in lines:
                    event = log_event(line)
                    if event is None:
                        continue
                    kind, value = event
                    if kind == "new":
                        self._queue.add(value)
                    elif kind == "destroy":
                        self._queue.discard(value)
                    else:
                        self.first_seen.setdefault(value, now)


# ------------------------------------------------------------------ the processes


def package_root() -> str:
    """The directory holding the pandad and schedd_plugin packages (checkout or install)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(pandad.__file__)))


def child_environment(config: str, base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """``base`` without any HTCondor configuration of its own, pointed at ``config``, and
    able to import this checkout's packages."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items()
           if not k.startswith("_CONDOR_") and k != "CONDOR_CONFIG"}
    env["CONDOR_CONFIG"] = config
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root(), env.get("PYTHONPATH")]))
    return env


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(b")", 1)[-1].split()[:1] != [b"Z"]


class Chain:
    """The feed's processes in ``directory``: its configuration, the simulator, the plug-in
    (which forks pandad). Every child gets its own session, so a terminal's Ctrl-C reaches
    only the caller, and ``kill_all`` can end each one's process group."""

    def __init__(self, directory: str, url: str, knobs: Optional[Mapping[str, str]] = None,
                 env: Optional[Mapping[str, str]] = None) -> None:
        self.directory = directory
        self.knobs = chain_knobs(directory, url)
        self.knobs.update(knobs or {})
        self.config = os.path.join(directory, "condor_config")
        self.truth_file = os.path.join(directory, "truth.json")
        for sub in ("spool", "log", "libexec"):
            os.makedirs(os.path.join(directory, sub), mode=0o700, exist_ok=True)
        self.write_config()
        self.env = child_environment(self.config, env)
        self.simulator: Optional[subprocess.Popen] = None
        self.plugin: Optional[subprocess.Popen] = None
        self._started: List[subprocess.Popen] = []
        self._plugin_runs = 0

    # -- configuration and files --------------------------------------------------------------

    def write_config(self, **changes: str) -> None:
        """(Re)write the configuration; children started later (and SIGHUP) read it."""
        self.knobs.update(changes)
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(config_text(self.knobs))
        os.replace(tmp, self.config)

    @property
    def job_queue_log(self) -> str:
        return self.knobs["JOB_QUEUE_LOG"]

    @property
    def statistics_log(self) -> str:
        return self.knobs["PANDA_STATISTICS_LOG"]

    def statistics(self) -> Dict[str, str]:
        return read_statistics(self.statistics_log)

    def plugin_counters(self) -> Dict[str, float]:
        """The plug-in's counters as it last logged them (at least at every exit)."""
        try:
            with open(self.knobs["PANDA_PLUGIN_LOG"], "rb") as f:
                return parse_plugin_counters(f.read().decode("utf-8", "replace"))
        except FileNotFoundError:
            return {}

    def truth(self) -> Dict[str, dict]:
        import json

        with open(self.truth_file) as f:
            return json.load(f)

    def output(self, name: str) -> str:
        """What a child wrote to its stdout/stderr ("simulator", "plugin-1", ...)."""
        try:
            with open(os.path.join(self.directory, name + ".out"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def simulator_summary(self) -> Optional[Tuple[int, int, int]]:
        """(jobs submitted, changes written, rotations) from the simulator's last line."""
        match = _ROTATIONS.search(self.output("simulator"))
        return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None

    # -- processes ----------------------------------------------------------------------------

    def _start(self, argv: List[str], name: str) -> subprocess.Popen:
        with open(os.path.join(self.directory, name + ".out"), "wb") as out:
            proc = subprocess.Popen(argv, cwd=self.directory, env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    close_fds=True)
        self._started.append(proc)
        return proc

    def start_simulator(self, seed: int = 1, jobs: int = 100, rate: float = 200.0,
                        duration: float = 10.0, rotate_every: float = 0.0,
                        extra: Sequence[str] = ()) -> subprocess.Popen:
        """``python -m pandad.dev.simulate`` writing JOB_QUEUE_LOG and, at its end, the
        truth file."""
        argv = [sys.executable, "-m", "pandad.dev.simulate", "--log", self.job_queue_log,
                "--truth", self.truth_file, "--seed", str(seed), "--jobs", str(jobs),
                "--rate", str(rate), "--duration", str(duration),
                "--rotate-every", str(rotate_every), *extra]
        self.simulator = self._start(argv, "simulator")
        return self.simulator

    def start_plugin(self) -> subprocess.Popen:
        """``python -m schedd_plugin`` (it forks pandad); output in plugin-<n>.out."""
        self._plugin_runs += 1
        self.plugin = self._start([sys.executable, "-m", "schedd_plugin"],
                                  f"plugin-{self._plugin_runs}")
        return self.plugin

    def stop_plugin(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> Optional[int]:
        """Signal the plug-in and wait for it; its exit status (None if it had to be killed).
        After SIGTERM it closes the pipe and waits for pandad's final flush."""
        proc = self.plugin
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(proc)
            proc.wait()
            return None

    def processes(self) -> List[int]:
        """Processes (other than this one) started with this chain's CONDOR_CONFIG: the
        plug-in, pandad even once orphaned, the simulator. Linux /proc; [] elsewhere."""
        marker = f"CONDOR_CONFIG={self.config}".encode()
        found = []
        try:
            entries = os.listdir("/proc")
        except OSError:
            return found
        for entry in entries:
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    environ = f.read()
            except OSError:
                continue                      # gone, or not ours to read
            if marker in environ.split(b"\0"):
                found.append(int(entry))
        return found

    def pandad_processes(self) -> List[int]:
        """This chain's pandad processes (by command line)."""
        pids = []
        for pid in self.processes():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if b"pandad" in argv and b"schedd_plugin" not in argv:
                pids.append(pid)
        return pids

    def plugin_caught_up(self) -> bool:
        """The plug-in's saved position is the end of the current job_queue.log."""
        from schedd_plugin.state import decode_position

        try:
            with open(self.knobs["PANDA_PLUGIN_STATE_FILE"], "rb") as f:
                position = decode_position(f.read())
            st = os.stat(self.job_queue_log)
        except (OSError, ValueError):
            return False
        return (position.dev, position.ino, position.offset) == (st.st_dev, st.st_ino,
                                                                  st.st_size)

    def wait_quiet(self, monitor_changes: Callable[[], int], timeout: float,
                   settle: float = 1.5) -> bool:
        """Poll until the plug-in has read the whole log, pandad holds nothing and neither the
        monitor nor the statistics changed for ``settle`` s; False at the deadline."""
        deadline = time.monotonic() + timeout
        last: Optional[Tuple[Any, ...]] = None
        since = time.monotonic()
        while True:
            try:
                stats_size = os.stat(self.statistics_log).st_size
            except FileNotFoundError:
                stats_size = -1
            caught_up = self.plugin_caught_up()
            state = (monitor_changes(), stats_size, caught_up)
            now = time.monotonic()
            if state != last:
                last, since = state, now
            elif caught_up and now - since >= settle and drained(self.statistics()):
                return True
            if now >= deadline:
                return False
            time.sleep(0.1)

    @staticmethod
    def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill_all(self, timeout: float = 10.0) -> List[int]:
        """SIGKILL every child's process group and every process still carrying this chain's
        CONDOR_CONFIG; wait for them. The pids that were still running."""
        leftovers = []
        for proc in self._started:
            if proc.poll() is None:
                leftovers.append(proc.pid)
            self._kill_group(proc)
        for proc in self._started:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        strays = self.processes()
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in strays) and time.monotonic() < deadline:
            time.sleep(0.02)
        return leftovers + strays


# ------------------------------------------------------------------ the demo


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pandad demo",
        description="Run the development monitor, a simulated schedd, panda_plugin and "
                    "pandad together; check that the monitor ends up right.")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                        help=f"how long the simulated schedd runs (default {DEFAULT_SECONDS:g})")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS,
                        help=f"jobs to submit at most (default {DEFAULT_JOBS})")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE,
                        help=f"job queue changes per second (default {DEFAULT_RATE:g})")
    parser.add_argument("--seed", type=int, default=1, help="the simulator's seed (default 1)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the monitor serving its page after the summary, until Ctrl-C")
    args = parser.parse_args(list(argv))
    if args.seconds <= 0 or args.jobs < 1 or args.rate <= 0:
        parser.error("--seconds and --rate must be > 0, --jobs >= 1")
    return args


def status_line(elapsed: float, watcher: LogWatcher, stats: Mapping[str, str],
                monitor: RecordingMonitor) -> str:
    counts = monitor.store.counts()
    return (f"[{elapsed:4.0f}s] schedd queue {watcher.queue_size():4d} jobs | pandad read "
            f"{counter(stats, 'records_read')}, sent {counter(stats, 'records_sent')}, "
            f"dropped {counter(stats, 'records_dropped_queue_full')}, buffered "
            f"{counter(stats, 'queue_bytes') / 1024:.1f} KiB | monitor {counts['total']} jobs "
            f"({counts['removed']} removed)")


def latencies(seen: Mapping[str, float], created: Mapping[str, float]) -> List[float]:
    """Per job: monitor creation time minus the time its GlobalJobId reached the log."""
    return [created[job] - seen[job] for job in seen if job in created]


def summary(chain: Chain, monitor: RecordingMonitor, watcher: LogWatcher,
            comparison: Comparison, stats: Mapping[str, str],
            truth: Mapping[str, Mapping[str, Any]]) -> List[str]:
    sim = chain.simulator_summary()
    held = sum(1 for entry in truth.values() if entry["attrs"].get("NumHolds", "0") != "0")
    rm = sum(1 for entry in truth.values() if "RemoveReason" in entry["attrs"])
    left = sum(1 for entry in truth.values() if entry["removed"])
    lines = ["", "pandad demo: summary"]
    if sim:
        lines.append(f"  simulated schedd: {sim[0]} jobs submitted, {sim[1]} changes written, "
                     f"{sim[2]} log rotations; jobs held: {held}, removed with condor_rm: "
                     f"{rm}, left the queue: {left}")
    lines.append(f"  monitor: {comparison.monitor_jobs} jobs; simulator's truth: "
                 f"{comparison.truth_jobs} jobs; {comparison.matching} match exactly")
    problem = unaccounted(stats)
    lines.append(
        f"  pandad (final statistics): records read {counter(stats, 'records_read')}, "
        f"sent {counter(stats, 'records_sent')}, dropped (queue full) "
        f"{counter(stats, 'records_dropped_queue_full')}, rejected "
        f"{counter(stats, 'records_rejected')}, bad {counter(stats, 'records_bad')}, "
        f"lost in transport {counter(stats, 'records_lost_transport')}, lost to the endpoint "
        f"{counter(stats, 'records_lost_endpoint')}, discarded at shutdown "
        f"{counter(stats, 'records_discarded_shutdown')}; "
        + ("every record accounted for" if problem is None else f"ACCOUNTING: {problem}"))
    plugin = chain.plugin_counters()
    lines.append(f"  plug-in: jobs healed {plugin.get('jobs_healed', 0):g} (re-sent after a "
                 f"loss), reconciliations {plugin.get('reconciliations', 0):g}, still to heal "
                 f"{plugin.get('to_heal', 0):g}")
    values = latencies(watcher.seen(), monitor.store.created_at)
    if values:
        lines.append(
            f"  latency of new jobs, from the job's GlobalJobId reaching job_queue.log (watched "
            f"every {watcher.interval * 1000:.0f} ms) to the monitor storing its ADD "
            f"({len(values)} jobs): p50 {percentile(values, 0.5):.2f} s, "
            f"p99 {percentile(values, 0.99):.2f} s")
    lines.append(f"  development monitor: {monitor.page_url} (JSON at {monitor.url})")
    if comparison.ok and problem is None:
        lines.append("  RESULT: OK, every job in the monitor matches the simulator's truth")
    else:
        lines.append("  RESULT: MISMATCH, first differences:")
        lines += ["    " + text for text in comparison.first_problems()]
    return lines


def _run_chain(chain: Chain, monitor: RecordingMonitor, watcher: LogWatcher) -> int:
    """Follow the run, wait for quiet, stop the plug-in, compare, print the summary."""
    assert chain.simulator is not None and chain.plugin is not None
    start = time.monotonic()
    while chain.simulator.poll() is None:
        if chain.plugin.poll() is not None:
            print(f"pandad demo: panda_plugin exited early (status {chain.plugin.returncode}):"
                  f"\n{chain.output('plugin-1')}", file=sys.stderr)
            return 1
        print(status_line(time.monotonic() - start, watcher, chain.statistics(), monitor),
              flush=True)
        try:
            chain.simulator.wait(max(0.01, 1.0 - (time.monotonic() - start) % 1.0))
        except subprocess.TimeoutExpired:
            pass
    if chain.simulator.returncode != 0:
        print(f"pandad demo: the simulator failed (status {chain.simulator.returncode}):\n"
              f"{chain.output('simulator')}", file=sys.stderr)
        return 1
    print("pandad demo: the simulator is done; waiting for the feed to go quiet", flush=True)
    if not chain.wait_quiet(monitor.store.change_count, timeout=60.0):
        print("pandad demo: still not quiet after 60 s; stopping anyway", flush=True)
    print(status_line(time.monotonic() - start, watcher, chain.statistics(), monitor),
          flush=True)
    status = chain.stop_plugin(signal.SIGTERM, timeout=40.0)
    if status != 0:
        print(f"pandad demo: panda_plugin exited with status {status}", file=sys.stderr)
    truth = chain.truth()
    stats = chain.statistics()
    comparison = compare(truth, monitor.jobs())
    for line in summary(chain, monitor, watcher, comparison, stats, truth):
        print(line, flush=True)
    good = comparison.ok and unaccounted(stats) is None and status == 0
    return 0 if good else 1


def main(argv: Optional[Iterable[str]] = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else list(argv))
    previous_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    directory = tempfile.mkdtemp(prefix="pandad-demo-")
    monitor = RecordingMonitor()
    chain: Optional[Chain] = None
    watcher: Optional[LogWatcher] = None
    status = 1
    try:
        monitor.start()
        chain = Chain(directory, monitor.url)
        watcher = LogWatcher(chain.job_queue_log)
        print(f"pandad demo: development monitor at {monitor.page_url}; files in {directory}",
              flush=True)
        watcher.start()
        # The plug-in first: it waits for the log, so every job's latency is steady state.
        chain.start_plugin()
        chain.start_simulator(seed=args.seed, jobs=args.jobs, rate=args.rate,
                              duration=args.seconds, rotate_every=max(1.0, args.seconds / 4))
        status = _run_chain(chain, monitor, watcher)
        if args.keep:
            print(f"pandad demo: the monitor stays up at {monitor.page_url}; Ctrl-C to stop",
                  flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        if not args.keep:
            print("pandad demo: interrupted", file=sys.stderr)
            status = 130
    finally:
        # A second Ctrl-C must not leave processes or files behind half-cleaned.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if watcher is not None:
                watcher.stop()
            if chain is not None:
                stray = chain.kill_all()
                if stray:
                    print(f"pandad demo: killed processes still running: {stray}",
                          file=sys.stderr)
            monitor.stop()
            shutil.rmtree(directory, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)
    return status
