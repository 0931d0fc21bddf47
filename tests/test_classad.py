"""pandad.classad: string literals, old → new syntax, and values → JSON (no oracle here;
tests/test_classad_oracle.py checks the same against HTCondor's own classad2)."""

import json

import pytest

from pandad.classad import old_to_new, quote, to_json_value, unquote

FIXTURE_VALUES = [
    # (value text from job_queue.log, JSON value)
    ('"/home/alice/job.sh"', "/home/alice/job.sh"),
    ("1700000000", 1700000000),
    ("54.0", 54),
    ("0.0", 0),
    ("UNDEFINED", None),
    ('real("NaN")', 'real("NaN")'),
    ("[ UserRequest = 1 ]", "[ UserRequest = 1 ]"),
    ("{ 1, 2 }", "{ 1, 2 }"),
    ('(TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX")',
     '(TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX")'),
]


@pytest.mark.parametrize("text, value", [
    ('"plain"', "plain"),
    ('""', ""),
    ('"a\\\\b"', "a\\b"),
    ('"a\\"b"', 'a"b'),
    ('"line\\nnext\\ttab\\rcr\\vvt\\fff\\bbs\\aa"', "line\nnext\ttab\rcr\vvt\fff\bbs\aa"),
    ('"\\101\\102C"', "ABC"),
    ('"\\7"', "\x07"),
    ('"\\77x"', "?x"),
    ('"\\400"', " 0"),
    ('"\\303\\251t\\303\\251"', "été"),
    ('"\\377"', "\ufffd"),
    ('"été ☃ 😀"', "été ☃ 😀"),
    ('"\\q\\e\\u0041\\x41"', "qeu0041x41"),
    ("\"\\'\\?\"", "'?"),
    ('"a" "b"', "ab"),
    ('"\\1" "01"', "A"),
    ('  "padded"  ', "padded"),
    ('"\\0"', '"\\0"'),
    ('"unterminated', '"unterminated'),
    ('"a" + "b"', '"a" + "b"'),
    ("0", 0),
    ("42", 42),
    ("-42", -42),
    ("+7", 7),
    ("- 5", -5),
    ("017", 17),
    ("9223372036854775807", 9223372036854775807),
    ("-9223372036854775808", -9223372036854775808),
    ("9223372036854775808", "9223372036854775808"),
    ("1.0", 1),
    ("1e10", 10000000000),
    ("1E+10", 10000000000),
    ("-0.5", -0.5),
    (".5", 0.5),
    ("1.5e-3", 0.0015),
    ("-0.0", 0),
    ("1e300", 1e300),
    ("1e400", "1e400"),
    ("true", True), ("TRUE", True), ("False", False),
    ("undefined", None), ("UNDEFINED", None), ("null", None), ("Error", None),
    ('real("NaN")', 'real("NaN")'),
    ('real("-INF")', 'real("-INF")'),
    ("{ 1, 2 }", "{ 1, 2 }"),
    ("[ a = 1; b = 2 ]", "[ a = 1; b = 2 ]"),
    ("1 + 2", "1 + 2"),
    ("RequestDisk", "RequestDisk"),
    ("truex", "truex"),
    ("1.", "1."),
    ("--5", "--5"),
    ("", ""),
])
def test_to_json_value(text, value):
    result = to_json_value(text)
    assert result == value and type(result) is type(value)
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("text, value", FIXTURE_VALUES)
def test_to_json_value_of_log_values(text, value):
    assert to_json_value(old_to_new(text)) == value


@pytest.mark.parametrize("old, new", [
    ('"C:\\Users\\x"', '"C:\\\\Users\\\\x"'),
    ('"a\\nb"', '"a\\\\nb"'),
    ('"ends\\"', '"ends\\\\"'),
    ('"a\\"b"', '"a\\"b"'),
    ('"a\\""', '"a\\""'),
    ('"tab\there"', '"tab\\there"'),
    ('"\x01\x7f"', '"\\001\\177"'),
    ('"\\101"', '"\\\\101"'),
    ('{ "x\\y", "z" }', '{ "x\\\\y", "z" }'),
    ('[ a = "p\\q"; b = 1 ]', '[ a = "p\\\\q"; b = 1 ]'),
    ('strcat("a\\b", Name)', 'strcat("a\\\\b", Name)'),
    ("1 +\t2", "1 + 2"),
    ("'odd\\name' + 1", "'odd\\\\name' + 1"),
    ('"é\\"', '"é\\\\"'),
    ('"open\\', '"open\\\\'),
])
def test_old_to_new(old, new):
    assert old_to_new(old) == new


def test_old_to_new_leaves_ordinary_values_alone():
    for text in ['"plain"', "42", '(Arch == "X86_64") && Memory > 10', '"é"', "{ 1, 2 }"]:
        assert old_to_new(text) is text


def test_old_to_new_output_never_holds_framing_characters():
    for old in ['"a\tb\x0bc\rd"', "x\ty", '"\x00"', "1\n+2"]:
        new = old_to_new(old)
        assert not set(new) & set("\t\v\r\n\x00"), repr(new)


def test_old_to_new_then_to_json_keeps_the_string():
    for string in ["C:\\Users\\x", "ends\\", 'q"uote', "tab\there", "\\\\", 'both\\"', "é\\"]:
        old = '"' + string.replace('"', '\\"') + '"'  # how the schedd writes it
        assert to_json_value(old_to_new(old)) == string, old


@pytest.mark.parametrize("value", [
    "", "plain", 'a"b', "a\\b", "ends\\", "\t\n\r\v\f\b\a", "\x01\x1f\x7f", "é ☃ 😀",
    "0", "123", "\\101",
])
def test_quote_and_unquote(value):
    literal = quote(value)
    assert not set(literal) & set("\t\v\r\n")
    assert unquote(literal) == value
    assert to_json_value(literal) == value


def test_quote_refuses_nul():
    with pytest.raises(ValueError):
        quote("a\x00b")


@pytest.mark.parametrize("text", ["plain", '"a" "b"', '"a" x', '"a', "'a'", '"\\0"', '"a"b"'])
def test_unquote_refuses_what_is_not_one_literal(text):
    assert unquote(text) is None


def test_unquote_allows_surrounding_space():
    assert unquote(' "x" ') == "x"
