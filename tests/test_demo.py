"""``pandad demo``: its pure parts (matching rule, statistics, log events), the recording
monitor and the log watcher, and the demo itself as a real process."""

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from pandad.convert import job_object
from pandad.dev.demo import (Chain, RecordingMonitor, LogWatcher, compare, config_text,
                             chain_knobs, log_event, parse_plugin_counters, percentile)
from pandad.dev.simulate import ScheddSimulator
from tests.support import (MAP_2014, kill_if_running, python_command, python_env,
                           wait_until)
from tests.support.http_client import request

GJID = "ap1.example.org#1.0#1700000000"


def truth_entry(removed=False, **attrs):
    return {"condorid": "1.0", "removed": removed, "attrs": attrs}


def monitor_object(entry, job_id=GJID, **extra):
    obj = job_object(job_id, entry["condorid"], entry["attrs"])
    obj["removed"] = entry["removed"]
    obj.update(extra)
    return obj


# -- the matching rule ------------------------------------------------------------------------

def test_a_job_converted_as_job_object_matches():
    entry = truth_entry(Owner='"alice"', QDate="1700000000", JobStatus="2",
                        RemoteWallClockTime="12.0", Requirements="(TARGET.Memory > 10)")
    result = compare({GJID: entry}, {GJID: monitor_object(entry)})
    assert result.ok and result.matching == 1 and result.problems == []


def test_the_names_are_the_classad_names_unless_the_attribute_map_renames_them():
    entry = truth_entry(Owner='"alice"', QDate="1700000000", Cmd='"/bin/x"')
    stored = {"id": GJID, "condorid": "1.0", "removed": False, "Owner": "alice",
              "QDate": 1700000000, "Cmd": "/bin/x"}
    assert compare({GJID: entry}, {GJID: stored}).ok
    assert not compare({GJID: entry}, {GJID: stored}, MAP_2014).ok
    mapped = job_object(GJID, "1.0", entry["attrs"], MAP_2014)
    assert set(mapped) == {"id", "condorid", "owner", "submitted", "cmd"}
    assert compare({GJID: entry}, {GJID: dict(mapped, removed=False)}, MAP_2014).ok


def test_deleted_attributes_must_be_null_and_identity_keys_are_allowed():
    entry = truth_entry(JobStatus="1")
    assert compare({GJID: entry}, {GJID: monitor_object(entry, HoldReason=None)}).ok
    result = compare({GJID: entry}, {GJID: monitor_object(entry, HoldReason="held")})
    assert not result.ok
    assert "HoldReason = 'held', expected null or absent" in result.problems[0]


def test_each_kind_of_difference_is_reported():
    entry = truth_entry(JobStatus="2", Owner='"alice"')
    wrong = monitor_object(entry, JobStatus=1, removed=True, condorid="9.9")
    del wrong["Owner"]
    other = "ap1.example.org#2.0#1700000000"
    result = compare({GJID: entry, "ap1.example.org#3.0#1": truth_entry()},
                     {GJID: wrong, other: {"id": other}})
    assert result.matching == 0 and result.truth_jobs == 2 and result.monitor_jobs == 2
    text = "\n".join(result.problems)
    assert "JobStatus = 1, expected 2" in text
    assert "removed = True, expected False" in text
    assert "condorid = '9.9', expected '1.0'" in text
    assert "Owner missing (expected 'alice')" in text
    assert "ap1.example.org#3.0#1: missing from the monitor" in text
    assert f"{other}: in the monitor but not in the truth" in text


def test_booleans_are_not_numbers():
    entry = truth_entry(ExitBySignal="false", NumJobStarts="0")
    assert not compare({GJID: entry}, {GJID: monitor_object(entry, ExitBySignal=0)}).ok
    assert not compare({GJID: entry}, {GJID: monitor_object(entry, NumJobStarts=False)}).ok


def test_first_problems_says_how_many_more():
    truth = {f"s#{i}.0#1": truth_entry() for i in range(8)}
    result = compare(truth, {})
    assert result.first_problems(3)[-1] == "... and 5 more"
    assert len(result.first_problems(3)) == 4


# -- the plug-in's counters, percentiles ------------------------------------------------------

def test_plugin_counters_come_from_the_last_counters_line():
    text = ("01/02/24 10:00:00 following /x from the beginning\n"
            "01/02/24 10:01:00 counters: records_written 5, bytes_written 100\n"
            "01/02/24 10:02:00 counters: bytes_written 300, records_dropped_pipe_full 1, "
            "records_written 12, spill_bytes 0.5\n")
    assert parse_plugin_counters(text) == {"bytes_written": 300, "records_dropped_pipe_full": 1,
                                           "records_written": 12, "spill_bytes": 0.5}
    assert parse_plugin_counters("01/02/24 10:00:00 counters: none yet\n") == {}


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0 and percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0 and percentile([], 0.5) is None
    assert percentile([2.0, 1.0], 0.5) == 1.0


# -- the log watcher --------------------------------------------------------------------------

def test_log_events():
    assert log_event(b"101 1.0 Job Machine") == ("new", "1.0")
    assert log_event(b"102 12.3") == ("destroy", "12.3")
    assert log_event(b'103 1.0 GlobalJobId "s#1.0#5"') == ("job", "s#1.0#5")
    for line in (b"101 01.-1 Job Machine", b"101 0.0 Job Machine", b"101 1.-2 ClusterPvt",
                 b"102 01.-1", b'103 0.2 User "a@b"', b"103 1.0 JobStatus 2", b"105 ",
                 b"106 ", b"107 2 CreationTimestamp 5", b"", b"103 1.0", b"\xff\xfe"):
        assert log_event(line) is None, line


def test_watcher_follows_a_simulated_log_through_rotations(tmp_path):
    log = tmp_path / "job_queue.log"
    ticks = iter(range(1, 1_000_000))
    watcher = LogWatcher(str(log), clock=lambda: float(next(ticks)))
    watcher.poll()                                   # no file yet: nothing, no error
    assert watcher.queue_size() == 0
    sim = ScheddSimulator(str(log), seed=4, jobs=40, flush_delay=0.0)
    for step in range(400):
        sim.step()
        if step % 97 == 0:
            sim.rotate()
        if step % 13 == 0:
            sim.flush()
            watcher.poll()
            assert watcher.queue_size() == len(sim.queue)
    sim.finish()
    watcher.poll()
    assert sim.rotations >= 4
    assert watcher.queue_size() == len(sim.queue)
    seen = watcher.seen()
    assert set(seen) == set(sim.truth())
    assert len(set(seen.values())) > 1               # first seen at different polls
    watcher.stop()


# -- the recording monitor --------------------------------------------------------------------

def test_recording_monitor_keeps_applied_changes_only():
    monitor = RecordingMonitor()
    url = monitor.start()
    try:
        assert monitor.page_url == url[:-len("api/jobs/")]
        assert request(url, "POST", [{"id": "a", "condorid": "1.0"}])[0] == 201
        assert request(url, "POST", [{"id": "a"}])[0] == 400          # exists: not recorded
        assert request(url, "PUT", [{"id": "b", "x": 1}])[0] == 400   # unknown: not recorded
        assert request(url, "PUT", [{"id": "a", "x": 1}])[0] == 200
        assert request(url, "DELETE", [{"id": "a"}])[0] == 204
        store = monitor.store
        assert [(c.action, c.job) for c in store.changes] == [
            ("create", {"id": "a", "condorid": "1.0"}), ("update", {"id": "a", "x": 1}),
            ("remove", {"id": "a"})]
        assert store.change_count() == 3 and len(store.changes_since(1)) == 2
        assert list(store.created_at) == ["a"]
        assert monitor.jobs()["a"] == {"id": "a", "condorid": "1.0", "x": 1, "removed": True}
    finally:
        monitor.stop()


# -- configuration and processes --------------------------------------------------------------

def test_chain_configuration(tmp_path):
    knobs = chain_knobs(str(tmp_path), "http://127.0.0.1:1/api/jobs/", python="/opt/py 3/python")
    assert os.path.basename(knobs["SCHEDD.PLUGINS"]) == "panda_plugin"
    assert knobs["PANDAD"] == "'/opt/py 3/python' -m pandad"
    assert all(os.path.isabs(knobs[name]) for name in (
        "JOB_QUEUE_LOG", "PANDA_STATISTICS_LOG", "PANDA_PLUGIN_STATE_FILE", "PANDAD_LOG"))
    assert config_text({"A": "1", "B.C": "x y"}) == "A = 1\nB.C = x y\n"
    chain = Chain(str(tmp_path), "http://127.0.0.1:1/api/jobs/", {"PANDA_QUEUE_SIZE": "5"},
                  env={"CONDOR_CONFIG": "/etc/elsewhere", "_CONDOR_LOG": "/x", "HOME": "/h"})
    text = Path(chain.config).read_text()
    assert "PANDA_QUEUE_SIZE = 5\n" in text and "PANDA_URL = http://127.0.0.1:1/api/jobs/\n" in text
    assert chain.env["CONDOR_CONFIG"] == chain.config and "_CONDOR_LOG" not in chain.env
    assert chain.env["HOME"] == "/h"
    chain.write_config(PANDA_QUEUE_SIZE="6")
    assert "PANDA_QUEUE_SIZE = 6\n" in Path(chain.config).read_text()
    assert (tmp_path / "spool").is_dir() and not chain.plugin_caught_up()


def test_kill_all_ends_every_process_carrying_the_chain_config(tmp_path):
    chain = Chain(str(tmp_path), "http://127.0.0.1:1/api/jobs/", env=python_env())
    # A grandchild in its own session, as pandad is: killing the group does not reach it.
    orphan_maker = chain._start(["sh", "-c", "setsid sleep 300 & sleep 300"], "sleepers")

    def orphaned() -> bool:
        # Three processes are seen before the background child has called setsid(); until
        # then killing the group still reaches it.
        def session(pid: int) -> int:
            try:
                return os.getsid(pid)
            except OSError:
                return orphan_maker.pid
        return any(session(pid) != orphan_maker.pid for pid in chain.processes())

    wait_until(orphaned, 10, message="a sleeping process in its own session")
    assert orphan_maker.pid in chain.processes()
    killed = chain.kill_all()
    assert orphan_maker.pid in killed and len(killed) >= 2   # the group leader, the orphan
    assert chain.processes() == []


# -- the demo as a real process ---------------------------------------------------------------

def _processes_with(marker: str):
    entry = f"PANDAD_DEMO_TEST={marker}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if entry in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.fixture
def demo_env(tmp_path):
    """Environment for a demo process: its own TMPDIR, and a marker its children inherit."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    marker = uuid.uuid4().hex
    yield python_env({"TMPDIR": str(tmpdir), "PANDAD_DEMO_TEST": marker}), tmpdir, marker
    for pid in _processes_with(marker):          # never leave a process, even on failure
        os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_demo_runs_matches_and_leaves_nothing_behind(demo_env):
    env, tmpdir, marker = demo_env
    demo = subprocess.run(python_command("pandad", "demo", "--seconds", "4", "--jobs", "30",
                                         "--rate", "200"),
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=120, start_new_session=True)
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr
    assert "schedd queue" in out and "pandad read" in out          # status lines
    assert "RESULT: OK" in out
    assert "match exactly" in out and "records read" in out and "p99" in out
    assert "http://127.0.0.1:" in out
    assert _processes_with(marker) == []
    assert list(tmpdir.iterdir()) == []


def test_demo_interrupted_cleans_up(demo_env):
    env, tmpdir, marker = demo_env
    demo = subprocess.Popen(python_command("pandad", "demo", "--seconds", "60"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        # Interrupt once the whole chain runs: the first status line.
        assert demo.stdout is not None
        for line in demo.stdout:
            if "schedd queue" in line:
                break
        # demo, simulator, plug-in, pandad
        wait_until(lambda: len(_processes_with(marker)) >= 4, 20, message="the chain to start")
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 130
    finally:
        kill_if_running(demo)
    assert _processes_with(marker) == []
    assert list(tmpdir.iterdir()) == []


def test_children_import_the_packages_from_package_root():
    """The simulator and the plug-in are started as ``python -m``: PYTHONPATH must hold the
    directory of both packages, wherever the demo module itself lives."""
    from pandad.dev.demo import package_root
    root = package_root()
    assert os.path.isfile(os.path.join(root, "pandad", "__init__.py"))
    assert os.path.isfile(os.path.join(root, "schedd_plugin", "__init__.py"))
