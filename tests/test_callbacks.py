"""schedd_plugin.callbacks: ClassAdLogPlugin hooks → wire records (docs/design.md §5.2).

The schedd is the only thing not run here: ``Schedd`` below plays log lines into a real
Mirror and a real PandaPlugin exactly as the schedd's Play() does (mirror first, destroy
called back first, no callback for unknown keys); records are decoded with pandad.wire.
"""

from typing import Dict, List, Optional, Tuple

from pandad import wire
from pandad.stats import Statistics
from schedd_plugin.callbacks import ClassAdLogPlugin, PandaPlugin, is_private
from schedd_plugin.logparse import parse_line
from schedd_plugin.mirror import Mirror

GJID = "ap1.example.org#{}#1767225601"
Decoded = Tuple[str, str, Optional[str], Dict[str, str]]


class Schedd:
    def __init__(self, job_attributes=None, stats=None) -> None:
        self.mirror = Mirror()
        self.out: List[bytes] = []
        self.plugin = PandaPlugin(self.mirror, self.out.append, job_attributes,
                                  "ap1.example.org", stats=stats)

    def play(self, line: str) -> None:
        op = parse_line(line.encode("utf-8", "surrogateescape"))
        m, p = self.mirror, self.plugin
        if op.op == 101:
            m.new_classad(op.key, *op.extra)
            p.new_classad(op.key, *op.extra)
        elif op.op == 102 and op.key in m:
            p.destroy_classad(op.key)
            m.destroy_classad(op.key)
        elif op.op == 103 and m.set_attribute(op.key, op.name, op.value):
            p.set_attribute(op.key, op.name, op.value)
        elif op.op == 104 and m.delete_attribute(op.key, op.name):
            p.delete_attribute(op.key, op.name)

    def txn(self, *lines: str) -> None:
        self.plugin.begin_transaction()
        for line in lines:
            self.play(line)
        self.plugin.end_transaction()

    def records(self) -> List[Decoded]:
        records = [wire.decode(r[:-1]) for r in self.out]
        assert all(r.endswith(b"\n") and r.count(b"\n") == 1 for r in self.out)
        self.out.clear()
        return [(r.verb, r.job_id, r.condor_id, dict(r.attrs)) for r in records]


def submit(schedd: Schedd, procs: int = 2) -> None:
    lines = ["103 0.0 NextClusterNum 8", "101 07.-1 Job Machine", "101 7.-2 ClusterPvt (empty)"]
    for proc in range(procs):
        lines += [f"101 7.{proc} Job Machine",
                  f'103 7.{proc} GlobalJobId "{GJID.format(f"7.{proc}")}"',
                  f"103 7.{proc} ProcId {proc}", f"103 7.{proc} JobStatus 1"]
        if proc == 0:
            lines += ['103 07.-1 Cmd "/bin/true"', '103 07.-1 Out "out.0"', "103 07.-1 JobPrio 0"]
        else:
            lines += [f'103 7.{proc} Out "out.{proc}"']
    lines.append(f"103 07.-1 TotalSubmitProcs {procs}")
    schedd.txn(*lines)


def job(proc: int, **attrs: str) -> Dict[str, str]:
    base = {"MyType": '"Job"', "TargetType": '"Machine"', "Cmd": '"/bin/true"',
            "Out": '"out.0"', "JobPrio": "0", "TotalSubmitProcs": "2",
            "GlobalJobId": f'"{GJID.format(f"7.{proc}")}"', "ProcId": str(proc), "JobStatus": "1"}
    base.update(attrs)
    return base


def test_base_class_hooks_are_no_ops():
    plugin = ClassAdLogPlugin()
    plugin.initialize()
    plugin.begin_transaction()
    plugin.new_classad("1.0", "Job", "Machine")
    plugin.set_attribute("1.0", "A", "1")
    plugin.delete_attribute("1.0", "A")
    plugin.destroy_classad("1.0")
    plugin.end_transaction()
    plugin.shutdown()


def test_a_submit_is_one_add_per_job_with_effective_attributes():
    s = Schedd()
    submit(s)
    assert s.records() == [
        ("ADD", GJID.format("7.0"), "7.0", job(0)),
        ("ADD", GJID.format("7.1"), "7.1", job(1, Out='"out.1"')),
    ]


def test_changes_in_a_transaction_are_one_update_per_job_last_value_wins():
    s = Schedd()
    submit(s)
    s.records()
    s.txn("103 7.0 LastJobStatus 1", "103 7.0 JobStatus 2", "103 7.1 JobPrio 5",
          "103 7.0 JobStatus 4", "103 0.2 TotalCompletedJobs 1")
    assert s.records() == [
        ("UPDATE", GJID.format("7.0"), None, {"LastJobStatus": "1", "JobStatus": "4"}),
        ("UPDATE", GJID.format("7.1"), None, {"JobPrio": "5"}),
    ]
    # Bare ops go out at once; ops on other ads and unknown keys produce nothing.
    s.play("103 7.1 JobFinishedHookDone 1767226561")
    assert s.records() == [("UPDATE", GJID.format("7.1"), None,
                            {"JobFinishedHookDone": "1767226561"})]
    s.play("103 0.0 NextClusterNum 9")
    s.play("103 99.0 JobStatus 2")
    s.txn("103 7.-2 Foo 1", "101 0.3 Owner (empty)", "103 0.3 User \"bob\"", "103 7.-100 X 1")
    assert s.records() == []


def test_deleted_attribute_is_null_or_the_cluster_value():
    s = Schedd()
    submit(s)
    s.records()
    s.txn("103 7.1 HoldReason \"x\"", "104 7.1 HoldReason", "104 7.1 JobStatusOnRelease",
          "104 7.1 Out")
    # Out falls back to the cluster ad's value: that is what the job's ad now says.
    assert s.records() == [("UPDATE", GJID.format("7.1"), None,
                            {"HoldReason": "null", "JobStatusOnRelease": "null",
                             "Out": '"out.0"'})]


def test_cluster_changes_reach_every_job_that_does_not_override():
    s = Schedd()
    submit(s)
    s.records()
    s.txn('103 07.-1 Out "new.out"', '103 07.-1 PandaQueue "CERN-PROD"')
    assert s.records() == [
        ("UPDATE", GJID.format("7.0"), None, {"Out": '"new.out"', "PandaQueue": '"CERN-PROD"'}),
        ("UPDATE", GJID.format("7.1"), None, {"PandaQueue": '"CERN-PROD"'}),
    ]
    s.txn("104 07.-1 Out", "104 07.-1 Cmd")
    assert s.records() == [
        ("UPDATE", GJID.format("7.0"), None, {"Out": "null", "Cmd": "null"}),
        ("UPDATE", GJID.format("7.1"), None, {"Cmd": "null"}),
    ]


def test_destroyed_jobs_are_removed():
    s = Schedd()
    submit(s)
    s.records()
    s.txn("103 7.0 JobStatus 4", "103 0.2 TotalCompletedJobs 1", "102 7.0")
    assert s.records() == [("UPDATE", GJID.format("7.0"), None, {"JobStatus": "4"}),
                           ("REMOVE", GJID.format("7.0"), None, {})]
    s.play("102 7.1")
    s.txn("102 07.-1", "102 7.-2")
    assert s.records() == [("REMOVE", GJID.format("7.1"), None, {})]
    s.play("102 7.1")   # unknown now: no callback, no record
    assert s.records() == []


def test_a_job_created_and_destroyed_in_one_transaction_is_added_then_removed():
    s = Schedd()
    s.txn("101 08.-1 Job Machine", '103 08.-1 Cmd "x"', "101 8.0 Job Machine",
          '103 8.0 GlobalJobId "s#8.0#1"', "103 8.0 JobStatus 3", "102 8.0")
    assert s.records() == [
        ("ADD", "s#8.0#1", "8.0", {"MyType": '"Job"', "TargetType": '"Machine"', "Cmd": '"x"',
                                   "GlobalJobId": '"s#8.0#1"', "JobStatus": "3"}),
        ("REMOVE", "s#8.0#1", None, {}),
    ]


def test_private_attributes_are_never_sent():
    s = Schedd()
    submit(s)
    s.records()
    secret = '"<10.0.0.5:9618>#1#2#[CryptoMethods=\\"AES\\";]0123456789abcdef"'
    s.play(f"103 7.0 ClaimId {secret}")
    s.txn(f"103 7.0 ClaimIds {secret}", f"103 7.0 claimid {secret}",
          "103 7.0 Capability \"c\"", "103 7.0 ChildClaimIds \"c\"", "103 7.0 TransferKey \"k\"",
          "103 7.0 TransferSocket \"t\"", "103 7.0 ClaimIdList \"l\"", "103 7.0 _condor_privX 1",
          '103 7.0 PublicClaimId "<10.0.0.5:9618>#1#2#..."')
    assert s.records() == [("UPDATE", GJID.format("7.0"), None,
                            {"PublicClaimId": '"<10.0.0.5:9618>#1#2#..."'})]
    s.txn("104 7.0 ClaimId", "101 7.5 Job Machine", f"103 7.5 ClaimId {secret}",
          '103 07.-1 ClaimId "x"')
    records = s.records()
    assert records == [("ADD", "ap1.example.org#7.5", "7.5",
                        {"MyType": '"Job"', "TargetType": '"Machine"', "Cmd": '"/bin/true"',
                         "Out": '"out.0"', "JobPrio": "0", "TotalSubmitProcs": "2"})]
    assert is_private("CLAIMID") and not is_private("PublicClaimId")


def test_job_attributes_limit_what_is_sent_but_not_the_id():
    s = Schedd(job_attributes=frozenset({"jobstatus", "out"}))
    submit(s)
    assert s.records() == [
        ("ADD", GJID.format("7.0"), "7.0", {"Out": '"out.0"', "JobStatus": "1"}),
        ("ADD", GJID.format("7.1"), "7.1", {"Out": '"out.1"', "JobStatus": "1"}),
    ]
    s.txn("103 7.0 JobPrio 3", "103 7.1 JobPrio 3")
    assert s.records() == []
    s.txn("103 7.0 JobPrio 4", "103 7.0 JOBSTATUS 2")
    assert s.records() == [("UPDATE", GJID.format("7.0"), None, {"JOBSTATUS": "2"})]
    s.plugin.job_attributes = None      # SIGHUP: all attributes again
    s.play("103 7.1 JobPrio 9")
    assert s.records() == [("UPDATE", GJID.format("7.1"), None, {"JobPrio": "9"})]


def test_a_job_without_globaljobid_uses_the_schedd_name():
    s = Schedd()
    s.txn("101 9.0 Job Machine", "103 9.0 JobStatus 1")
    s.play("103 9.0 JobStatus 2")
    assert s.records() == [
        ("ADD", "ap1.example.org#9.0", "9.0",
         {"MyType": '"Job"', "TargetType": '"Machine"', "JobStatus": "1"}),
        ("UPDATE", "ap1.example.org#9.0", None, {"JobStatus": "2"}),
    ]


def test_updates_follow_a_changed_globaljobid():
    # The plug-in keeps each job's id between records; every way the id can change must reach
    # the next UPDATE: set on the job, deleted (back to the cluster's or the fallback), or set
    # on the cluster ad that the job inherits it from.
    s = Schedd()
    s.txn("101 09.-1 Job Machine", "101 9.0 Job Machine", "103 9.0 JobStatus 1")
    s.play("103 9.0 JobStatus 2")
    s.play('103 9.0 GlobalJobId "s#9.0#1"')
    s.play("103 9.0 JobStatus 3")
    s.play('103 09.-1 GlobalJobId "c#9.0#2"')
    s.play("103 9.0 GlobalJobId_unrelated 1")
    s.play("104 9.0 GlobalJobId")
    s.play("103 9.0 JobStatus 4")
    s.play('103 09.-1 GlobalJobId "c#9.0#3"')
    s.play("103 9.0 JobStatus 5")
    ids = [(verb, job_id, attrs.get("JobStatus")) for verb, job_id, _, attrs in s.records()
           if "JobStatus" in attrs]
    assert ids == [("ADD", "ap1.example.org#9.0", "1"), ("UPDATE", "ap1.example.org#9.0", "2"),
                   ("UPDATE", "s#9.0#1", "3"), ("UPDATE", "c#9.0#2", "4"),
                   ("UPDATE", "c#9.0#3", "5")]


def test_values_are_rewritten_to_new_syntax_and_valid_utf8():
    s = Schedd()
    s.txn("101 9.0 Job Machine", '103 9.0 GlobalJobId "s#9.0#1"',
          '103 9.0 Iwd "C:\\Users\\x\tq \\"q\\" z\\"', '103 9.0 Name "caf\udce9 é"')
    (verb, _, _, attrs), = s.records()
    assert attrs["Iwd"] == '"C:\\\\Users\\\\x\\tq \\"q\\" z\\\\"'
    assert attrs["Name"] == '"caf\ufffd é"'


def test_attributes_the_wire_cannot_carry_are_skipped_and_counted():
    stats = Statistics()
    s = Schedd(stats=stats)
    s.txn("101 9.0 Job Machine", '103 9.0 GlobalJobId "s#9.0#1"', "103 9.0 Bad-Name 1",
          "103 9.0 Good 2")
    assert s.records() == [("ADD", "s#9.0#1", "9.0", {"MyType": '"Job"', "TargetType":
                                                      '"Machine"', "GlobalJobId": '"s#9.0#1"',
                                                      "Good": "2"})]
    s.play("103 9.0 Bad-Name 3")
    assert s.records() == []
    assert stats.get("plugin_attributes_skipped") == 2


def test_initialize_is_idempotent_and_records_are_whole_lines():
    s = Schedd()
    s.plugin.initialize()
    submit(s, procs=3)
    s.plugin.initialize()
    s.plugin.shutdown()
    assert [r[0] for r in s.records()] == ["ADD", "ADD", "ADD"]
