"""The fast paths of pandad.coalesce / convert / classad against the plain code they replace
(hypothesis): whole-batch line checks + ``_parse_plain`` give exactly ``wire.decode``'s verdicts,
``Converter`` gives ``job_object``'s objects, plain UPDATEs kept as their fields give the same
request bodies and counters, and ``to_json_value``'s number fast paths give ``_number``'s values,
on generated input good and bad."""

import json
from collections import Counter

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pandad import classad, convert
from pandad.classad import to_json_value
from pandad.buffer import RecordBuffer
from pandad.coalesce import Batch, JobCommand, coalesce, command_of
from pandad.convert import Converter, _local_time
from pandad.bodies import encode_objects, encode_pieces
from pandad.flusher import Flusher
from pandad.knobs import PandadSettings
from pandad.stats import Statistics
from pandad.wire import decode, encode_add, encode_remove, encode_update
from tests.support import MAP_2014
from tests.support.fake_transport import FakeTransport

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


def reference_coalesce(lines) -> Batch:
    """coalesce's readable reference: ``decode`` on every line, then the merge rules."""
    return coalesce(lines, fast=False)


def snapshot(batch: Batch) -> tuple:
    def group(commands):
        return [(key, c.job_id, c.condor_id, list(c.attrs.items()), c.records)
                for key, c in commands.items()]
    return (group(batch.adds), group(batch.commands_of_updates()), group(batch.removes), batch.bad,
            Counter(batch.bad_reasons))


JOBS = st.sampled_from(["s#1.0#9", "s#2.0#9", 's#"3".0#9', "s#4\\.0#9", "é#5.0#9"])
NAMES = st.sampled_from(["JobStatus", "jobstatus", "Owner", "QDate", "id", "Cmd", "_x1"])
VALUES = st.sampled_from(["2", "1234.0", '"alice"', "undefined", "1e3", '"a\\tb"', "null",
                          "{ 1, 2 }", "-5", "  7  "])
PAIRS = st.lists(st.tuples(NAMES, VALUES), max_size=3)
GOOD = st.one_of(
    st.builds(lambda j, p: encode_add(j, j.split("#")[1] if "#" in j else "1.0", p), JOBS, PAIRS),
    st.builds(encode_update, JOBS, PAIRS.filter(bool)),
    st.builds(encode_remove, JOBS, PAIRS),
).map(lambda record: record[:-1])
NASTY = st.sampled_from([b"\v", b"\0", b"\n", b"\t", b"\xff", b"\xc3", b'"', b"\\", b" ", b"x",
                         b"1bad", b"\vADD", b"\vUPDATE"])


@st.composite
def damaged(draw, good=GOOD):
    line = draw(good)
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.integers(0, len(line)))
        action = draw(st.sampled_from(["insert", "cut", "truncate"]))
        if action == "insert":
            line = line[:where] + draw(NASTY) + line[where:]
        elif action == "cut":
            line = line[:where] + line[where + 1:]
        else:
            line = line[:where]
    return line


LINES = st.lists(st.one_of(GOOD, damaged(), st.binary(max_size=20)), max_size=12)


@PROPERTY_SETTINGS
@given(LINES)
@example([b"\vUPDATE\t\"j\"\tA\t1\v", b"UPDATE\t\"j\"\tA\t2"])   # VTs that add up to one a line
@example([b"\vUPDATE\t\"j\"\tA\t1", b"\vUPDATE\t\"j\"\tA\t2\n\vX"])   # a newline inside a line
@example([b"\vUPDATE\t\"j\"", b"\vADD\t\"j\"", b"\vADD\t\"j\"\t\"\"", b"\vREMOVE\t\"\""])
def test_coalesce_matches_decode_line_by_line(lines):
    assert snapshot(coalesce(lines)) == snapshot(reference_coalesce(lines))


@PROPERTY_SETTINGS
@given(LINES, LINES)
def test_coalesce_into_a_carried_batch_matches(first, second):
    assert (snapshot(coalesce(second, into=coalesce(first)))
            == snapshot(reference_coalesce(first + second)))


# Each property below holds with no PANDA_ATTRIBUTE_MAP and with the 2014 monitor's.
MAPS = pytest.mark.parametrize("attribute_map", [(), MAP_2014], ids=["names", "map2014"])


def reference_job_object(job_id, condor_id, attrs, attribute_map=()) -> dict:
    obj = {"id": job_id}
    if condor_id is not None:
        obj["condorid"] = condor_id
    for attr, text in attrs.items():
        name = dict(attribute_map).get(attr.lower(), attr)
        if name in ("id", "condorid"):
            continue
        value = to_json_value(text)
        obj[name] = _local_time(value) if name == "submitted" else value
    return obj


@MAPS
@PROPERTY_SETTINGS
@given(st.lists(st.lists(st.tuples(NAMES, VALUES | st.text(max_size=70)), max_size=5),
                max_size=6))
def test_converter_remembers_nothing_that_changes_an_object(attribute_map, commands):
    converter = Converter(attribute_map)
    for index, pairs in enumerate(commands):
        attrs = dict(pairs)
        expected = reference_job_object(f"j{index}", None, attrs, attribute_map)
        assert converter.job_object(f"j{index}", None, attrs.items()) == expected
        assert repr(converter.job_object(f"j{index}", None, attrs.items())) == repr(expected)


def reference_requests(lines, attribute_map=()) -> tuple:
    """The requests and counters of one cycle over ``lines``, from reference_coalesce and
    reference_job_object: what the flusher sent before plain UPDATEs were kept as fields."""
    batch = reference_coalesce(lines)
    requests = []
    sent = unconvertible = 0
    for method, group in (("POST", batch.adds), ("PUT", batch.commands_of_updates()),
                          ("DELETE", batch.removes)):
        objects = []
        for command in group.values():
            try:
                objects.append(reference_job_object(
                    command.job_id, command.condor_id if method == "POST" else None,
                    command.attributes(), attribute_map))
            except ValueError:
                unconvertible += command.records
                continue
            sent += command.records
        if objects:
            requests.append((method, json.dumps(objects, separators=(",", ":")).encode()))
    return requests, sent, unconvertible


# Names that need care (two spellings of one, id, submitted, QDate → submitted and two names
# for "run_time" under the 2014 map), and an integer of more digits than int() takes.
CARE_NAMES = st.sampled_from(["JobStatus", "jobstatus", "Owner", "owner", "QDate", "id",
                              "RemoteWallClockTime", "run_time", "submitted", "_x1"])
CARE_VALUES = VALUES | st.just("9" * 5000) | st.sampled_from(
    ["0", "007", "9" * 18, "9" * 19, "1" + "0" * 18, '""', '"é"', '"a\x7fb"', '"a b"',
     '"x" "y"', "TRUE", "-0", "12 ", "1e400"])
UPDATES = st.lists(st.one_of(
    st.builds(encode_update, JOBS, st.lists(st.tuples(CARE_NAMES, CARE_VALUES), min_size=1,
                                            max_size=3)),
    st.builds(lambda j, p: encode_add(j, "1.0", p), JOBS, PAIRS),
    st.builds(encode_remove, JOBS, PAIRS),
).map(lambda record: record[:-1]), max_size=12)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "reference"])
@MAPS
@PROPERTY_SETTINGS
@given(UPDATES)
@example([encode_update("s#1.0#9", [("A", "1")])[:-1],
          encode_update("s#2.0#9", [("A", "9" * 5000), ("A", "2")])[:-1],
          encode_update("s#3.0#9", [("A", "9" * 5000)])[:-1],
          encode_update("s#4.0#9", [("A", "2"), ("A", "1")])[:-1]])
@example([encode_update("s#1.0#9", [("JobStatus", "1")])[:-1],                 # two spellings
          encode_update("s#2.0#9", [("jobstatus", "1")])[:-1],
          encode_update("s#3.0#9", [("JobStatus", "1"), ("jobstatus", "2")])[:-1]])
@example([encode_update("s#1.0#9", [("RemoteWallClockTime", "1"), ("run_time", "1")])[:-1],
          encode_update("s#2.0#9", [("RemoteWallClockTime", "1"), ("run_time", "2"),
                                    ("RemoteWallClockTime", "3")])[:-1]])    # one key, two names
def test_plain_updates_give_the_bodies_and_counters_of_the_reference(attribute_map, fast, lines):
    recorder = FakeTransport()
    stats = Statistics()
    buffer = RecordBuffer(1 << 30, 0, 1 << 30)
    assert buffer.put_many(lines) == len(lines)
    settings = PandadSettings(url="http://127.0.0.1:9/", attribute_map=attribute_map)
    Flusher(buffer, recorder, stats, settings, fast=fast).flush_once()
    requests, sent, unconvertible = reference_requests(lines, attribute_map)
    counters = stats.snapshot()
    assert recorder.received == requests
    assert counters.get("records_sent", 0) == sent
    assert counters.get("records_bad_unconvertible", 0) == unconvertible


@MAPS
@PROPERTY_SETTINGS
@given(UPDATES, UPDATES)
def test_entry_objects_are_fields_objects(attribute_map, first, second):
    """A warm converter (names and values remembered from ``first``) and a cold one agree."""
    converter = Converter(attribute_map)
    converter.entry_objects(list(coalesce(first).update_entries.values()))
    entries = list(coalesce(second).update_entries.values())
    objects, missing = converter.entry_objects(entries)
    expected = [Converter(attribute_map).fields_object(e) if type(e) is tuple else None for e in entries]
    assert repr(objects) == repr(expected) and missing == expected.count(None)


@MAPS
@PROPERTY_SETTINGS
@given(UPDATES, UPDATES)
def test_entry_texts_are_the_encoded_entry_objects(attribute_map, first, second):
    """Converter.entry_texts (the fast twin) against entry_objects + the flusher's encoder:
    each text piece is its object's JSON text, anything else the same object (or None)."""
    warm = Converter(attribute_map)
    warm.entry_texts(list(coalesce(first).update_entries.values()))
    entries = list(coalesce(second).update_entries.values())
    for converter in (warm, Converter(attribute_map)):
        pieces, missing = converter.entry_texts(entries)
        objects, expected_missing = Converter(attribute_map).entry_objects(entries)
        assert missing == expected_missing and len(pieces) == len(objects)
        for piece, obj in zip(pieces, objects):
            if type(piece) is str:
                assert piece == json.dumps(obj, separators=(",", ":"))
            else:
                assert repr(piece) == repr(obj)
        assert encode_pieces([p for p in pieces if p is not None]) == encode_objects(
            [o for o in objects if o is not None])


@MAPS
@PROPERTY_SETTINGS
@given(UPDATES, st.integers(60, 400))
def test_fast_bodies_are_the_reference_bodies_at_any_size(attribute_map, lines, max_bytes):
    """Flusher(fast=True) and Flusher(fast=False) send the same requests, cut alike."""
    sent = []
    for fast in (True, False):
        recorder = FakeTransport()
        buffer = RecordBuffer(1 << 30, 0, 1 << 30)
        buffer.put_many(lines * 3)
        settings = PandadSettings(url="http://127.0.0.1:9/", attribute_map=attribute_map,
                                  max_request_bytes=max_bytes)
        stats = Statistics()
        Flusher(buffer, recorder, stats, settings, fast=fast).flush_once()
        counters = stats.snapshot()
        counters.pop("last_success_time", None)
        sent.append((recorder.received, counters))
    assert sent[0] == sent[1]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
@example("a\x7fb")
@example("a\u00a0b")
def test_printable_ascii_is_isascii_and_isprintable(text):
    assert convert._printable_ascii(text) == (text.isascii() and text.isprintable())


def test_entry_texts_leave_ids_that_are_not_printable_ascii_to_the_objects():
    lines = [encode_update(job_id, [("JobStatus", "2")])[:-1]
             for job_id in ("s#1.0#9", "s#\u00a0.0#9", "s#3.0#9", "s#\u00e9.0#9")]
    entries = list(coalesce(lines).update_entries.values())   # the first: a JobCommand
    pieces, missing = Converter().entry_texts(entries)
    objects, _ = Converter().entry_objects(entries)
    assert [type(piece) for piece in pieces] == [type(None), dict, str, dict] and missing == 1
    assert pieces[1] == objects[1] == {"id": "s#\u00a0.0#9", "JobStatus": 2}
    assert encode_pieces(pieces[1:]) == encode_objects(objects[1:])


def test_encode_pieces_mixes_texts_and_objects():
    objects = [{"id": "a", "n": 1}, {"id": "b", "s": "é"}, {"id": "c"}, {"id": "d", "f": 1.5}]
    texts = [json.dumps(o, separators=(",", ":")) for o in objects]
    for mix in ([texts[0], objects[1], objects[2], texts[3]], objects, texts,
                [objects[0], texts[1], texts[2], objects[3]]):
        assert encode_pieces(mix) == encode_objects(objects)
    assert encode_pieces([]) == encode_objects([]) == b"[]"


def test_plain_updates_stand_for_the_commands_they_would_have_been():
    lines = [encode_update(f"s#{i}.0#9", [("JobStatus", "2"), ("Owner", '"a"')])[:-1]
             for i in range(3)]
    batch = coalesce(lines)
    entries = batch.update_entries
    assert [type(entry) for entry in entries.values()] == [JobCommand, tuple, tuple]
    assert batch.records == 3
    command = command_of(entries["s#1.0#9"])
    assert (command.job_id, command.condor_id, command.records, command.attempts) == (
        "s#1.0#9", None, 1, 0)
    assert command.attrs == {"jobstatus": ("JobStatus", "2"), "owner": ("Owner", '"a"')}
    # Batch.commands_of_updates hands out JobCommands only, in the same order, in the same dict.
    assert snapshot(batch) == snapshot(reference_coalesce(lines))
    assert all(type(entry) is JobCommand for entry in entries.values())


def reference_number(text: str) -> object:
    s = text.strip(" \t\n\v\f\r")
    if classad._INT_RE.match(s):
        value = int(s)
        return value if classad._INT64_MIN <= value <= classad._INT64_MAX else s
    return classad._number(s)


NUMBERS = st.one_of(
    st.from_regex(r"\A[0-9]{1,25}(\.[0-9]{0,25})?\Z"),
    st.text(alphabet="0123456789.+-eE_ ٣²", min_size=1, max_size=30).filter(
        lambda s: s.strip(" ")[:1] in tuple("0123456789+-.")),
)


@settings(max_examples=400, deadline=None)
@given(NUMBERS)
@example("9" * 400 + ".5")                       # overflows to inf: the text
@example("9223372036854775807")
@example("9223372036854775808")
@example("9223372036854775808.0")
@example("1_000")
@example("1.")
def test_number_fast_paths_match_number(text):
    got, expected = to_json_value(text), reference_number(text)
    assert type(got) is type(expected) and repr(got) == repr(expected)


def test_plain_records_skip_decode_once_their_names_are_known(monkeypatch):
    import pandad.coalesce

    calls = []

    def counting_decode(line):
        calls.append(line)
        return decode(line)

    monkeypatch.setattr(pandad.coalesce, "decode", counting_decode)
    lines = [encode_update(f"s#{i}.0#9", [("JobStatus", "2"), ("RemoteWallClockTime", "1.5")])[:-1]
             for i in range(100)]
    lines.append(encode_add("s#7.0#9", "7.0", [("jobstatus", "1")])[:-1])
    batch = coalesce(lines)
    assert calls == [lines[0], lines[-1]]            # the first sight of each name
    assert len(batch.commands_of_updates()) == 99 and batch.adds["s#7.0#9"].records == 2
    assert batch.adds["s#7.0#9"].attrs["jobstatus"] == ("jobstatus", "1")
