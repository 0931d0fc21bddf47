"""The plug-in side of self-healing: the back channel, the re-sends and the saved heal state.

``Healer`` is the pipe's tracker (``schedd_plugin.backchannel.PipeTracker``): it sees every record
written whole or dropped, pandad's starts and exits, and the bytes of pandad's back channel
(``docs/architecture.md``, "The back channel"), and feeds them to the pure
``schedd_plugin.healing.Healing``. ``tick()``, called by the plug-in's loop after each poll,
re-sends what healing allows: the job's whole current ad as an ADD, or its tombstone and a
REMOVE when it left the queue. It also hands the plug-in (``PandaPlugin.healer``) the
tombstone decision for a job that leaves the queue.

The heal state is saved beside the position file, as ``<state file>.heal`` (JSON, 0600,
atomic): the jobs still to heal, the tombstones, the ids the monitor was told about (the jobs
in the queue), the names of deleted attributes, and whether the plug-in exited cleanly. It is
written at most every ``SAVE_INTERVAL`` seconds while something changes, and at exit.
"""

import json
import logging
import os
import time
from typing import Callable, Iterable, List, Mapping, NamedTuple, Optional, Sequence

from pandad.config import EXIT_CONFIG_ERROR, ConfigError, HTCondorConfig
from pandad.knobs import PandadSettings, load_pandad_settings
from pandad.stats import Statistics

from schedd_plugin.backchannel import PipeTracker
from schedd_plugin.healing import Healing, LineSplitter, parse_report
from schedd_plugin.state import decode_document, load_document, write_atomically

log = logging.getLogger("panda_plugin.healing")

FORMAT = "panda_plugin-heal"
VERSION = 1
SAVE_INTERVAL = 10.0
# Used when pandad's own configuration cannot be read to find its queue size.
DEFAULT_PANDAD_QUEUE_SIZE = PandadSettings.queue_size
# Heal records pandad holds unsettled stay below this many of its PANDA_QUEUE_SIZE. Over the
# size, its buffer still takes records for as long as the flusher keeps taking (the grace
# window), so two sizes double the pace of healing without pushing live records out; pandad
# settles at the end of each flush cycle, so this is the heal bytes a cycle.
HEAL_QUEUES_IN_FLIGHT = 2
# A heal file holds ids of up to a few hundred thousand jobs plus the tombstones.
MAX_HEAL_FILE_BYTES = 256 << 20
# Healing that cannot proceed says why after this long, and again at this interval.
WAIT_LOG_AFTER = 60.0
WAIT_LOG_EVERY = 300.0


class HealState(NamedTuple):
    clean: bool
    to_heal: List[bytes]
    announced: List[bytes]
    deleted_names: List[str]
    tombstones: List[tuple]


def _text(field: bytes) -> str:
    return field.decode("utf-8", "surrogateescape")


def _field(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def encode_heal_state(state: HealState) -> bytes:
    doc = {"format": FORMAT, "version": VERSION, "clean": state.clean,
           "to_heal": [_text(f) for f in state.to_heal],
           "announced": [_text(f) for f in state.announced],
           "deleted_names": list(state.deleted_names),
           "tombstones": [[_text(f), _text(r)] for f, r in state.tombstones]}
    return (json.dumps(doc) + "\n").encode("ascii")


def decode_heal_state(data: bytes) -> HealState:
    """Parse a heal file's bytes; raises ValueError with a one-line reason."""
    doc = decode_document(data, FORMAT, VERSION, "heal file")
    try:
        lists = [doc[name] for name in ("to_heal", "announced", "deleted_names", "tombstones")]
        if not all(isinstance(x, list) for x in lists) or not isinstance(doc["clean"], bool):
            raise TypeError
        return HealState(doc["clean"], [_field(f) for f in lists[0]],
                         [_field(f) for f in lists[1]], [str(n) for n in lists[2]],
                         [(_field(f), _field(r)) for f, r in lists[3]])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ValueError("a field is missing or of the wrong type") from None


def load_heal_state(path: str) -> Optional[HealState]:
    return load_document(path, MAX_HEAL_FILE_BYTES, "heal state", "heal state",
                         decode_heal_state)


def max_in_flight_bytes(environ: Mapping[str, str] = os.environ) -> int:
    """Healing keeps what pandad holds unsettled below HEAL_QUEUES_IN_FLIGHT of its
    PANDA_QUEUE_SIZE (read from pandad's own configuration)."""
    try:
        queue_size = load_pandad_settings(HTCondorConfig.load("PANDAD", environ)).queue_size
    except ConfigError:
        queue_size = DEFAULT_PANDAD_QUEUE_SIZE
    return HEAL_QUEUES_IN_FLIGHT * queue_size


def make_healer(plugin, stats: Statistics, path: Optional[str], resync_interval: float,
                environ: Mapping[str, str] = os.environ) -> "Healer":
    """The plug-in's healer, with the heal state saved at ``path`` (None: never saved)."""
    healer = Healer(plugin, stats, path,
                    Healing(max_in_flight_bytes=max_in_flight_bytes(environ)),
                    resync_interval=resync_interval)
    healer.restore(load_heal_state(path) if path else None)
    return healer


class Healer(PipeTracker):
    """Healing's I/O: see the module docstring. ``write`` is the pipe's ``write``."""

    def __init__(self, plugin, stats: Statistics, path: Optional[str],
                 healing: Optional[Healing] = None, resync_interval: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.plugin = plugin
        self.stats = stats
        self.path = path
        self.healing = healing if healing is not None else Healing()
        self.resync_interval = resync_interval
        self.clock = clock
        self.write: Callable[[bytes], object] = lambda record: False
        self.spill_records: Callable[[], int] = lambda: 0
        self.splitter = LineSplitter()
        self.fatal: Optional[str] = None
        self.malformed_logged = False
        self.loaded: Optional[HealState] = None
        self._next_save = clock() + 1.0          # the first soon: it marks the run unclean
        self._saved_generation = -1
        self._save_failing = False
        self._resync_keys: List[str] = []
        self._resync_quota = 0.0
        self._resync_total = 0
        self._last_tick: Optional[float] = None
        # The heal under way: [jobs, records, start time], logged when the set is empty.
        self._episode: Optional[list] = None
        self._stuck_since: Optional[float] = None   # jobs to heal, none re-sent since
        self._next_stuck_log = 0.0
        plugin.healer = self

    def reload(self, environ: Mapping[str, str] = os.environ) -> None:
        """SIGHUP: pandad's queue size may have changed."""
        self.healing.max_in_flight_bytes = max_in_flight_bytes(environ)

    # -- the pipe's tracker -------------------------------------------------------------------

    def written(self, records: Sequence[bytes]) -> None:
        self.healing.written_records(records)

    def dropped(self, records: Iterable[bytes]) -> None:
        self.healing.dropped_records(records)

    def started(self) -> None:
        self.healing.pandad_started(self.clock())
        self.splitter.reset()
        self.fatal = None

    def exited(self, status: int) -> None:
        jobs = self.healing.pandad_gone(self.clock())
        if jobs:
            log.info("pandad may have lost changes of %d jobs it held: they are to heal", jobs)
        if status == EXIT_CONFIG_ERROR:
            log.error("pandad cannot run, its configuration is unusable: %s; once it is "
                      "fixed, SIGHUP to panda_plugin (pid %d) starts pandad at once",
                      self.fatal or "exit 99, see pandad's log", os.getpid())
        self._gauges()

    def reports(self, data: bytes) -> None:
        lines, skipped = self.splitter.feed(data)
        for _ in range(skipped):
            self._malformed(b"(a line longer than the limit)")
        for line in lines:
            try:
                verb, argument = parse_report(line)
            except ValueError:
                self._malformed(line)
                continue
            if verb == "LOST":
                self.healing.lost(argument, self.clock())           # type: ignore[arg-type]
                self.stats.add("back_channel_lost")
            elif verb == "SETTLED":
                self.healing.settled_to(argument, self.clock(),     # type: ignore[arg-type]
                                        self.spill_records() == 0)
            elif verb == "RESYNC":
                self.resync("pandad lost more jobs than it can name")
            elif verb == "FATAL":
                self.fatal = argument                               # type: ignore[assignment]
            else:
                self.healing.hello()

    def _malformed(self, line: bytes) -> None:
        self.stats.add("back_channel_malformed")
        if not self.malformed_logged:
            self.malformed_logged = True
            log.warning("ignoring a malformed line from pandad's back channel (further ones "
                        "are only counted): %r", line[:80])

    # -- the plug-in's hooks ------------------------------------------------------------------

    def wants_tombstone(self, field: bytes) -> bool:
        return self.healing.wants_tombstone(field, self.spill_records() == 0)

    def keep_tombstone(self, field: bytes, record: bytes) -> None:
        self.healing.keep_tombstone(field, record)

    # -- decisions ----------------------------------------------------------------------------

    def resync(self, reason: str) -> int:
        """Every job in the queue (and every tombstone) is re-sent, paced."""
        added = self.healing.resync(self.plugin.queue_id_fields())
        self.stats.add("resyncs")
        log.info("resync (%s): %d jobs to re-send", reason, len(self.healing.to_heal))
        self._gauges()
        return added

    def restore(self, state: Optional[HealState]) -> None:
        """Take the saved heal state (before the first poll)."""
        self.loaded = state
        if state is None:
            return
        for field in state.to_heal:
            self.healing.to_heal[field] = None
        for field, record in state.tombstones:
            self.healing.keep_tombstone(field, record)
        for name in state.deleted_names:
            self.plugin.deleted_names.setdefault(name.lower(), name)

    def reconcile(self, resumed: bool, had_position: bool) -> None:
        """After the start-up replay: make the monitor equal the queue again if the last run
        may have left it otherwise (the log moved on without us, or we did not exit cleanly)."""
        state = self.loaded
        if state is None and not had_position:
            return                               # a first start: nothing was announced
        queue = set(self.plugin.queue_id_fields())
        gone = [field for field in (state.announced if state else []) if field not in queue]
        if resumed and state is not None and state.clean:
            for field in gone:                   # cannot happen after a clean exit; cheap
                self.healing.to_heal[field] = None
            return
        for field in gone:
            self.healing.to_heal[field] = None
        if resumed:
            # An unclean exit: what the last pandad held is unknown, so every job is re-sent.
            for field in queue:
                self.healing.to_heal[field] = None
            why = ("the last run did not exit cleanly" if state is not None
                   else "no heal state was saved")
            resent = len(queue)
        else:
            why = "the saved position does not match the log"
            resent = len(queue)                  # the replay re-sent each of them
        self.stats.add("reconciliations")
        log.warning("reconciling the monitor with the queue (%s): %d jobs in the queue "
                    "re-sent, %d announced jobs no longer in the queue get their REMOVE",
                    why, resent, len(gone))
        self._gauges()

    def tick(self) -> int:
        """Re-send what pacing allows now; the periodic resync; the saving. Returns jobs healed."""
        now = self.clock()
        healing = self.healing
        if healing.prune_due(now):
            healing.prune(now, self.spill_records() == 0)
        self._periodic_resync(now)
        jobs, room = healing.budget(now, self.spill_records() == 0)
        healed = records = 0
        while jobs > 0 and room > 0:
            field = healing.pop()
            if field is None:
                break
            for record in self._heal_records(field):
                self.write(record)
                room -= len(record)
                records += 1
            jobs -= 1
            healed += 1
        if healed:
            healing.spent(healed, records)
            self.stats.add("jobs_healed", healed)
            if self._episode is None:
                self._episode = [0, 0, now]
            self._episode[0] += healed
            self._episode[1] += records
        if self._episode is not None and not healing.to_heal:
            jobs_done, records_done, since = self._episode
            self._episode = None
            log.info("healed: %d jobs re-sent (%d records) in %.1f s; none left to heal",
                     jobs_done, records_done, now - since)
        self._watch_stuck(now, healed)
        self._gauges()
        return healed

    def _watch_stuck(self, now: float, healed: int) -> None:
        """Jobs wait to be healed and none has gone for a while: say why, now and then."""
        if healed or not self.healing.to_heal:
            self._stuck_since = None
            return
        if self._stuck_since is None:
            self._stuck_since = now
            self._next_stuck_log = now + WAIT_LOG_AFTER
        if now < self._next_stuck_log:
            return
        why = self.healing.waiting_for(now, self.spill_records() == 0)
        if why:
            self._next_stuck_log = now + WAIT_LOG_EVERY
            log.warning("healing waits: %d jobs to heal, none re-sent for %.0f s: %s",
                        len(self.healing.to_heal), now - self._stuck_since, why)

    def _heal_records(self, field: bytes) -> List[bytes]:
        key = self.plugin.key_of(field)
        if key is not None:
            record = self.plugin.heal_record(key)
            return [record] if record is not None else []
        records = []
        tombstone = self.healing.tombstone(field)
        if tombstone is not None:
            records.append(tombstone)
        remove = self.plugin.remove_record(field)
        if remove is not None:
            records.append(remove)
        return records

    def _periodic_resync(self, now: float) -> None:
        """PANDA_RESYNC_INTERVAL: the whole queue, spread evenly over the interval."""
        last, self._last_tick = self._last_tick, now
        if self.resync_interval <= 0 or last is None:
            return
        if not self._resync_keys:
            self._resync_keys = self.plugin.mirror.job_keys()
            self._resync_keys.reverse()
            self._resync_total = len(self._resync_keys)
            self._resync_quota = 0.0
            if not self._resync_keys:
                return
            self.stats.add("resyncs")
        self._resync_quota += max(0.0, now - last) * self._resync_total / self.resync_interval
        while self._resync_quota >= 1 and self._resync_keys:
            self._resync_quota -= 1
            key = self._resync_keys.pop()
            if key in self.plugin.mirror:
                self.healing.to_heal[self.plugin.id_field(key)] = None

    def _gauges(self) -> None:
        self.stats.set("to_heal", len(self.healing.to_heal))

    # -- saving -------------------------------------------------------------------------------

    def maybe_save(self) -> None:
        now = self.clock()
        if now < self._next_save:
            return
        self._next_save = now + SAVE_INTERVAL
        generation = self.stats.generation
        if generation != self._saved_generation:
            self._saved_generation = generation
            self.save(clean=False)

    def save(self, clean: bool) -> None:
        if not self.path:
            return
        healing = self.healing
        state = HealState(clean, list(healing.to_heal), list(self.plugin.queue_id_fields()),
                          list(self.plugin.deleted_names.values()),
                          list(healing.tombstones.items()))
        try:
            write_atomically(self.path, encode_heal_state(state))
        except OSError as e:
            self.stats.add("heal_state_save_errors")
            if not self._save_failing:
                self._save_failing = True
                log.error("cannot save the heal state to %s: %s (will keep trying)",
                          self.path, e)
            return
        self._save_failing = False

