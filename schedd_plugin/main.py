"""``panda_plugin``: follow job_queue.log and feed a forked pandad (docs/design.md §5).

    panda_plugin [--log FILE] [--state-file FILE] [--once] [--dry-run [--resume]]

The process is a thin loop (the Gunicorn arbiter's shape): every ``poll_interval`` seconds it
polls the follower, which replays committed transactions as plug-in callbacks, which write
records to the pipe; then it pumps the pipe (finishes the spill buffer, restarts a dead pandad)
and saves the follower's position if it moved. Signals only set flags; a self-pipe
(``pandad.process.WakeupPipe``) wakes the wait at once. That is the wake-up an Event would give,
without an Event's hazard: a Python signal handler runs in the main thread, which may be holding
the Event's lock at that moment.

* SIGHUP re-reads the configuration: poll interval, PANDA_JOB_ATTRIBUTES, the PANDAD command
  (used at pandad's next restart), spill size and the log settings, and is passed on to pandad,
  which re-reads its own knobs. A bad configuration is logged and the running one kept. JOB_QUEUE_LOG and the state file need a restart.
* SIGTERM / SIGINT: a final poll, save the position, close the pipe (pandad sees EOF, flushes
  and exits), exit 0.
* SIGUSR1 re-sends every job in the queue, paced (a resync, for a monitor that lost its
  database); see ``schedd_plugin.healer``.
* SIGQUIT (HTCondor's fast shutdown): exit 0 at once, without the final poll and without
  waiting for pandad; the exit closes the pipe, so pandad still sees EOF and flushes on its own.
* ``--once``: replay what the log holds now (from the saved position) and exit.
* ``--dry-run``: write the records to stdout instead of forking pandad, whether or not the
  feature is enabled. It never writes the state file and, unless ``--resume`` is given, starts
  from the beginning of the log rather than the saved position: ``--dry-run --once`` prints
  what the whole log means, which is the diagnosis tool.
* Under systemd ``Type=notify`` (``NOTIFY_SOCKET`` set) it reports READY=1, RELOADING=1 around
  SIGHUP, and STOPPING=1.

Exit status: 0, or 99 (``EXIT_CONFIG_ERROR``, HTCondor's "do not restart") for a bad
configuration at start or when another panda_plugin holds ``<state file>.lock`` (one plug-in
per log; ``--dry-run`` does not lock).
"""

import argparse
import logging
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Protocol

from pandad.config import ConfigError, HTCondorConfig
from pandad.knobs import (EXIT_CONFIG_ERROR, PluginSettings, load_pandad_settings,
                          load_plugin_settings)
from pandad.logsetup import redact_urls, setup_logging
from pandad.process import WakeupPipe, start_up, unblock_signals
from pandad.stats import Counters, Statistics
from schedd_plugin.state import Position, load_position, save_position

if TYPE_CHECKING:
    from schedd_plugin.pipe import PandadPipe

log = logging.getLogger("panda_plugin")

# How often the plug-in's counters are logged (when they changed).
COUNTERS_LOG_INTERVAL = 60.0
# pandad gets its shutdown grace plus this margin to flush and exit after EOF.
CLOSE_MARGIN = 5.0
# Used when pandad's own configuration cannot be read to find its shutdown grace.
DEFAULT_PANDAD_SHUTDOWN_GRACE = 30.0
# --once: polls until the follower stops advancing; a bound in case the log grows forever.
ONCE_MAX_POLLS = 10000


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="panda_plugin",
        description="Follow the schedd's job queue log and stream job changes to pandad.")
    parser.add_argument("--log", metavar="FILE",
                        help="the job queue log to follow (default: JOB_QUEUE_LOG)")
    parser.add_argument("--state-file", metavar="FILE",
                        help="where the position is saved (default: PANDA_PLUGIN_STATE_FILE)")
    parser.add_argument("--once", action="store_true",
                        help="replay what the log holds now, then exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="write records to stdout instead of forking pandad; never saves "
                             "the position; starts at the beginning of the log")
    parser.add_argument("--resume", action="store_true",
                        help="with --dry-run: start from the saved position")
    # condor_master may pass DaemonCore-style flags (-f, -p 0, -local-name X); a daemon that
    # refused them would be restarted in a loop. They are ignored, and logged once logging is
    # up. A long option nobody knows is still an error: `--dry-rn` must not run for real.
    args, unknown = parser.parse_known_args(argv)
    misspelled = [arg for arg in unknown if arg.startswith("--")]
    if misspelled:
        parser.error(f"unrecognized arguments: {' '.join(misspelled)}")
    args.ignored = unknown
    return args


def load_settings(environ: Mapping[str, str] = os.environ) -> PluginSettings:
    """The plug-in's settings, read as the schedd reads its configuration; raises ConfigError."""
    return load_plugin_settings(HTCondorConfig.load("SCHEDD", environ))


def pandad_close_timeout(environ: Mapping[str, str] = os.environ) -> float:
    """How long pandad may take to flush and exit after EOF: its shutdown grace plus a margin."""
    try:
        grace = load_pandad_settings(HTCondorConfig.load("PANDAD", environ)).shutdown_grace
    except ConfigError:
        # pandad will say what is wrong with its configuration; the plug-in only needs a bound.
        grace = DEFAULT_PANDAD_SHUTDOWN_GRACE
    if not grace or grace <= 0:
        grace = DEFAULT_PANDAD_SHUTDOWN_GRACE
    return grace + CLOSE_MARGIN


def sd_notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send ``state`` (e.g. "READY=1") to systemd's NOTIFY_SOCKET; False if unset or failed."""
    address = environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]          # Linux abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8"), address)
        return True
    except OSError as e:
        log.debug("cannot notify systemd (%s): %s", state, e)
        return False


class Sink(Protocol):
    """Where the plug-in's records go: the pipe to pandad (``schedd_plugin.pipe.PandadPipe``)
    or, with --dry-run, stdout (``StdoutWriter``)."""

    broken: bool        # the reader is gone for good: the plug-in stops

    def write(self, record: bytes) -> bool:
        """One whole record; False if it was dropped (and counted)."""

    def pump(self) -> None:
        """Push out what waits; called after every poll."""

    def close(self, timeout: float) -> Optional[int]:
        """Push out what waits and end; the reader's exit status if there is one."""


class StdoutWriter:
    """--dry-run's stand-in for the pipe: records go to stdout, counted like the pipe's."""

    def __init__(self, stats: Counters, out=None) -> None:
        self.stats = stats
        self.out = out if out is not None else sys.stdout.buffer
        self.broken = False

    def write(self, record: bytes) -> bool:
        if self.broken:
            self.stats.add("records_dropped_stdout_closed")
            return False
        try:
            self.out.write(record)
        except BrokenPipeError:
            # `panda_plugin --dry-run | head`: the reader is gone; stop, don't crash.
            self.broken = True
            self.stats.add("records_dropped_stdout_closed")
            return False
        self.stats.add("records_written")
        self.stats.add("bytes_written", len(record))
        return True

    def pump(self) -> None:
        try:
            self.out.flush()
        except BrokenPipeError:
            self.broken = True

    def close(self, timeout: float = 0.0) -> Optional[int]:
        self.pump()
        return None


class PluginProcess:
    """One run of panda_plugin: the follower, the plug-in, the pipe, and the loop around them."""

    def __init__(self, args: argparse.Namespace, settings: PluginSettings,
                 settings_loader: Callable[[], PluginSettings] = load_settings,
                 environ: Mapping[str, str] = os.environ) -> None:
        self.args = args
        self.settings = settings
        self.settings_loader = settings_loader
        self.environ = environ
        self.stats = Statistics()
        self.job_queue_log = args.log or settings.job_queue_log
        self.state_file = args.state_file or settings.state_file
        self.saves_position = not args.dry_run
        self.stop_requested = False
        self.quit_requested = False
        self.reload_requested = False
        self.resync_requested = False
        self.healer = None
        self.sink: Sink
        self.pipe: Optional["PandadPipe"] = None    # the sink, unless --dry-run
        self.saved: Optional[Position] = None
        self.save_failing = False
        self.last_counters: Dict[str, float] = {}
        self.poll_error: Optional[str] = None
        self.reconciled = False
        self.lock_fd: Optional[int] = None     # held for the process's life

    # -------------------------------------------------------------- signals

    def _on_stop(self, signum: int, frame) -> None:
        self.stop_requested = True

    def _on_quit(self, signum: int, frame) -> None:
        self.stop_requested = self.quit_requested = True

    def _on_hup(self, signum: int, frame) -> None:
        self.reload_requested = True

    def _on_usr1(self, signum: int, frame) -> None:
        self.resync_requested = True

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGQUIT, self._on_quit)
        signal.signal(signal.SIGUSR1, self._on_usr1)

    # -------------------------------------------------------------- the run

    def run(self) -> int:
        from schedd_plugin.callbacks import PandaPlugin
        from schedd_plugin.follower import Follower
        from schedd_plugin.mirror import Mirror
        from schedd_plugin.pipe import PandadPipe

        if not self.args.dry_run and not self._lock():
            return EXIT_CONFIG_ERROR
        position = None
        if self.saves_position or self.args.resume:
            position = load_position(self.state_file)
        self.saved = position

        mirror = Mirror()
        self.plugin = PandaPlugin(mirror, lambda record: False, self.settings.job_attributes,
                                  self.settings.schedd_name, stats=self.stats)
        if self.args.dry_run:
            self.sink = StdoutWriter(self.stats)
        else:
            self.healer = self._make_healer()
            self.sink = pipe = self.pipe = PandadPipe(
                self.settings.pandad, self.settings.spill_bytes, self.settings.pipe_bytes,
                self.stats, tracker=self.healer, back_channel=True)
            self.healer.write = pipe.write
            self.healer.spill_records = lambda: pipe.spill_records
        self.plugin.write = self.sink.write
        self.follower = Follower(self.job_queue_log, self.plugin, mirror, position,
                                 stats=self.stats)
        log.info("following %s%s%s", self.job_queue_log,
                 f" from offset {position.offset}" if position else " from the beginning",
                 " (dry run: records to stdout)" if self.args.dry_run else "")

        wakeup = None
        if not self.args.once:
            self.install_signals()
            wakeup = WakeupPipe()
            wakeup.install()
        try:
            # The follower calls plugin.initialize() after its start-up replay.
            if self.args.once:
                self._replay_once()
            else:
                sd_notify("READY=1", self.environ)
                self._loop(wakeup)
                sd_notify("STOPPING=1", self.environ)
                if self.quit_requested:
                    log.info("SIGQUIT: exiting at once; pandad flushes on its own at EOF")
                    return 0
                log.info("stopping: final poll, then closing the pipe to pandad")
                self._poll()
            self.plugin.shutdown()
            self._save_position()
        finally:
            self._shut_down(wakeup)
        return 0

    def _shut_down(self, wakeup: Optional[WakeupPipe]) -> None:
        """Release what the run holds, however it ended; pandad is waited for unless SIGQUIT."""
        self.follower.close()
        if not self.quit_requested:
            self.sink.close(pandad_close_timeout(self.environ))
        if self.healer is not None:
            # After pandad's exit: what it lost or still held is in the to-heal set.
            # SIGQUIT does not wait for pandad, so that run is not a clean one.
            self.healer.save(clean=not self.quit_requested)
        if wakeup is not None:
            wakeup.close()
        self._log_counters(force=True)

    def _make_healer(self):
        from schedd_plugin.healer import make_healer

        return make_healer(self.plugin, self.stats,
                           self.state_file + ".heal" if self.saves_position else None,
                           self.settings.resync_interval, self.environ)

    def _reconcile(self) -> bool:
        """Once the start-up replay is done: reconcile (once). False before that."""
        healer = self.healer
        if healer is None or self.follower.resumed is None:
            return False
        if not self.reconciled:
            self.reconciled = True
            healer.reconcile(self.follower.resumed, self.saved is not None)
        return True

    def _heal(self) -> None:
        """Reconcile once the start-up replay is done; then re-send what healing allows."""
        healer = self.healer
        if not self._reconcile():
            return
        if self.resync_requested:
            self.resync_requested = False
            healer.resync("SIGUSR1")
        healer.tick()
        healer.maybe_save()

    def _lock(self) -> bool:
        """One plug-in per log (schedd_plugin.instancelock); False if another one runs.

        --dry-run never locks: it is the diagnosis tool, safe beside the running plug-in.
        """
        from schedd_plugin.instancelock import LockHeld, acquire_instance_lock

        try:
            self.lock_fd = acquire_instance_lock(self.state_file)
        except LockHeld as e:
            log.error("%s: %s; exiting", self.job_queue_log, e)
            return False
        except OSError as e:
            log.warning("cannot lock %s.lock (%s); a second panda_plugin on %s would not be "
                        "detected", self.state_file, e.strerror, self.job_queue_log)
        return True

    def _replay_once(self) -> None:
        for _ in range(ONCE_MAX_POLLS):
            before = self.follower.position
            advanced = self._poll()
            # --once does not heal, but what must be healed is saved for the next run.
            self._reconcile()
            self.sink.pump()
            if not advanced and self.follower.position == before:
                return

    def _loop(self, wakeup: WakeupPipe) -> None:
        next_counters = time.monotonic() + COUNTERS_LOG_INTERVAL
        while not self.stop_requested:
            self._poll()
            # Pumped before healing too: healing waits for an empty spill buffer, and the
            # poll's records are only in it until the pipe takes them.
            self.sink.pump()
            self._heal()
            self.sink.pump()
            self._save_position()
            if self.sink.broken:
                log.info("stdout is closed; stopping")
                return
            if self.reload_requested:
                self.reload_requested = False
                self._reload()
            if time.monotonic() >= next_counters:
                next_counters = time.monotonic() + COUNTERS_LOG_INTERVAL
                self._log_counters()
            if not self.stop_requested:
                reports = self.pipe.reports_fd if self.pipe is not None else None
                wakeup.wait(self.settings.poll_interval, () if reports is None else (reports,))
                if reports is not None:
                    self.pipe.read_reports()

    def _poll(self) -> bool:
        try:
            advanced = bool(self.follower.poll())
        except Exception as e:  # noqa: BLE001 - one bad poll must not stop the feed
            # The follower handles bad input itself; this is a bug or an I/O error. Log it
            # once per distinct error, not once per poll.
            self.stats.add("follower_errors")
            message = f"{type(e).__name__}: {e}"
            if message != self.poll_error:
                log.exception("following %s failed: %s", self.job_queue_log, message)
                self.poll_error = message
            return False
        self.poll_error = None
        return advanced

    def _save_position(self) -> None:
        position = self.follower.position
        if not self.saves_position or position is None or position == self.saved:
            return
        try:
            save_position(self.state_file, position)
        except OSError as e:
            self.stats.add("position_save_errors")
            if not self.save_failing:
                log.error("cannot save the position to %s: %s (will keep trying)",
                          self.state_file, e)
                self.save_failing = True
            return
        if self.save_failing:
            log.info("saved the position to %s again", self.state_file)
            self.save_failing = False
        self.saved = position

    def _reload(self) -> None:
        sd_notify("RELOADING=1", self.environ)
        try:
            new = self.settings_loader()
        except ConfigError as e:
            log.error("SIGHUP: configuration error, keeping the running configuration: %s",
                      redact_urls(str(e)))
            sd_notify("READY=1", self.environ)
            return
        old = self.settings
        setup_logging("panda_plugin", new.log, new.max_log, new.debug)
        self.settings = new
        self.plugin.job_attributes = new.job_attributes
        warn_invalid_job_attributes(new, "SIGHUP: ")
        pipe = self.pipe
        if pipe is not None:
            pipe.argv = tuple(new.pandad)
            pipe.spill_bytes = new.spill_bytes
            pipe.pipe_bytes = new.pipe_bytes
            # condor_reconfig and `systemctl reload` reach only this process; pandad's knobs
            # (URL, queue, TLS) change with the same reload.
            pipe.reload()
            # A pandad waiting out its backoff (an exit 99 after a bad configuration) is
            # started at once: the reload is the fix.
            pipe.restart_now()
        if self.healer is not None:
            self.healer.resync_interval = new.resync_interval
            self.healer.reload(self.environ)
        if not self.args.log and new.job_queue_log != old.job_queue_log:
            log.warning("SIGHUP: JOB_QUEUE_LOG changed to %s; restart panda_plugin to follow it",
                        new.job_queue_log)
        if not self.args.state_file and new.state_file != old.state_file:
            log.warning("SIGHUP: PANDA_PLUGIN_STATE_FILE changed to %s; restart panda_plugin "
                        "to use it", new.state_file)
        if not new.enabled and not self.args.dry_run:
            log.warning("SIGHUP: the PanDA plug-in is no longer enabled in the schedd's "
                        "configuration; stopping")
            self.stop_requested = True
        log.info("SIGHUP: configuration reloaded")
        sd_notify("READY=1", self.environ)

    def _log_counters(self, force: bool = False) -> None:
        snapshot = self.stats.snapshot()
        if snapshot == self.last_counters and not force:
            return
        self.last_counters = snapshot
        text = ", ".join(f"{name} {value:g}" for name, value in sorted(snapshot.items()))
        log.info("counters: %s", text or "none yet")


def warn_invalid_job_attributes(settings: PluginSettings, prefix: str = "") -> None:
    """One line naming the PANDA_JOB_ATTRIBUTES entries no attribute can match."""
    if settings.invalid_job_attributes:
        log.warning("%sPANDA_JOB_ATTRIBUTES: %s not an attribute name, so no attribute "
                    "matches it (separate names with commas or spaces)", prefix,
                    ", ".join(repr(name) for name in settings.invalid_job_attributes)
                    + (" is" if len(settings.invalid_job_attributes) == 1 else " are"))


def main(argv: Optional[List[str]] = None) -> int:
    unblock_signals()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.resume and not args.dry_run:
        args.resume = False                      # without --dry-run, resuming is the default
    settings = start_up("panda_plugin", load_settings,
                        lambda message: log.error("configuration error: %s", message),
                        args.ignored)
    if settings is None:
        return EXIT_CONFIG_ERROR
    warn_invalid_job_attributes(settings)
    if not settings.enabled and not args.dry_run:
        log.info("the PanDA plug-in is not enabled (name it in SCHEDD.PLUGINS or point "
                 "SCHEDD.PLUGIN_DIR at its directory to enable it); exiting")
        # Under systemd Type=notify, exiting before READY=1 would count as a failed start.
        sd_notify("READY=1")
        sd_notify("STOPPING=1")
        return 0
    return PluginProcess(args, settings).run()
