"""Every fixture job_queue.log, followed from a real file; the records are written down by hand.

The expected records below were read off the fixture text (see each ``.note.md``), not
produced by the code: a job's ADD carries its cluster ad overlaid by its proc ad, plus the
``MyType``/``TargetType`` the schedd sets at every 101; later changes are one UPDATE per job
per transaction; private attributes (``ClaimId``) never appear.  Fixtures 04–07, 09 and 10
continue fixture 03's cluster 42, so 03 is replayed first.
"""

import json
import os
from pathlib import Path
from typing import Dict

import pytest

from pandad import convert
from tests.support import FIXTURES
from tests.support.feed import Feed

F01 = "01_real_first_log_spooled_submit.log"
F03 = "03_synth_multiproc_submit.log"
F04 = "04_synth_job_start_running.log"
F05 = "05_synth_hold_release.log"
F06 = "06_synth_qedit.log"
F07 = "07_synth_complete_remove_leave_queue.log"
F08 = "08_synth_compacted_rotated_log.log"
F09 = "09_synth_torn_tail_unterminated_txn.log"
F10 = "10_synth_endtxn_timestamp_comments.log"

def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# ---------------------------------------------------------------- 01: the real log

JOB_1_0 = {
    # 101 01.-1 / 101 1.0 Job Machine: set by the schedd in memory
    "MyType": '"Job"', "TargetType": '"Machine"',
    # the cluster ad 01.-1
    "TotalSubmitProcs": "1", "User": '"bbockelm@f4hp7ql65f-2.local"', "Owner": '"bbockelm"',
    # the proc ad 1.0 (last value of Iwd and Cmd, which the spooled submit rewrites)
    "GlobalJobId": '"test_schedd_96043@f4hp7ql65f-2.local#1.0#1763853169"',
    "ClusterId": "1", "ProcId": "0", "JobUniverse": "5", "JobStatus": "5", "Cmd": '"sleep"',
    "Args": '"2"', "Out": '"test.out"', "Err": '"test.err"', "UserLog": '"test.log"',
    "ShouldTransferFiles": '"YES"', "WhenToTransferOutput": '"ON_EXIT"',
    "TransferExecutable": "true",
    "Requirements": "((TARGET.Arch isnt undefined) && (TARGET.OpSys isnt undefined))",
    "RequestCpus": "1", "RequestMemory": "128", "RequestDisk": "1024",
    "EmailAttributes": '"NEVER"', "Rank": "0",
    "Iwd": '"/var/folders/3r/xl19t4ks0wsd5httjlvvm86r0000gp/T/TestWatchLogWithJobSubmission'
           '1354687113/001/spool/1/0/cluster1.proc0.subproc0"',
    "NumJobStarts": "0", "NumRestarts": "0", "NumSystemHolds": "0", "JobRunCount": "0",
    "HoldReasonCode": "16", "HoldReason": '"Spooling input data files"',
    "LeaveJobInQueue": "((JobStatus == 4) && (((CompletionDate is undefined) || "
                       "(CompletionDate == 0)) || ((time() - CompletionDate) < 864000)))",
    "SUBMIT_Iwd": '"/Users/bbockelm/projects/golang-htcondor/classadlog"',
    "TransferOutputRemaps": "Undefined", "SUBMIT_Cmd": '"/bin/sleep"',
}
ID_1_0 = "test_schedd_96043@f4hp7ql65f-2.local#1.0#1763853169"


def test_01_live(tmp_path):
    feed = Feed(tmp_path)
    assert feed.records() == []
    feed.append(fixture(F01))
    assert feed.records() == [("ADD", ID_1_0, "1.0", JOB_1_0)]
    pos = feed.follower.position
    assert (pos.seq, pos.birth, pos.offset) == (1, 1763853165, len(fixture(F01)))


def test_01_startup_replay(tmp_path):
    feed = Feed(tmp_path, fixture(F01))
    assert feed.records() == [("ADD", ID_1_0, "1.0", JOB_1_0)]
    assert feed.records() == []


# ---------------------------------------------------------------- 03: a 3-proc submit

CLUSTER_42 = {
    "MyType": '"Job"', "TargetType": '"Machine"', "ClusterId": "42", "In": '"/dev/null"',
    "Cmd": '"/home/alice/run.sh"', "Err": '"job.0.err"', "Iwd": '"/home/alice"',
    "Out": '"job.0.out"', "Args": '"0"', "Rank": "0.0", "User": '"alice@example.org"',
    "Owner": '"alice"', "QDate": "1767225600", "JobPrio": "0",
    "UserLog": '"/home/alice/job.log"', "MaxHosts": "1", "MinHosts": "1", "DiskUsage": "1",
    "ExitStatus": "0", "JobUniverse": "5", "NumRestarts": "0", "RequestCpus": "1",
    "RequestDisk": "DiskUsage", "NumJobStarts": "0", "OnExitRemove": "true",
    "Requirements": '(TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && '
                    '(TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && '
                    '(TARGET.HasFileTransfer)',
    "RequestMemory": "2048", "JobDescription": '"panda pilot"', "NumSystemHolds": "0",
    "PeriodicRemove": "false", "JobSubmitMethod": "0", "LeaveJobInQueue": "false",
    "CumulativeSlotTime": "0", "LastSuspensionTime": "0", "RemoteWallClockTime": "0.0",
    "ShouldTransferFiles": '"IF_NEEDED"', "EnteredCurrentStatus": "1767225600",
    "WhenToTransferOutput": '"ON_EXIT"', "TotalSubmitProcs": "3",
}


def gjid(proc: int) -> str:
    return f"ap1.example.org#42.{proc}#1767225601"


def job_42(proc: int, **own: str) -> Dict[str, str]:
    ad = dict(CLUSTER_42)
    ad.update({"GlobalJobId": f'"{gjid(proc)}"', "ProcId": str(proc), "JobStatus": "1"})
    ad.update(own)
    return ad


ADDS_03 = [
    ("ADD", gjid(0), "42.0", job_42(0)),
    ("ADD", gjid(1), "42.1", job_42(1, Err='"job.1.err"', Out='"job.1.out"', Args='"1"')),
    ("ADD", gjid(2), "42.2", job_42(2, Err='"job.2.err"', Out='"job.2.out"', Args='"2"')),
]


def after_03(tmp_path: Path) -> Feed:
    feed = Feed(tmp_path)
    feed.records()
    feed.append(fixture(F03))
    assert feed.records() == ADDS_03
    return feed


def test_03_live(tmp_path):
    after_03(tmp_path)


def test_03_startup_replay(tmp_path):
    feed = Feed(tmp_path, fixture(F03))
    assert feed.records() == ADDS_03
    pos = feed.follower.position
    assert (pos.seq, pos.birth, pos.offset) == (0, 0, len(fixture(F03)))


# ---------------------------------------------------------------- 04: 42.0 starts running

UPDATES_04 = [
    ("UPDATE", gjid(0), None, {
        "OrigMaxHosts": "1", "LastJobStatus": "1", "JobStatus": "2",
        "EnteredCurrentStatus": "1767225661", "LastSuspensionTime": "0", "CurrentHosts": "1"}),
    # (the bare ClaimId line: nothing)
    ("UPDATE", gjid(0), None, {
        "PublicClaimId": '"<10.0.0.5:9618?addrs=10.0.0.5-9618&alias=wn01.example.org>'
                         '#1767220000#12#..."',
        "StartdIpAddr": '"<10.0.0.5:9618?addrs=10.0.0.5-9618&alias=wn01.example.org>"',
        "LastJobLeaseRenewal": "1767225661", "RemoteHost": '"slot1_1@wn01.example.org"',
        "RemoteSlotID": "1", "NumJobMatches": "1", "LastMatchTime": "1767225661",
        "MachineAttrCpus0": "1", "MachineAttrSlotWeight0": "1", "ShadowBday": "1767225661",
        "JobStartDate": "1767225661", "JobCurrentStartDate": "1767225661",
        "NumShadowStarts": "1", "JobRunCount": "1"}),
    ("UPDATE", gjid(0), None, {
        "StarterIpAddr": '"<10.0.0.5:9618?addrs=10.0.0.5-9618&alias=wn01.example.org>"',
        "JobCurrentStartTransferInputDate": "1767225662",
        "JobCurrentStartExecutingDate": "1767225663", "NumJobStarts": "1"}),
]


def test_04_job_start(tmp_path):
    feed = after_03(tmp_path)
    feed.append(fixture(F04))
    assert feed.records() == UPDATES_04
    assert "ClaimId" in feed.mirror.effective("42.0")   # mirrored, never sent


# ---------------------------------------------------------------- 05: hold and release 42.1

def test_05_hold_release(tmp_path):
    feed = after_03(tmp_path)
    feed.append(fixture(F05))
    assert feed.records() == [
        ("UPDATE", gjid(1), None, {
            "HoldReason": '"via condor_hold (by user alice@example.org)"', "NumHolds": "1",
            "NumHoldsByReason": "[ UserRequest = 1 ]", "HoldReasonCode": "1",
            "HoldReasonSubCode": "0", "LastJobStatus": "1", "JobStatus": "5",
            "EnteredCurrentStatus": "1767225720", "LastSuspensionTime": "0"}),
        ("UPDATE", gjid(1), None, {
            "LastJobStatus": "5", "JobStatus": "1",
            "ReleaseReason": '"via condor_release (by user alice@example.org)"',
            "EnteredCurrentStatus": "1767225780",
            "LastHoldReason": '"via condor_hold (by user alice@example.org)"',
            "HoldReason": "null", "LastHoldReasonCode": "1", "HoldReasonCode": "null",
            "LastHoldReasonSubCode": "0", "HoldReasonSubCode": "null",
            "JobStatusOnRelease": "null"}),
    ]


# ---------------------------------------------------------------- 06: qedit of a proc, a cluster

def test_06_qedit(tmp_path):
    feed = after_03(tmp_path)
    feed.append(fixture(F06))
    # 42.1 is edited first; the cluster edit then reaches 42.0 and 42.2 (42.1 overrides it);
    # each job's own edit follows in the same transaction: one UPDATE per job.
    assert feed.records() == [
        ("UPDATE", gjid(2), None, {"JobPrio": "10"}),
        ("UPDATE", gjid(1), None, {"PandaQueue": '"CERN-PROD"'}),
        ("UPDATE", gjid(0), None, {"PandaQueue": '"CERN-PROD"'}),
        ("UPDATE", gjid(2), None, {"PandaQueue": '"CERN-PROD"'}),
    ]


# ---------------------------------------------------------------- 07: completion, rm, leaving

def test_07_complete_remove_leave_queue(tmp_path):
    feed = after_03(tmp_path)
    feed.append(fixture(F04))
    assert feed.records() == UPDATES_04
    feed.append(fixture(F07))
    removed = {"LastJobStatus": "1", "JobStatus": "3",
               "RemoveReason": '"via condor_rm (by user alice@example.org)"',
               "EnteredCurrentStatus": "1767226560", "JobStatusOnRelease": "null"}
    assert feed.records() == [
        ("UPDATE", gjid(0), None, {
            "ExitCode": "0", "ExitBySignal": "false", "RemoteUserCpu": "812.0",
            "RemoteSysCpu": "9.0", "CumulativeRemoteUserCpu": "812.0",
            "CumulativeRemoteSysCpu": "9.0", "RemoteWallClockTime": "836.0",
            "CumulativeSlotTime": "836", "CompletionDate": "1767226500",
            "LastRemoteHost": '"slot1_1@wn01.example.org"'}),
        ("UPDATE", gjid(0), None, {
            "LastJobStatus": "2", "JobStatus": "4", "EnteredCurrentStatus": "1767226501"}),
        ("UPDATE", gjid(0), None, {
            "LastPublicClaimId": '"<10.0.0.5:9618?addrs=10.0.0.5-9618&alias=wn01.example.org>'
                                 '#1767220000#12#..."',
            "PublicClaimId": "null", "PublicClaimIds": "null", "StartdIpAddr": "null",
            "RemoteHost": "null", "RemotePool": "null", "RemoteSlotID": "null",
            "DelegatedProxyExpiration": "null", "TransferringInput": "null",
            "TransferringOutput": "null", "TransferQueued": "null", "ShadowBday": "null"}),
        ("UPDATE", gjid(0), None, {"CurrentHosts": "0", "ShadowBday": "null"}),
        ("UPDATE", gjid(0), None, {"JobFinishedHookDone": "1767226502"}),
        ("REMOVE", gjid(0), None, {}),
        ("UPDATE", gjid(1), None, removed),
        ("UPDATE", gjid(2), None, removed),
        ("UPDATE", gjid(1), None, {"JobFinishedHookDone": "1767226561"}),
        ("REMOVE", gjid(1), None, {}),
        ("UPDATE", gjid(2), None, {"JobFinishedHookDone": "1767226561"}),
        ("REMOVE", gjid(2), None, {}),
    ]
    assert feed.mirror.job_keys() == []
    assert "042.-1" not in feed.mirror and "42.-2" not in feed.mirror


# ---------------------------------------------------------------- 08: a compacted, rotated log

def job_08_0() -> Dict[str, str]:
    ad = dict(CLUSTER_42)
    ad.update({
        "ProcId": "0", "JobStatus": "2", "RemoteHost": '"slot1_1@wn01.example.org"',
        "ShadowBday": "1767225661", "GlobalJobId": f'"{gjid(0)}"', "CurrentHosts": "1",
        "LastJobStatus": "1",
        "PublicClaimId": '"<10.0.0.5:9618?addrs=10.0.0.5-9618&alias=wn01.example.org>'
                         '#1767220000#12#..."',
        "NumShadowStarts": "1", "JobCurrentStartDate": "1767225661",
        "EnteredCurrentStatus": "1767225661"})
    return ad


def test_08_startup_replay_of_a_compacted_log(tmp_path):
    feed = Feed(tmp_path, fixture(F08))
    # Hash-table order: 42.1 comes before its cluster ad; 42.2 is not in the queue, so the
    # JobPrio transaction at the end changes nothing.
    assert feed.records() == [
        ("ADD", gjid(1), "42.1", job_42(1, Err='"job.1.err"', Out='"job.1.out"', Args='"1"')),
        ("ADD", gjid(0), "42.0", job_08_0()),
    ]
    pos = feed.follower.position
    assert (pos.seq, pos.birth, pos.offset) == (5, 1767000000, len(fixture(F08)))


def test_08_as_the_rotation_of_03_and_04(tmp_path):
    feed = Feed(tmp_path, b"107 4 CreationTimestamp 1767000000\n")
    assert feed.records() == []
    feed.append(fixture(F03) + fixture(F04))
    assert feed.records() == ADDS_03 + UPDATES_04
    feed.rotate(fixture(F08))
    # Only the real differences: 42.2 left the queue; 42.0's snapshot lacks what this
    # (made-up) compaction dropped, so those attributes are gone, or fall back to the
    # cluster ad's value (LastSuspensionTime, NumJobStarts).  ClaimId: in both, never sent.
    assert feed.records() == [
        ("REMOVE", gjid(2), None, {}),
        ("UPDATE", gjid(0), None, {
            "OrigMaxHosts": "null", "LastSuspensionTime": "0", "StartdIpAddr": "null",
            "LastJobLeaseRenewal": "null", "RemoteSlotID": "null", "NumJobMatches": "null",
            "LastMatchTime": "null", "MachineAttrCpus0": "null",
            "MachineAttrSlotWeight0": "null", "JobStartDate": "null", "JobRunCount": "null",
            "StarterIpAddr": "null", "JobCurrentStartTransferInputDate": "null",
            "JobCurrentStartExecutingDate": "null", "NumJobStarts": "0"}),
    ]
    assert feed.records() == []
    pos = feed.follower.position
    assert (pos.seq, pos.offset) == (5, len(fixture(F08)))


# ---------------------------------------------------------------- 09: a torn tail

def test_09_torn_tail_in_an_open_transaction(tmp_path):
    feed = after_03(tmp_path)
    feed.append(fixture(F09))
    assert feed.records() == [("UPDATE", gjid(2), None, {"JobPrio": "10"})]
    committed = len(fixture(F03)) + len(b"105 \n103 42.2 JobPrio 10\n106 \n")
    assert feed.follower.position.offset == committed
    assert feed.records() == []
    assert feed.follower.position.offset == committed
    feed.append(b"entStatus 1767225700\n")
    assert feed.records() == []          # complete line, transaction still open
    feed.append(b"106 \n")
    assert feed.records() == [("UPDATE", gjid(1), None, {
        "LastJobStatus": "1", "JobStatus": "2", "EnteredCurrentStatus": "1767225700"})]
    assert feed.follower.position.offset == os.path.getsize(feed.path)


# ---------------------------------------------------------------- 10: 106 with comments

def test_10_end_transaction_comments(tmp_path):
    feed = after_03(tmp_path)
    feed.append(fixture(F10))
    assert feed.records() == [
        ("UPDATE", gjid(0), None, {"LastJobStatus": "1", "JobStatus": "2",
                                   "EnteredCurrentStatus": "1767225661", "CurrentHosts": "1"}),
        ("UPDATE", gjid(2), None, {"JobPrio": "10"}),
    ]


def test_every_fixture_is_covered():
    covered = {F01, F03, F04, F05, F06, F07, F08, F09, F10}
    assert {p.name for p in FIXTURES.glob("*.log")} == covered


# ---------------------------------------------------------------- value round trip

@pytest.mark.parametrize("text", [
    'C:\\Users\\x\\new\tdir "quoted" end\\',
    "tab\there  two spaces, \\\" and \\n literally",
    "ünïcödé ✓",
])
def test_string_round_trip_log_to_json(tmp_path, text):
    # Old syntax, as the schedd writes it: only the quote is escaped, raw tabs, and a string
    # ending in a backslash comes out as ...\" at the end of the line.
    old = '"' + text.replace('"', '\\"') + '"'
    log_text = ("105 \n101 5.0 Job Machine\n103 5.0 GlobalJobId \"s#5.0#1\"\n"
                f"103 5.0 Weird {old}\n106 \n")
    feed = Feed(tmp_path)
    feed.records()
    feed.append(log_text.encode("utf-8"))
    (verb, job_id, condor_id, attrs), = feed.records()
    body = json.dumps([convert.job_object(job_id, condor_id, attrs)])
    assert json.loads(body)[0]["Weird"] == text
