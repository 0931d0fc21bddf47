"""The flusher: one cycle sends what is buffered as POST, PUT and DELETE (docs/design.md §4.3).

A cycle sends what was buffered when it started, and each whole slice that arrives while it
is younger than ``flush_interval`` (a burst goes out back to back, a trickle is still
batched), one slice at a time: at most ``SLICE_REQUESTS × max_request_bytes`` of record lines
(``RecordBuffer.take``), coalesced per job (``pandad.coalesce``), sent as adds (POST), updates
(PUT), removes (DELETE), each as JSON array bodies within ``max_request_bytes``
(``pandad.bodies``). A slice is sent whole before the next is taken, so the monitor sees the
records' order, and memory holds one slice decoded, not the whole buffer.

Each answer is acted on as ``endpoint.decide`` says: 2xx accepted (``records_sent``); an
answer about single items split in halves down to one command, which is re-sent once with the
other verb when ``upsert`` is on (a rejected POST as PUT, a rejected PUT as POST with
``condorid`` from the GlobalJobId), else ``records_rejected`` with a line naming the job; no
answer, 408, 429 or 5xx ends the cycle's sending: with ``retry_limit`` 0 what the cycle took
is lost (``records_lost_transport``, at most once like the C++ daemon), otherwise the unsent
commands carry over, merged with new records, after a backoff (or ``Retry-After``, within its
cap), at most ``retry_limit`` times each; an answer about the endpoint (3xx, 401, 403, 404,
405, 407, a small 413) ends it too, its commands lost as ``records_lost_endpoint(_<reason>)``,
one line per episode (``EndpointEpisodes``).

Accounting: every record taken is "unsettled" until ``_settle`` counts it in exactly one
outcome (``stats.OUTCOMES``; at shutdown ``records_discarded_shutdown`` through ``abandon``).
The back channel (``pandad.report``) hears of the same through one seam, ``report``: ``taken``,
``lost`` (from ``_settle``), ``slice_settled`` with the commands carried for a retry,
``abandoned`` and ``cycle_done``.
"""

import logging
import threading
import time
from typing import Callable, Iterator, List, Optional, Tuple

from pandad.bodies import bodies, encode_objects
from pandad.buffer import RecordBuffer
from pandad.coalesce import Batch, Entry, JobCommand, coalesce, command_of, records_of
from pandad.convert import Converter, condor_id_from_job_id
from pandad.endpoint import (Action, EndpointEpisodes, InFlight, decide, describe,
                             refusal_reason, retry_after)
from pandad.report import NO_REPORT
from pandad.stats import Counters
from pandad.transport import Answer, TransportError

log = logging.getLogger("pandad.flusher")

METHODS = ("POST", "PUT", "DELETE")
OTHER_VERB = {"POST": "PUT", "PUT": "POST"}      # DELETE has no other verb
BACKOFF_FIRST = 1.0                              # seconds before the first retry
BACKOFF_MAX = 60.0                               # the backoff doubles up to this
REJECTIONS_LOGGED = 10                           # named per cycle; the rest as a count
REPORT_RETRY = 0.2                               # idle: seconds between back-channel retries
# A slice is this many request bodies' worth of record lines (a JSON object takes about as
# many bytes as its records, so a body is about this full): one slice decoded and converted
# takes about 10 × its bytes, and a quarter keeps pandad's peak in a 10,000-job burst under
# 40 MiB (half: 40.6 MiB) at the price of twice the requests (~1,300 e2e objects a body).
SLICE_REQUESTS = 0.25

class _Cycle:
    """What one cycle learned: the commands it could not deliver and the ones rejected.

    ``failed`` and ``rejected`` hold the current slice's; they are settled after each slice
    (``Flusher._settle_slice``), the totals kept for the cycle's log lines.
    """

    __slots__ = ("down", "refused", "busy", "reason", "retry_after", "failed", "rejected",
                 "rejected_total", "carried", "lost_records", "lost_commands")

    def __init__(self) -> None:
        self.down = False              # a transport failure ended sending for this cycle
        self.refused = ""              # an endpoint refusal did: records_lost_endpoint_<this>
        self.busy = False              # a 408/429/5xx answer did (an endpoint episode)
        self.reason = ""               # why, for the log line
        self.retry_after: Optional[float] = None    # seconds the monitor asked us to wait
        self.failed: List[Tuple[str, JobCommand]] = []    # (method, command) not delivered
        self.rejected: List[Tuple[str, JobCommand, str]] = []   # (method, command, status)
        self.rejected_total = 0        # commands rejected in the cycle's earlier slices too
        self.carried = Batch()         # commands to retry next cycle
        self.lost_records = 0
        self.lost_commands = 0


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` failed cycles in a row: 1, 2, 4, ... 60."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(failures - 1, 16))


class Flusher:
    """Sends the buffer's records to the monitor, one cycle at a time."""

    def __init__(self, buffer: RecordBuffer, transport, stats: Counters, settings,
                 clock: Callable[[], float] = time.monotonic, report=NO_REPORT,
                 fast: bool = True) -> None:
        """``report``: the back channel's seam (``pandad.report``); ``fast``: build plain
        updates' JSON as text (``Converter.entry_texts`` and ``encode_pieces``); False is the
        reference, objects through ``encode_objects``."""
        self._fast = fast
        self._buffer = buffer
        self._transport = transport
        self._stats = stats
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()       # guards settlement, abandon and reconfiguration
        self._unsettled = 0
        self._abandoned = False
        self._next: Optional[tuple] = None  # (settings, transport) to apply between cycles
        self._pending: Optional[Batch] = None
        self._retry_at = 0.0
        self._failures = 0                  # failed cycles in a row
        self._idle = threading.Event()      # for backoff waits while draining
        self._episodes = EndpointEpisodes()
        self.in_flight = InFlight(clock, settings.stall_warning)
        self._report = report               # the back channel's seam (pandad.report)
        self._inflight: object = None       # the slice being sent: lines, then its Batch

    # -- configuration ------------------------------------------------------------------------

    def reconfigure(self, settings, transport=None) -> None:
        """New settings (and transport) from SIGHUP; applied before the next cycle."""
        with self._lock:
            self._next = (settings, transport or self._transport)

    def _apply_next(self) -> None:
        with self._lock:
            change, self._next = self._next, None
        if change is not None:
            old = self._transport
            self._settings, self._transport = change
            if old is not self._transport and hasattr(old, "close"):
                old.close()                 # its kept connection goes with it
            self._episodes.success()        # a new configuration: its answers are news

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Cycle until ``stop`` is set: at most one cycle per ``flush_interval``.

        Idle, it sleeps on the buffer's condition (no wakeups, unless back-channel reports wait
        for the pipe: then it retries them every ``REPORT_RETRY`` s); whoever sets ``stop`` also
        closes the buffer to wake it. With commands waiting for a retry it sleeps until the
        backoff is over.
        """
        next_cycle = 0.0
        while not stop.is_set():
            if self._pending is not None:
                delay = max(self._retry_at, next_cycle) - self._clock()
            else:
                # Reports the back channel could not write yet are retried while idle: the
                # plug-in reads them once it is free, and no other cycle may come for hours.
                idle = REPORT_RETRY if self._report.waiting else None
                if not self._buffer.wait_for_data(idle):
                    if self._buffer.closed:
                        return
                    self._report.cycle_done()
                    continue
                delay = next_cycle - self._clock()
            if delay > 0 and stop.wait(delay):
                return
            started = self._clock()
            self.flush_once()
            next_cycle = started + self._settings.flush_interval

    def drain(self, deadline: float) -> None:
        """The final flush: cycle back to back until nothing is left or ``deadline`` passes.

        Whatever is still unsent is left for ``abandon`` to count as discarded.
        """
        first = True
        while self._clock() < deadline:
            if self._pending is None and not len(self._buffer):
                return
            # The first attempt ignores any backoff: it is the last chance to deliver.
            if not first and self._pending is not None and self._retry_at > self._clock():
                if self._retry_at >= deadline:
                    return
                self._idle.wait(self._retry_at - self._clock())
            first = False
            self.flush_once()

    def abandon(self) -> int:
        """Stop accounting (shutdown): count every unsettled record as discarded; return them.

        After this, a cycle still running in another thread counts nothing more.
        """
        with self._lock:
            self._abandoned = True
            discarded, self._unsettled = self._unsettled, 0
            held = [self._inflight, self._pending]
            self._pending = None
            self._report.abandoned(*_held(held))
        if discarded:
            self._stats.add("records_discarded_shutdown", discarded)
        self._stats.set("records_pending_retry", 0)
        return discarded

    def watch_stall(self) -> float:
        """Log a request in flight that waits too long for its answer (a SIGHUP's settings count
        at once: it may hold up the next cycle); the seconds until worth looking again."""
        change = self._next
        settings = change[0] if change is not None else self._settings
        line, wait = self.in_flight.watch(settings.update_timeout, settings.stall_warning)
        if line:
            log.warning("%s", line)
        return wait

    @property
    def pending_records(self) -> int:
        pending = self._pending
        return pending.records if pending is not None else 0

    # -- one cycle ----------------------------------------------------------------------------

    def flush_once(self) -> None:
        """Send what is buffered now, slice by slice; the first slice takes in any carry-over."""
        self._apply_next()
        started = self._clock()
        todo = len(self._buffer)
        if not todo and self._pending is None:
            return
        if self._pending is not None:
            self._stats.add("retries")
        self._stats.add("batches")
        slice_bytes = SLICE_REQUESTS * self._settings.max_request_bytes
        cycle = _Cycle()
        first = True
        while True:
            more = todo > 0 or (not first and self._full_slice_arrived(started, slice_bytes,
                                                                       cycle))
            if not (first or more):
                break
            with self._lock:
                if self._abandoned:
                    return
                lines = self._buffer.take(slice_bytes) if more else []
                self._unsettled += len(lines)
                self._report.taken(len(lines))
                self._inflight = lines
            todo -= len(lines)
            if not lines and not first:
                break                   # taken by someone else (shutdown)
            first = False
            batch = coalesce(lines, into=self._pending)
            self._inflight = batch
            self._pending = None
            del lines
            self._send_batch(batch, cycle)
            del batch
            self._report.slice_settled(self._settle_slice(cycle))
            self._inflight = cycle.carried      # held until _finish makes it the pending
            if cycle.down and not cycle.refused and self._settings.retry_limit > 0:
                break                   # the rest stays buffered for the retry cycle
        self._finish(cycle)
        self._report.cycle_done()

    def _full_slice_arrived(self, started: float, slice_bytes: int, cycle: _Cycle) -> bool:
        """Lines that arrive during a cycle wait for the next one, unless a whole slice of them
        is buffered while the cycle is younger than ``flush_interval`` and sending works: a
        burst then goes out back to back, a trickle still waits to be batched, and a cycle
        always ends (a later cycle starts at once when it is due)."""
        return (not cycle.down and self._buffer.nbytes >= slice_bytes
                and self._clock() - started < self._settings.flush_interval)

    def _send_batch(self, batch: Batch, cycle: _Cycle) -> None:
        if batch.bad:
            self._settle("records_bad", batch.bad)
            for reason, n in batch.bad_reasons.items():
                self._stats.add(f"records_bad_{reason}", n)
            reasons = ", ".join(f"{n} {reason}" for reason, n in batch.bad_reasons.most_common())
            log.warning("skipped %d bad record(s): %s", batch.bad, reasons)
            batch.bad = 0
            batch.bad_reasons.clear()
        for method, commands in zip(METHODS, (batch.adds, batch.update_entries, batch.removes)):
            if commands:
                self._send_commands(method, list(commands.values()), cycle)

    def _send_commands(self, method: str, commands: List[Entry], cycle: _Cycle) -> None:
        """Convert, encode and send ``commands`` a body at a time (one body held at once).

        The commands are a batch's entries: a PlainUpdate is made a JobCommand
        (``command_of``) only where one is kept or named (failed, rejected, upserted).
        """
        converter = Converter(self._settings.attribute_map)
        for group, body in self._bodies(method, commands, converter):
            if cycle.down:
                cycle.failed.extend((method, command_of(entry)) for entry in group)
            else:
                self._send_group(method, group, body, cycle, converter)

    def _bodies(self, method: str, commands: List[Entry],
                converter: Converter) -> Iterator[Tuple[List[Entry], bytes]]:
        return bodies(commands, converter, with_condor_id=method == "POST",
                      max_bytes=self._settings.max_request_bytes, fast=self._fast,
                      unconvertible=self._unconvertible)

    def _unconvertible(self, command: JobCommand, error: Exception) -> None:
        # A value convert cannot turn into JSON: bad input, never fatal.
        self._settle("records_bad", command.records, [command.job_id])
        self._stats.add("records_bad_unconvertible", command.records)
        log.warning("skipped job %s: cannot convert to JSON: %s", command.job_id, error)

    def _send_group(self, method: str, group: List[Entry], body: bytes, cycle: _Cycle,
                    converter: Converter) -> None:
        if cycle.down:
            cycle.failed.extend((method, command_of(entry)) for entry in group)
            return
        answer = self._request(method, body, len(group), cycle)
        status = answer.status if answer is not None else None
        action = decide(status, len(body), len(group))
        if action is Action.ACCEPT:
            self._accept(group)
        elif action is Action.SPLIT:
            # Isolate the rejected commands: each half on its own.
            half = len(group) // 2
            for part in (group[:half], group[half:]):
                for commands, part_body in self._bodies(method, part, converter):
                    self._send_group(method, commands, part_body, cycle, converter)
        elif action is Action.UPSERT:
            self._upsert_or_reject(method, command_of(group[0]), status, cycle, converter)
        elif action is Action.REJECT:
            cycle.rejected.append((method, command_of(group[0]), str(status)))
        else:
            # RETRY or REFUSE: an answer about the endpoint ends this cycle's sending.
            cycle.down = True
            cycle.failed.extend((method, command_of(entry)) for entry in group)

    def _upsert_or_reject(self, method: str, command: JobCommand, status: Optional[int],
                          cycle: _Cycle, converter: Converter) -> None:
        other = OTHER_VERB.get(method) if self._settings.upsert else None
        if other is None:
            cycle.rejected.append((method, command, str(status)))
            return
        condor_id = None
        if other == "POST":
            condor_id = command.condor_id or condor_id_from_job_id(command.job_id)
        self._stats.add("upserts_sent")
        body = encode_objects([converter.job_object(command.job_id, condor_id,
                                                    command.attributes().items())])
        answer = self._request(other, body, 1, cycle)
        second = answer.status if answer is not None else None
        action = decide(second, len(body), 1)
        if action is Action.ACCEPT:
            self._stats.add("upserts_accepted")
            self._accept([command])
        elif action in (Action.RETRY, Action.REFUSE):
            # The endpoint went away in between: retried (or lost) with the first verb.
            cycle.down = True
            cycle.failed.append((method, command))
        else:
            cycle.rejected.append((method, command, f"{status}, then {other} {second}"))

    def _request(self, method: str, body: bytes, commands: int,
                 cycle: _Cycle) -> Optional[Answer]:
        """One HTTP request, counted; the answer, or None when no answer came."""
        stats = self._stats
        stats.add("requests_made")
        stats.add("commands_sent", commands)
        self.in_flight.start(f"{method} {self._transport.url_for_log}")
        try:
            answer = self._transport.exchange(method, body)
        except TransportError as error:
            stats.add("transport_failures")
            cycle.reason = f"{method} failed ({error.kind}): {error}"
            return None
        finally:
            self.in_flight.end()
        status = answer.status
        stats.add(f"responses_{status}")
        if 200 <= status < 300:
            stats.add("requests_succeeded")
            stats.add("commands_accepted", commands)
            stats.set("last_success_time", time.time())
            self._episodes.success()
        else:
            stats.add("bad_response_codes")
            self._endpoint_answer(method, answer, len(body), commands, cycle)
        log.debug("%s %d command(s), %d bytes: %s", method, commands, len(body), status)
        return answer

    def _endpoint_answer(self, method: str, answer: Answer, body_bytes: int, commands: int,
                         cycle: _Cycle) -> None:
        """Note a non-2xx answer that is about the endpoint in the cycle; log its episode."""
        action = decide(answer.status, body_bytes, commands)
        if action not in (Action.RETRY, Action.REFUSE):
            return
        url = self._transport.url_for_log
        new = self._episodes.answer(answer.status)
        if action is Action.RETRY:
            # Its episode's line is the first loss line (_finish).
            cycle.busy = True
            cycle.reason = f"{method} {url} answered HTTP {answer.status}"
            cycle.retry_after = retry_after(answer.retry_after, time.time())
            return
        cycle.refused = refusal_reason(answer.status)
        if new:
            log.error("%s", describe(method, url, answer.status, answer.location))

    # -- accounting ---------------------------------------------------------------------------

    def _settle(self, counter: str, records: int, lost: List[str] = ()) -> None:
        """Count ``records`` in ``counter``; ``lost``: the jobs whose changes they were."""
        with self._lock:
            if self._abandoned:
                return
            self._unsettled -= records
            self._stats.add(counter, records)
            if lost:
                self._report.lost(lost)

    def _accept(self, commands: List[Entry]) -> None:
        self._settle("records_sent", records_of(commands))

    def _settle_slice(self, cycle: _Cycle) -> List[Tuple[str, bool]]:
        """Count what the slice had rejected and lost; keep what is to be retried.

        Returns (job id, whether its command holds records of an earlier cycle) per command
        kept for a retry, for the back channel's SETTLED watermark.
        """
        kept: List[Tuple[str, bool]] = []
        if cycle.rejected:
            self._settle("records_rejected", sum(c.records for _, c, _ in cycle.rejected),
                         [c.job_id for _, c, _ in cycle.rejected])
            for method, command, status in cycle.rejected[:REJECTIONS_LOGGED -
                                                          cycle.rejected_total]:
                log.warning("monitor rejected %s of job %s (HTTP %s): %d record(s) not applied",
                            method, command.job_id, status, command.records)
            cycle.rejected_total += len(cycle.rejected)
            cycle.rejected = []
        if not cycle.failed:
            return kept
        # Refused by the endpoint: a retry would be refused too.
        limit = -1 if cycle.refused else self._settings.retry_limit
        carried = cycle.carried
        lost: List[Tuple[str, JobCommand]] = []
        for method, command in cycle.failed:
            command.attempts += 1
            if command.attempts > limit:
                lost.append((method, command))
            else:
                kept.append((command.job_id, command.attempts > 1))
                group = (carried.adds if method == "POST" else
                         carried.update_entries if method == "PUT" else carried.removes)
                group[command.job_id] = command
        cycle.failed = []
        if lost:
            self._lose(lost, cycle)
        return kept

    def _lose(self, lost: List[Tuple[str, JobCommand]], cycle: _Cycle) -> None:
        """Where undelivered commands are given up: counted, per job at DEBUG."""
        records = sum(command.records for _, command in lost)
        job_ids = [command.job_id for _, command in lost]
        if cycle.refused:
            self._settle("records_lost_endpoint", records, job_ids)
            self._stats.add(f"records_lost_endpoint_{cycle.refused}", records)
        else:
            self._settle("records_lost_transport", records, job_ids)
        cycle.lost_records += records
        cycle.lost_commands += len(lost)
        if log.isEnabledFor(logging.DEBUG):
            for method, command in lost:
                log.debug("lost %s of job %s (%d record(s))", method, command.job_id,
                          command.records)

    def _finish(self, cycle: _Cycle) -> None:
        """Log what the cycle rejected and lost (once, with counts); plan any retry."""
        if cycle.rejected_total > REJECTIONS_LOGGED:
            log.warning("monitor rejected %d more job(s) this cycle",
                        cycle.rejected_total - REJECTIONS_LOGGED)
        if not cycle.down or cycle.refused:
            self._failures = 0
            self._stats.set("records_pending_retry", 0)
            return
        self._failures += 1
        if cycle.lost_records and not (cycle.busy and self._episodes.loss_logged):
            log.warning("lost %d record(s) in %d command(s): %s", cycle.lost_records,
                        cycle.lost_commands, cycle.reason)
            self._episodes.loss_logged = cycle.busy
        carried = cycle.carried
        if carried:
            delay = backoff(self._failures)
            if cycle.retry_after is not None:
                # As the monitor asked, within the backoff's cap.
                delay = min(max(delay, cycle.retry_after), BACKOFF_MAX)
            self._pending = carried
            self._retry_at = self._clock() + delay
            log.warning("will retry %d command(s) (%d record(s)) in %.0f s: %s",
                        len(carried.adds) + len(carried.update_entries) + len(carried.removes),
                        carried.records, delay, cycle.reason)
        self._stats.set("records_pending_retry", self.pending_records)


def _held(items: List[object]) -> Tuple[List[str], List[bytes]]:
    """(job ids, record lines) of what the flusher holds, for the back channel."""
    ids: List[str] = []
    lines: List[bytes] = []
    for item in items:
        if isinstance(item, Batch):
            ids += list(item.adds) + list(item.update_entries) + list(item.removes)
        elif isinstance(item, list):
            lines += item
    return ids, lines
