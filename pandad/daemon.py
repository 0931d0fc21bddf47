"""The panda daemon process: threads, signals, exit codes (docs/design.md §4).

Three threads do the work, the main thread only waits for events:

- the reader reads stdin in large chunks, frames records (``wire.RecordSplitter``) and puts
  them into the ``RecordBuffer``; it never waits for the flusher;
- the flusher (``pandad.flusher``) sends what is buffered, at most once per flush interval;
- the stats thread appends the statistics to ``PANDA_STATISTICS_LOG`` every statistics
  interval when something changed.

Signals are handled as the Gunicorn arbiter does: the handlers do nothing but let the C-level
handler write the signal number into a wakeup pipe (``pandad.process.WakeupPipe``), and the
main thread reads that pipe and acts in ordinary code, never inside a handler. The reader
writes a 0 byte into the same pipe at end of input.

- SIGHUP: re-read the configuration; apply every knob that can change between batches. A bad
  configuration is logged and the old one kept.
- SIGTERM (and SIGINT), or EOF on stdin: stop reading, flush what is buffered for at most
  ``PANDA_SHUTDOWN_GRACE`` seconds, count the rest as discarded, write final statistics,
  exit 0.
- SIGQUIT (HTCondor's fast shutdown): no flush. The main thread stops the reader, counts
  what is buffered or in flight as discarded, logs one line, writes the final statistics and
  ends the process at once, whatever the flusher is waiting for. A SIGQUIT during the final
  flush of a SIGTERM cuts it short the same way.
- A fatal configuration error at start: one log line, exit 99 (HTCondor's "do not restart").

With ``PANDAD_BACK_CHANNEL=1`` the daemon reports to the plug-in on stdout what it lost and
how far the stream is settled (``pandad.report``; docs/architecture.md).

Records the reader has not taken from the pipe when reading stops were never read, so they
are not counted; every record read ends in exactly one counter.
"""

import logging
import os
import signal
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from pandad.buffer import RecordBuffer
from pandad.config import ConfigError, HTCondorConfig
from pandad.flusher import Flusher
from pandad.knobs import EXIT_CONFIG_ERROR, PandadSettings, load_pandad_settings
from pandad.logsetup import redact_url, redact_urls, setup_logging
from pandad.process import DropEpisode, WakeupPipe, start_up, unblock_signals
from pandad.report import NO_REPORT, BackChannel, enabled as back_channel_enabled
from pandad.stats import Statistics, StatisticsLog, render
from pandad.transport import Transport, TransportError
from pandad.wire import REASON_TOO_LONG, REASON_UNTERMINATED, RecordSplitter

SUBSYSTEM = "PANDAD"
READ_CHUNK = 1 << 18
EXIT_INTERNAL_ERROR = 1
# Bytes in the wakeup pipe that are not signal numbers (no signal has number 0).
WAKE_EOF = 0
WAKE_FATAL = 255
WAKE_FLUSHED = 254      # the flusher thread has ended (final flush done)
BACK_CHANNEL_LINGER = 2.0     # seconds the last reports may wait for the plug-in to read
QUIT_LINGER = 0.5             # the same at SIGQUIT, which exits at once
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Gauges that move with the clock alone; a change in them is not worth a statistics block.
TICKING = frozenset({"oldest_entry_age_s"})

log = logging.getLogger("pandad")


class DropEpisodes:
    """Logs buffer-full drops once per episode (``pandad.process.DropEpisode``), with counts.

    An episode starts with the first drop and ends at the first chunk accepted whole after
    ``QUIET`` seconds without a drop. Under a sustained overload the flusher empties the
    buffer every cycle and it fills again at once, so "full" and "accepting" alternate many
    times a second; the quiet period keeps that to one line at the start, a reminder every
    ``REMIND`` seconds, and one summary at the end.
    """

    QUIET = 5.0
    REMIND = 60.0
    STUCK = 1.0         # a request outstanding this long is named in the line

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._episode = DropEpisode(clock, remind=self.REMIND)

    def update(self, dropped: int, nbytes: int, settings: PandadSettings,
               in_flight: Optional[Tuple[float, str]] = None) -> None:
        """``in_flight``: the flusher's request outstanding, (seconds, "METHOD url")."""
        episode = self._episode
        if dropped:
            # A buffer full behind a request that does not end is the monitor's doing.
            stuck = ("" if in_flight is None or in_flight[0] < self.STUCK else
                     f"; the flusher has been waiting {in_flight[0]:.0f} s for the answer to"
                     f" {in_flight[1]}")
            due = episode.drop(dropped)
            if due == DropEpisode.STARTED:
                log.warning("buffer full (%d bytes; PANDA_QUEUE_SIZE %d, PANDA_QUEUE_GRACE %g s,"
                            " PANDA_QUEUE_MAX_SIZE %d): dropping records%s", nbytes,
                            settings.queue_size, settings.queue_grace, settings.queue_max_size,
                            stuck)
            elif due == DropEpisode.REMIND:
                log.warning("buffer still full: %d record(s) dropped in the last %.0f s%s",
                            episode.records, episode.last_drop - episode.started, stuck)
        elif episode.active and self._clock() - episode.last_drop >= self.QUIET:
            self.finish()

    def finish(self) -> None:
        if self._episode.end():
            log.warning("buffer accepting again: %d record(s) were dropped while it was full"
                        " (%.0f s)", self._episode.records,
                        self._episode.last_drop - self._episode.started)


def describe_attribute_map(attribute_map: Tuple[Tuple[str, str], ...]) -> str:
    """PANDA_ATTRIBUTE_MAP in a log line."""
    if not attribute_map:
        return "as the schedd spells them (PANDA_ATTRIBUTE_MAP is empty)"
    return "renamed by PANDA_ATTRIBUTE_MAP: " + ", ".join(
        f"{attr}={name}" for attr, name in attribute_map)


def load_settings(environ: Optional[Dict[str, str]] = None) -> PandadSettings:
    """The pandad settings from the HTCondor configuration; raises ConfigError."""
    config = HTCondorConfig.load(SUBSYSTEM, os.environ if environ is None else environ)
    return load_pandad_settings(config)


class Daemon:
    """One pandad process: owns the buffer, the flusher, the statistics and the threads."""

    def __init__(self, settings: PandadSettings, stdin_fd: int = 0,
                 back_channel: Optional[BackChannel] = None) -> None:
        """``back_channel``: where to report losses (``PANDAD_BACK_CHANNEL=1``)."""
        self.settings = settings
        self.stats = Statistics()
        self.buffer = RecordBuffer(settings.queue_size, settings.queue_grace,
                                   settings.queue_max_size)
        self.back_channel = back_channel
        self.flusher = Flusher(self.buffer, Transport(settings), self.stats, settings,
                               report=back_channel or NO_REPORT)
        self._stdin_fd = stdin_fd
        self._wakeup = WakeupPipe()
        self._reader_lock = threading.Lock()     # a chunk is counted whole, or not read
        self._reading = True
        self._flusher_stop = threading.Event()
        self._shutdown_deadline = 0.0
        self._stats_wake = threading.Event()
        self._stats_stop = threading.Event()
        self._stats_log: Optional[StatisticsLog] = None
        self._stats_log_path: Optional[str] = None
        self._stats_last: Optional[Dict[str, float]] = None
        self._stats_error = ""
        self._stats_lock = threading.Lock()      # one statistics writer at a time
        self._exit_code = 0
        self._reader = self._thread(self._read_loop, "reader")
        self._flusher_thread = self._thread(self._flush_loop, "flusher")
        self._stats_thread = self._thread(self._stats_loop, "stats")

    def _thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        return threading.Thread(target=self._guarded(target), name=name, daemon=True)

    # -- life cycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Run until end of input or SIGTERM; the exit status."""
        self._install_signals()
        log.info("pandad starting: sending to %s; queue %d bytes (grace %g s, ceiling %d),"
                 " flush every %g s", redact_url(self.settings.url), self.settings.queue_size,
                 self.settings.queue_grace, self.settings.queue_max_size,
                 self.settings.flush_interval)
        log.info("attribute names: %s", describe_attribute_map(self.settings.attribute_map))
        if self.back_channel is not None:
            self.back_channel.flush()           # HELLO
        for thread in (self._reader, self._flusher_thread, self._stats_thread):
            thread.start()
        reason = self._wait_for_shutdown()
        if reason == signal.SIGQUIT.name or not self._shutdown(reason):
            self._quit()
            os._exit(self._exit_code)   # a request in flight may never end: do not join it
        return self._exit_code

    def _install_signals(self) -> None:
        def wake_only(signum: int, frame: object) -> None:
            """The wakeup fd carries the signal number; the main loop acts on it."""

        self._wakeup.install()
        for signum in (signal.SIGHUP, signal.SIGQUIT) + SHUTDOWN_SIGNALS:
            signal.signal(signum, wake_only)

    def _guarded(self, target: Callable[[], None]) -> Callable[[], None]:
        """A thread body that turns an unexpected exception into a logged, clean exit."""
        def body() -> None:
            try:
                target()
            except Exception:
                log.exception("internal error in the %s thread; shutting down",
                              threading.current_thread().name)
                self._exit_code = EXIT_INTERNAL_ERROR
                self._wakeup.wake(WAKE_FATAL)
        return body

    def _wait_for_shutdown(self) -> str:
        """Read the wakeup pipe; handle SIGHUP; return why the daemon stops."""
        while True:
            for code in self._wakeup.wait():
                if code == signal.SIGHUP:
                    self.reload()
                elif code in SHUTDOWN_SIGNALS or code == signal.SIGQUIT:
                    return signal.Signals(code).name
                elif code == WAKE_EOF:
                    return "end of input"
                elif code == WAKE_FATAL:
                    return "internal error"

    def _stop_reading(self) -> None:
        """No record is read or counted after this."""
        with self._reader_lock:
            self._reading = False
            self.buffer.close()

    def _discard_unsent(self) -> str:
        """Count every record buffered or in flight as discarded; "" or a phrase saying so."""
        in_flight = self.flusher.abandon()
        leftover = self.buffer.take_all()
        buffered = len(leftover)
        if self.back_channel is not None:
            self.back_channel.ledger.leftover(leftover)
        del leftover
        if buffered:
            self.stats.add("records_discarded_shutdown", buffered)
        if not in_flight + buffered:
            return ""
        return (f"discarded {in_flight + buffered} record(s) at shutdown ({buffered} buffered,"
                f" {in_flight} in flight or waiting for a retry)")

    def _quit(self) -> None:
        """SIGQUIT: account for what is dropped, one line, the final statistics; no flush."""
        self._stop_reading()
        discarded = self._discard_unsent()
        log.warning("SIGQUIT: exiting at once without flushing%s", f"; {discarded}"
                    if discarded else "")
        self.write_statistics(force=True)
        if self.back_channel is not None:
            self.back_channel.close(QUIT_LINGER)

    def _await_final_flush(self) -> bool:
        """Wait for the flusher's final flush until the deadline; False on a SIGQUIT."""
        flusher = self._flusher_thread
        while flusher.is_alive():
            left = self._shutdown_deadline - time.monotonic()
            codes = self._wakeup.wait(left) if left > 0 else b""
            if not codes:
                return True
            if signal.SIGQUIT in codes:
                return False
            if WAKE_FLUSHED in codes or WAKE_FATAL in codes:
                flusher.join(max(0.0, self._shutdown_deadline - time.monotonic()))
        return True

    def _shutdown(self, reason: str) -> bool:
        """The bounded final flush and final statistics; False if a SIGQUIT cut it short."""
        grace = self.settings.shutdown_grace
        log.info("%s: stopping; flushing what is buffered for up to %g s", reason, grace)
        # The deadline is set before the flusher can notice the stop.
        self._shutdown_deadline = time.monotonic() + grace
        self._stop_reading()
        self._flusher_stop.set()
        if not self._await_final_flush():
            return False
        if self._flusher_thread.is_alive():
            log.warning("final flush did not finish within PANDA_SHUTDOWN_GRACE (%g s)", grace)
        discarded = self._discard_unsent()
        if discarded:
            log.warning("%s", discarded)
        self._stats_stop.set()
        self._stats_wake.set()
        self._stats_thread.join(5)
        self.write_statistics(force=True)
        if self.back_channel is not None:
            self.back_channel.close(BACK_CHANNEL_LINGER)
        log.info("pandad exiting")
        return True

    # -- SIGHUP -------------------------------------------------------------------------------

    def reload(self) -> None:
        """Re-read the configuration and apply it; keep the old one if it is bad."""
        try:
            settings = load_settings()
            transport = Transport(settings)
        except (ConfigError, TransportError, OSError, ValueError) as error:
            log.error("SIGHUP: configuration not applied, keeping the old one: %s",
                      redact_urls(str(error)))
            return
        old = self.settings
        # Always: a log file refused before (planted, unwritable) gets its second chance.
        setup_logging("pandad", settings.log, settings.max_log, settings.debug)
        self.buffer.configure(settings.queue_size, settings.queue_grace,
                              settings.queue_max_size)
        self.flusher.reconfigure(settings, transport)
        self.settings = settings
        self._stats_wake.set()
        log.info("SIGHUP: configuration re-read: sending to %s; queue %d bytes (grace %g s,"
                 " ceiling %d), timeout %g s, flush every %g s, retry limit %d",
                 redact_url(settings.url), settings.queue_size, settings.queue_grace,
                 settings.queue_max_size, settings.update_timeout, settings.flush_interval,
                 settings.retry_limit)
        if settings.attribute_map != old.attribute_map:
            log.info("SIGHUP: attribute names: %s",
                     describe_attribute_map(settings.attribute_map))

    # -- reader -------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        splitter = RecordSplitter(self.settings.max_record_bytes)
        drops = DropEpisodes()
        stats = self.stats
        back = self.back_channel
        while True:
            try:
                chunk = os.read(self._stdin_fd, READ_CHUNK)
            except OSError as error:
                log.error("reading stdin failed, treating it as end of input: %s", error)
                chunk = b""
            # PANDA_MAX_RECORD_BYTES may change at SIGHUP; it applies from the next chunk.
            splitter.max_record_bytes = self.settings.max_record_bytes
            if chunk:
                lines, bad = splitter.feed(chunk)
                reason = REASON_TOO_LONG
            else:
                lines, bad = [], splitter.finish()
                reason = REASON_UNTERMINATED
            accepted = dropped = 0
            with self._reader_lock:
                if not self._reading:
                    drops.finish()
                    return
                if lines or bad:
                    stats.add("records_read", len(lines) + bad)
                if bad:
                    stats.add("records_bad", bad)
                    stats.add(f"records_bad_{reason}", bad)
                    log.warning("skipped %d bad record(s) (%s; PANDA_MAX_RECORD_BYTES is %d)",
                                bad, reason.replace("_", " "), splitter.max_record_bytes)
                if lines:
                    accepted = self.buffer.put_many(lines)
                    if accepted:
                        stats.add("records_queued", accepted)
                    dropped = len(lines) - accepted
                    if dropped:
                        stats.add("records_dropped_queue_full", dropped)
                    drops.update(dropped, self.buffer.nbytes, self.settings,
                                 self.flusher.in_flight.age() if dropped else None)
                if back is not None and (lines or bad):
                    back.ledger.read(accepted, lines[accepted:] if dropped else (), bad)
            if back is not None and (dropped or bad):
                back.flush()        # the flusher may be idle: say it now
            if not chunk:
                drops.finish()
                self._wakeup.wake(WAKE_EOF)
                return

    # -- flusher ------------------------------------------------------------------------------

    def _flush_loop(self) -> None:
        self.flusher.run(self._flusher_stop)
        self.flusher.drain(self._shutdown_deadline)
        self._wakeup.wake(WAKE_FLUSHED)

    # -- statistics ---------------------------------------------------------------------------

    def _stats_loop(self) -> None:
        """Statistics every interval (or when woken); between blocks, the flusher's stall
        watch, which says how long it can wait (a minute when no request is in flight)."""
        due = time.monotonic() + self.settings.statistics_interval
        while True:
            interval = self.settings.statistics_interval
            wait = self.flusher.watch_stall()
            if interval > 0:
                wait = min(wait, max(0.0, due - time.monotonic()))
            woken = self._stats_wake.wait(wait)
            self._stats_wake.clear()
            if self._stats_stop.is_set():
                return
            if woken or (interval > 0 and time.monotonic() >= due):
                due = time.monotonic() + interval
                self.write_statistics()

    def write_statistics(self, force: bool = False) -> None:
        """Append a statistics block when something changed (always when ``force``)."""
        with self._stats_lock:
            stats = self.stats
            stats.set("queue_bytes", self.buffer.nbytes)
            stats.set("queue_peak_bytes", self.buffer.peak_bytes)
            stats.set("oldest_entry_age_s", round(self.buffer.oldest_age(), 3))
            snapshot = stats.snapshot()
            compared = {k: v for k, v in snapshot.items() if k not in TICKING}
            if not force and compared == self._stats_last:
                return
            path = self.settings.statistics_log
            try:
                if self._stats_log is None or path != self._stats_log_path:
                    if self._stats_log is not None:
                        self._stats_log.close()
                        self._stats_log = None
                    self._stats_log = StatisticsLog(path)
                    self._stats_log_path = path
                self._stats_log.write(render(snapshot, time.time()))
            except OSError as error:
                # Logged once per distinct problem, not every interval; never fatal.
                if str(error) != self._stats_error:
                    log.error("statistics not written: %s", error)
                    self._stats_error = str(error)
                return
            if self._stats_error:
                log.info("statistics log %s writable again", path)
                self._stats_error = ""
            self._stats_last = compared


def main(argv: Optional[List[str]] = None) -> int:
    """``pandad``: the daemon on stdin. ``argv`` (DaemonCore flags such as -f, already
    checked by ``pandad.cli``) is ignored, with a warning."""
    unblock_signals()
    back_channel = BackChannel(1) if back_channel_enabled(os.environ) else None
    settings = start_up("pandad", load_settings, lambda message: fatal(message, back_channel),
                        argv or ())
    if settings is None:
        return EXIT_CONFIG_ERROR
    try:
        daemon = Daemon(settings, back_channel=back_channel)
    except (TransportError, OSError, ValueError) as error:
        return fatal(redact_urls(str(error)), back_channel)
    return daemon.run()


def fatal(message: str, back_channel: Optional[BackChannel]) -> int:
    """A configuration error at start: log it (and tell the plug-in); the exit status."""
    log.error("pandad: fatal configuration error: %s", message)
    if back_channel is not None:
        back_channel.fatal(f"fatal configuration error: {message}")
    return EXIT_CONFIG_ERROR
