"""The pure self-healing state (schedd_plugin.healing): the back channel's lines, the to-heal
set, the unsettled window, tombstones and pacing; and a property test: any interleaving of
drops, losses and pandad deaths over a stream of job changes ends, once the faults stop, with
a model monitor equal to the queue's truth."""

import os
import tracemalloc
from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pandad import wire
from schedd_plugin.healing import HOLD_MAX, Healing, LineSplitter, hold, id_field, parse_report


def _id(n: int) -> str:
    return f"ap1.example.org#{n}.0#1767225600"


def _field(n: int) -> bytes:
    return f'"{_id(n)}"'.encode()


def _update(n: int, value: str = "1") -> bytes:
    return wire.encode_update(_id(n), [("JobStatus", value)])


# -- parsing ------------------------------------------------------------------------------------


def test_id_field_is_the_second_field_byte_for_byte():
    assert id_field(wire.encode_add(_id(1), "1.0", [("A", "1")])) == _field(1)
    assert id_field(wire.encode_remove(_id(2), [])) == _field(2)
    assert id_field(b"garbage\n") is None


@pytest.mark.parametrize("line, report", [
    (b"HELLO\t1", ("HELLO", 1)),
    (b'LOST\t"a#1.0#2"', ("LOST", b'"a#1.0#2"')),
    (b"SETTLED\t42", ("SETTLED", 42)),
    (b"RESYNC", ("RESYNC", None)),
    (b"FATAL\tPANDA_URL is not set", ("FATAL", "PANDA_URL is not set")),
])
def test_reports_parse(line, report):
    assert parse_report(line) == report


@pytest.mark.parametrize("line", [b"", b"LOST", b"LOST\t", b"SETTLED\t-1", b"SETTLED\tx",
                                  b"RESYNC\tnow", b"HELLO", b"NONSENSE\t1", b"\xff\xfe"])
def test_malformed_reports_raise(line):
    with pytest.raises(ValueError):
        parse_report(line)


def test_line_splitter_keeps_partial_lines_and_skips_over_long_ones():
    splitter = LineSplitter(max_line=10)
    assert splitter.feed(b"SETTLED\t1\nSETT") == ([b"SETTLED\t1"], 0)
    assert splitter.feed(b"LED\t2\n") == ([b"SETTLED\t2"], 0)
    assert splitter.feed(b"x" * 20) == ([], 1)
    assert splitter.feed(b"x" * 20) == ([], 0)          # the same long line
    assert splitter.feed(b"xx\nRESYNC\n") == ([b"RESYNC"], 0)


# -- the state ----------------------------------------------------------------------------------


def test_drops_and_losses_are_to_heal_once_each():
    healing = Healing()
    healing.dropped_records([_update(1), _update(1), _update(2)])
    healing.lost(_field(3), now=0.0)
    healing.lost(_field(1), now=0.0)
    assert list(healing.to_heal) == [_field(1), _field(2), _field(3)]


def test_pandad_death_puts_what_it_held_after_settled_to_heal():
    healing = Healing()
    healing.pandad_started(0.0)
    healing.written_records([_update(1), _update(2)])
    healing.written_records([_update(3), _update(1)])     # job 1's last record is #4
    healing.settled_to(3, now=0.5)
    assert healing.pandad_gone(1.0) == 1                  # only job 1 (#4 > 3)
    assert list(healing.to_heal) == [_field(1)]
    assert healing.written == 0 and healing.unsettled == {}


def test_the_unsettled_window_is_pruned_to_jobs_not_events():
    healing = Healing()
    healing.pandad_started(0.0)
    healing.hello()
    for round_ in range(100):
        healing.written_records([_update(n) for n in range(50)])
        healing.settled_to(healing.written, now=float(round_ + 1))
    assert healing.unsettled == {}
    healing.written_records([_update(n) for n in range(50)] * 3)
    assert len(healing.unsettled) == 50


def test_a_pandad_that_never_says_hello_is_not_tracked():
    healing = Healing()
    healing.pandad_started(0.0)
    healing.written_records([_update(1)])
    healing.prune(now=20.0)
    assert not healing.tracking and healing.unsettled == {}
    healing.written_records([_update(2)])
    assert healing.pandad_gone(21.0) == 0


def test_resync_names_every_job_and_every_tombstone():
    healing = Healing()
    healing.keep_tombstone(_field(9), b"add9")
    assert healing.resync([_field(1), _field(2)]) == 3
    assert set(healing.to_heal) == {_field(1), _field(2), _field(9)}


def test_tombstones_only_for_jobs_in_doubt_and_bounded_in_bytes():
    healing = Healing(max_tombstone_bytes=10)
    healing.pandad_started(0.0)
    healing.hello()
    healing.written_records([_update(1)])
    assert healing.wants_tombstone(_field(1), spill_empty=True)       # unsettled
    assert not healing.wants_tombstone(_field(2), spill_empty=True)
    assert healing.wants_tombstone(_field(2), spill_empty=False)      # its records may be there
    healing.keep_tombstone(_field(1), b"123456")
    healing.keep_tombstone(_field(2), b"123456")
    assert list(healing.tombstones) == [_field(2)] and healing.tombstone_bytes == 6
    healing.settled_to(1, now=5.0)
    assert healing.tombstones == {}                                   # settled without loss


def test_pacing_rate_backpressure_spill_and_pandad_down():
    healing = Healing(rate=100.0, max_in_flight_bytes=1000)
    healing.to_heal.update(dict.fromkeys(_field(n) for n in range(1000)))
    assert healing.budget(0.0, True) == (0, 0)                        # no pandad
    healing.pandad_started(0.0)
    healing.hello()
    assert healing.budget(0.5, True) == (50, 1000)
    healing.spent(50, 50)
    assert healing.budget(10.0, True) == (100, 1000)                  # one second saved at most
    assert healing.budget(11.0, False) == (0, 0)                      # the spill is not empty
    healing.written_records([b"x" * 600, b"y" * 600])
    assert healing.budget(12.0, True) == (0, 0)                       # pandad holds enough
    healing.settled_to(2, now=12.0)
    assert healing.budget(12.5, True)[1] == 1000


def _heal_round(healing: Healing, now: float) -> int:
    """Re-send what ``budget`` allows at ``now`` (one record a job); returns the jobs."""
    jobs, _ = healing.budget(now, True)
    sent = []
    for _ in range(jobs):
        field = healing.pop()
        if field is None:
            break
        sent.append(b"\vADD\t" + field + b"\tx\n")
    healing.written_records(sent)
    healing.spent(len(sent), len(sent))
    return len(sent)


def test_a_lost_heal_round_doubles_the_hold_and_a_settled_one_ends_it():
    healing = Healing(rate=1000.0, max_in_flight_bytes=1 << 20)
    healing.pandad_started(0.0)
    healing.hello()
    healing.lost(_field(1), now=0.0)                 # the monitor is away
    assert healing.budget(0.9, True) == (0, 0)
    assert "held 0 s more" in healing.waiting_for(0.9, True)
    assert _heal_round(healing, 1.0) == 1
    healing.lost(_field(1), now=2.0)                 # the heal was lost as well
    assert healing.failures == 1
    assert healing.budget(3.9, True) == (0, 0) and _heal_round(healing, 4.0) == 1
    healing.lost(_field(1), now=5.0)
    assert healing.failures == 2
    assert healing.budget(8.9, True) == (0, 0) and _heal_round(healing, 9.0) == 1
    healing.settled_to(healing.written, now=10.0)    # the monitor is back: it went through
    assert healing.failures == 0 and not healing.to_heal
    healing.lost(_field(2), now=11.0)                # a new loss waits one second again
    assert _heal_round(healing, 12.0) == 1
    assert healing.waiting_for(12.0, True) == ""


def test_the_hold_is_capped():
    assert [hold(n) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert hold(6) == hold(10_000) == HOLD_MAX


def test_healing_does_not_hammer_a_monitor_that_refuses_everything():
    """Ten minutes of a monitor that loses every record: heal rounds back off to one a
    minute, instead of one per flush (600 here)."""
    healing = Healing(rate=1000.0, max_in_flight_bytes=1 << 20)
    healing.pandad_started(0.0)
    healing.hello()
    healing.lost(_field(1), now=0.0)
    rounds = 0
    for tick in range(1, 6000):
        now = tick / 10.0
        rounds += bool(_heal_round(healing, now))
        if tick % 10 == 0:                            # pandad's flush: lost, then settled
            for job in list(healing.unsettled):
                healing.lost(job, now)
            healing.settled_to(healing.written, now)
    assert 5 <= rounds <= 16


def test_memory_in_a_burst_is_the_to_heal_ids():
    """A 20,000-job burst of which 3,000 were dropped: once pandad settled what it read, what
    healing keeps is the to-heal set's ids (a dict entry and a bytes object per id)."""
    records = [wire.encode_add(_id(n), f"{n}.0", [("A", "1")] * 20) for n in range(20000)]
    tracemalloc.start()
    healing = Healing()
    healing.pandad_started(0.0)
    healing.hello()
    base = tracemalloc.get_traced_memory()[0]
    dropped = records[5000:8000]
    for start in range(0, 20000, 500):
        batch = [r for r in records[start:start + 500] if not 5000 <= records.index(r) < 8000] \
            if 5000 <= start < 8000 else records[start:start + 500]
        healing.written_records(batch)
        healing.settled_to(healing.written, now=start / 500.0)
    healing.dropped_records(dropped)
    healing.prune(now=1000.0)
    kept = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(healing.to_heal) == 3000 and healing.unsettled == {}
    per_id = len(_field(0)) + 33 + 100          # bytes object + a dict slot, generously
    assert kept <= 3000 * per_id, kept


# -- the property: a model feed -----------------------------------------------------------------

Attrs = Dict[str, Optional[str]]


class ModelFeed:
    """The queue, the plug-in's records, a pandad that holds, loses or dies, and a monitor
    with the development monitor's semantics (POST creates or, by the upsert, updates; PUT
    of an unknown job creates it; DELETE marks a known job removed)."""

    NAMES = ("A", "B", "C")

    def __init__(self) -> None:
        self.healing = Healing(rate=50.0, max_in_flight_bytes=1 << 30)
        self.queue: Dict[int, Dict[str, str]] = {}
        self.truth: Dict[str, Tuple[Dict[str, str], bool]] = {}
        self.deleted: set = set()
        self.monitor: Dict[str, Tuple[Attrs, bool]] = {}
        self.in_flight: List[Tuple[bytes, str]] = []     # (record, fate) pandad holds
        self.fates: List[str] = []
        self.next_job = 1
        self.now = 0.0
        self.healing.pandad_started(self.now)
        self.healing.hello()

    # -- the plug-in side ----------------------------------------------------------------------

    def write(self, record: bytes) -> None:
        fate = self.fates.pop(0) if self.fates else "ok"
        if fate == "drop":
            self.healing.dropped_records([record])
            return
        self.healing.written_records([record])
        self.in_flight.append((record, fate))

    def _add(self, n: int) -> bytes:
        pairs = [(k, v) for k, v in self.queue[n].items()]
        pairs += [(k, "null") for k in sorted(self.deleted) if k not in self.queue[n]]
        return wire.encode_add(_id(n), f"{n}.0", pairs)

    def submit(self) -> None:
        n = self.next_job
        self.next_job += 1
        self.queue[n] = {"A": "0"}
        self.truth[_id(n)] = (dict(self.queue[n]), False)
        self.write(wire.encode_add(_id(n), f"{n}.0", list(self.queue[n].items())))

    def change(self, pick: int, name: str, value: Optional[str]) -> None:
        if not self.queue:
            return
        n = sorted(self.queue)[pick % len(self.queue)]
        if value is None:
            self.queue[n].pop(name, None)
            self.deleted.add(name)
        else:
            self.queue[n][name] = value
        self.truth[_id(n)] = (dict(self.queue[n]), False)
        self.write(wire.encode_update(_id(n), [(name, "null" if value is None else value)]))

    def leave(self, pick: int) -> None:
        if not self.queue:
            return
        n = sorted(self.queue)[pick % len(self.queue)]
        if self.healing.wants_tombstone(_field(n), spill_empty=True):
            self.healing.keep_tombstone(_field(n), self._add(n))
        self.truth[_id(n)] = (self.queue.pop(n), True)
        self.write(wire.encode_remove(_id(n), []))

    def heal(self, budget: Optional[int] = None) -> None:
        self.now += 1.0
        jobs, _ = self.healing.budget(self.now, spill_empty=True)
        jobs = jobs if budget is None else min(jobs, budget)
        done = records = 0
        while done < jobs:
            field = self.healing.pop()
            if field is None:
                break
            n = int(field.decode().split("#")[1].split(".")[0])
            if n in self.queue:
                self.write(self._add(n))
                records += 1
            else:
                tombstone = self.healing.tombstone(field)
                if tombstone is not None:
                    self.write(tombstone)
                    records += 1
                self.write(wire.encode_remove(_id(n), []))
                records += 1
            done += 1
        self.healing.spent(done, records)

    # -- pandad and the monitor ----------------------------------------------------------------

    def flush(self) -> None:
        """pandad sends what it holds: each record applied, or reported LOST; then SETTLED."""
        for record, fate in self.in_flight:
            if fate == "lost":
                self.healing.lost(id_field(record), self.now)
            else:
                self.apply(wire.decode(record.rstrip(b"\n")))
        self.in_flight = []
        self.now += 0.1
        self.healing.settled_to(self.healing.written, self.now)

    def die(self) -> None:
        self.in_flight = []
        self.now += 0.1
        self.healing.pandad_gone(self.now)
        self.healing.pandad_started(self.now)
        self.healing.hello()

    def apply(self, record: wire.Record) -> None:
        attrs = {name: (None if value == "null" else value) for name, value in record.attrs}
        stored = self.monitor.get(record.job_id)
        if record.verb == "REMOVE":
            if stored is not None:
                self.monitor[record.job_id] = ({**stored[0], **attrs}, True)
            return
        if stored is None:
            self.monitor[record.job_id] = (attrs, False)
        else:
            self.monitor[record.job_id] = ({**stored[0], **attrs}, stored[1])

    def quiet(self) -> None:
        """The faults are over: flush and heal until nothing is left."""
        self.fates = []
        for _ in range(1000):
            self.flush()
            if not self.healing.to_heal:
                self.now += 10.0
                self.healing.prune(self.now)       # the loop prunes once a second
                return
            self.heal()
        raise AssertionError("healing did not finish")

    def differences(self) -> List[str]:
        problems = []
        for job_id, (attrs, removed) in self.truth.items():
            stored = self.monitor.get(job_id)
            if stored is None:
                problems.append(f"{job_id} missing")
                continue
            have = {k: v for k, v in stored[0].items() if v is not None}
            if have != attrs or stored[1] != removed:
                problems.append(f"{job_id}: {stored} != {(attrs, removed)}")
        return problems


OPS = st.one_of(
    st.tuples(st.just("submit")),
    st.tuples(st.just("change"), st.integers(0, 50), st.sampled_from(ModelFeed.NAMES),
              st.one_of(st.none(), st.sampled_from(["1", "2", "3"]))),
    st.tuples(st.just("leave"), st.integers(0, 50)),
    st.tuples(st.just("fates"), st.lists(st.sampled_from(["ok", "drop", "lost"]), max_size=5)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("die")),
    st.tuples(st.just("heal"), st.integers(0, 5)),
    st.tuples(st.just("resync")),
)


@settings(max_examples=int(os.environ.get("HEALING_EXAMPLES", "300")), deadline=None)
@given(st.lists(OPS, max_size=80))
def test_any_faults_end_with_the_monitor_equal_to_the_truth(ops):
    feed = ModelFeed()
    for op in ops:
        if op[0] == "submit":
            feed.submit()
        elif op[0] == "change":
            feed.change(*op[1:])
        elif op[0] == "leave":
            feed.leave(op[1])
        elif op[0] == "fates":
            feed.fates = list(op[1])
        elif op[0] == "flush":
            feed.flush()
        elif op[0] == "die":
            feed.die()
        elif op[0] == "heal":
            feed.heal(op[1])
        else:
            feed.healing.resync(_field(n) for n in feed.queue)
    feed.quiet()
    assert feed.differences() == []
    # Bounded by jobs: nothing is kept for a job that is settled and healed.
    assert feed.healing.unsettled == {} and feed.healing.tombstones == {}
