"""schedd_plugin.follower on real files: transactions, torn and NUL tails, corrupt lines,
rotation, restart from a saved position (docs/job-queue-log.md §3.3, §4.6, §8)."""

import os
from pathlib import Path
from typing import List, Optional, Tuple

from schedd_plugin.callbacks import ClassAdLogPlugin
from schedd_plugin.follower import Follower
from schedd_plugin.mirror import Mirror
from schedd_plugin.state import Position
from tests.support.feed import Feed as SharedFeed

HEAD = b"107 3 CreationTimestamp 1767000000\n"


def submit(cluster: int, procs: int = 1) -> bytes:
    lines = [b"105 ", b"101 0%d.-1 Job Machine" % cluster, b'103 0%d.-1 Cmd "/bin/true"' % cluster]
    for proc in range(procs):
        lines += [b"101 %d.%d Job Machine" % (cluster, proc),
                  b'103 %d.%d GlobalJobId "s#%d.%d#1"' % (cluster, proc, cluster, proc),
                  b"103 %d.%d JobStatus 1" % (cluster, proc)]
    lines.append(b"106 ")
    return b"\n".join(lines) + b"\n"


def state(cluster: int) -> bytes:
    """Job ``cluster``.0 as a rotation's snapshot writes it: no transaction."""
    return submit(cluster)[len(b"105 \n"):-len(b"106 \n")]


def txn(*lines: bytes) -> bytes:
    return b"105 \n" + b"".join(line + b"\n" for line in lines) + b"106 \n"


def added(cluster: int, proc: int = 0, **attrs: str) -> tuple:
    ad = {"MyType": '"Job"', "TargetType": '"Machine"', "Cmd": '"/bin/true"',
          "GlobalJobId": f'"s#{cluster}.{proc}#1"', "JobStatus": "1"}
    ad.update(attrs)
    return ("ADD", f"s#{cluster}.{proc}#1", f"{cluster}.{proc}", ad)


def updated(cluster: int, proc: int = 0, **attrs: str) -> tuple:
    return ("UPDATE", f"s#{cluster}.{proc}#1", None, attrs)


def removed(cluster: int, proc: int = 0) -> tuple:
    return ("REMOVE", f"s#{cluster}.{proc}#1", None, {})


class Feed(SharedFeed):
    """The shared harness with this file's defaults: a log that starts with HEAD, schedd "s"."""

    def __init__(self, tmp_path: Path, initial: Optional[bytes] = HEAD,
                 position: Optional[Position] = None) -> None:
        super().__init__(tmp_path, initial, position, schedd_name="s")


class Recorder(ClassAdLogPlugin):
    """Every callback, in order; destroy records whether the ad was still in the mirror."""

    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror
        self.calls: List[Tuple] = []

    def initialize(self): self.calls.append(("initialize",))
    def begin_transaction(self): self.calls.append(("begin",))
    def end_transaction(self): self.calls.append(("end",))
    def new_classad(self, key, mytype, targettype): self.calls.append(("new", key, mytype))
    def set_attribute(self, key, name, value): self.calls.append(("set", key, name, value))
    def delete_attribute(self, key, name): self.calls.append(("delete", key, name))

    def destroy_classad(self, key):
        self.calls.append(("destroy", key, key in self.mirror))


def test_callback_sequence_live_and_at_startup(tmp_path):
    path = tmp_path / "job_queue.log"
    path.write_bytes(HEAD + b"101 0.0 Job Machine\n" + txn(b"101 5.0 Job Machine",
                                                          b"103 5.0 A 1"))
    mirror = Mirror()
    rec = Recorder(mirror)
    follower = Follower(str(path), rec, mirror)
    assert follower.poll()
    # Start-up: the existing state (MyType/TargetType are seeded, not called back), one
    # begin/end pair, then initialize().
    assert rec.calls == [("begin",), ("new", "0.0", "Job"), ("new", "5.0", "Job"),
                         ("set", "5.0", "A", "1"), ("end",), ("initialize",)]
    rec.calls.clear()
    with open(path, "ab") as f:
        f.write(b"103 5.0 B 2\n" + txn(b"103 5.0 A 3", b"104 5.0 Absent", b"103 9.9 X 1",
                                       b"104 9.9 X", b"102 9.9", b"101 5.0 Job Machine",
                                       b"102 5.0"))
    assert follower.poll()
    assert rec.calls == [("set", "5.0", "B", "2"),
                         ("begin",), ("set", "5.0", "A", "3"), ("delete", "5.0", "Absent"),
                         ("new", "5.0", "Job"), ("destroy", "5.0", True), ("end",)]
    assert "5.0" not in mirror
    assert not follower.poll()


def test_transactions_are_replayed_only_at_their_end_across_polls(tmp_path):
    feed = Feed(tmp_path)
    assert feed.records() == []
    start = feed.follower.position
    assert start.offset == len(HEAD)
    data = submit(7)
    feed.append(data[:-20])
    assert feed.records() == []
    assert feed.follower.position == start
    feed.append(data[-20:])
    assert feed.records() == [added(7)]
    assert feed.follower.position.offset == len(HEAD) + len(data)


def test_torn_bare_line_waits_for_its_newline(tmp_path):
    feed = Feed(tmp_path, HEAD + submit(7))
    assert feed.records() == [added(7)]
    offset = feed.follower.position.offset
    feed.append(b"103 7.0 JobSt")
    assert feed.records() == []
    assert feed.follower.position.offset == offset
    feed.append(b"atus 2\n")
    assert feed.records() == [updated(7, JobStatus="2")]
    assert feed.count("log_corrupt_lines") == 0


def test_nul_tail_waits_then_reads_the_data_written_over_it(tmp_path):
    feed = Feed(tmp_path, HEAD + submit(7))
    assert feed.records() == [added(7)]
    size = os.path.getsize(feed.path)
    feed.append(b"\0" * 64)          # the file grew, the data is not there yet
    assert feed.records() == []
    data = txn(b"103 7.0 JobStatus 2")
    with open(feed.path, "r+b") as f:     # the data lands where the NULs were
        f.seek(size)
        f.write(data)
        f.truncate(size + len(data))
    assert feed.records() == [updated(7, JobStatus="2")]
    assert feed.count("log_corrupt_lines") == 0
    assert feed.count("log_resyncs") == 0


def test_nul_garbage_followed_by_records_resyncs_once(tmp_path):
    feed = Feed(tmp_path, HEAD + submit(7))
    assert feed.records() == [added(7)]
    feed.append(b"\0" * 300 + b"\n")   # a complete line of NULs: nothing valid after it yet
    assert feed.records() == []
    assert feed.count("log_corrupt_lines") == 0
    feed.append(txn(b"103 7.0 JobStatus 2") + submit(8))
    assert feed.records() == [updated(7, JobStatus="2"), added(8)]
    assert feed.count("log_corrupt_lines") == 1
    assert feed.count("log_resyncs") == 1
    feed.append(txn(b"103 8.0 JobStatus 2"))
    assert feed.records() == [updated(8, JobStatus="2")]
    assert feed.records() == []
    assert feed.count("log_resyncs") == 1
    assert feed.follower.position.offset == os.path.getsize(feed.path)


def test_corrupt_middle_line_is_counted_and_resynced_without_losing_or_repeating(tmp_path):
    feed = Feed(tmp_path, HEAD + submit(7) + submit(8))
    assert feed.records() == [added(7), added(8)]
    feed.append(txn(b"103 7.0 JobStatus 2") + b"999 garbage line\n"
                + txn(b"103 8.0 JobStatus 5", b"103 8.0 HoldReason \"h\"") + submit(9))
    assert feed.records() == [updated(7, JobStatus="2"),
                              updated(8, JobStatus="5", HoldReason='"h"'), added(9)]
    assert feed.count("log_corrupt_lines") == 1
    assert feed.count("log_resyncs") == 1
    assert feed.records() == []
    assert feed.count("log_resyncs") == 1


def test_corrupt_line_inside_an_open_transaction_at_the_end(tmp_path):
    feed = Feed(tmp_path, HEAD + submit(7))
    assert feed.records() == [added(7)]
    feed.append(b"105 \n103 7.0 JobStatus 2\n103 7.0 broken\n")
    assert feed.records() == []           # at EOF: wait
    feed.append(b"103 7.0 HoldReason \"h\"\n")
    assert feed.records() == []           # resynced; the transaction is still open
    assert feed.count("log_corrupt_lines") == 1
    feed.append(b"106 \n")
    assert feed.records() == [updated(7, JobStatus="2", HoldReason='"h"')]
    for _ in range(3):
        assert feed.records() == []
    assert feed.count("log_resyncs") == 1
    assert feed.count("log_corrupt_lines") == 1


def test_restart_from_a_saved_position_sends_only_what_is_new(tmp_path):
    feed = Feed(tmp_path, HEAD + submit(7, procs=2))
    assert feed.records() == [added(7, 0), added(7, 1)]
    saved = feed.follower.position
    feed.append(txn(b"103 7.1 JobStatus 2"))
    feed.follower.close()

    mirror = Mirror()
    rec = Recorder(mirror)
    Follower(str(feed.path), rec, mirror, saved).poll()
    assert rec.calls[0] == ("initialize",)
    assert rec.calls[1:] == [("begin",), ("set", "7.1", "JobStatus", "2"), ("end",)]

    again = Feed(tmp_path, None, position=saved)
    assert again.records() == [updated(7, 1, JobStatus="2")]
    # The silently loaded state is there: a cluster edit reaches both jobs.
    again.append(txn(b'103 07.-1 PandaQueue "Q"'))
    assert again.records() == [updated(7, 0, PandaQueue='"Q"'), updated(7, 1, PandaQueue='"Q"')]


def test_restart_with_a_position_that_does_not_match_replays_everything(tmp_path):
    feed = Feed(tmp_path, HEAD + submit(7))
    assert feed.records() == [added(7)]
    good = feed.follower.position
    feed.append(txn(b"103 7.0 JobStatus 2"))
    everything = [added(7, JobStatus="2")]
    for position in [good._replace(ino=good.ino + 1), good._replace(seq=good.seq + 1),
                     good._replace(birth=1), good._replace(offset=10 ** 9),
                     good._replace(offset=good.offset - 3)]:       # not a line boundary
        again = Feed(tmp_path, None, position=position)
        assert again.records() == everything, position
        assert again.follower.position.offset == os.path.getsize(feed.path)
    # A saved offset inside an open transaction is not a boundary either.
    feed.append(b"105 \n103 7.0 X 1\n")
    inside = good._replace(offset=os.path.getsize(feed.path) - 4)
    assert Feed(tmp_path, None, position=inside).records() == everything


def test_restart_after_a_rotation_it_did_not_see_reads_the_kept_file_from_the_position(tmp_path):
    """Killed after saving its position in seq 3; the schedd then finished and removed a job
    and rotated (keeping the old file as .3, same inode).  The restart must resume in the
    kept file, so the job's last update and its removal are sent, not lost in a replay of
    the new file (which no longer has the job)."""
    feed = Feed(tmp_path, HEAD + submit(7) + submit(8))
    assert feed.records() == [added(7), added(8)]
    saved = feed.follower.position
    feed.follower.close()
    feed.append(txn(b"103 7.0 JobStatus 4", b"102 7.0", b"102 07.-1") + txn(b"103 8.0 JobStatus 2"))
    os.link(feed.path, f"{feed.path}.3")
    feed.rotate(b"107 4 CreationTimestamp 1767000000\n"
                + state(8).replace(b"JobStatus 1", b"JobStatus 2") + state(9))

    again = Feed(tmp_path, None, position=saved)
    assert again.records() == [updated(7, JobStatus="4"), removed(7), updated(8, JobStatus="2")]
    assert again.records() == [added(9)]      # the next poll: the rotation to seq 4, diffed
    assert again.follower.position.seq == 4
    assert again.records() == []


def test_position_is_the_one_given_until_the_file_is_read(tmp_path):
    saved = Position(1, 2, 3, 4, 5)
    feed = Feed(tmp_path, None, position=saved)
    assert feed.follower.position == saved
    assert not feed.follower.poll()          # no file yet
    feed.path.write_bytes(HEAD + submit(7))
    assert feed.records() == [added(7)]
    st = os.stat(feed.path)
    assert feed.follower.position == Position(st.st_dev, st.st_ino, 3, 1767000000,
                                              st.st_size)


def test_rotation_drains_the_old_file_then_replays_only_differences(tmp_path):
    feed = Feed(tmp_path, HEAD + submit(7) + submit(8))
    assert feed.records() == [added(7), added(8)]
    # Between two polls: a job comes and goes, another changes, then the schedd rotates;
    # the new file (snapshot + appends) is larger than the old offset.
    feed.append(submit(9) + txn(b"103 9.0 JobStatus 4", b"102 9.0", b"102 09.-1")
                + txn(b"103 8.0 JobStatus 2") + b"105 \n103 7.0 Lost 1\n")
    snapshot = (b"107 4 CreationTimestamp 1767000000\n"
                b"101 08.-1 Job Machine\n103 08.-1 Cmd \"/bin/true\"\n"
                b"101 8.0 Job Machine\n103 8.0 JobStatus 2\n103 8.0 GlobalJobId \"s#8.0#1\"\n"
                b"103 8.0 MyType \"Job\"\n103 8.0 TargetType \"Machine\"\n"
                b"101 07.-1 Job Machine\n103 07.-1 Cmd   \"/bin/true\"\n"
                b"101 7.0 Job Machine\n103 7.0 JobStatus 1\n103 7.0 GlobalJobId \"s#7.0#1\"\n"
                b"103 7.0 New \"in memory only\"\n"
                + submit(10) + b"101 0.0 Job Machine\n" + b"103 0.0 NextClusterNum 11\n" * 50)
    feed.rotate(snapshot)
    assert os.path.getsize(feed.path) > feed.follower.position.offset
    assert feed.records() == [
        added(9), ("UPDATE", "s#9.0#1", None, {"JobStatus": "4"}), removed(9),
        updated(8, JobStatus="2"),
        # the diff: the unterminated "Lost" was dropped; spacing differences are silent
        updated(7, New='"in memory only"'),
        added(10),
    ]
    assert feed.count("log_rotations") == 1
    pos = feed.follower.position
    assert (pos.seq, pos.offset) == (4, len(snapshot))
    assert pos.ino == os.stat(feed.path).st_ino
    feed.append(txn(b"103 10.0 JobStatus 2"))
    assert feed.records() == [updated(10, JobStatus="2")]


def test_rewrite_in_place_with_a_new_sequence_is_a_rotation(tmp_path):
    feed = Feed(tmp_path, HEAD + submit(7) + submit(8))
    assert feed.records() == [added(7), added(8)]
    ino = os.stat(feed.path).st_ino
    with open(feed.path, "r+b") as f:        # same inode, same size or larger
        f.write(b"107 4 CreationTimestamp 1767000000\n" + state(8)
                + b"103 8.0 X 1\n" + b"103 8.0 Pad \"" + b"x" * 200 + b"\"\n")
    assert os.stat(feed.path).st_ino == ino
    assert feed.records() == [removed(7), updated(8, X="1", Pad='"' + "x" * 200 + '"')]
    assert feed.count("log_rotations") == 1
    # A first line that is no longer a 107 is a rotation too, but no snapshot: the schedd
    # never writes one without its 107. Nothing is diffed away (Pad stays); the file is
    # followed as a continuation of the log, so its records are replayed as they come.
    feed.path.write_bytes(state(8) + b"103 8.0 X 2\n" + b"103 0.0 Pad 1\n" * 40)
    records = feed.records()
    assert [verb for verb, *_ in records if verb == "REMOVE"] == []
    assert records[-1] == updated(8, X="2")
    assert all("Pad" not in attrs or attrs["Pad"] != "null" for *_, attrs in records)
    assert feed.count("log_rotations") == 2
    assert feed.count("log_not_snapshot") == 1
    assert feed.count("log_corrupt_lines") == 0


def test_log_truncated_to_zero_removes_nothing_and_follows_what_is_appended(tmp_path):
    # An admin's `> job_queue.log` under a running schedd: the schedd keeps its queue in
    # memory and goes on appending. Diffing the empty file would REMOVE every job.
    feed = Feed(tmp_path, HEAD + submit(7) + submit(8))
    assert feed.records() == [added(7), added(8)]
    os.truncate(feed.path, 0)
    assert feed.records() == []
    assert feed.count("log_not_snapshot") == 1
    with open(feed.path, "ab") as f:
        f.write(txn(b"103 7.0 JobStatus 2") + txn(b"102 8.0"))
    assert feed.records() == [updated(7, JobStatus="2"), removed(8)]
    # The schedd's next rotation brings a real snapshot, diffed as usual.
    rotated = tmp_path / "job_queue.log.tmp"
    rotated.write_bytes(b"107 4 CreationTimestamp 1767000000\n" + state(7))
    os.rename(rotated, feed.path)
    assert feed.records() == [updated(7, JobStatus="1")]
    assert feed.count("log_not_snapshot") == 1


def test_shrunk_file_is_a_rotation(tmp_path):
    feed = Feed(tmp_path, HEAD + submit(7) + submit(8))
    assert feed.records() == [added(7), added(8)]
    with open(feed.path, "r+b") as f:
        f.truncate(len(HEAD) + len(submit(7)))
    assert feed.records() == [removed(8)]
    assert feed.count("log_rotations") == 1


def test_counters(tmp_path):
    data = HEAD + submit(7) + txn(b"103 7.0 A 1")
    feed = Feed(tmp_path, data)
    feed.records()
    assert feed.count("log_lines_read") == data.count(b"\n")
    feed.append(b"103 7.0 B 1\n")
    feed.records()
    assert feed.count("log_lines_read") == data.count(b"\n") + 1
    assert feed.count("log_corrupt_lines") == feed.count("log_resyncs") == 0


def test_two_rotations_between_polls_read_the_kept_intermediate_file(tmp_path):
    feed = Feed(tmp_path, HEAD + submit(7))
    assert feed.records() == [added(7)]
    # seq 3 → 4 → 5 before the next poll; the schedd keeps the seq-4 file as .4.
    feed.append(submit(8))
    os.link(feed.path, f"{feed.path}.3")
    feed.rotate(b"107 4 CreationTimestamp 1767000000\n" + state(7) + state(8))
    feed.append(submit(9) + txn(b"102 9.0", b"102 09.-1"))        # a job comes and goes in 4
    os.link(feed.path, f"{feed.path}.4")
    os.unlink(f"{feed.path}.3")
    feed.rotate(b"107 5 CreationTimestamp 1767000000\n" + state(8))
    assert feed.records() == [added(8), added(9), removed(9), removed(7)]
    assert feed.follower.position.seq == 5
    assert feed.count("log_rotations_missed") == 0

    # Without the intermediate file (MAX_JOB_QUEUE_LOG_ROTATIONS = 0): counted, logged,
    # and the state is still right.
    feed.rotate(b"107 6 CreationTimestamp 1767000000\n" + state(8) + state(10))
    feed.rotate(b"107 7 CreationTimestamp 1767000000\n" + state(10))
    assert feed.records() == [removed(8), added(10)]
    assert feed.count("log_rotations_missed") == 1


# -- the inline parsing of plain-ASCII chunks against parse_line --------------------------------

# Mostly near-valid lines (single spaces, the common op codes), with every kind of oddity.
_CODES = ["103"] * 4 + ["104"] * 2 + ["101", "102", "105", "106", "107", "108", "1O3", "",
                                       "103x"]
_TOKENS = ["1.0", "01.-1", "2.0", "A", "b", "a\tb", "(empty)", "Job", "#c", "", '"v  w"', "\tq",
           "1", "3", " ", "\t"]
_SEPARATORS = [" "] * 6 + ["  ", "\t", " \t"]
# Lines where a shortcut in the inline parsing would differ from parse_line.
_TRICKY = [b"103 1.0 A \t", b"103 1.0 A  ", b"103 1.0 A ", b"103 1.0 A \t1", b"103 1.0 A  1",
           b"103 1.0\tA 1", b"103 1.0 A\tB 1", b"103  1.0 A 1", b"103 1.0  A 1", b"103\t1.0 A 1",
           b"103 1.0 A", b"103 1.0", b"103", b"103 ", b"104 1.0 A B", b"104 1.0\tA",
           b"104 1.0 A ", b"104  1.0 A", b"104 1.0", b"102 1.0 A", b"102 1.0 ", b"102  1.0",
           b"102 1.0\t", b"102", b"102 ", b"105", b"105  ", b"105 x", b"106", b"106  ",
           b"106 #c", b"106 x", b"105\t", b"106\t"]


def _follow(tmp_path: Path, name: str, lines: List[bytes], fast: bool = True):
    """Follow a log to which ``lines`` are appended live; everything observable."""
    import logging

    from pandad.stats import Statistics

    path = tmp_path / name
    path.write_bytes(HEAD + b"101 1.0 Job Machine\n101 01.-1 Job Machine\n")
    mirror = Mirror()
    rec = Recorder(mirror)
    stats = Statistics()
    follower = Follower(str(path), rec, mirror, stats=stats, fast=fast)
    handler = logging.Handler()
    messages: List[str] = []
    handler.emit = lambda record: messages.append(record.getMessage().replace(name, "LOG"))
    logger = logging.getLogger("panda_plugin.follower")
    logger.addHandler(handler)
    try:
        follower.poll()
        with open(path, "ab") as f:
            f.write(b"".join(line + b"\n" for line in lines))
        while follower.poll():
            pass
    finally:
        logger.removeHandler(handler)
    ads = {key: (ad.mytype, ad.targettype, dict(ad.attrs)) for key, ad in mirror.ads.items()}
    position = follower.position
    follower.close()
    return rec.calls, stats.snapshot(), (position.seq, position.offset), ads, messages


def test_inline_parsing_of_ascii_chunks_agrees_with_parse_line(tmp_path):
    """A chunk that is plain ASCII has its common lines parsed by logparse's fast path
    (``Follower(fast=True)``, the default); ``fast=False`` sends every line through
    parse_line, the reference.  The same log must give the same callbacks, counters,
    position, mirror and logs either way."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    token = st.tuples(st.sampled_from(_SEPARATORS), st.sampled_from(_TOKENS))
    line = st.builds(lambda code, words, tail: (code + "".join(s + w for s, w in words)
                                                + tail).encode("ascii"),
                     st.sampled_from(_CODES), st.lists(token, max_size=4),
                     st.sampled_from(["", " ", "\t"]))
    runs = iter(range(10 ** 9))

    def same(lines: List[bytes]) -> None:
        run = next(runs)
        fast = _follow(tmp_path, f"f{run}.log", lines, fast=True)
        reference = _follow(tmp_path, f"s{run}.log", lines, fast=False)
        assert fast == reference, lines

    for tricky in _TRICKY:
        same([tricky, b'103 1.0 Z "xx"'])

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.one_of(line, st.sampled_from(_TRICKY)), max_size=25))
    def check(lines: List[bytes]) -> None:
        same(lines + [b'103 1.0 Z "xx"'])

    check()
