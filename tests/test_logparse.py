"""schedd_plugin.logparse: one job_queue.log line → LogOp (docs/job-queue-log.md §1, §8)."""

import pytest

from schedd_plugin.logparse import CorruptLine, LogOp, parse_line


@pytest.mark.parametrize("line, expected", [
    (b"107 1 CreationTimestamp 1763853165",
     LogOp(107, "", None, None, ("1", "CreationTimestamp", "1763853165"))),
    (b"101 0.0 Job Machine", LogOp(101, "0.0", None, None, ("Job", "Machine"))),
    (b"101 0.2 Owner (empty)", LogOp(101, "0.2", None, None, ("Owner", ""))),
    (b"101 42.-2 ClusterPvt", LogOp(101, "42.-2", None, None, ("ClusterPvt", ""))),
    (b"101 0.3 (empty) (empty)", LogOp(101, "0.3", None, None, ("", ""))),
    (b"102 42.0", LogOp(102, "42.0", None, None, ())),
    (b"102 042.-1 ", LogOp(102, "042.-1", None, None, ())),
    (b"104 42.1 HoldReason", LogOp(104, "42.1", "HoldReason", None, ())),
    (b"105 ", LogOp(105, "", None, None, ())),
    (b"105", LogOp(105, "", None, None, ())),
    (b"106 ", LogOp(106, "", None, None, ())),
    (b"106", LogOp(106, "", None, None, ())),
    (b"106 # 2026-01-01T01:01:01.000123 NONDURABLE",
     LogOp(106, "", None, None, ("2026-01-01T01:01:01.000123 NONDURABLE",))),
    (b"106 \r", LogOp(106, "", None, None, ())),
])
def test_record_forms(line, expected):
    assert parse_line(line) == expected


def test_set_attribute_value_is_kept_verbatim():
    # Raw tabs, runs of spaces, literal backslashes and an escaped quote: all kept.
    line = b'103 1.0 Args "a\tb  c\\d \\"q\\" "'
    assert parse_line(line) == LogOp(103, "1.0", "Args", '"a\tb  c\\d \\"q\\" "', ())
    expr = (b"103 042.-1 Requirements (TARGET.Arch == \"X86_64\") &&  (TARGET.OpSys == \"LINUX\")")
    assert parse_line(expr).value == '(TARGET.Arch == "X86_64") &&  (TARGET.OpSys == "LINUX")'


def test_separators_like_htcondor_readword():
    # A run of blanks before a word is skipped; the value starts after ONE separator.
    assert parse_line(b"103 1.0  Name  v") == LogOp(103, "1.0", "Name", " v", ())
    assert parse_line(b"103\t1.0\tName\tv\tw") == LogOp(103, "1.0", "Name", "v\tw", ())
    assert parse_line(b"104\t1.0\tName") == LogOp(104, "1.0", "Name", None, ())
    assert parse_line(b"101\t1.0\tJob\tMachine") == LogOp(101, "1.0", None, None, ("Job", "Machine"))


def test_one_trailing_cr_is_dropped():
    assert parse_line(b"103 1.0 N 5\r").value == "5"


def test_invalid_utf8_in_a_value_round_trips_as_surrogate_escapes():
    op = parse_line(b'103 1.0 Name "caf\xe9 \xc3\xa9"')
    assert op.value == '"caf\udce9 \u00e9"'
    assert op.value.encode("utf-8", "surrogateescape") == b'"caf\xe9 \xc3\xa9"'


@pytest.mark.parametrize("line", [
    b"",
    b"abc",
    b"100 1.0 N v",
    b"108 1.0",
    b"999 1.0",
    b"+03 1.0 N v",
    b"1_3 1.0 N v",
    b"106#x",
    b"103 1.0 N",                 # no value (the C++ reader would eat the next line)
    b"103 1.0 N ",
    b"103 1.0 N   ",              # a blank value: the writer never writes one
    b"103 1.0 EnteredCurr",       # a torn line
    b"103 1.0\x00 N v",           # NUL
    b"\x00\x00\x00\x00",
    b"103 \xff.0 N v",            # invalid UTF-8 in the key
    b"103 1.0 N\xff v",           # ... in the name
    b"104 1.0",
    b"104 1.0 N extra",
    b"102",
    b"102 1.0 extra",
    b"101 1.0",
    b"101 1.0 Job Machine extra",
    b"105 x",
    b"106 x",
    b"107 1 CreationTimestamp",
    b"107 x CreationTimestamp 5",
    b"107 1 CreationTimestamp y",
])
def test_corrupt_lines_raise_one_line_reasons(line):
    with pytest.raises(CorruptLine) as info:
        parse_line(line)
    message = str(info.value)
    assert message and "\n" not in message


def test_any_bytes_never_raise_anything_else():
    import random
    rng = random.Random(5)
    alphabet = b"0123456789 .-\t\"\\\x00\xff\xc3abcN#\r"
    for _ in range(20000):
        line = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        prefix = rng.choice([b"", b"101 ", b"102 ", b"103 ", b"104 ", b"105", b"106 ", b"107 "])
        try:
            op = parse_line(prefix + line)
        except CorruptLine:
            continue
        assert 101 <= op.op <= 107


@pytest.mark.parametrize("line, shown", [
    (b"root:$6$secretsecretsecretsecretsecret$hash:19000:0:99999:7:::",
     "'root:$6$secretsecretsecretsecret'... (62 bytes)"),
    (b"104 1.0 A \x1b[31msecret", "'104 1.0 A '... (21 bytes)"),
    (b"hello", "'hello'"),
])
def test_a_corrupt_line_is_quoted_by_its_first_32_printable_characters_only(line, shown):
    with pytest.raises(CorruptLine) as e:
        parse_line(line)
    assert str(e.value).endswith(shown)
    assert b"secret$hash" not in str(e.value).encode() and "\x1b" not in str(e.value)


def test_parse_lines_fast_path_agrees_with_its_reference():
    """parse_lines(fast=True) parses plain-ASCII str lines inline; fast=False sends each line
    through parse_line.  Same ops, same corrupt indices, for near-valid and odd lines."""
    from schedd_plugin.logparse import parse_lines

    lines = ["103 1.0 A 1", "103 1.0 A  1", "103 1.0 A \t1", "103 1.0\tA 1", "103 1.0 A",
             "104 1.0 A", "104 1.0 A B", "104 1.0\tA", "102 1.0", "102 1.0 A", "102  1.0",
             "105 ", "105", "106 ", "106 #c", "106 x", "101 1.0 Job Machine", "108 x", "",
             "103 01.-1 Name \"v  w\"", "107 3 CreationTimestamp 5"]
    names = {}
    fast = parse_lines(lines, fast=True, share=lambda name: names.setdefault(name, name))
    reference = parse_lines(lines, fast=False)
    assert fast == reference
    assert reference[1] == [4, 6, 9, 15, 17, 18]
    # bytes lines (a chunk that is not plain ASCII) always take the reference
    assert parse_lines([line.encode() for line in lines]) == reference
