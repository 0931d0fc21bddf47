"""The schedd simulator writes logs a real schedd could have written, and tells the truth.

The checks here use their own small parser of job_queue.log (written from the reference,
``docs/job-queue-log.md``), not ``schedd_plugin.logparse``, so a bug shared
by the simulator and the follower's parser cannot hide.
"""

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from pandad.classad import old_to_new
from pandad.dev.simulate import ScheddSimulator, main
from tests.support import (FIXTURES, FakeClock, kill_if_running, python_command, python_env,
                           wait_until)

PRIVATE = ("ClaimId", "ClaimIds")

# Key namespaces (reference §2.1); a cluster ad key always carries its leading zero.
HEADER_RE = re.compile(r"0\.0\Z")
USER_RE = re.compile(r"0\.[1-9][0-9]*\Z")
CLUSTER_RE = re.compile(r"0[1-9][0-9]*\.-1\Z")
PVT_RE = re.compile(r"[1-9][0-9]*\.-2\Z")
PROC_RE = re.compile(r"[1-9][0-9]*\.(0|[1-9][0-9]*)\Z")
KEY_RES = (HEADER_RE, USER_RE, CLUSTER_RE, PVT_RE, PROC_RE)
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
TIMESTAMP_COMMENT_RE = re.compile(r"# \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}( NONDURABLE)?\Z")


def well_formed_key(key: str) -> bool:
    return any(r.match(key) for r in KEY_RES)


Line = Tuple[int, List[str]]   # (op, fields)


def check_log(data: bytes, seq: int, birth: Optional[int] = None,
              open_tail: bool = False) -> List[Line]:
    """Every line of one log file is a valid record; returns them parsed.

    107 first (with ``seq`` and ``birth``), op codes 101-107 only, well-formed keys and
    names, 105/106 balanced and never nested, 106 comments as SCHEDD_JOB_QUEUE_TIMESTAMPS
    writes them. With ``open_tail`` the file may end in a torn line and an open transaction.
    """
    lines = data.split(b"\n")
    tail = lines.pop()
    assert open_tail or tail == b"", "unterminated last line %r" % tail[:80]
    parsed: List[Line] = []
    in_txn = False
    for number, raw in enumerate(lines, 1):
        where = "line %d %r" % (number, raw[:100])
        text = raw.decode("utf-8")
        op_text, _, body = text.partition(" ")
        op = int(op_text)
        assert (op == 107) == (number == 1), where
        if op == 107:
            fields = body.split(" ")
            assert len(fields) == 3 and fields[1] == "CreationTimestamp", where
            assert int(fields[0]) == seq, where
            if birth is not None:
                assert int(fields[2]) == birth, where
        elif op == 105:
            assert body == "" and text == "105 " and not in_txn, where
            in_txn = True
            fields = []
        elif op == 106:
            assert in_txn and (body == "" or TIMESTAMP_COMMENT_RE.match(body)), where
            assert text.startswith("106 "), where
            in_txn = False
            fields = []
        elif op == 101:
            fields = body.split(" ")
            assert len(fields) == 3 and well_formed_key(fields[0]), where
            mytype = {"0.0": "Job"}.get(fields[0])
            if CLUSTER_RE.match(fields[0]) or PROC_RE.match(fields[0]):
                mytype = "Job"
            elif USER_RE.match(fields[0]):
                mytype = "Owner"
            elif PVT_RE.match(fields[0]):
                mytype = "ClusterPvt"
            assert fields[1] == mytype, where
            assert fields[2] == ("Machine" if mytype == "Job" else "(empty)"), where
        elif op == 102:
            fields = [body]
            assert well_formed_key(body) and not HEADER_RE.match(body), where
        elif op == 103:
            fields = body.split(" ", 2)
            assert len(fields) == 3 and well_formed_key(fields[0]), where
            assert NAME_RE.match(fields[1]) and fields[2].strip(), where
            assert "\n" not in fields[2] and "\r" not in fields[2], where
        elif op == 104:
            fields = body.split(" ")
            assert len(fields) == 2 and well_formed_key(fields[0]), where
            assert NAME_RE.match(fields[1]), where
        else:
            raise AssertionError("unknown op code in " + where)
        parsed.append((op, fields))
    assert open_tail or not in_txn, "transaction left open"
    return parsed


def seed_attrs(mytype: str) -> Dict[str, str]:
    """101 seeds MyType (and TargetType for Job ads) in the schedd's memory."""
    attrs = {"MyType": '"%s"' % mytype} if mytype != "(empty)" else {}
    if mytype == "Job":
        attrs["TargetType"] = '"Machine"'
    return attrs


def cluster_of(key: str) -> str:
    return "0" + key.split(".")[0] + ".-1"


class Replay:
    """A minimal independent replayer: 101/102/103/104 applied to dicts, in file order."""

    def __init__(self) -> None:
        self.ads: Dict[str, Dict[str, str]] = {}
        self.removed: Dict[str, dict] = {}

    def effective(self, key: str) -> Dict[str, str]:
        merged = dict(self.ads.get(cluster_of(key), {}))
        merged.update(self.ads[key])
        for name in PRIVATE:
            merged.pop(name, None)
        return merged

    def apply(self, lines: List[Line]) -> None:
        for op, fields in lines:
            if op == 101:
                self.ads.setdefault(fields[0], seed_attrs(fields[1]))
            elif op == 102:
                key = fields[0]
                if PROC_RE.match(key) and key in self.ads:
                    attrs = self.effective(key)
                    self.removed[attrs["GlobalJobId"].strip('"')] = {
                        "condorid": key, "removed": True, "attrs": attrs}
                self.ads.pop(key, None)
            elif op == 103 and fields[0] in self.ads:
                self.ads[fields[0]][fields[1]] = fields[2]
            elif op == 104 and fields[0] in self.ads:
                self.ads[fields[0]].pop(fields[1], None)

    def truth(self) -> Dict[str, dict]:
        jobs = dict(self.removed)
        for key in self.ads:
            if PROC_RE.match(key):
                attrs = self.effective(key)
                jobs[attrs["GlobalJobId"].strip('"')] = {
                    "condorid": key, "removed": False, "attrs": attrs}
        return {gjid: dict(job, attrs={n: old_to_new(v) for n, v in job["attrs"].items()})
                for gjid, job in jobs.items()}

    def state(self) -> Dict[str, Dict[str, str]]:
        """Every ad without its private attributes (what a snapshot must hold)."""
        return {key: {n: v for n, v in attrs.items() if n not in PRIVATE}
                for key, attrs in self.ads.items()}

    def private(self) -> Dict[str, Dict[str, str]]:
        return {key: {n: v for n, v in attrs.items() if n in PRIVATE}
                for key, attrs in self.ads.items() if any(n in attrs for n in PRIVATE)}


def snapshot_state(lines: List[Line]) -> Tuple[Dict[str, Dict[str, str]], List[Line]]:
    """Split a freshly rotated file into its snapshot ads and the records logged after it."""
    ads: Dict[str, Dict[str, str]] = {}
    order: Dict[str, List[str]] = {}
    rest: List[Line] = []
    for op, fields in lines[1:]:
        if rest or op not in (101, 103) or (op == 103 and fields[1] in PRIVATE):
            rest.append((op, fields))
        elif op == 101:
            assert fields[0] not in ads, "ad %s written twice in a snapshot" % fields[0]
            ads[fields[0]] = {}
            order[fields[0]] = []
            current = fields[0]
        else:
            assert fields[0] == current, "snapshot 103 for %s outside its ad" % fields[0]
            ads[current][fields[1]] = fields[2]
            order[current].append(fields[1])
    for key, names in order.items():
        assert names == sorted(names, key=lambda n: (len(n), n.lower())), key
    return ads, rest


def make_sim(tmp_path: Path, seed: int = 1, **kwargs) -> Tuple[ScheddSimulator, FakeClock]:
    clock = FakeClock(1767225600.0)
    kwargs.setdefault("jobs", 60)
    return ScheddSimulator(str(tmp_path / "job_queue.log"), seed=seed, clock=clock,
                           **kwargs), clock


def run_with_rotations(tmp_path: Path, seed: int, steps: int, rotate_every: int,
                       **kwargs) -> Tuple[ScheddSimulator, Replay, int]:
    """Drive a simulator in process, checking every generation and snapshot on the way."""
    sim, clock = make_sim(tmp_path, seed, **kwargs)
    path = Path(sim.path)
    replay = Replay()
    skip = 1   # lines of the current generation already replayed (its 107 at first)
    rotations = 0
    for number in range(1, steps + 1):
        clock.now += 1.5
        if not sim.step():
            break
        if number % rotate_every == 0:
            old_seq = sim.seq
            sim.rotate()
            rotations += 1
            old = check_log(path.with_name("job_queue.log.%d" % old_seq).read_bytes(),
                            old_seq, sim.birth)
            replay.apply(old[skip:])
            new = check_log(path.read_bytes(), old_seq + 1, sim.birth)
            ads, rest = snapshot_state(new)
            assert ads == replay.state()
            # Only ClaimIds come after a fresh snapshot: those of running jobs, re-logged bare.
            assert all(op == 103 and fields[1] == "ClaimId" for op, fields in rest)
            assert {f[0]: {f[1]: f[2]} for _, f in rest} == replay.private()
            skip = len(new)
            assert not path.with_name("job_queue.log.%d" % (old_seq - 1)).exists()
            assert not path.with_name("job_queue.log.tmp").exists()
    sim.finish()
    final = check_log(path.read_bytes(), sim.seq, sim.birth)
    replay.apply(final[skip:])
    return sim, replay, rotations


def test_new_log_starts_as_a_real_one(tmp_path: Path) -> None:
    sim, clock = make_sim(tmp_path, owners=("alice",))
    sim.finish()
    assert Path(sim.path).read_bytes().decode() == (
        "107 1 CreationTimestamp 1767225600\n"
        "101 0.0 Job Machine\n"
        "105 \n103 0.0 UidDomain \"example.org\"\n106 \n"
        "105 \n101 0.2 Owner (empty)\n103 0.2 User \"alice@example.org\"\n"
        "103 0.2 Owner \"alice\"\n103 0.2 OsUser \"alice\"\n103 0.2 Enabled 1\n106 \n"
        "103 0.0 NextClusterNum 1\n")
    assert Path(sim.path).stat().st_mode & 0o777 == 0o600


def shape(lines: List[Line]) -> List[Tuple]:
    """A transaction's records with cluster numbers and values abstracted away."""
    out = []
    for op, fields in lines:
        if not fields:
            out.append((op,))
            continue
        kind = next(r.pattern for r in KEY_RES if r.match(fields[0]))
        proc = fields[0].split(".")[1] if PROC_RE.match(fields[0]) else ""
        out.append((op, kind, proc) + tuple(fields[1:2] if op in (103, 104) else ()))
    return out


def test_submit_transaction_has_the_condor_submit_shape(tmp_path: Path) -> None:
    """Fixture 03 (24.11+/25.0): the same records in the same order, cluster attributes aside."""
    sim, _ = make_sim(tmp_path, seed=3)
    start = len(Path(sim.path).read_bytes())
    assert sim.submit(3) == [(1, 0), (1, 1), (1, 2)]
    sim.finish()
    ours = check_log(b"107 1 CreationTimestamp 1\n" + Path(sim.path).read_bytes()[start:], 1)[1:]
    fixture = check_log(b"107 1 CreationTimestamp 1\n"
                        + (FIXTURES / "03_synth_multiproc_submit.log").read_bytes(), 1)[1:]

    def without_cluster_attrs(lines: List[Line]) -> List[Line]:
        return [(op, f) for op, f in lines
                if not (op == 103 and CLUSTER_RE.match(f[0]) and f[1] != "TotalSubmitProcs")]

    assert shape(without_cluster_attrs(ours)) == shape(without_cluster_attrs(fixture))
    cluster_names = [f[1] for op, f in ours if op == 103 and CLUSTER_RE.match(f[0])]
    fixture_names = [f[1] for op, f in fixture if op == 103 and CLUSTER_RE.match(f[0])]
    # ClusterId first, then the folded ad in ClassAd order, then TotalSubmitProcs.
    assert cluster_names[0] == "ClusterId" and cluster_names[-1] == "TotalSubmitProcs"
    body = cluster_names[1:-1]
    assert body == sorted(body, key=lambda n: (len(n), n.lower()))
    assert set(fixture_names) <= set(cluster_names)
    gjids = [f[2] for op, f in ours if op == 103 and f[1] == "GlobalJobId"]
    assert gjids == ['"ap1.example.org#1.%d#1767225600"' % p for p in range(3)]


def test_log_records_and_truth_match_an_independent_replay(tmp_path: Path) -> None:
    sim, replay, rotations = run_with_rotations(tmp_path, seed=5, steps=2000, rotate_every=60,
                                                jobs=60, timestamps=True)
    assert rotations >= 3 and sim.rotations == rotations
    truth = sim.truth()
    assert truth == replay.truth()
    assert len(truth) == 60 == sim.submitted
    assert {job["removed"] for job in truth.values()} == {True}   # everything ran its course
    statuses = {job["attrs"]["JobStatus"] for job in truth.values()}
    assert statuses == {"3", "4"}
    for job in truth.values():
        assert not set(PRIVATE) & set(job["attrs"])


def test_truth_of_jobs_still_in_the_queue(tmp_path: Path) -> None:
    """Stopped half-way: jobs in every state, values with backslashes, tabs and quotes."""
    sim, replay, _ = run_with_rotations(tmp_path, seed=11, steps=400, rotate_every=170,
                                        jobs=200, procs_per_cluster=4)
    truth = sim.truth()
    assert truth == replay.truth()
    live = [job for job in truth.values() if not job["removed"]]
    assert live and len(live) < len(truth)
    assert {"1", "2", "5"} <= {job["attrs"]["JobStatus"] for job in live}
    data = b"".join(p.read_bytes() for p in tmp_path.glob("job_queue.log*"))
    assert b'\\"\n' in data                 # a string ending in a backslash, as the schedd writes it
    assert b"\t" in data and b'\\"prod\\"' in data
    assert any("\\\\" in value for job in truth.values() for value in job["attrs"].values())
    assert any("\\t" in value for job in truth.values() for value in job["attrs"].values())


def test_same_seed_same_log(tmp_path: Path) -> None:
    def run(directory: Path, seed: int) -> List[bytes]:
        directory.mkdir()
        sim, clock = make_sim(directory, seed)
        for number in range(300):
            clock.now += 1
            sim.step()
            if number == 150:
                sim.rotate()
        sim.finish()
        return [(directory / name).read_bytes() for name in ("job_queue.log", "job_queue.log.1")]

    first = run(tmp_path / "a", 9)
    assert run(tmp_path / "b", 9) == first
    assert run(tmp_path / "c", 10) != first


def test_a_follower_can_see_torn_lines_and_open_transactions(tmp_path: Path) -> None:
    path = tmp_path / "job_queue.log"
    seen = {"torn": 0, "open": 0}
    reader = {"offset": 0, "in_txn": False}

    def look() -> None:
        """What a follower polling right now would read: complete lines, and what is left."""
        with open(path, "rb") as f:
            f.seek(reader["offset"])
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]
        for line in complete.splitlines():
            if line == b"105 ":
                reader["in_txn"] = True
            elif line.startswith(b"106 "):
                reader["in_txn"] = False
        reader["offset"] += len(complete)
        seen["torn"] += complete != data
        seen["open"] += reader["in_txn"]

    sim, clock = make_sim(tmp_path, jobs=30, buffer_bytes=700, on_write=look)
    for _ in range(200):
        clock.now += 1
        sim.step()
    sim.finish()
    check_log(path.read_bytes(), 1)
    assert seen["torn"] > 10 and seen["open"] > 10


def test_non_durable_commits_lag_until_the_flush_delay(tmp_path: Path) -> None:
    sim, clock = make_sim(tmp_path, flush_delay=5.0)
    path = Path(sim.path)
    job = sim.submit(1)[0]
    sim.start_job(job)
    assert path.read_bytes().endswith(b"103 1.0 NumJobStarts 1\n106 \n")  # durable: on disk
    clock.now += 100
    sim.complete(job)
    data = path.read_bytes()
    assert b"103 1.0 ExitCode 0\n" in data          # the shadow's update is durable
    assert b"103 1.0 JobStatus 4\n" not in data      # the reaper's commit is not
    clock.now += 4.9
    sim.tick()
    assert b"103 1.0 JobStatus 4\n" not in path.read_bytes()
    clock.now += 0.2
    sim.tick()
    assert path.read_bytes().endswith(b"104 1.0 ShadowBday\n106 \n")
    sim.leave_queue(job)                             # non-durable again, until a durable commit
    assert b"102 1.0\n" not in path.read_bytes()
    sim.submit(1)
    data = path.read_bytes()
    assert b"102 1.0\n102 01.-1\n102 1.-2\n106 \n" in data
    assert data.index(b"103 1.0 JobFinishedHookDone") < data.index(b"102 1.0\n")


def test_job_start_logs_the_claim_id_bare_and_rotation_logs_it_again(tmp_path: Path) -> None:
    sim, _ = make_sim(tmp_path)
    job = sim.submit(1)[0]
    sim.start_job(job)
    sim.rotate()
    sim.finish()
    old = check_log((tmp_path / "job_queue.log.1").read_bytes(), 1)
    claim = [i for i, (op, f) in enumerate(old) if op == 103 and f[1] == "ClaimId"]
    assert len(claim) == 1
    assert old[claim[0] - 1][0] == 106 and old[claim[0] + 1][0] == 105   # outside transactions
    assert '[CryptoMethods=\\"AES\\";]' in old[claim[0]][1][2]
    new = check_log((tmp_path / "job_queue.log").read_bytes(), 2)
    assert new[-1] == old[claim[0]]


def test_hold_release_qedit_remove_records(tmp_path: Path) -> None:
    sim, _ = make_sim(tmp_path)
    path = Path(sim.path)
    jobs = sim.submit(3)
    sim.hold(jobs[1])
    sim.release(jobs[1])
    sim.qedit_job(jobs[2], "JobPrio", "10")
    sim.qedit_cluster(1, "PandaQueue", '"CERN-PROD"')
    sim.remove(jobs[1:])
    sim.finish()
    text = path.read_text()
    assert ("103 1.1 NumHolds 1\n103 1.1 NumHoldsByReason [ UserRequest = 1 ]\n"
            "103 1.1 HoldReasonCode 1\n") in text
    assert "103 1.1 LastHoldReasonCode 1\n104 1.1 HoldReasonCode\n" in text
    assert "105 \n103 1.2 JobPrio 10\n106 \n" in text
    edit = [line for line in text.splitlines() if "PandaQueue" in line]
    assert sorted(edit) == sorted('103 %s PandaQueue "CERN-PROD"' % key
                                  for key in ("01.-1", "1.0", "1.1", "1.2"))
    assert "103 1.2 LastJobStatus 1\n103 1.2 JobStatus 3\n103 1.2 RemoveReason" in text
    assert sim.status(jobs[1]) == 3 and sim.status(jobs[0]) == 1


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(python_command("pandad.dev.simulate", "--log",
                                         str(tmp_path / "job_queue.log"), *args),
                          env=python_env(), capture_output=True, text=True, timeout=60)


def test_command_line_run_with_a_rotation_and_truth(tmp_path: Path) -> None:
    truth_file = tmp_path / "truth.json"
    done = run_cli(tmp_path, "--seed", "2", "--jobs", "30", "--rate", "20000",
                   "--rotate-every", "0.075", "--truth", str(truth_file))
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"simulate: 30 jobs submitted, \d+ changes written, 1 rotations",
                        done.stderr.strip().splitlines()[-1])
    first = check_log((tmp_path / "job_queue.log.1").read_bytes(), 1)
    birth = int(first[0][1][2])
    second = check_log((tmp_path / "job_queue.log").read_bytes(), 2, birth)
    replay = Replay()
    replay.apply(first)
    replay.ads.clear()          # the snapshot holds the whole state again
    replay.apply(second)
    assert json.loads(truth_file.read_text()) == replay.truth()
    assert not list(tmp_path.glob("truth.json.*"))


def test_command_line_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "job_queue.log"
    process = subprocess.Popen(
        python_command("pandad.dev.simulate", "--log", str(log), "--duration", "0",
                       "--rate", "3000", "--jobs", "100000", "--truth", str(tmp_path / "t.json")),
        env=python_env(), stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: log.exists() and log.stat().st_size > 20000, timeout=20,
                   message="the simulator to write")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        kill_if_running(process)
    assert process.returncode == 0, stderr
    assert re.search(r"simulate: \d+ jobs submitted, \d+ changes written, 0 rotations", stderr)
    replay = Replay()
    replay.apply(check_log(log.read_bytes(), 1))
    assert json.loads((tmp_path / "t.json").read_text()) == replay.truth()


def test_bad_arguments_are_refused() -> None:
    assert main(["--log", "/nonexistent/dir/job_queue.log", "--duration", "1"]) == 1
    with pytest.raises(SystemExit):
        main(["--log", "x", "--jobs", "many"])
    assert main(["--log", "x", "--procs-per-cluster", "0"]) == 2


class DecodedMonitor:
    """What a monitor would hold after the records: job id → attributes, condorid, removed."""

    def __init__(self) -> None:
        from pandad import wire
        self._decode = wire.decode
        self.jobs: Dict[str, dict] = {}
        self.records = 0

    def write(self, record: bytes) -> None:
        assert record.endswith(b"\n") and record.count(b"\n") == 1
        decoded = self._decode(record[:-1])
        self.records += 1
        if decoded.verb == "ADD":
            self.jobs[decoded.job_id] = {"condorid": decoded.condor_id, "removed": False,
                                         "attrs": dict(decoded.attrs)}
            return
        job = self.jobs[decoded.job_id]   # never an UPDATE or REMOVE of an unknown job
        assert not job["removed"], decoded
        if decoded.verb == "REMOVE":
            job["removed"] = True
        for name, value in decoded.attrs:
            if value == "null":
                job["attrs"].pop(name, None)
            else:
                job["attrs"][name] = value


@pytest.mark.parametrize("late_start", [False, True])
def test_follower_and_plugin_reproduce_the_truth(tmp_path: Path, late_start: bool) -> None:
    """The real Follower + PandaPlugin, polled at odd moments (mid-write, across rotations)."""
    from schedd_plugin.callbacks import PandaPlugin
    from schedd_plugin.follower import Follower
    from schedd_plugin.mirror import Mirror

    monitor = DecodedMonitor()
    mirror = Mirror()
    holder: Dict[str, Follower] = {}
    writes = [0]

    def poll_sometimes() -> None:
        writes[0] += 1
        if "follower" in holder and writes[0] % 3 == 0:
            holder["follower"].poll()   # the schedd is in the middle of writing

    sim, clock = make_sim(tmp_path, seed=21, jobs=150, buffer_bytes=1500,
                          on_write=poll_sometimes)
    follower_args = (sim.path, PandaPlugin(mirror, monitor.write, None, sim.schedd_name), mirror)
    if not late_start:
        holder["follower"] = Follower(*follower_args)
    for number in range(1, 500):   # stops with jobs running, completed and still to submit
        clock.now += 0.7
        sim.step()
        if late_start and number == 250:
            holder["follower"] = Follower(*follower_args)
        if number % 97 == 0:
            sim.rotate()
        if number % 5 == 0 and "follower" in holder:
            holder["follower"].poll()
    sim.finish()
    follower = holder["follower"]
    follower.poll()
    follower.poll()
    follower.close()

    truth = sim.truth()
    assert sim.rotations >= 5
    assert {job["removed"] for job in truth.values()} == {True, False}
    if late_start:
        # Jobs that came and went before the follower started were never seen.
        assert set(monitor.jobs) <= set(truth)
        assert {j for j, job in truth.items() if not job["removed"]} <= set(monitor.jobs)
        truth = {j: job for j, job in truth.items() if j in monitor.jobs}
        assert 0 < len(truth) < sim.submitted
    assert monitor.jobs == truth
