"""Fuzzing the three parsers that read untrusted input, under a fixed time budget.

* the record parser (``wire.RecordSplitter`` + ``wire.decode`` + ``coalesce``): pandad's stdin;
* the job_queue.log parser (``logparse.parse_line``) and the ``Follower`` over whole logs from
  the schedd simulator, mutated (bytes flipped, NULs, lines dropped, duplicated, torn, appended
  in random pieces): the schedd's file;
* the ClassAd value converter (``classad.old_to_new``, ``classad.to_json_value``,
  ``convert.job_object`` + ``json.dumps``): values from the log, bound for the monitor.

Properties: no exception but the documented one escapes (BadRecord, CorruptLine), every framed
line is accounted for, every record the plug-in writes from ANY log decodes, and every JSON body
is strict JSON (no NaN/Infinity). hypothesis runs each with a bounded number of examples
(about 15 s in all); atheris (coverage-guided, libFuzzer) runs the record and value parsers in a
child process for a bounded number of runs.

``atheris_main`` is the atheris entry point (see ``ATHERIS_HARNESS``).
"""

import json
import subprocess
import sys
from typing import List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pandad.classad import old_to_new, to_json_value
from pandad.coalesce import coalesce
from pandad.convert import job_object
from pandad.wire import BadRecord, RecordSplitter, decode, encode_add, encode_update
from schedd_plugin.logparse import CorruptLine, parse_line

MAX_RECORD = 4096


# -- the checks, shared by hypothesis and atheris ----------------------------------------------

def check_record_stream(data: bytes, cuts: List[int]) -> None:
    """Frame ``data`` fed in pieces at ``cuts``; decode and coalesce every line."""
    splitter = RecordSplitter(MAX_RECORD)
    lines: List[bytes] = []
    bad = 0
    start = 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        got, n_bad = splitter.feed(data[start:cut])
        lines.extend(got)
        bad += n_bad
        start = cut
        assert splitter.pending_bytes <= MAX_RECORD
    bad += splitter.finish()
    assert all(len(line) <= MAX_RECORD and b"\n" not in line for line in lines)
    # Every newline-terminated line is either framed or counted bad; a tail is one more bad.
    complete = data.count(b"\n")
    assert complete <= len(lines) + bad <= complete + 1
    decoded = 0
    for line in lines:
        try:
            record = decode(line)
        except BadRecord as error:
            assert error.reason and "\n" not in str(error)
            continue
        decoded += 1
        assert record.verb in ("ADD", "UPDATE", "REMOVE") and record.job_id
    batch = coalesce(lines)
    assert batch.records + batch.bad == len(lines)
    assert batch.records <= decoded
    for group in (batch.adds, batch.commands_of_updates(), batch.removes):
        for command in group.values():
            check_json(job_object(command.job_id, command.condor_id, command.attributes()))


def check_json(obj: dict) -> None:
    """The object becomes strict JSON and comes back equal in shape."""
    text = json.dumps(obj, allow_nan=False)
    assert json.loads(text).keys() == obj.keys()


def check_value(text: str) -> None:
    """An old-syntax log value: rewritten, converted, serialised; nothing escapes."""
    new = old_to_new(text)
    assert isinstance(new, str)
    if "\0" not in new:
        assert not any(c in new for c in "\t\v\r\n"), repr(new)
    value = to_json_value(new)
    assert value is None or isinstance(value, (str, int, float, bool))
    json.dumps(value, allow_nan=False)
    check_json(job_object("s#1.0#1", "1.0", {"QDate": new, "Owner": new, "Attr": new}))


def check_log_line(line: bytes) -> None:
    try:
        op = parse_line(line)
    except CorruptLine as error:
        assert "\n" not in str(error)
        return
    assert 101 <= op.op <= 107


# -- hypothesis ------------------------------------------------------------------------------

def hypothesis_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


def good_records() -> List[bytes]:
    return [
        encode_add("ap1#1.0#1700000000", "1.0", [("Owner", '"alice"'), ("QDate", "1700000000"),
                                                ("Requirements", '(Arch == "X86_64")')]),
        encode_update("ap1#1.0#1700000000", [("JobStatus", "2"), ("RemoteWallClockTime", "1.0")]),
        encode_update("ap1#1.1#1700000000", [("Cmd", '"/bin/sh \\"x\\""'), ("X", "null")]),
        b'\vREMOVE\t"ap1#1.0#1700000000"\n',
        "\vUPDATE\t\"ap1#2.0#1\"\tName\t\"\\u00e9\u00e9\"\n".encode(),
    ]


@pytest.fixture(scope="module")
def simulated_log(tmp_path_factory) -> bytes:
    """A few hundred lines of a real-looking job_queue.log, with a rotation's snapshot."""
    from pandad.dev.simulate import ScheddSimulator

    path = tmp_path_factory.mktemp("fuzzlog") / "job_queue.log"
    now = [1767225600.0]
    sim = ScheddSimulator(str(path), seed=11, jobs=12, procs_per_cluster=2,
                          clock=lambda: now[0])
    steps = 0
    while not sim.done and steps < 400:
        sim.step()
        now[0] += 0.5
        steps += 1
    sim.finish()
    return path.read_bytes()


@pytest.mark.slow
def test_record_stream_fuzz():
    corpus = b"".join(good_records())

    @hypothesis_settings(400)
    @given(st.data())
    def run(data):
        base = bytearray(data.draw(st.sampled_from([corpus, corpus * 3, b""])))
        for _ in range(data.draw(st.integers(0, 8))):
            kind = data.draw(st.sampled_from(["flip", "insert", "delete", "splice"]))
            at = data.draw(st.integers(0, len(base)))
            if kind == "flip" and base:
                base[at % len(base)] = data.draw(st.sampled_from(b"\v\t\n\0\"\\\xff\xc3 A1"))
            elif kind == "insert":
                base[at:at] = data.draw(st.binary(max_size=40))
            elif kind == "delete":
                del base[at:at + data.draw(st.integers(1, 30))]
            else:
                base[at:at] = b"\v" + data.draw(st.binary(max_size=MAX_RECORD + 50))
        cuts = data.draw(st.lists(st.integers(0, 1 << 16), max_size=6))
        check_record_stream(bytes(base), cuts)

    run()


@pytest.mark.slow
def test_random_bytes_record_stream_fuzz():
    @hypothesis_settings(300)
    @given(st.binary(max_size=3 * MAX_RECORD), st.lists(st.integers(0, 1 << 14), max_size=5))
    def run(data, cuts):
        check_record_stream(data, cuts)

    run()


@pytest.mark.slow
def test_value_converter_fuzz():
    pieces = st.sampled_from(['"', "\\", "'", "\t", "\n", "\r", "\v", "\0", "\x01", "\x7f",
                              "\\\"", "\\n", "\\0", "\\377", "\\u00e9", "é", "\udcff", "1",
                              "1.0", "1e400", "-", ".", "e", "real(\"NaN\")", "{", "}", "[",
                              "]", ",", ";", " ", "true", "UNDEFINED", "error", "9" * 25])
    texts = st.one_of(st.text(max_size=40), st.lists(pieces, max_size=12).map("".join))

    @hypothesis_settings(1500)
    @given(texts)
    def run(text):
        check_value(text)

    run()


@pytest.mark.slow
def test_log_line_fuzz(simulated_log):
    lines = simulated_log.split(b"\n")[:-1]

    @hypothesis_settings(1500)
    @given(st.sampled_from(lines), st.lists(st.tuples(st.integers(0, 400), st.binary(max_size=3)),
                                            max_size=4))
    def run(line, edits):
        mutated = bytearray(line)
        for at, replacement in edits:
            at = at % (len(mutated) + 1)
            mutated[at:at + 1] = replacement
        check_log_line(bytes(mutated))

    run()
    for line in lines:                # the unmutated log parses completely
        parse_line(line)


def mutate_log(data, log: bytes) -> bytes:
    """A log damaged the way files get damaged: bytes changed, NULs, lines lost or repeated."""
    lines = log.split(b"\n")
    for _ in range(data.draw(st.integers(0, 6), label="edits")):
        kind = data.draw(st.sampled_from(["byte", "nul_run", "drop", "dup", "swap", "tear",
                                          "garbage"]))
        i = data.draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        if kind == "byte" and line:
            j = data.draw(st.integers(0, len(line) - 1))
            b = data.draw(st.sampled_from(b"\0\n\t \"\\\xff0123456789ABC-#."))
            lines[i] = line[:j] + bytes([b]) + line[j + 1:]
        elif kind == "nul_run":
            lines[i] = b"\0" * data.draw(st.integers(1, 64)) + line
        elif kind == "drop":
            del lines[i]
        elif kind == "dup":
            lines.insert(i, line)
        elif kind == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        elif kind == "tear":
            lines[i] = line[:data.draw(st.integers(0, len(line)))]
        elif kind == "garbage":
            lines.insert(i, data.draw(st.binary(max_size=60)))
        if not lines:
            lines = [b""]
    return b"\n".join(lines)


@pytest.mark.slow
def test_follower_fuzz(simulated_log, tmp_path):
    """Mutated logs, written in random pieces and polled between: no exception, and every
    record the plug-in writes is a well-formed wire record."""
    from schedd_plugin.callbacks import PandaPlugin
    from schedd_plugin.follower import Follower
    from schedd_plugin.mirror import Mirror

    counter = [0]

    @hypothesis_settings(250)
    @given(st.data())
    def run(data):
        damaged = mutate_log(data, simulated_log)
        counter[0] += 1
        path = tmp_path / f"job_queue.{counter[0]}.log"
        cuts = sorted(data.draw(st.lists(st.integers(0, len(damaged)), max_size=5)))
        records: List[bytes] = []
        mirror = Mirror()
        follower = Follower(str(path), PandaPlugin(mirror, records.append, None, "fuzz.example"),
                            mirror)
        try:
            with open(path, "wb") as out:
                start = 0
                for cut in cuts + [len(damaged)]:
                    out.write(damaged[start:cut])
                    out.flush()
                    start = cut
                    follower.poll()
            follower.poll()
        finally:
            follower.close()
        for record in records:
            assert record.endswith(b"\n") and record.count(b"\n") == 1
            decode(record[:-1])         # raises BadRecord if the plug-in wrote garbage
        check_record_stream(b"".join(records), [])

    run()


# -- atheris ---------------------------------------------------------------------------------

ATHERIS_RUNS = 200_000
ATHERIS_SECONDS = 5
# Only the runtime is instrumented (instrumenting pytest and hypothesis too takes minutes).
ATHERIS_HARNESS = """
import sys
import atheris
with atheris.instrument_imports(include=["pandad", "schedd_plugin"]):
    import pandad.classad, pandad.coalesce, pandad.convert, pandad.wire
    import schedd_plugin.logparse
from tests.test_fuzz import atheris_main
atheris_main(sys.argv)
"""


@pytest.mark.slow
@pytest.mark.parametrize("target", ["record", "value", "logline"])
def test_atheris(target, tmp_path):
    """Coverage-guided fuzzing (libFuzzer) for a bounded time; a crash fails."""
    from tests.support import python_env, require_module

    require_module("atheris")
    result = subprocess.run(
        [sys.executable, "-c", ATHERIS_HARNESS, target, f"-runs={ATHERIS_RUNS}",
         f"-max_total_time={ATHERIS_SECONDS}", f"-artifact_prefix={tmp_path}/",
         "-print_final_stats=1"],
        env=python_env(), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    tail = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 0, tail
    assert "stat::number_of_executed_units" in tail, tail
    assert not list(tmp_path.glob("crash-*")), tail


def atheris_main(argv: List[str]) -> None:
    """The libFuzzer entry point: ``argv[1]`` names the target, the rest go to libFuzzer."""
    import atheris

    def record(data: bytes) -> None:
        cut = data[0] if data else 0
        check_record_stream(data, [cut, cut * 7])

    def value(data: bytes) -> None:
        check_value(atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(200))

    targets = {"record": record, "value": value, "logline": check_log_line}
    atheris.Setup([argv[0]] + argv[2:], targets[argv[1]])
    atheris.Fuzz()
