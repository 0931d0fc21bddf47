"""pandad.wire under arbitrary input (hypothesis): what is encoded decodes to the same, and
no bytes at all make framing or decoding raise anything but BadRecord, with every line
accounted for."""

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pandad import wire
from pandad.classad import old_to_new
from pandad.wire import BadRecord, Record, RecordSplitter, decode, encode_add, encode_remove, \
    encode_update

PROPERTY_SETTINGS = settings(max_examples=120, deadline=None)

_FIRST = "ABCXYZabcxyz_"
_REST = _FIRST + "0123456789"
NAMES = st.builds(str.__add__, st.sampled_from(_FIRST), st.text(alphabet=_REST, max_size=12))
TEXT_CHARS = st.characters(blacklist_categories=("Cs",))
# Any value the plug-in can send: old-syntax text of any characters, rewritten by old_to_new.
VALUES = st.text(alphabet=st.one_of(st.sampled_from('"\\\t\v\r\n\x00 é'), TEXT_CHARS),
                 max_size=30).map(old_to_new)
JOB_IDS = st.text(alphabet=TEXT_CHARS.filter(lambda c: c != "\x00"), min_size=1, max_size=40)
PAIRS = st.lists(st.tuples(NAMES, VALUES), max_size=6)


@PROPERTY_SETTINGS
@given(JOB_IDS, JOB_IDS, PAIRS)
def test_add_round_trip(job_id, condor_id, pairs):
    record = encode_add(job_id, condor_id, pairs)
    assert record.startswith(b"\v") and record.endswith(b"\n") and record.count(b"\n") == 1
    assert decode(record[:-1]) == Record("ADD", job_id, condor_id, tuple(pairs))


@PROPERTY_SETTINGS
@given(JOB_IDS, PAIRS.filter(bool))
def test_update_round_trip(job_id, pairs):
    assert decode(encode_update(job_id, pairs)[:-1]) == Record("UPDATE", job_id, None,
                                                               tuple(pairs))


def _outcome(encode, *args):
    try:
        return encode(*args)
    except ValueError as e:
        return f"ValueError: {e}"


@PROPERTY_SETTINGS
@given(JOB_IDS, st.lists(st.tuples(st.one_of(NAMES, st.text(max_size=8)),
                                   st.one_of(VALUES, st.text(max_size=8))), max_size=3))
def test_update_from_a_prefix_is_encode_update(job_id, pairs):
    # encode_update_from has its own inline checks for one pair: any name, any value, the
    # same record or the same error as encode_update.
    assert _outcome(wire.encode_update_from, wire.update_prefix(job_id), pairs) \
        == _outcome(encode_update, job_id, pairs)


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(st.one_of(NAMES, st.text(max_size=8)),
                          st.one_of(VALUES, st.text(max_size=8))), max_size=4))
def test_the_fast_pair_checks_agree_with_the_precise_ones(pairs):
    assert _outcome(wire._encode_pairs, pairs) == _outcome(wire._checked_pairs, pairs)


@PROPERTY_SETTINGS
@given(JOB_IDS, PAIRS)
def test_remove_round_trip(job_id, pairs):
    assert decode(encode_remove(job_id, pairs)[:-1]) == Record("REMOVE", job_id, None,
                                                               tuple(pairs))


def frame_and_decode(data: bytes, cuts, limit: int):
    """Feed ``data`` cut at ``cuts``; return (records, bad count) as pandad would see them."""
    splitter = RecordSplitter(limit)
    records, bad = [], 0
    bounds = [0] + sorted(c % (len(data) + 1) for c in cuts) + [len(data)]
    for start, end in zip(bounds, bounds[1:]):
        lines, n_bad = splitter.feed(data[start:end])
        bad += n_bad
        assert splitter.pending_bytes <= limit
        for line in lines:
            assert b"\n" not in line and len(line) <= limit
            try:
                records.append(decode(line))
            except BadRecord as error:
                assert "\n" not in str(error)
                bad += 1
    bad += splitter.finish()
    return records, bad


def expected_count(data: bytes) -> int:
    """Every newline ends one line; an unterminated tail is one more."""
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


@PROPERTY_SETTINGS
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8),
       st.integers(1, 64))
@example(b"\x00\xff\xfe\v\v\n", [], 8)
@example(b'\vUPDATE\t"j"\tA\t1\n\vUPDATE\t"j"\tA', [3, 17], 100)
def test_arbitrary_bytes_never_raise_and_every_line_is_counted(data, cuts, limit):
    records, bad = frame_and_decode(data, cuts, limit)
    assert len(records) + bad == expected_count(data)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(JOB_IDS, PAIRS.filter(bool)), min_size=1, max_size=4),
       st.lists(st.integers(0, 5000), max_size=10), st.data())
def test_torn_and_corrupted_streams(jobs, cuts, data):
    """Valid records with bytes removed, replaced by NUL or invalid UTF-8 or a stray VT:
    the untouched records come through, the damaged ones are counted, nothing raises."""
    stream = bytearray(b"".join(encode_update(job_id, pairs) for job_id, pairs in jobs))
    for _ in range(data.draw(st.integers(0, 4))):
        if not stream:
            break
        position = data.draw(st.integers(0, len(stream) - 1))
        damage = data.draw(st.sampled_from([b"", b"\x00", b"\xff", b"\xc3", b"\v", b"\n"]))
        stream[position:position + data.draw(st.integers(0, 30))] = damage
    stream = bytes(stream)
    records, bad = frame_and_decode(stream, cuts, 1 << 16)
    assert len(records) + bad == expected_count(stream)
    for record in records:
        assert record.verb == "UPDATE" and record.attrs


def test_undamaged_records_between_damaged_ones_survive():
    good = [encode_update(f"s#{i}.0#1", [("JobStatus", str(i))]) for i in range(5)]
    stream = good[0] + good[1][:9] + good[2] + b"\xff\x00\n" + good[3] + good[4][:-1]
    records, bad = frame_and_decode(stream, [4, 50, 51, 100], 1 << 16)
    assert [r.job_id for r in records] == ["s#0.0#1", "s#3.0#1"]
    # the torn good[1] and good[2] share a line (one bad, second \v), the garbage line is bad,
    # good[4] is unterminated at EOF
    assert bad == 3


def test_ten_megabytes_without_newline_in_random_chunks():
    limit = 1 << 20
    splitter = RecordSplitter(limit)
    block = bytes(range(256)).replace(b"\n", b"") * 4096  # ~1 MiB, no newline
    total_bad = 0
    for i in range(10):
        lines, bad = splitter.feed(block[i * 1000:] + block[:i * 1000])
        total_bad += bad
        assert lines == [] and splitter.pending_bytes <= limit
    good = encode_remove("s#1.0#1")
    lines, bad = splitter.feed(b"\n" + good)
    assert total_bad + bad == 1 and [decode(line).job_id for line in lines] == ["s#1.0#1"]
