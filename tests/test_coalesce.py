"""pandad.coalesce: merging one batch of records per job (pure, no threads or sockets)."""

from pandad.coalesce import Batch, coalesce
from pandad.wire import encode_add, encode_remove, encode_update

J1 = "schedd.example.org#1.0#1700000000"
J2 = "schedd.example.org#2.0#1700000001"


def lines(*records: bytes) -> list:
    """Records as the reader hands them over: one line each, without its newline."""
    return [r.rstrip(b"\n") for r in records]


def attrs_of(command) -> dict:
    return command.attributes()


def test_updates_of_a_job_added_in_the_batch_merge_into_the_add():
    batch = coalesce(lines(
        encode_add(J1, "1.0", [("Owner", '"alice"'), ("JobStatus", "1")]),
        encode_update(J1, [("JobStatus", "2")]),
        encode_update(J1, [("RemoteHost", '"slot1@node"')]),
    ))
    assert list(batch.adds) == [J1]
    assert batch.commands_of_updates() == {} and batch.removes == {}
    add = batch.adds[J1]
    assert add.condor_id == "1.0"
    assert attrs_of(add) == {"Owner": '"alice"', "JobStatus": "2", "RemoteHost": '"slot1@node"'}
    assert add.records == 3


def test_repeated_updates_merge_last_value_wins_case_insensitively():
    batch = coalesce(lines(
        encode_update(J1, [("JobStatus", "1"), ("ImageSize", "100")]),
        encode_update(J1, [("jobstatus", "2")]),
        encode_update(J1, [("JOBSTATUS", "4"), ("ExitCode", "0")]),
        encode_update(J2, [("JobStatus", "5")]),
    ))
    assert set(batch.commands_of_updates()) == {J1, J2}
    first = batch.commands_of_updates()[J1]
    # The last value and the last spelling of the name win.
    assert attrs_of(first) == {"JOBSTATUS": "4", "ImageSize": "100", "ExitCode": "0"}
    assert first.records == 3
    assert first.condor_id is None
    assert batch.commands_of_updates()[J2].records == 1


def test_remove_goes_to_removes_and_merges_its_pairs():
    batch = coalesce(lines(
        encode_update(J1, [("JobStatus", "4")]),
        encode_remove(J1, [("ExitCode", "0")]),
        encode_remove(J1, [("ExitCode", "1"), ("CompletionDate", "1700000100")]),
        encode_update(J1, [("LastHold", "null")]),
    ))
    assert attrs_of(batch.commands_of_updates()[J1]) == {"JobStatus": "4"}
    remove = batch.removes[J1]
    assert attrs_of(remove) == {"ExitCode": "1", "CompletionDate": "1700000100",
                                "LastHold": "null"}
    assert remove.records == 3
    assert batch.records == 4


def test_add_then_remove_in_one_batch_keeps_both():
    batch = coalesce(lines(encode_add(J1, "1.0"), encode_remove(J1)))
    assert list(batch.adds) == [J1] and list(batch.removes) == [J1]
    assert batch.records == 2


def test_add_after_remove_supersedes_the_remove():
    batch = coalesce(lines(
        encode_update(J1, [("JobStatus", "2")]),
        encode_remove(J1, [("ExitCode", "0")]),
        encode_add(J1, "1.0", [("JobStatus", "1")]),
    ))
    assert batch.removes == {} and batch.commands_of_updates() == {}
    add = batch.adds[J1]
    assert attrs_of(add) == {"JobStatus": "1", "ExitCode": "0"}
    assert add.records == 3


def test_bad_records_are_counted_with_reasons_and_skipped():
    batch = coalesce([
        b"ADD\t\"x\"\t\"1.0\"",                    # no leading \v
        b"\vFROB\t\"x\"",                          # unknown verb
        b"\vUPDATE\t\"" + J1.encode() + b"\"\tJobStatus",   # odd pairs
        encode_update(J1, [("JobStatus", "2")]).rstrip(b"\n"),
        b"\xff\xfe\x00",
    ])
    assert batch.bad == 4
    assert sum(batch.bad_reasons.values()) == 4
    assert batch.bad_reasons == {"no_leading_vt": 2, "unknown_verb": 1, "odd_fields": 1}
    assert batch.records == 1


def test_coalesce_into_a_carried_over_batch():
    carried = coalesce(lines(encode_update(J1, [("JobStatus", "2"), ("ImageSize", "1")])))
    carried.commands_of_updates()[J1].attempts = 1
    batch = coalesce(lines(encode_update(J1, [("JobStatus", "4")]),
                           encode_add(J2, "2.0")), into=carried)
    assert batch is carried
    assert attrs_of(batch.commands_of_updates()[J1]) == {"JobStatus": "4", "ImageSize": "1"}
    assert batch.commands_of_updates()[J1].records == 2
    assert batch.commands_of_updates()[J1].attempts == 1
    assert list(batch.adds) == [J2]


def test_empty_batch_is_falsy():
    assert not coalesce([])
    assert not Batch()
    assert coalesce(lines(encode_remove(J1)))


def test_records_add_up_over_many_jobs():
    records = []
    for i in range(1000):
        job = f"s#{i}.0#1"
        records.append(encode_add(job, f"{i}.0", [("JobStatus", "1")]))
        records.append(encode_update(job, [("JobStatus", "2")]))
        if i % 2:
            records.append(encode_remove(job))
    batch = coalesce(lines(*records))
    assert len(batch.adds) == 1000 and len(batch.removes) == 500
    assert batch.records == len(records)
