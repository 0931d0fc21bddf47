"""Rotation under a live follower: a writer thread appends transactions and rotates the log
(snapshot to job_queue.log.tmp with 107 seq+1, renamed over the log) while the follower
polls.  No job may be missed or duplicated, including one created and removed between two
polls, and including rotations where the new file is larger than the old offset.

The writer below is the schedd (the only thing not run for real): it keeps its own model
of the queue and writes log lines as the schedd does (docs/job-queue-log.md §3.1).
"""

import os
import random
import threading
from pathlib import Path
from typing import Dict, List, Optional, Set

from pandad import wire
from schedd_plugin.callbacks import PandaPlugin
from schedd_plugin.follower import Follower
from schedd_plugin.mirror import Mirror
from tests.support import wait_until

BIRTH = 1767000000


class Writer:
    """A schedd writing job_queue.log: transactions, bare ClaimIds, rotations."""

    def __init__(self, path: Path, seed: int) -> None:
        self.path = path
        self.rng = random.Random(seed)
        self.seq = 1
        self.ads: Dict[str, Dict[str, str]] = {"0.0": {"MyType": '"Job"',
                                                        "TargetType": '"Machine"'}}
        self.clusters: Dict[int, Set[int]] = {}
        self.next_cluster = 1
        self.created: List[str] = []
        self.left: List[str] = []
        self.rotations = 0
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        self._write(b"107 1 CreationTimestamp %d\n101 0.0 Job Machine\n" % BIRTH)

    def _write(self, data: bytes) -> None:
        # Like the schedd's stdio buffer, a record can reach the file in two pieces.
        if len(data) > 20 and self.rng.random() < 0.3:
            cut = self.rng.randrange(1, len(data))
            os.write(self.fd, data[:cut])
            os.write(self.fd, data[cut:])
        else:
            os.write(self.fd, data)

    def _apply(self, op: tuple) -> bytes:
        kind, key = op[0], op[1]
        if kind == "new":
            self.ads[key] = {"MyType": '"Job"', "TargetType": '"Machine"'}
            return f"101 {key} Job Machine\n".encode()
        if kind == "set":
            self.ads[key][op[2]] = op[3]
            return f"103 {key} {op[2]} {op[3]}\n".encode()
        del self.ads[key]
        return f"102 {key}\n".encode()

    def commit(self, ops: List[tuple]) -> None:
        self._write(b"105 \n" + b"".join(self._apply(op) for op in ops) + b"106 \n")

    def submit(self) -> None:
        cluster = self.next_cluster
        self.next_cluster += 1
        procs = self.rng.randint(1, 3)
        ops: List[tuple] = [("new", f"0{cluster}.-1"),
                            ("set", f"0{cluster}.-1", "Cmd", '"/bin/job"'),
                            ("set", f"0{cluster}.-1", "QDate", str(1767225600 + cluster))]
        for proc in range(procs):
            key = f"{cluster}.{proc}"
            ops += [("new", key), ("set", key, "GlobalJobId", f'"ap1#{key}#1"'),
                    ("set", key, "ProcId", str(proc)), ("set", key, "JobStatus", "1")]
            self.created.append(key)
        self.clusters[cluster] = set(range(procs))
        self.commit(ops)

    def jobs(self) -> List[str]:
        return [f"{c}.{p}" for c, procs in sorted(self.clusters.items()) for p in sorted(procs)]

    def change(self) -> None:
        jobs = self.jobs()
        if not jobs:
            return
        key = self.rng.choice(jobs)
        if self.rng.random() < 0.2:
            cluster = key.split(".")[0]
            self.commit([("set", f"0{cluster}.-1", "PandaQueue", f'"Q{self.rng.randint(1, 9)}"')])
            return
        status = str(self.rng.choice([1, 2, 5]))
        os.write(self.fd, f'103 {key} ClaimId "secret-{key}"\n'.encode())   # bare, private
        self.ads[key]["ClaimId"] = f'"secret-{key}"'
        self.commit([("set", key, "LastJobStatus", self.ads[key]["JobStatus"]),
                     ("set", key, "JobStatus", status),
                     ("set", key, "EnteredCurrentStatus", str(self.rng.randint(1, 10 ** 9)))])

    def leave(self, key: Optional[str] = None) -> None:
        jobs = self.jobs()
        if not jobs:
            return
        key = key or self.rng.choice(jobs)
        cluster, proc = (int(x) for x in key.split("."))
        ops: List[tuple] = [("set", key, "JobStatus", "4"), ("destroy", key)]
        self.clusters[cluster].discard(proc)
        if not self.clusters[cluster]:
            del self.clusters[cluster]
            ops += [("destroy", f"0{cluster}.-1")]
        self.commit(ops)
        self.left.append(key)

    def rotate(self, extra: int = 0) -> None:
        """Keep the old file as job_queue.log.<seq> (one kept), snapshot with seq+1 to
        job_queue.log.tmp, rename it over the log, re-log the ClaimIds."""
        os.link(self.path, f"{self.path}.{self.seq}")
        if os.path.exists(f"{self.path}.{self.seq - 1}"):
            os.unlink(f"{self.path}.{self.seq - 1}")
        self.seq += 1
        lines = [b"107 %d CreationTimestamp %d\n" % (self.seq, BIRTH)]
        keys = list(self.ads)
        self.rng.shuffle(keys)            # hash-table order: procs before clusters, too
        claims = []
        for key in keys:
            lines.append(f"101 {key} Job Machine\n".encode())
            for name, value in self.ads[key].items():
                if name == "ClaimId":
                    claims.append(f"103 {key} ClaimId {value}\n".encode())
                else:
                    lines.append(f"103 {key} {name} {value}\n".encode())
        tmp = self.path.with_name("job_queue.log.tmp")
        tmp.write_bytes(b"".join(lines))
        os.close(self.fd)
        os.rename(tmp, self.path)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        os.write(self.fd, b"".join(claims))       # CleanJobQueue: bare private attributes
        self.rotations += 1
        for _ in range(extra):            # the new file outgrows the old offset
            self.submit()

    def effective(self, key: str) -> Dict[str, str]:
        cluster = key.split(".")[0]
        ad = dict(self.ads.get(f"0{cluster}.-1", {}))
        ad.update(self.ads[key])
        ad.pop("ClaimId", None)
        return ad

    def close(self) -> None:
        os.close(self.fd)


class Monitor:
    """Applies records the way a PanDA monitor would, and refuses impossible ones."""

    def __init__(self) -> None:
        self.jobs: Dict[str, Dict[str, str]] = {}
        self.added: List[str] = []
        self.removed: List[str] = []

    def take(self, out: List[bytes]) -> None:
        while out:
            record = wire.decode(out.pop(0).rstrip(b"\n"))
            attrs = dict(record.attrs)
            assert "ClaimId" not in attrs
            if record.verb == "ADD":
                assert record.job_id not in self.jobs, f"duplicate ADD {record.job_id}"
                self.jobs[record.job_id] = attrs
                self.added.append(record.job_id)
            elif record.verb == "UPDATE":
                assert record.job_id in self.jobs, f"UPDATE of unknown {record.job_id}"
                for name, value in attrs.items():
                    if value == "null":
                        self.jobs[record.job_id].pop(name, None)
                    else:
                        self.jobs[record.job_id][name] = value
            else:
                assert record.job_id in self.jobs, f"REMOVE of unknown {record.job_id}"
                del self.jobs[record.job_id]
                self.removed.append(record.job_id)


def follow(path: Path):
    mirror = Mirror()
    out: List[bytes] = []
    plugin = PandaPlugin(mirror, out.append, None, "ap1")
    return Follower(str(path), plugin, mirror), out


def check(writer: Writer, monitor: Monitor) -> None:
    ids = {key: f"ap1#{key}#1" for key in writer.created}
    assert sorted(monitor.added) == sorted(ids.values())          # none missed, none twice
    assert sorted(monitor.removed) == sorted(ids[key] for key in writer.left)
    assert monitor.jobs == {ids[key]: writer.effective(key) for key in writer.jobs()}


def test_writer_thread_rotating_under_a_polling_follower(tmp_path):
    path = tmp_path / "job_queue.log"
    writer = Writer(path, seed=11)
    follower, out = follow(path)
    monitor = Monitor()
    done = threading.Event()
    errors: List[BaseException] = []

    def write() -> None:
        try:
            for step in range(600):
                r = writer.rng.random()
                if r < 0.25:
                    writer.submit()
                elif r < 0.35:
                    writer.submit()
                    writer.leave(writer.created[-1])       # comes and goes at once
                elif r < 0.5:
                    writer.leave()
                else:
                    writer.change()
                if step % 60 == 59:
                    # Rotations are hours apart in a real schedd; here the writer may get at
                    # most two ahead of the follower: the schedd keeps one old file
                    # (job_queue.log.<seq>), which is how the follower catches up.
                    wait_until(lambda: follower.position.seq >= writer.seq - 1, timeout=10,
                               message="the follower to see the previous rotation")
                    writer.rotate(extra=writer.rng.choice([0, 0, 5]))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
        finally:
            done.set()

    follower.poll()          # started before the writer: everything after is live
    thread = threading.Thread(target=write)
    thread.start()
    polls = 0
    while not done.is_set():
        follower.poll()
        monitor.take(out)
        polls += 1
    thread.join()
    assert not errors
    writer.close()
    size = os.path.getsize(path)
    wait_until(lambda: (follower.poll(), follower.position.offset == size)[1], timeout=10,
               message="the follower to reach the end of the log")
    monitor.take(out)
    assert writer.rotations == 10
    assert polls > 1
    check(writer, monitor)


def test_job_created_and_removed_between_two_polls_across_a_larger_rotation(tmp_path):
    path = tmp_path / "job_queue.log"
    writer = Writer(path, seed=3)
    follower, out = follow(path)
    monitor = Monitor()
    for _ in range(3):
        writer.submit()
    follower.poll()
    monitor.take(out)
    turn = threading.Event()
    written = threading.Event()

    def write() -> None:
        for _ in range(5):
            turn.wait()
            turn.clear()
            writer.submit()                       # created ...
            writer.leave(writer.created[-1])      # ... and gone before the next poll
            writer.change()
            writer.rotate(extra=3)                # the new file is larger than the offset
            written.set()

    thread = threading.Thread(target=write)
    thread.start()
    for _ in range(5):
        old_offset = follower.position.offset
        turn.set()
        assert written.wait(10)
        written.clear()
        assert os.path.getsize(path) > old_offset
        assert follower.poll()
        monitor.take(out)
        assert follower.position.offset == os.path.getsize(path)
    thread.join()
    writer.close()
    check(writer, monitor)
