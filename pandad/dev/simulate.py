"""A schedd simulator: appends to a job_queue.log exactly as a real schedd does.

Tests, the demo and the benchmarks need a job queue log that changes the way a real one does,
without a real schedd. The simulator keeps its own model of the queue (every ad, unchained, as
the schedd's memory holds it) and writes each change as the schedd would (see
``docs/job-queue-log.md`` and the fixtures next to it):

- a new file: ``107 1 CreationTimestamp``, the ``0.0`` header ad outside any transaction,
  ``UidDomain``, one ``0.N`` user record per owner, a bare ``NextClusterNum``;
- condor_submit transactions in the 24.11+/25.0 order (fixture 03), job starts with the bare
  ``ClaimId`` before the ``add_shadow_rec`` transaction, holds and releases, qedits of a proc
  and of a cluster, completions, removals, and jobs leaving the queue (``102`` with user-record
  totals, ``102 0C.-1`` + ``102 C.-2`` with the last proc);
- durable commits are flushed at once; non-durable ones stay in a stdio-like buffer of a few
  KiB until a durable commit, a full buffer or ``flush_delay`` seconds push them out, so a
  reader can see a torn line and an open transaction, as with a real schedd;
- rotation: the old file is hard-linked to ``job_queue.log.<seq>`` (one kept), a snapshot with
  ``seq + 1`` is written to ``job_queue.log.tmp``, fsync'd and renamed over the log, then the
  private ``ClaimId``s of running jobs are re-logged as bare records.

Everything but the clock comes from ``random.Random(seed)``, so a seed gives the same log.
``truth()`` is every job's effective ad (cluster ⊕ proc) from the model, in new ClassAd syntax.

In-process use (tests, benchmarks)::

    sim = ScheddSimulator(path, seed=7, clock=FakeClock())
    while not sim.done:
        sim.step()
    sim.rotate()
    sim.finish()
    truth = sim.truth()

Command line: ``python3 -m pandad.dev.simulate --log FILE [--seed N] [--jobs N]
[--procs-per-cluster N] [--rate CHANGES_PER_S] [--duration S] [--rotate-every S]
[--truth FILE] [--timestamps]``.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import sys
import time
import zlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from pandad.dev.simulate_log import (JobId, Op, StdioLog, attribute_order, cluster_key,
                                     format_record, fsync_dir, job_key, open_new, parse_job_key,
                                     quote_old, real_old, unquote_simple)

IDLE, RUNNING, REMOVED, COMPLETED, HELD = 1, 2, 3, 4, 5

# Attributes the schedd keeps out of its in-memory ads: written to the log, never in a snapshot.
PRIVATE_ATTRIBUTES = ("ClaimId", "ClaimIds")

DEFAULT_SCHEDD_NAME = "ap1.example.org"
DEFAULT_UID_DOMAIN = "example.org"
OWNERS = ("alice", "bob", "pilot")
MAX_ROTATIONS = 1  # MAX_JOB_QUEUE_LOG_ROTATIONS default


class Ad:
    """One ad as the schedd's memory holds it: its own attributes only (unchained)."""

    __slots__ = ("mytype", "targettype", "attrs")

    def __init__(self, mytype: str, targettype: str) -> None:
        self.mytype = mytype
        self.targettype = targettype
        # 101 seeds MyType (and TargetType for Job ads) in memory without a record; a snapshot
        # shows them as ordinary attributes.
        self.attrs: Dict[str, str] = {}
        if mytype:
            self.attrs["MyType"] = quote_old(mytype)
        if mytype.lower() == "job":
            self.attrs["TargetType"] = quote_old("Machine")


class _Job:
    """What the simulator needs to know about a job beyond its ad."""

    __slots__ = ("cluster", "proc", "status", "owner", "host", "holds", "started")

    def __init__(self, cluster: int, proc: int, owner: int) -> None:
        self.cluster = cluster
        self.proc = proc
        self.status = IDLE
        self.owner = owner
        self.host = ""
        self.holds = 0
        self.started = 0




class ScheddSimulator:
    """A simulated schedd writing ``path`` (its ``JOB_QUEUE_LOG``).

    Creating it starts a brand-new log (any existing file at ``path`` is replaced, as after a
    wiped spool). ``step()`` performs one random action; the named actions can also be called
    directly. ``clock`` gives epoch seconds for every time in the log and for the non-durable
    flush delay, so tests can run without sleeping. ``on_write`` is called after each
    ``os.write`` (the runner paces there, so a follower gets to see partial transactions).
    """

    def __init__(self, path: str, seed: int = 1, procs_per_cluster: int = 3,
                 schedd_name: str = DEFAULT_SCHEDD_NAME, clock: Callable[[], float] = time.time,
                 jobs: int = 100, buffer_bytes: int = 4096, flush_delay: float = 5.0,
                 timestamps: bool = False, fsync: bool = False,
                 on_write: Optional[Callable[[], None]] = None,
                 uid_domain: str = DEFAULT_UID_DOMAIN,
                 owners: Sequence[str] = OWNERS) -> None:
        if procs_per_cluster < 1:
            raise ValueError("procs_per_cluster must be at least 1")
        self.path = path
        self.schedd_name = schedd_name
        self.jobs = jobs
        self.procs_per_cluster = procs_per_cluster
        self.uid_domain = uid_domain
        self._rng = random.Random(seed)
        self._clock = clock
        self._flush_delay = flush_delay
        self._timestamps = timestamps
        self._fsync = fsync
        self._buffer_bytes = buffer_bytes
        self._on_write = on_write

        self.ads: Dict[str, Ad] = {}
        self.private: Dict[str, Dict[str, str]] = {}
        self._jobs: Dict[JobId, _Job] = {}
        self._removed: Dict[str, Tuple[str, Dict[str, str]]] = {}
        self._owners: List[Tuple[str, str]] = []   # (user record key, owner name)
        self.changes = 0
        self.submitted = 0
        self.rotations = 0
        self.seq = 1
        self.birth = int(clock())
        self._next_cluster = 1
        self._pending_since: Optional[float] = None
        self._closed = False

        self._log = StdioLog(open_new(path), buffer_bytes, on_write)
        self._start_log(owners)

    # -- context manager ------------------------------------------------------------------

    def __enter__(self) -> "ScheddSimulator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    # -- low-level writing ----------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock())

    def _apply(self, op: Op) -> None:
        """Play one record on the model, as the schedd's memory does at commit."""
        kind, key = op[0], op[1]
        if kind == "new":
            if key not in self.ads:
                self.ads[key] = Ad(op[2], op[3])
        elif kind == "set":
            if key in self.ads:
                if op[2] in PRIVATE_ATTRIBUTES:
                    self.private.setdefault(key, {})[op[2]] = op[3]
                else:
                    self.ads[key].attrs[op[2]] = op[3]
        elif kind == "del":
            if key in self.ads:
                self.ads[key].attrs.pop(op[2], None)
                self.private.get(key, {}).pop(op[2], None)
        elif kind == "destroy":
            self.ads.pop(key, None)
            self.private.pop(key, None)

    def _emit(self, op: Op) -> None:
        self._apply(op)
        self.changes += 1
        self._log.append(format_record(op))

    def _bare(self, op: Op, durable: bool = True) -> None:
        """A record outside any transaction: flushed (and fsync'd) unless NONDURABLE."""
        self._emit(op)
        if durable:
            self._sync()
        else:
            self._mark_pending()

    def _commit(self, ops: List[Op], durable: bool) -> None:
        """One committed transaction: ``105``, its records, ``106``; empty ones write nothing."""
        if not ops:
            return
        self._log.append(b"105 \n")
        for op in ops:
            if op[0] == "destroy":
                self._note_leaving(op[1])
            self._emit(op)
        if self._timestamps:
            stamp = datetime.datetime.fromtimestamp(self._clock()).strftime("%Y-%m-%dT%H:%M:%S.%f")
            self._log.append(("106 # %s%s\n" % (stamp, "" if durable else " NONDURABLE")).encode())
        else:
            self._log.append(b"106 \n")
        if durable:
            self._sync()
        else:
            self._mark_pending()

    def _mark_pending(self) -> None:
        if self._log.pending and self._pending_since is None:
            self._pending_since = self._clock()

    def _sync(self) -> None:
        self._log.flush()
        if self._fsync:
            sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
            sync(self._log.fd)
        self._pending_since = None

    def tick(self) -> None:
        """Flush non-durable data older than ``flush_delay`` (SCHEDD_JOB_QUEUE_LOG_FLUSH_DELAY)."""
        if self._pending_since is not None and self._clock() - self._pending_since >= self._flush_delay:
            self._log.flush()
            self._pending_since = None

    def flush(self) -> None:
        """Push out everything buffered, as a durable commit would."""
        self._sync()

    def _note_leaving(self, key: str) -> None:
        """Remember a job's last effective ad when it leaves the queue (for ``truth``)."""
        job = parse_job_key(key)
        if job is None or key not in self.ads:
            return
        attrs = self.effective(job)
        gjid = unquote_simple(attrs.get("GlobalJobId", ""))
        if gjid:
            self._removed[gjid] = (key, attrs)

    # -- the model ------------------------------------------------------------------------

    def effective(self, job: JobId) -> Dict[str, str]:
        """A job's effective ad in old syntax: cluster ⊕ proc, private attributes excluded."""
        merged: Dict[str, str] = {}
        cluster = self.ads.get(cluster_key(job[0]))
        if cluster is not None:
            merged.update(cluster.attrs)
        merged.update(self.ads[job_key(job)].attrs)
        for name in PRIVATE_ATTRIBUTES:
            merged.pop(name, None)
        return merged

    @property
    def queue(self) -> List[JobId]:
        """The jobs in the queue, in id order."""
        return sorted(self._jobs)

    def status(self, job: JobId) -> int:
        return self._jobs[job].status

    @property
    def done(self) -> bool:
        """All jobs were submitted and have left the queue."""
        return self.submitted >= self.jobs and not self._jobs

    def truth(self) -> Dict[str, dict]:
        """Every job ever submitted: its effective attributes now (or when it left the queue).

        ``{GlobalJobId: {"condorid": "C.P", "removed": bool, "attrs": {name: new-syntax}}}``.
        """
        from pandad.classad import old_to_new  # another module's; only needed here

        def convert(attrs: Dict[str, str]) -> Dict[str, str]:
            return {name: old_to_new(value) for name, value in attrs.items()}

        result: Dict[str, dict] = {}
        for gjid, (key, attrs) in self._removed.items():
            result[gjid] = {"condorid": key, "removed": True, "attrs": convert(attrs)}
        for job in self.queue:
            attrs = self.effective(job)
            gjid = unquote_simple(attrs["GlobalJobId"])
            result[gjid] = {"condorid": job_key(job), "removed": False, "attrs": convert(attrs)}
        return result

    def write_truth(self, path: str) -> None:
        """``truth()`` as JSON, written atomically (temporary file, fsync, rename)."""
        data = json.dumps(self.truth(), indent=1, sort_keys=True).encode() + b"\n"
        tmp = "%s.tmp.%d" % (path, os.getpid())
        fd = open_new(tmp)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    # -- a new log --------------------------------------------------------------------------

    def _start_log(self, owners: Sequence[str]) -> None:
        """What a schedd writes to a brand-new log at its first start (fixture 01)."""
        self._log.append(("107 %d CreationTimestamp %d\n" % (self.seq, self.birth)).encode())
        self._bare(("new", "0.0", "Job", "Machine"))
        self._commit([("set", "0.0", "UidDomain", quote_old(self.uid_domain))], durable=True)
        for index, owner in enumerate(owners):
            key = "0.%d" % (index + 2)  # 0.1 is the condor user, never logged
            self._owners.append((key, owner))
            self._commit([
                ("new", key, "Owner", ""),
                ("set", key, "User", quote_old("%s@%s" % (owner, self.uid_domain))),
                ("set", key, "Owner", quote_old(owner)),
                ("set", key, "OsUser", quote_old(owner)),
                ("set", key, "Enabled", "1"),
            ], durable=True)
        self._bare(("set", "0.0", "NextClusterNum", str(self._next_cluster)))

    # -- actions ------------------------------------------------------------------------------

    def submit(self, procs: Optional[int] = None) -> List[JobId]:
        """condor_submit of one cluster: one durable transaction (fixture 03 ordering)."""
        rng = self._rng
        if procs is None:
            procs = max(1, min(self.procs_per_cluster, self.jobs - self.submitted))
        cluster = self._next_cluster
        self._next_cluster += 1
        owner_index = rng.randrange(len(self._owners))
        owner = self._owners[owner_index][1]
        now = self._now()
        ckey = cluster_key(cluster)
        windows = rng.random() < 0.3
        base, per_proc = self._submit_description(cluster, owner, procs, now, windows)

        ops: List[Op] = [
            ("set", "0.0", "NextClusterNum", str(self._next_cluster)),
            ("new", ckey, "Job", "Machine"),
            ("new", "%d.-2" % cluster, "ClusterPvt", ""),
        ]
        # condor_submit calls NewProc for proc 0 before it sends the cluster ad.
        ops += self._new_proc_ops((cluster, 0), now)
        ops.append(("set", ckey, "ClusterId", str(cluster)))
        ops += [("set", ckey, name, base[name]) for name in sorted(base, key=attribute_order)]
        for proc in range(procs):
            if proc:
                ops += self._new_proc_ops((cluster, proc), now)
            own = dict(per_proc[proc])
            own["ProcId"] = str(proc)
            own["JobStatus"] = str(IDLE)
            key = job_key((cluster, proc))
            ops += [("set", key, "ProcId", str(proc)), ("set", key, "JobStatus", str(IDLE))]
            ops += [("set", key, name, own[name]) for name in sorted(own, key=attribute_order)]
        ops.append(("set", ckey, "TotalSubmitProcs", str(procs)))

        ids = [(cluster, proc) for proc in range(procs)]
        for job in ids:
            self._jobs[job] = _Job(cluster, job[1], owner_index)
        self.submitted += procs
        self._commit(ops, durable=True)
        return ids

    def _new_proc_ops(self, job: JobId, now: int) -> List[Op]:
        gjid = "%s#%d.%d#%d" % (self.schedd_name, job[0], job[1], now)
        key = job_key(job)
        return [("new", key, "Job", "Machine"), ("set", key, "GlobalJobId", quote_old(gjid))]

    def _submit_description(self, cluster: int, owner: str, procs: int, now: int,
                            windows: bool) -> Tuple[Dict[str, str], List[Dict[str, str]]]:
        """The folded cluster ad (proc 0's ad) and each proc's own deltas."""
        rng = self._rng
        home = "/home/%s" % owner
        memory = rng.choice((1024, 2048, 4000, 8000))
        cpus = rng.choice((1, 1, 8))
        description = rng.choice(("panda pilot", "panda\tpilot", 'pilot "prod" queue',
                                  "analysis pilot"))

        def args(proc: int) -> str:
            if windows:
                return quote_old("-w C:\\pilot\\work\\%d.%d --log D:\\logs\\" % (cluster, proc))
            return quote_old("--job %d.%d -q %s" % (cluster, proc, rng.choice(("short", "long"))))

        if windows:
            environment = "PANDA_HOME=C:\\panda\\home;TMP=C:\\Temp\\"
        else:
            environment = "PANDA_HOME=%s/panda HARVESTER_ID=%d" % (home, rng.randrange(1, 9))
        # The order of the random draws is part of what a seed means: Args before JobPrio.
        first_args = args(0)
        base = self._cluster_ad(cluster, owner, now, {
            "Args": first_args,
            "JobPrio": str(rng.choice((0, 0, 5))),
            "RequestCpus": str(cpus),
            "Environment": quote_old(environment),
            "RequestMemory": str(memory),
            "JobDescription": quote_old(description),
        })
        per_proc: List[Dict[str, str]] = [{}]
        for proc in range(1, procs):
            per_proc.append({
                "Err": quote_old("job.%d.%d.err" % (cluster, proc)),
                "Out": quote_old("job.%d.%d.out" % (cluster, proc)),
                "Args": args(proc),
            })
        return base, per_proc

    def _cluster_ad(self, cluster: int, owner: str, now: int,
                    drawn: Dict[str, str]) -> Dict[str, str]:
        """condor_submit's fixed attributes of a cluster, with the ``drawn`` ones merged in."""
        home = "/home/%s" % owner
        iwd = "%s/work/%d" % (home, cluster)
        base: Dict[str, str] = {
            "In": quote_old("/dev/null"),
            "Cmd": quote_old("%s/runpilot.sh" % home),
            "Err": quote_old("job.%d.0.err" % cluster),
            "Iwd": quote_old(iwd),
            "Out": quote_old("job.%d.0.out" % cluster),
            "Rank": "0.0",
            "User": quote_old("%s@%s" % (owner, self.uid_domain)),
            "Owner": quote_old(owner),
            "QDate": str(now),
            "MyType": quote_old("Job"),
            "UserLog": quote_old("%s/job.log" % iwd),
            "MaxHosts": "1",
            "MinHosts": "1",
            "ClusterId": str(cluster),
            "DiskUsage": "1",
            "ExitStatus": "0",
            "TargetType": quote_old("Machine"),
            "JobUniverse": "5",
            "NumRestarts": "0",
            "RequestDisk": "DiskUsage",
            "JobBatchName": quote_old("panda.%d" % cluster),
            "NumJobStarts": "0",
            "OnExitRemove": "true",
            "Requirements": '(TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && '
                            '(TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && '
                            '(TARGET.HasFileTransfer)',
            "NumSystemHolds": "0",
            "PeriodicRemove": "false",
            "JobSubmitMethod": "0",
            "LeaveJobInQueue": "false",
            "CumulativeSlotTime": "0",
            "LastSuspensionTime": "0",
            "RemoteWallClockTime": "0.0",
            "ShouldTransferFiles": quote_old("IF_NEEDED"),
            "EnteredCurrentStatus": str(now),
            "WhenToTransferOutput": quote_old("ON_EXIT"),
        }
        base.update(drawn)
        return base

    def _status_ops(self, job: JobId, status: int) -> List[Op]:
        """qmgmt writes LastJobStatus just before any JobStatus change."""
        state = self._jobs[job]
        key = job_key(job)
        ops: List[Op] = [("set", key, "LastJobStatus", str(state.status)),
                         ("set", key, "JobStatus", str(status))]
        state.status = status
        return ops

    def start_job(self, job: JobId) -> None:
        """An idle job starts: mark running, bare ClaimId, add_shadow_rec, shadow update."""
        state = self._require(job, (IDLE,))
        rng = self._rng
        now = self._now()
        key = job_key(job)
        node = rng.randrange(1, 60)
        slot = rng.randrange(1, 16)
        state.host = "slot1_%d@wn%02d.%s" % (slot, node, self.uid_domain)
        state.started = now
        sinful = "<10.0.0.%d:9618?addrs=10.0.0.%d-9618&alias=wn%02d.%s>" % (
            node, node, node, self.uid_domain)
        public = "%s#%d#%d#..." % (sinful, self.birth, slot)
        claim = '%s#%d#%d#[CryptoMethods="AES";]%016x' % (
            sinful, self.birth, slot, rng.getrandbits(64))
        self._commit([("set", key, "OrigMaxHosts", "1")] + self._status_ops(job, RUNNING) + [
            ("set", key, "EnteredCurrentStatus", str(now)),
            ("set", key, "LastSuspensionTime", "0"),
            ("set", key, "CurrentHosts", "1"),
        ], durable=False)
        # SetPrivateAttributeString detaches the open transaction: the secret goes out bare.
        self._bare(("set", key, "ClaimId", quote_old(claim)))
        self._commit([
            ("set", key, "PublicClaimId", quote_old(public)),
            ("set", key, "StartdIpAddr", quote_old(sinful)),
            ("set", key, "LastJobLeaseRenewal", str(now)),
            ("set", key, "RemoteHost", quote_old(state.host)),
            ("set", key, "RemoteSlotID", str(slot)),
            ("set", key, "NumJobMatches", "1"),
            ("set", key, "LastMatchTime", str(now)),
            ("set", key, "MachineAttrCpus0", "1"),
            ("set", key, "MachineAttrSlotWeight0", "1"),
            ("set", key, "ShadowBday", str(now)),
            ("set", key, "JobStartDate", str(now)),
            ("set", key, "JobCurrentStartDate", str(now)),
            ("set", key, "NumShadowStarts", "1"),
            ("set", key, "JobRunCount", "1"),
        ], durable=True)
        self._commit([
            ("set", key, "StarterIpAddr", quote_old(sinful)),
            ("set", key, "JobCurrentStartTransferInputDate", str(now)),
            ("set", key, "JobCurrentStartExecutingDate", str(now + 1)),
            ("set", key, "NumJobStarts", "1"),
        ], durable=True)

    def hold(self, job: JobId) -> None:
        """condor_hold of an idle job (fixture 05)."""
        state = self._require(job, (IDLE,))
        key = job_key(job)
        state.holds += 1
        reason = "via condor_hold (by user %s@%s)" % (self._owners[state.owner][1], self.uid_domain)
        self._commit([
            ("set", key, "HoldReason", quote_old(reason)),
            ("set", key, "NumHolds", str(state.holds)),
            ("set", key, "NumHoldsByReason", "[ UserRequest = %d ]" % state.holds),
            ("set", key, "HoldReasonCode", "1"),
            ("set", key, "HoldReasonSubCode", "0"),
        ] + self._status_ops(job, HELD) + [
            ("set", key, "EnteredCurrentStatus", str(self._now())),
            ("set", key, "LastSuspensionTime", "0"),
        ], durable=True)

    def release(self, job: JobId) -> None:
        """condor_release: Hold* move to LastHold* (set + 104), JobStatusOnRelease deleted."""
        state = self._require(job, (HELD,))
        key = job_key(job)
        ad = self.ads[key].attrs
        reason = "via condor_release (by user %s@%s)" % (
            self._owners[state.owner][1], self.uid_domain)
        self._commit(self._status_ops(job, IDLE) + [
            ("set", key, "ReleaseReason", quote_old(reason)),
            ("set", key, "EnteredCurrentStatus", str(self._now())),
            ("set", key, "LastHoldReason", ad.get("HoldReason", "UNDEFINED")),
            ("del", key, "HoldReason"),
            ("set", key, "LastHoldReasonCode", ad.get("HoldReasonCode", "UNDEFINED")),
            ("del", key, "HoldReasonCode"),
            ("set", key, "LastHoldReasonSubCode", ad.get("HoldReasonSubCode", "UNDEFINED")),
            ("del", key, "HoldReasonSubCode"),
            ("del", key, "JobStatusOnRelease"),
        ], durable=True)

    def qedit_job(self, job: JobId, name: str, value: str) -> None:
        """condor_qedit of one job: one set in its own durable transaction."""
        self._require(job)
        self._commit([("set", job_key(job), name, value)], durable=True)

    def qedit_cluster(self, cluster: int, name: str, value: str) -> None:
        """condor_qedit of a cluster: the cluster ad and every proc, in hash-table order."""
        keys = [cluster_key(cluster)] + [job_key(j) for j in self.queue if j[0] == cluster]
        if keys[0] not in self.ads:
            raise KeyError("no cluster %d in the queue" % cluster)
        keys.sort(key=lambda k: zlib.crc32(("%d:%s" % (self.changes, k)).encode()))
        self._commit([("set", key, name, value) for key in keys], durable=True)

    def complete(self, job: JobId, exit_code: int = 0) -> None:
        """A running job exits: shadow's final update, reaper, shadow cleanup (fixture 07)."""
        state = self._require(job, (RUNNING,))
        rng = self._rng
        now = self._now()
        key = job_key(job)
        wall = rng.randrange(60, 7200)
        user = rng.randrange(1, wall)
        system = rng.randrange(0, max(1, wall // 50))
        self._commit([
            ("set", key, "ExitCode", str(exit_code)),
            ("set", key, "ExitBySignal", "false"),
            ("set", key, "RemoteUserCpu", real_old(user)),
            ("set", key, "RemoteSysCpu", real_old(system)),
            ("set", key, "CumulativeRemoteUserCpu", real_old(user)),
            ("set", key, "CumulativeRemoteSysCpu", real_old(system)),
            ("set", key, "RemoteWallClockTime", real_old(wall)),
            ("set", key, "CumulativeSlotTime", str(wall)),
            ("set", key, "CompletionDate", str(now)),
            ("set", key, "LastRemoteHost", quote_old(state.host)),
        ], durable=True)
        self._commit(self._status_ops(job, COMPLETED) + [
            ("set", key, "EnteredCurrentStatus", str(now)),
        ], durable=False)
        self._shadow_exit(job)

    def _shadow_exit(self, job: JobId) -> None:
        """delete_shadow_rec and mark_job_stopped: mostly 104s of absent attributes (normal)."""
        key = job_key(job)
        public = self.ads[key].attrs.get("PublicClaimId", "UNDEFINED")
        self._commit([("set", key, "LastPublicClaimId", public)] + [
            ("del", key, name) for name in (
                "ClaimId", "PublicClaimId", "ClaimIds", "PublicClaimIds", "StartdIpAddr",
                "RemoteHost", "RemotePool", "RemoteSlotID", "DelegatedProxyExpiration",
                "TransferringInput", "TransferringOutput", "TransferQueued", "ShadowBday")
        ], durable=False)
        self._commit([("set", key, "CurrentHosts", "0"), ("del", key, "ShadowBday")],
                     durable=False)

    def remove(self, jobs: Sequence[JobId]) -> None:
        """condor_rm of some jobs: one durable transaction; running ones then lose their shadow."""
        ops: List[Op] = []
        running = []
        for job in jobs:
            state = self._require(job, (IDLE, RUNNING, HELD))
            if state.status == RUNNING:
                running.append(job)
            owner = self._owners[state.owner][1]
            key = job_key(job)
            ops += self._status_ops(job, REMOVED) + [
                ("set", key, "RemoveReason",
                 quote_old("via condor_rm (by user %s@%s)" % (owner, self.uid_domain))),
                ("set", key, "EnteredCurrentStatus", str(self._now())),
                ("del", key, "JobStatusOnRelease"),
            ]
        self._commit(ops, durable=True)
        for job in running:
            self._shadow_exit(job)

    def leave_queue(self, job: JobId) -> None:
        """DestroyProc of a completed or removed job: user totals, 102, cluster 102s if last."""
        state = self._require(job, (COMPLETED, REMOVED))
        key = job_key(job)
        user_key = self._owners[state.owner][0]
        user = self.ads[user_key].attrs
        effective = self.effective(job)
        if state.status == COMPLETED:
            prefix, cpu = "Completed", (float(effective.get("RemoteUserCpu", "0"))
                                        + float(effective.get("RemoteSysCpu", "0")))
            slot = int(effective.get("CumulativeSlotTime", "0"))
        else:
            prefix, cpu, slot = "Removed", 0.0, 0
        total = int(user.get("Total%sJobs" % prefix, "0")) + 1
        cpu_total = float(user.get("%sJobsCpuTime" % prefix, "0")) + cpu
        slot_total = int(user.get("%sJobsSlotTime" % prefix, "0")) + slot
        self._bare(("set", key, "JobFinishedHookDone", str(self._now())), durable=False)
        ops: List[Op] = [
            ("set", user_key, "Total%sJobs" % prefix, str(total)),
            ("set", user_key, "%sJobsCpuTime" % prefix, real_old(cpu_total)),
            ("set", user_key, "%sJobsSlotTime" % prefix, str(slot_total)),
            ("destroy", key),
        ]
        del self._jobs[job]
        if not any(other[0] == job[0] for other in self._jobs):
            ops += [("destroy", cluster_key(job[0])), ("destroy", "%d.-2" % job[0])]
        self._commit(ops, durable=False)

    def _require(self, job: JobId, statuses: Sequence[int] = ()) -> _Job:
        state = self._jobs.get(job)
        if state is None:
            raise KeyError("job %s is not in the queue" % job_key(job))
        if statuses and state.status not in statuses:
            raise ValueError("job %s has JobStatus %d" % (job_key(job), state.status))
        return state

    # -- random activity -------------------------------------------------------------------

    def step(self) -> str:
        """One random action (or none when all is done); returns its name."""
        self.tick()
        rng = self._rng
        by_status: Dict[int, List[JobId]] = {}
        for job in self.queue:
            by_status.setdefault(self._jobs[job].status, []).append(job)
        idle = by_status.get(IDLE, [])
        running = by_status.get(RUNNING, [])
        held = by_status.get(HELD, [])
        finished = by_status.get(COMPLETED, []) + by_status.get(REMOVED, [])
        choices: List[Tuple[str, float]] = []
        if self.submitted < self.jobs:
            # keep the queue from running away while there is submitting left to do
            choices.append(("submit", 4.0 if len(self._jobs) < 4 * self.procs_per_cluster else 1.0))
        if idle:
            choices += [("start", 4.0), ("hold", 0.4), ("qedit_job", 0.8)]
        if running:
            choices += [("complete", 3.0), ("qedit_job", 0.4)]
        if held:
            choices.append(("release", 1.5))
        if idle or running or held:
            choices += [("remove", 0.4), ("qedit_cluster", 0.4)]
        if finished:
            choices.append(("leave_queue", 3.0))
        if not choices:
            return ""
        total = sum(weight for _, weight in choices)
        pick = rng.random() * total
        for action, weight in choices:
            pick -= weight
            if pick < 0:
                break
        if action == "submit":
            self.submit()
        elif action == "start":
            self.start_job(rng.choice(idle))
        elif action == "hold":
            self.hold(rng.choice(idle))
        elif action == "release":
            self.release(rng.choice(held))
        elif action == "complete":
            self.complete(rng.choice(running), exit_code=rng.choice((0, 0, 0, 1, 137)))
        elif action == "leave_queue":
            self.leave_queue(rng.choice(finished))
        elif action == "remove":
            live = idle + running + held
            first = rng.choice(live)
            same_cluster = [j for j in live if j[0] == first[0]]
            self.remove(same_cluster if rng.random() < 0.5 else [first])
        elif action == "qedit_job":
            name, value = self._random_edit()
            self.qedit_job(rng.choice(idle + running), name, value)
        elif action == "qedit_cluster":
            name, value = self._random_edit()
            live = idle + running + held
            self.qedit_cluster(rng.choice(live)[0], name, value)
        return action

    def _random_edit(self) -> Tuple[str, str]:
        rng = self._rng
        choice = rng.randrange(5)
        if choice == 0:
            return "JobPrio", str(rng.randrange(-5, 20))
        if choice == 1:
            return "PandaQueue", quote_old(rng.choice(("CERN-PROD", "BNL_PROD", "UKI-LT2\tQMUL")))
        if choice == 2:
            return "Environment", quote_old("TMP=C:\\Temp\\%d;OUT=D:\\out\\" % rng.randrange(100))
        if choice == 3:
            return "JobDescription", quote_old('pilot "%s" edited' % rng.choice(("prod", "test")))
        return "RequestMemory", str(rng.choice((2048, 4096, 8192)))

    # -- rotation -----------------------------------------------------------------------------

    def snapshot_bytes(self, seq: int) -> bytes:
        """The compacted log a rotation writes: 107, then each ad unchained, no 105/106."""
        lines = ["107 %d CreationTimestamp %d\n" % (seq, self.birth)]
        # Hash-table order: arbitrary (procs may precede their cluster), but repeatable.
        for key in sorted(self.ads, key=lambda k: zlib.crc32(("%d:%s" % (seq, k)).encode())):
            ad = self.ads[key]
            lines.append("101 %s %s %s\n" % (key, ad.mytype or "(empty)",
                                             ad.targettype or "(empty)"))
            for name in sorted(ad.attrs, key=attribute_order):
                lines.append("103 %s %s %s\n" % (key, name, ad.attrs[name]))
        return "".join(lines).encode()

    def rotate(self) -> None:
        """TruncLog: keep the old file as ``.<seq>``, rename a ``seq + 1`` snapshot over it."""
        old_seq, new_seq = self.seq, self.seq + 1
        if MAX_ROTATIONS > 0:
            kept = "%s.%d" % (self.path, old_seq)
            try:
                os.unlink(kept)
            except FileNotFoundError:
                pass
            os.link(self.path, kept)
            try:
                os.unlink("%s.%d" % (self.path, old_seq - MAX_ROTATIONS))
            except FileNotFoundError:
                pass
        tmp = self.path + ".tmp"
        fd = open_new(tmp)
        try:
            data = memoryview(self.snapshot_bytes(new_seq))
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._log.close()  # buffered non-durable data lands in the old file first
        os.rename(tmp, self.path)
        fsync_dir(self.path)
        self._log = StdioLog(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW
                                      | getattr(os, "O_CLOEXEC", 0)),
                              self._buffer_bytes, self._on_write)
        self._pending_since = None
        self.seq = new_seq
        self.rotations += 1
        # CleanJobQueue: private attributes are not in the snapshot, so they are logged again.
        for key in sorted(self.private, key=lambda k: parse_job_key(k) or (0, 0)):
            for name, value in sorted(self.private[key].items()):
                self._bare(("set", key, name, value))
        self._sync()

    def finish(self) -> None:
        """Flush everything and close the log (a clean schedd shutdown without the rotation)."""
        if not self._closed:
            self._closed = True
            self._sync()
            self._log.close()


def main(argv: Optional[List[str]] = None) -> int:
    """The command line (pandad/dev/simulate_cli.py), so ``python3 -m pandad.dev.simulate`` runs."""
    from pandad.dev.simulate_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
