"""schedd_plugin.mirror: keys, Play semantics, effective ads, normalised values."""

import pytest

from schedd_plugin.mirror import (CLUSTER, CLUSTER_PVT, HEADER, JOB, JOBSET, OTHER, USER, Mirror,
                                  classify, cluster_key, normalise_value)


@pytest.mark.parametrize("key, expected", [
    ("0.0", (HEADER, 0, 0)),
    ("0.2", (USER, 0, 2)),
    ("0.17", (USER, 0, 17)),
    ("042.-1", (CLUSTER, 42, -1)),
    ("01.-1", (CLUSTER, 1, -1)),
    ("42.-1", (OTHER, 42, -1)),       # never written without the leading zero
    ("42.-2", (CLUSTER_PVT, 42, -2)),
    ("42.-100", (JOBSET, 42, -100)),
    ("42.0", (JOB, 42, 0)),
    ("42.17", (JOB, 42, 17)),
    ("42.-99", (OTHER, 42, -99)),
    ("x", (OTHER, 0, 0)),
    ("a.b", (OTHER, 0, 0)),
    ("0.-1", (OTHER, 0, -1)),
])
def test_classify(key, expected):
    assert classify(key) == expected


def test_cluster_key_keeps_the_leading_zero():
    assert cluster_key(42) == "042.-1"


def test_new_classad_seeds_mytype_and_targettype():
    m = Mirror()
    assert m.new_classad("42.0", "Job", "Machine")
    assert m.effective("42.0") == {"MyType": '"Job"', "TargetType": '"Machine"'}
    assert m.new_classad("42.-2", "ClusterPvt", "")
    assert m.get("42.-2").attrs == {"mytype": ("MyType", '"ClusterPvt"')}
    assert m.new_classad("0.5", "", "")
    assert m.get("0.5").attrs == {}


def test_play_semantics_on_unknown_and_existing_keys():
    m = Mirror()
    assert not m.set_attribute("1.0", "A", "1")
    assert not m.delete_attribute("1.0", "A")
    assert not m.destroy_classad("1.0")
    assert "1.0" not in m
    m.new_classad("1.0", "Job", "Machine")
    m.set_attribute("1.0", "A", "1")
    assert not m.new_classad("1.0", "Job", "Machine")   # the old ad is kept
    assert m.get("1.0").get("A") == "1"
    assert m.delete_attribute("1.0", "Absent")            # still "played"
    assert m.destroy_classad("1.0")
    assert m.job_keys() == []


def test_names_are_case_insensitive_and_keep_the_last_spelling():
    m = Mirror()
    m.new_classad("1.0", "Job", "Machine")
    m.set_attribute("1.0", "JobStatus", "1")
    m.set_attribute("1.0", "jobstatus", "2")
    assert m.effective("1.0")["jobstatus"] == "2"
    assert "JobStatus" not in m.effective("1.0")
    m.delete_attribute("1.0", "JOBSTATUS")
    assert m.lookup("1.0", "JobStatus") is None


def test_effective_is_cluster_overlaid_by_proc_in_any_order():
    m = Mirror()
    # A compacted log can hold the proc before its cluster ad.
    m.new_classad("42.1", "Job", "Machine")
    m.set_attribute("42.1", "Out", '"job.1.out"')
    m.new_classad("042.-1", "Job", "Machine")
    m.set_attribute("042.-1", "Out", '"job.0.out"')
    m.set_attribute("042.-1", "Cmd", '"run.sh"')
    m.new_classad("42.0", "Job", "Machine")
    m.new_classad("43.0", "Job", "Machine")
    assert m.effective("42.1")["Out"] == '"job.1.out"'
    assert m.effective("42.0")["Out"] == '"job.0.out"'
    assert m.effective("42.0")["Cmd"] == '"run.sh"'
    assert "Cmd" not in m.effective("43.0")
    assert m.lookup("42.0", "cmd") == ("Cmd", '"run.sh"')
    assert [ad.key for ad in m.procs_of(42)] == ["42.1", "42.0"]
    assert m.proc_count(42) == 2
    m.destroy_classad("42.1")
    assert m.proc_count(42) == 1
    assert m.job_keys() == ["42.0", "43.0"]
    assert m.kind("042.-1") == CLUSTER


@pytest.mark.parametrize("a, b", [
    ("[ UserRequest = 1 ]", "[UserRequest = 1]"),
    ("UNDEFINED", "undefined"),
    ("0.0", "0"),
    ("1.50", "1.5"),
    ("(TARGET.Arch == \"X86_64\")", "( target.arch==\"X86_64\" )"),
    ('"a\\" b"', '"a\\" b"'),
])
def test_normalise_value_equal(a, b):
    assert normalise_value(a) == normalise_value(b)


@pytest.mark.parametrize("a, b", [
    ('"a b"', '"a  b"'),         # inside strings, spacing is data
    ('"ABC"', '"abc"'),
    ("1", "2"),
    ('"x"', "x"),
    ('{ "a b" }', '{ "ab" }'),
])
def test_normalise_value_different(a, b):
    assert normalise_value(a) != normalise_value(b)


def test_procs_share_attribute_names_and_repeated_values():
    m = Mirror()
    m.new_classad("01.-1", "Job", "Machine")
    m.set_attribute("01.-1", "Owner", '"alice"')
    for proc in range(3):
        key = f"1.{proc}"
        m.new_classad(key, "Job", "Machine")
        m.set_attribute(key, "JobStatus", "1")
        m.set_attribute(key, "Args", f'"--job 1.{proc}"')
    first, second = m.get("1.0").attrs, m.get("1.1").attrs
    # One pair for the repeated value, one string for each name and lower-case name.
    assert first["jobstatus"] is second["jobstatus"]
    assert first["mytype"] is second["mytype"] and first["targettype"] is second["targettype"]
    (lname_a, pair_a), = [(k, v) for k, v in first.items() if k == "args"]
    (lname_b, pair_b), = [(k, v) for k, v in second.items() if k == "args"]
    assert lname_a is lname_b and pair_a[0] is pair_b[0] and pair_a[1] != pair_b[1]
    assert m.get("1.0").mytype is m.get("1.2").mytype
    # Behaviour is the plain one: effective ad = cluster ⊕ proc, spelling as last written.
    assert m.effective("1.1") == {"MyType": '"Job"', "TargetType": '"Machine"',
                                  "Owner": '"alice"', "JobStatus": "1", "Args": '"--job 1.1"'}
    m.set_attribute("1.1", "JOBSTATUS", "2")
    assert m.lookup("1.1", "jobstatus") == ("JOBSTATUS", "2")
    assert m.lookup("1.0", "JobStatus") == ("JobStatus", "1")
    assert m.delete_attribute("1.1", "jobStatus")
    assert m.lookup("1.1", "JobStatus") is None


def test_sharing_is_bounded_however_many_names_and_values():
    from schedd_plugin.mirror import NAMES_SHARED, SHARED_VALUE_MAX, VALUES_PER_NAME

    m = Mirror()
    m.new_classad("1.0", "Job", "Machine")
    for i in range(NAMES_SHARED + 100):
        m.set_attribute("1.0", f"Name{i}", str(i))
    for i in range(1000):
        m.set_attribute("1.0", "Name0", str(i))
    m.set_attribute("1.0", "Name1", "x" * (SHARED_VALUE_MAX + 1))
    assert len(m.names) == NAMES_SHARED
    assert all(len(values) <= VALUES_PER_NAME for _, _, values in m.names.values())
    assert all(len(v) <= SHARED_VALUE_MAX for _, _, values in m.names.values() for v in values)
    # Past the bound names are still stored right, just not shared.
    last = f"Name{NAMES_SHARED + 99}"
    assert m.lookup("1.0", last.upper()) == (last, str(NAMES_SHARED + 99))
    m.clear()
    assert not m.names and not m.ads


class _Calls:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name,) + args)


def test_apply_calls_back_what_takes_effect_and_empties_the_list():
    from schedd_plugin.logparse import parse_line

    mirror = Mirror()
    listener = _Calls()
    lines = [b"103 9.0 A 1", b"101 1.0 Job Machine", b"103 1.0 A 1", b"103 1.0 a 2",
             b"104 1.0 Absent", b"104 9.0 A", b"102 9.0", b"101 1.0 Job Machine", b"102 1.0",
             b"101 2.0 Job Machine", b"103 2.0 JobStatus 1"]
    ops = [parse_line(line) for line in lines]
    mirror.apply(ops, listener)
    assert ops == []
    assert listener.calls == [
        ("new_classad", "1.0", "Job", "Machine"), ("set_attribute", "1.0", "A", "1"),
        ("set_attribute", "1.0", "a", "2"), ("delete_attribute", "1.0", "Absent"),
        ("new_classad", "1.0", "Job", "Machine"), ("destroy_classad", "1.0"),
        ("new_classad", "2.0", "Job", "Machine"), ("set_attribute", "2.0", "JobStatus", "1")]
    assert "1.0" not in mirror and mirror.get("2.0").get("jobstatus") == "1"
    # The same ops, silently and one by one through the public methods: the same mirror.
    other = Mirror()
    for line in lines:
        op = parse_line(line)
        if op.op == 101:
            other.new_classad(op.key, *op.extra)
        elif op.op == 102:
            other.destroy_classad(op.key)
        elif op.op == 103:
            other.set_attribute(op.key, op.name, op.value)
        else:
            other.delete_attribute(op.key, op.name)
    silent = Mirror()
    silent.apply([parse_line(line) for line in lines])
    for m in (other, silent):
        assert {k: dict(ad.attrs) for k, ad in m.ads.items()} == {
            k: dict(ad.attrs) for k, ad in mirror.ads.items()}
