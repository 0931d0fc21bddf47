"""schedd_plugin.healer: the back channel's lines, the re-sends, reconciliation and the saved
heal state, with a real Mirror and PandaPlugin (``tests.test_callbacks.Schedd``) and real
files; the pipe is the one seam (a list of written records)."""

import logging
import os
import stat

import pytest

from pandad import wire
from pandad.stats import Statistics
from schedd_plugin.healer import (HealState, Healer, decode_heal_state, encode_heal_state,
                                  load_heal_state)
from schedd_plugin.healing import Healing
from tests.support import FakeClock
from tests.test_callbacks import GJID, Schedd, submit


def _field(key: str) -> bytes:
    return f'"{GJID.format(key)}"'.encode()


@pytest.fixture
def setup(tmp_path):
    stats = Statistics()
    schedd = Schedd(stats=stats)
    submit(schedd, procs=2)
    schedd.out.clear()
    clock = FakeClock(100.0)
    healer = Healer(schedd.plugin, stats, str(tmp_path / "state.heal"), Healing(),
                    clock=clock)
    written = []
    healer.write = written.append
    healer.started()
    healer.reports(b"HELLO\t1\n")
    healer.tick()                               # the pacing clock starts at the first tick
    return schedd, healer, written, stats, clock


def _decoded(records):
    return [wire.decode(r[:-1]) for r in records]


def test_a_lost_job_in_the_queue_is_re_sent_whole_with_nulls_for_deleted_names(setup):
    schedd, healer, written, stats, clock = setup
    schedd.txn("103 7.0 HoldReason \"x\"")
    schedd.txn("104 7.0 HoldReason")
    healer.reports(b'LOST\t' + _field("7.0") + b"\nSETTLED\t0\n")
    clock.now += 1
    assert healer.tick() == 1
    [record] = _decoded(written)
    assert record.verb == "ADD" and record.job_id == GJID.format("7.0")
    attrs = dict(record.attrs)
    assert attrs["Cmd"] == '"/bin/true"' and attrs["JobStatus"] == "1"
    assert attrs["HoldReason"] == "null"
    assert stats.get("jobs_healed") == 1 and stats.get("to_heal") == 0


def test_a_job_that_left_in_doubt_gets_its_tombstone_then_a_remove(setup):
    schedd, healer, written, stats, clock = setup
    healer.written([schedd.plugin.heal_record("7.1")])       # unsettled at pandad
    schedd.txn("102 7.1")
    healer.reports(b'LOST\t' + _field("7.1") + b"\n")
    healer.exited(0)
    healer.started()
    healer.reports(b"HELLO\t1\n")
    clock.now += 1
    healer.tick()
    add, remove = _decoded(written)
    assert (add.verb, add.job_id, remove.verb) == ("ADD", GJID.format("7.1"), "REMOVE")
    assert dict(add.attrs)["Out"] == '"out.1"'


def test_a_job_unknown_to_the_queue_gets_a_plain_remove(setup):
    schedd, healer, written, stats, clock = setup
    healer.reports(b'LOST\t"ap1.example.org#9.0#1"\n')
    clock.now += 1
    healer.tick()
    [record] = _decoded(written)
    assert (record.verb, record.job_id) == ("REMOVE", "ap1.example.org#9.0#1")


def test_pandad_gone_heals_what_it_held_after_settled(setup, caplog):
    schedd, healer, written, stats, clock = setup
    healer.written([b'\vUPDATE\t' + _field("7.0") + b"\tA\t1\n",
                    b'\vUPDATE\t' + _field("7.1") + b"\tA\t1\n"])
    healer.reports(b"SETTLED\t1\n")
    with caplog.at_level(logging.INFO):
        healer.exited(-9)
    assert list(healer.healing.to_heal) == [_field("7.1")]
    assert "lost changes of 1 jobs" in caplog.text


def test_malformed_lines_are_counted_and_logged_once(setup, caplog):
    schedd, healer, written, stats, clock = setup
    with caplog.at_level(logging.WARNING):
        healer.reports(b"BOGUS\nSETTLED\tx\nLOST\n")
    assert stats.get("back_channel_malformed") == 3
    assert caplog.text.count("malformed") == 1


def test_exit_99_says_why_in_one_line(setup, caplog):
    schedd, healer, written, stats, clock = setup
    healer.reports(b"FATAL\tfatal configuration error: PANDA_URL is not set\n")
    with caplog.at_level(logging.ERROR):
        healer.exited(99)
    assert "configuration is unusable: fatal configuration error: PANDA_URL is not set" \
        in caplog.text
    caplog.clear()
    healer.started()
    with caplog.at_level(logging.ERROR):
        healer.exited(99)
    assert "exit 99, see pandad's log" in caplog.text


def test_resync_and_pacing(setup):
    schedd, healer, written, stats, clock = setup
    healer.healing.rate = 1.0
    healer.reports(b"RESYNC\n")
    assert stats.get("resyncs") == 1 and len(healer.healing.to_heal) == 2
    clock.now += 1
    assert healer.tick() == 1                  # one job a second
    clock.now += 0.5
    assert healer.tick() == 0
    clock.now += 0.5
    assert healer.tick() == 1


def test_periodic_resync_spreads_the_queue_over_the_interval(setup):
    schedd, healer, written, stats, clock = setup
    healer.resync_interval = 10.0
    healer.tick()
    clock.now += 5.0
    healer.tick()
    assert len(written) == 1                   # half the interval: half the queue
    clock.now += 5.0
    healer.tick()
    assert len(written) == 2


@pytest.mark.parametrize("resumed, clean, expected", [
    (True, True, {"9.0"}),                     # a clean resume: only what it had to heal
    (True, False, {"7.0", "7.1", "9.0"}),      # unclean: the whole queue
    (False, True, {"9.0"}),                    # replayed: the replay re-sent the queue
])
def test_reconcile(setup, resumed, clean, expected, caplog):
    schedd, healer, written, stats, clock = setup
    state = HealState(clean, [], [_field("7.0"), _field("9.0")], [], [])
    healer.loaded = state
    with caplog.at_level(logging.WARNING):
        healer.reconcile(resumed=resumed, had_position=True)
    assert {f.decode().split("#")[1] for f in healer.healing.to_heal} == expected
    reconciled = not (resumed and clean)
    assert stats.get("reconciliations") == int(reconciled)
    assert ("reconciling" in caplog.text) == reconciled


def test_heal_state_is_saved_0600_and_round_trips(setup, tmp_path):
    schedd, healer, written, stats, clock = setup
    healer.healing.lost(_field("7.1"), 0.0)
    healer.healing.keep_tombstone(b'"x#1.0#1"', b"\vADD\t...\n")
    schedd.plugin.deleted_names["holdreason"] = "HoldReason"
    healer.save(clean=True)
    path = tmp_path / "state.heal"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    state = load_heal_state(str(path))
    assert state == HealState(True, [_field("7.1")], [_field("7.0"), _field("7.1")],
                              ["HoldReason"], [(b'"x#1.0#1"', b"\vADD\t...\n")])
    assert decode_heal_state(encode_heal_state(state)) == state


@pytest.mark.parametrize("data", [b"", b"{}", b"[]", b'{"format": "panda_plugin-heal"}',
                                  b'{"format": "panda_plugin-heal", "version": 1, "clean": 1,'
                                  b' "to_heal": [], "announced": [], "deleted_names": [],'
                                  b' "tombstones": []}', b"\xff"])
def test_a_bad_heal_file_is_ignored(tmp_path, data, caplog):
    path = tmp_path / "state.heal"
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING):
        assert load_heal_state(str(path)) is None
    assert "ignoring heal state" in caplog.text


def test_a_symlinked_heal_file_is_ignored(tmp_path):
    (tmp_path / "elsewhere").write_text("{}")
    os.symlink(tmp_path / "elsewhere", tmp_path / "state.heal")
    assert load_heal_state(str(tmp_path / "state.heal")) is None


def test_healing_that_cannot_proceed_says_why_after_a_minute(setup, caplog):
    schedd, healer, written, stats, clock = setup
    healer.reports(b'LOST\t' + _field("7.0") + b"\n")
    healer.exited(0)                                # pandad is gone and not restarted yet
    with caplog.at_level(logging.WARNING, logger="panda_plugin.healing"):
        for _ in range(59):
            clock.now += 1
            healer.tick()
        assert "healing waits" not in caplog.text
        clock.now += 1
        healer.tick()
        clock.now += 1
        healer.tick()
    [line] = [r.getMessage() for r in caplog.records if "healing waits" in r.getMessage()]
    assert line == "healing waits: 1 jobs to heal, none re-sent for 60 s: pandad is not running"
    assert written == []
