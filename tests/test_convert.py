"""pandad.convert: job commands → the monitor's JSON objects."""

import json
import os
import time

import pytest

from pandad.convert import condor_id_from_job_id, job_object, json_name
from tests.support import MAP_2014

JOB = "schedd.example.org#12.3#1700000000"


@pytest.mark.parametrize("attr", ["Cmd", "Err", "Owner", "QDate", "RemoteWallClockTime",
                                  "JobStatus", "GlobalJobId", "owner", "out_x"])
def test_json_name_is_the_classad_name_by_default(attr):
    assert json_name(attr) == attr


@pytest.mark.parametrize("attr, name", [
    ("Cmd", "cmd"), ("Err", "p_stderr"), ("JobDescription", "p_description"),
    ("JobPrio", "pri"), ("Out", "p_stdout"), ("Owner", "owner"), ("QDate", "submitted"),
    ("RemoteWallClockTime", "run_time"), ("ResidentSetSize", "size"),
    ("OWNER", "owner"), ("qdate", "submitted"), ("residentsetsize", "size"),
    ("JobStatus", "JobStatus"), ("GlobalJobId", "GlobalJobId"), ("out_x", "out_x"),
])
def test_json_name_through_the_2014_map(attr, name):
    assert json_name(attr, MAP_2014) == name


@pytest.fixture
def utc_plus_two():
    """Run with a fixed local time zone, so "local time" is checked, not assumed."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "EET-2"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


ATTRS = {
    "Owner": '"alice"', "QDate": "1700000000", "JobStatus": "2",
    "RemoteWallClockTime": "123.0", "Cmd": '"C:\\\\bin\\\\x.exe"',
    "JobPrio": "-5", "ResidentSetSize": "1.5", "Requirements": "(Arch == \"X86_64\")",
    "HoldReason": "null", "WantCheckpoint": "FALSE", "Err": "undefined",
    "Args": '"a\\tb \\"q\\" é"',
}


def test_job_object_sends_classad_names_and_converts_values_by_default():
    obj = job_object(JOB, "12.3", ATTRS)
    assert obj == {
        "id": JOB, "condorid": "12.3", "Owner": "alice", "QDate": 1700000000,
        "JobStatus": 2, "RemoteWallClockTime": 123, "Cmd": "C:\\bin\\x.exe", "JobPrio": -5,
        "ResidentSetSize": 1.5, "Requirements": '(Arch == "X86_64")', "HoldReason": None,
        "WantCheckpoint": False, "Err": None, "Args": 'a\tb "q" é',
    }
    assert list(obj)[:2] == ["id", "condorid"]
    assert json.loads(json.dumps(obj)) == obj


def test_job_object_through_the_2014_map(utc_plus_two):
    obj = job_object(JOB, "12.3", ATTRS, MAP_2014)
    assert obj == {
        "id": JOB, "condorid": "12.3", "owner": "alice",
        "submitted": "2023-11-15 00:13:20", "JobStatus": 2, "run_time": 123,
        "cmd": "C:\\bin\\x.exe", "pri": -5, "size": 1.5,
        "Requirements": '(Arch == "X86_64")', "HoldReason": None, "WantCheckpoint": False,
        "p_stderr": None, "Args": 'a\tb "q" é',
    }
    assert list(obj)[:2] == ["id", "condorid"]
    assert json.loads(json.dumps(obj)) == obj


def test_update_objects_have_no_condorid():
    assert job_object(JOB, None, {"JobStatus": "4"}) == {"id": JOB, "JobStatus": 4}


def test_submitted_that_is_not_a_number_keeps_its_value():
    def submitted(text):
        return job_object(JOB, None, {"QDate": text}, MAP_2014)["submitted"]
    assert submitted('"yesterday"') == "yesterday"
    assert submitted("undefined") is None
    assert submitted("true") is True
    assert submitted("1e300") == 1e300


def test_real_qdate_is_a_time_too(utc_plus_two):
    assert job_object(JOB, None, {"QDate": "1700000000.0"}, MAP_2014)["submitted"] \
        == "2023-11-15 00:13:20"


def test_whatever_maps_to_submitted_is_a_time_and_an_attribute_named_so_too(utc_plus_two):
    assert job_object(JOB, None, {"JobStartDate": "1700000000", "QDate": "1"},
                      (("jobstartdate", "submitted"),)) == {
        "id": JOB, "submitted": "2023-11-15 00:13:20", "QDate": 1}
    assert job_object(JOB, None, {"submitted": "1700000000"}) == {
        "id": JOB, "submitted": "2023-11-15 00:13:20"}


def test_an_integer_too_long_for_int_is_sent_as_its_text():
    digits = "9" * 5000
    obj = job_object(JOB, None, {"Big": digits, "Negative": "-" + digits,
                                 "Padded": "0" * 5000 + "42"})
    assert obj == {"id": JOB, "Big": digits, "Negative": "-" + digits, "Padded": 42}
    assert json.loads(json.dumps(obj)) == obj


def test_attributes_cannot_overwrite_the_identity():
    obj = job_object(JOB, "12.3", {"id": '"other"', "condorid": '"9.9"', "Id": "1"})
    assert obj["id"] == JOB and obj["condorid"] == "12.3" and obj["Id"] == 1
    assert job_object(JOB, None, {"GlobalJobId": '"x"'}, (("globaljobid", "id"),)) == {
        "id": JOB}


def test_values_that_json_cannot_hold_are_sent_as_text():
    obj = job_object(JOB, None, {"X": 'real("NaN")', "Y": "1e999", "Z": "{ 1, 2 }"})
    body = json.dumps(obj, allow_nan=False)
    assert json.loads(body)["X"] == 'real("NaN")'
    assert json.loads(body)["Y"] == "1e999"
    assert json.loads(body)["Z"] == "{ 1, 2 }"


@pytest.mark.parametrize("job_id, condor_id", [
    (JOB, "12.3"),
    ("s#0.0#1", "0.0"),
    ("name#with#hash#7.12#1700000000", "7.12"),
    ("host:1.0", None),
    ("host#1#2", None),
    ("#1.0#2", None),
    ("host#1.0", None),
    ("host#a.b#1", None),
    ("", None),
])
def test_condor_id_from_job_id(job_id, condor_id):
    assert condor_id_from_job_id(job_id) == condor_id
