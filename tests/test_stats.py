"""pandad.stats: counters, rendering, and the statistics log file."""

import os
import re
import stat
import threading
import time

import pytest

from pandad.stats import (OUTCOMES, STATISTICS, Counters, Statistics, StatisticsLog, counter,
                          drained, parse_statistics, read_statistics, render, unaccounted)

LINE_RE = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] [^:\n]+: \S.*")


def test_counters_and_gauges():
    stats = Statistics()
    assert stats.get("records_read") == 0
    stats.add("records_read")
    stats.add("records_read", 4)
    stats.add("records_read", 0)
    stats.set("queue_bytes", 123)
    stats.set("oldest_entry_age_s", 1.5)
    assert stats.get("records_read") == 5
    assert stats.snapshot() == {"records_read": 5, "queue_bytes": 123, "oldest_entry_age_s": 1.5}


def test_snapshot_is_a_copy():
    stats = Statistics()
    stats.add("x")
    snap = stats.snapshot()
    stats.add("x")
    assert snap == {"x": 1}


def test_generation_grows_only_on_change():
    stats = Statistics()
    start = stats.generation
    stats.set("queue_bytes", 0)
    stats.set("queue_bytes", 0)
    after_set = stats.generation
    stats.add("x", 0)
    assert stats.generation == after_set == start + 1
    stats.add("x")
    assert stats.generation == start + 2


def test_a_statistics_object_is_the_counters_the_parts_need():
    assert isinstance(Statistics(), Counters)


def test_adds_from_many_threads_are_not_lost():
    stats = Statistics()

    def work() -> None:
        for _ in range(10000):
            stats.add("records_read")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.get("records_read") == 80000


def test_render_has_the_cplusplus_figures_first_then_ours_then_dynamic():
    now = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1))
    snap = {
        "records_read": 200, "records_queued": 150, "records_dropped_queue_full": 50,
        "records_bad": 3, "commands_sent": 10, "commands_accepted": 9,
        "requests_made": 4, "requests_succeeded": 3, "transport_failures": 1,
        "bad_response_codes": 0, "responses_201": 2, "responses_200": 1,
        "records_bad_second_vt": 3, "queue_bytes": 1024, "oldest_entry_age_s": 0.25,
        "last_success_time": now, "spill_bytes": 7,
    }
    text = render(snap, now)
    assert text.endswith("\n")
    lines = text.splitlines()
    for line in lines:
        assert LINE_RE.fullmatch(line), line
        assert line.startswith("[2026-03-04 05:06:07] ")
    values = dict(line.split("] ", 1)[1].split(": ", 1) for line in lines)
    assert values["queue full count"] == "50"
    assert values["enqueue calls"] == "200"
    assert values["queue success %"] == "75.00"
    assert values["bad commands"] == "3"
    assert values["commands sent"] == "10"
    assert values["command success %"] == "90.00"
    assert values["transport failures"] == "1"
    assert values["bad response codes"] == "0"
    assert values["requests made"] == "4"
    assert values["request success %"] == "75.00"
    assert values["queue_bytes"] == "1024"
    assert values["oldest_entry_age_s"] == "0.250"
    assert values["last_success_time"] == "2026-03-04 05:06:07"
    assert values["records_lost_transport"] == "0"
    names = [line.split("] ", 1)[1].split(": ", 1)[0] for line in lines]
    assert names[:len(STATISTICS)] == [name for name, _ in STATISTICS]
    assert names[len(STATISTICS):] == [
        "records_bad_second_vt", "responses_200", "responses_201", "spill_bytes"]


def test_render_with_nothing_yet():
    values = dict(line.split("] ", 1)[1].split(": ", 1) for line in render({}, 0).splitlines())
    assert values["queue success %"] == "n/a"
    assert values["last_success_time"] == "never"
    assert values["records_read"] == "0"


def test_every_statistic_has_a_one_line_meaning():
    names = [name for name, _ in STATISTICS]
    assert len(names) == len(set(names))
    for name, meaning in STATISTICS:
        assert meaning and "\n" not in meaning
    for required in ["records_read", "records_queued", "records_dropped_queue_full",
                     "records_bad", "records_sent", "records_rejected",
                     "records_lost_transport", "records_discarded_shutdown", "commands_sent",
                     "commands_accepted", "requests_made", "requests_succeeded",
                     "transport_failures", "bad_response_codes", "upserts_sent",
                     "upserts_accepted", "retries", "batches", "queue_bytes",
                     "queue_peak_bytes", "oldest_entry_age_s", "last_success_time",
                     "records_pending_retry"]:
        assert required in names


# --- StatisticsLog ---------------------------------------------------------------------------

def test_log_is_created_0600_and_appended(tmp_path):
    path = tmp_path / "stats"
    old_umask = os.umask(0)
    try:
        log = StatisticsLog(str(path))
    finally:
        os.umask(old_umask)
    with log:
        log.write("one\n")
        log.write("two\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "one\ntwo\n"
    with StatisticsLog(str(path)) as again:
        again.write("three\n")
    assert path.read_text() == "one\ntwo\nthree\n"


def test_log_refuses_a_symlink(tmp_path):
    target = tmp_path / "target"
    target.write_text("")
    link = tmp_path / "stats"
    link.symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        StatisticsLog(str(link))
    assert target.read_text() == ""


def test_log_refuses_a_dangling_symlink(tmp_path):
    link = tmp_path / "stats"
    link.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(OSError, match="symbolic link"):
        StatisticsLog(str(link))
    assert not (tmp_path / "would-be-created").exists()


def test_log_refuses_a_fifo_without_hanging(tmp_path):
    fifo = tmp_path / "stats"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="statistics log"):
        StatisticsLog(str(fifo))


def test_log_refuses_a_directory(tmp_path):
    with pytest.raises(OSError, match="statistics log"):
        StatisticsLog(str(tmp_path))


def test_log_refuses_a_hard_link_to_another_file(tmp_path):
    other = tmp_path / "someone-elses"
    other.write_text("precious\n")
    path = tmp_path / "stats"
    os.link(other, path)
    with pytest.raises(OSError, match=f"statistics log {path} has 2 hard links; refusing"):
        StatisticsLog(str(path))
    assert other.read_text() == "precious\n"


def test_log_refuses_a_file_owned_by_someone_else(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to create a file owned by another user")
    path = tmp_path / "stats"
    path.write_text("")
    os.chown(path, 12345, 12345)
    with pytest.raises(OSError, match="owned by uid 12345"):
        StatisticsLog(str(path))


def test_log_reopens_after_rotation(tmp_path):
    path = tmp_path / "stats"
    with StatisticsLog(str(path)) as log:
        log.write("before\n")
        os.rename(path, tmp_path / "stats.1")
        log.write("after\n")
        assert path.read_text() == "after\n"
        assert (tmp_path / "stats.1").read_text() == "before\n"
        path.unlink()
        log.write("again\n")
    assert path.read_text() == "again\n"


def test_log_refuses_a_symlink_swapped_in_after_open(tmp_path):
    path = tmp_path / "stats"
    target = tmp_path / "target"
    target.write_text("")
    with StatisticsLog(str(path)) as log:
        log.write("one\n")
        path.unlink()
        path.symlink_to(target)
        with pytest.raises(OSError, match="symbolic link"):
            log.write("two\n")
    assert target.read_text() == ""


def test_parse_statistics_reads_back_what_render_wrote(tmp_path):
    first = render({"records_read": 3, "records_sent": 2}, now=1767225600)
    second = render({"records_read": 5, "records_sent": 5, "responses_201": 4}, now=1767225660)
    values = parse_statistics(first + second)
    # The latest block wins, figure by figure.
    assert (values["records_read"], values["records_sent"], values["responses_201"]) == (
        "5", "5", "4")
    log = tmp_path / "PandaStatistics"
    assert read_statistics(str(log)) == {}
    log.write_text(first)
    assert read_statistics(str(log))["records_sent"] == "2"


STATS = """[2024-01-01 10:00:00] records_read: 5
[2024-01-01 10:00:00] records_sent: 5
[2024-01-01 10:00:01] queue full count: 0
[2024-01-01 10:00:01] records_read: 10
[2024-01-01 10:00:01] records_sent: 7
[2024-01-01 10:00:01] records_rejected: 1
[2024-01-01 10:00:01] records_bad: 2
[2024-01-01 10:00:01] queue_bytes: 0
[2024-01-01 10:00:01] last_success_time: 2024-01-01 10:00:01
"""


def test_statistics_latest_values_and_accounting():
    stats = parse_statistics(STATS)
    assert stats["records_read"] == "10" and stats["queue full count"] == "0"
    assert stats["last_success_time"] == "2024-01-01 10:00:01"
    assert unaccounted(stats) is None and drained(stats)
    short = dict(stats, records_sent="6")
    assert "records_read 10 != records_sent 6" in unaccounted(short)
    assert not drained(short)
    assert not drained(dict(stats, queue_bytes="12"))
    assert parse_statistics("") == {} and unaccounted({}) is None


def test_accounting_reads_a_live_snapshot_the_same_way():
    stats = Statistics()
    stats.add("records_read", len(OUTCOMES))
    for name in OUTCOMES:
        stats.add(name)
    assert unaccounted(stats.snapshot()) is None and drained(stats.snapshot())
    stats.set("records_pending_retry", 1)
    assert not drained(stats.snapshot())
    stats.add("records_read")
    assert unaccounted(stats.snapshot()).startswith(f"records_read {len(OUTCOMES) + 1} != ")


def test_every_outcome_is_a_documented_statistic():
    documented = {name for name, _meaning in STATISTICS}
    assert set(OUTCOMES) <= documented and len(set(OUTCOMES)) == len(OUTCOMES)


def test_counter_reads_numbers_text_and_nonsense():
    assert counter({"a": 3, "b": "4.0", "c": "never"}, "a") == 3
    assert counter({"b": "4.0"}, "b") == 4
    assert counter({"c": "never"}, "c") == 0 and counter({}, "d") == 0
