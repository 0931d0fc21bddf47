"""pandad.wire: the plug-in → pandad record format, encode and decode, and framing."""

import pytest

from pandad import wire
from pandad.wire import BadRecord, Record, RecordSplitter, decode, encode_add, encode_remove, \
    encode_update

JOB = "schedd.example.org#12.3#1700000000"


def test_encode_add_is_the_cplusplus_format():
    record = encode_add(JOB, "12.3", [("Owner", '"alice"'), ("JobStatus", "1")])
    assert record == (b'\vADD\t"schedd.example.org#12.3#1700000000"\t"12.3"'
                      b'\tOwner\t"alice"\tJobStatus\t1\n')


def test_encode_update_and_remove():
    assert encode_update(JOB, [("JobStatus", "2"), ("HoldReason", "null")]) == (
        b'\vUPDATE\t"schedd.example.org#12.3#1700000000"\tJobStatus\t2\tHoldReason\tnull\n')
    assert encode_remove(JOB) == b'\vREMOVE\t"schedd.example.org#12.3#1700000000"\n'
    assert encode_remove(JOB, [("JobStatus", "3")]).endswith(b"\tJobStatus\t3\n")


def test_decode_each_verb():
    assert decode(encode_add(JOB, "12.3", [("A", "1")])[:-1]) == Record(
        "ADD", JOB, "12.3", (("A", "1"),))
    assert decode(encode_add(JOB, "12.3")[:-1]) == Record("ADD", JOB, "12.3", ())
    assert decode(encode_update(JOB, [("A", "1"), ("B", '"x y"')])[:-1]) == Record(
        "UPDATE", JOB, None, (("A", "1"), ("B", '"x y"')))
    assert decode(encode_remove(JOB)[:-1]) == Record("REMOVE", JOB, None, ())


def test_job_ids_with_quotes_backslashes_tabs_and_unicode_survive():
    job_id = 'we\\ird"\tname é#1.0#2'
    record = encode_remove(job_id)
    assert record.count(b"\t") == 1 and record.count(b"\n") == 1  # separator, terminator
    assert decode(record[:-1]).job_id == job_id


def test_values_keep_their_text_exactly():
    value = '"C:\\\\Users\\\\x" && { 1, "é" }'
    assert decode(encode_update(JOB, [("Cmd", value)])[:-1]).attrs == (("Cmd", value),)


def test_records_from_the_cplusplus_plugin_decode():
    # The C++ plug-in sent ADD without attributes and one attribute per UPDATE.
    assert decode(b'\vADD\t"host:1.0"\t"1.0"') == Record("ADD", "host:1.0", "1.0", ())
    assert decode(b'\vUPDATE\t"host:1.0"\tJobStatus\t2').attrs == (("JobStatus", "2"),)


@pytest.mark.parametrize("line, reason", [
    (b'ADD\t"j"\t"1.0"', wire.REASON_NO_VT),
    (b"", wire.REASON_NO_VT),
    (b'x\vUPDATE\t"j"\tA\t1', wire.REASON_NO_VT),
    (b'\vUPDATE\t"j"\tA\t1\vUPDATE\t"k"\tA\t1', wire.REASON_SECOND_VT),
    (b'\vUPDATE\t"j"\tA\t1\x00', wire.REASON_NUL),
    (b'\vUPDATE\t"j"\tA\t"\xff"', wire.REASON_UTF8),
    (b'\vUPDATE\t"j"\tA\t"\xc3"', wire.REASON_UTF8),
    (b'\vFROB\t"j"', wire.REASON_VERB),
    (b'\vadd\t"j"\t"1.0"', wire.REASON_VERB),
    (b"\vREMOVE", wire.REASON_JOB_ID),
    (b"\vREMOVE\tj", wire.REASON_JOB_ID),
    (b'\vREMOVE\t""', wire.REASON_JOB_ID),
    (b'\vREMOVE\t"a"b"', wire.REASON_JOB_ID),
    (b'\vREMOVE\t"j', wire.REASON_JOB_ID),
    (b'\vADD\t"j"', wire.REASON_CONDOR_ID),
    (b'\vADD\t"j"\t1.0', wire.REASON_CONDOR_ID),
    (b'\vUPDATE\t"j"', wire.REASON_NO_ATTRIBUTES),
    (b'\vUPDATE\t"j"\tA', wire.REASON_ODD_FIELDS),
    (b'\vADD\t"j"\t"1.0"\tA\t1\tB', wire.REASON_ODD_FIELDS),
    (b'\vUPDATE\t"j"\t1A\t1', wire.REASON_ATTRIBUTE_NAME),
    (b'\vUPDATE\t"j"\tA\t1\tB C\t2', wire.REASON_ATTRIBUTE_NAME),
    (b'\vREMOVE\t"j"\t\t1', wire.REASON_ATTRIBUTE_NAME),
])
def test_bad_records_say_why_in_one_line(line, reason):
    with pytest.raises(BadRecord) as caught:
        decode(line)
    assert caught.value.reason == reason
    message = str(caught.value)
    assert message and "\n" not in message and len(message) < 300
    # The part before the first colon is a fixed phrase, usable as a counter key.
    assert ":" in message


def test_bad_record_message_of_a_huge_line_stays_short():
    with pytest.raises(BadRecord) as caught:
        decode(b"garbage" * 100000)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("name", ["", "1A", "A B", "A\tB", "A-B", "A.B", "é"])
def test_encode_refuses_invalid_attribute_names(name):
    with pytest.raises(ValueError):
        encode_update(JOB, [(name, "1")])


@pytest.mark.parametrize("value", ['"a\tb"', "1\n", "\r", "x\vy", "a\x00"])
def test_encode_refuses_values_that_would_break_framing(value):
    with pytest.raises(ValueError, match="old_to_new"):
        encode_add(JOB, "1.0", [("A", value)])


def test_encode_refuses_empty_update_and_empty_ids():
    with pytest.raises(ValueError):
        encode_update(JOB, [])
    with pytest.raises(ValueError):
        encode_remove("")
    with pytest.raises(ValueError):
        encode_add(JOB, "")
    with pytest.raises(ValueError):
        encode_remove("a\x00b")


def test_encode_update_from_a_kept_prefix_is_encode_update():
    for job_id, pairs in ((JOB, [("A", "1")]), ('q"uote\\d', [("A", '"x"'), ("B", "null")])):
        assert wire.encode_update_from(wire.update_prefix(job_id), pairs) \
            == encode_update(job_id, pairs)
    prefix = wire.update_prefix(JOB)
    with pytest.raises(ValueError):
        wire.encode_update_from(prefix, [])
    with pytest.raises(ValueError, match="old_to_new"):
        wire.encode_update_from(prefix, [("A", "1\t2")])
    for bad_id in ("", "a\x00b"):
        with pytest.raises(ValueError):
            wire.update_prefix(bad_id)


def test_encode_accepts_any_iterable_of_pairs():
    pairs = iter([("A", "1"), ("B", "2")])
    assert decode(encode_update(JOB, pairs)[:-1]).attrs == (("A", "1"), ("B", "2"))


# --- RecordSplitter -------------------------------------------------------------------------

def test_splitter_joins_records_across_chunks():
    splitter = RecordSplitter(1000)
    data = encode_update(JOB, [("A", "1")]) + encode_remove(JOB)
    lines = []
    for i in range(len(data)):
        out, bad = splitter.feed(data[i:i + 1])
        assert bad == 0
        lines.extend(out)
    assert [decode(line).verb for line in lines] == ["UPDATE", "REMOVE"]
    assert splitter.finish() == 0


def test_splitter_passes_empty_lines_on_for_decode_to_count():
    lines, bad = RecordSplitter(100).feed(b"\n\n")
    assert lines == [b"", b""] and bad == 0


def test_splitter_discards_an_over_long_line_inside_a_chunk():
    good = encode_remove(JOB)
    lines, bad = RecordSplitter(len(good)).feed(good + b"\v" + b"x" * 500 + b"\n" + good)
    assert lines == [good[:-1], good[:-1]] and bad == 1


def test_splitter_line_exactly_at_the_limit_is_kept():
    lines, bad = RecordSplitter(10).feed(b"0123456789\n01234567890\n")
    assert lines == [b"0123456789"] and bad == 1


def test_ten_megabytes_without_newline_is_one_bad_record_in_bounded_memory():
    limit = 64 * 1024
    splitter = RecordSplitter(limit)
    chunk = b"\vUPDATE" + b"x" * (64 * 1024 - 7)
    for _ in range(160):  # 10 MiB
        lines, bad = splitter.feed(chunk)
        assert lines == [] and bad == 0
        assert splitter.pending_bytes <= limit
    good = encode_remove(JOB)
    lines, bad = splitter.feed(b"tail\n" + good)
    assert lines == [good[:-1]] and bad == 1
    assert splitter.finish() == 0


def test_over_long_unterminated_tail_is_counted_at_finish():
    splitter = RecordSplitter(16)
    assert splitter.feed(b"y" * 100) == ([], 0)
    assert splitter.finish() == 1
    assert splitter.finish() == 0


def test_torn_tail_at_eof_is_counted_at_finish():
    splitter = RecordSplitter(1000)
    lines, bad = splitter.feed(encode_remove(JOB) + b'\vUPDATE\t"j"\tA')
    assert len(lines) == 1 and bad == 0
    assert splitter.finish() == 1


def test_splitter_refuses_a_nonsense_limit():
    with pytest.raises(ValueError):
        RecordSplitter(0)


def test_bad_record_message_with_a_hostile_job_id_is_one_short_line():
    line = encode_update("evil\njob" * 1000, [("A", "1")])[:-1] + b"\tB"
    with pytest.raises(BadRecord) as caught:
        decode(line)
    assert caught.value.reason == wire.REASON_ODD_FIELDS
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200
