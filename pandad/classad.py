"""ClassAd value text: string literals, old → new syntax, and values → JSON.

Shared by pandad and panda_plugin.

Two ClassAd syntaxes meet here:

* **Old syntax** is what the schedd writes to ``job_queue.log``. Inside a string only ``\\"``
  is an escape; every other backslash is literal, control characters (tab, …) are written raw,
  and a string that *ends* in a backslash is written ``...\\"`` as the last characters of the
  expression (HTCondor's ``Lexer::tokenizeStringOld``).
* **New syntax** is what travels on the wire to pandad (docs/design.md §3). Backslash escapes
  ``\\\\ \\" \\' \\? \\a \\b \\f \\n \\r \\t \\v`` and octal ``\\ooo`` (bytes, so UTF-8
  can be spelled byte by byte) are converted; any other escaped character stands for itself;
  ``\\0`` makes the literal invalid; adjacent literals (``"a" "b"``) are concatenated before
  escapes are converted (HTCondor's ``Lexer::tokenizeString`` and ``convert_escapes``).

Everything here is a pure function of its text; nothing is evaluated.
"""

import math
import re
from typing import Optional, Tuple

__all__ = ["to_json_value", "old_to_new", "quote", "unquote"]

# A real with an all-zero fraction becomes a JSON integer only inside this range: beyond it a
# monitor's 64-bit integer column would overflow, while a float still carries the value.
_INT64_MIN = -(2 ** 63)
_INT64_MAX = 2 ** 63 - 1

_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
# More significant digits than any 64-bit integer has: such a literal is sent as its text
# without int(), which refuses more than sys.get_int_max_str_digits() digits.
_INT64_DIGITS = 19
_NUMBER_RE = re.compile(r"([+-]?)\s*((?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\Z")
_KEYWORDS = {"true": True, "false": False, "undefined": None, "null": None, "error": None}

# One new-syntax escape: octal (\[0-3]oo or \[4-7]o, as convert_escapes takes digits) or any
# single byte after the backslash. A trailing lone backslash is not an escape.
_ESCAPE_RE = re.compile(rb"\\([0-3][0-7]{0,2}|[4-7][0-7]?|.)", re.DOTALL)
_SIMPLE_ESCAPES = {
    b'"': b'"', b"'": b"'", b"?": b"?", b"\\": b"\\", b"a": b"\a", b"b": b"\b",
    b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v",
}

# What old_to_new has to look at: a backslash or any control character anywhere.
_NEEDS_REWRITE_RE = re.compile(r"[\\\x00-\x1f\x7f]")
# What quote() must escape. Non-ASCII text stays as it is (UTF-8 on the wire).
_QUOTE_SPECIAL_RE = re.compile(r'[\\"\x00-\x1f\x7f]')
_QUOTE_NAMED = {
    "\\": "\\\\", '"': '\\"', "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n",
    "\r": "\\r", "\t": "\\t", "\v": "\\v",
}
_QUOTE_CHAR_RE = re.compile("[\"']")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SPACE = " \t\n\v\f\r"  # C isspace() in the "C" locale, as the lexer uses it


def _escape_char(ch: str) -> str:
    named = _QUOTE_NAMED.get(ch)
    if named is not None:
        return named
    # Always three digits, so a digit that follows cannot be taken into the escape.
    return "\\%03o" % ord(ch)


def _escape_body(body: str, delim: str = '"') -> str:
    escaped = _QUOTE_SPECIAL_RE.sub(lambda m: _escape_char(m.group()), body)
    if delim == "'":
        escaped = escaped.replace("'", "\\'")
    return escaped


def quote(value: str) -> str:
    """A Python str as a new-syntax ClassAd string literal, e.g. ``'a"b'`` → ``'"a\\\\"b"'``.

    Backslash, quote and every control character are escaped, so the literal never holds a raw
    TAB, VT, CR or LF (it can go on the wire as is). Non-ASCII text is kept as it is.
    Raises ValueError for a NUL character, which no ClassAd string can hold.
    """
    # Two C-level checks cover nearly every value (isprintable() is False for every control
    # character); the regex decides for the rest.
    if ('"' not in value and "\\" not in value and value.isprintable()) \
            or _QUOTE_SPECIAL_RE.search(value) is None:
        return '"' + value + '"'
    if "\0" in value:
        raise ValueError("a ClassAd string cannot hold a NUL character")
    return '"' + _escape_body(value) + '"'


def _convert_escapes(raw: str) -> Optional[str]:
    """The value of a new-syntax literal's body; None if it is invalid (``\\0``, bad UTF-8
    cannot happen here: see the caller)."""
    data = raw.encode("utf-8", "surrogateescape")
    invalid = False

    def replace(match: "re.Match[bytes]") -> bytes:
        nonlocal invalid
        token = match.group(1)
        if token[0] in b"01234567":
            number = int(token, 8)
            if number == 0:
                invalid = True
            return bytes((number & 0xFF,))
        return _SIMPLE_ESCAPES.get(token, token)

    converted = _ESCAPE_RE.sub(replace, data)
    if invalid:
        return None
    # Octal escapes spell bytes; bytes that are not UTF-8 become U+FFFD so that the result is
    # still text a monitor can store (json.dumps of a lone surrogate is not valid Unicode).
    return converted.decode("utf-8", "replace")


def _scan_literals(text: str, start: int, concatenate: bool) -> Tuple[Optional[str], int]:
    """Scan new-syntax string literal(s) beginning at ``text[start] == '"'``.

    Returns (the raw body, with adjacent literals joined when ``concatenate``; index after the
    last closing quote), or (None, -1) if a literal is not terminated.
    """
    parts = []
    pos = start
    n = len(text)
    while True:
        i = pos + 1
        body_start = i
        while True:
            j = text.find('"', i)
            if j < 0:
                return None, -1
            # The quote is escaped when an odd number of backslashes precedes it.
            k = j - 1
            while k >= body_start and text[k] == "\\":
                k -= 1
            if (j - 1 - k) % 2 == 0:
                break
            i = j + 1
        parts.append(text[body_start:j])
        pos = j + 1
        if not concatenate:
            return "".join(parts), pos
        k = pos
        while k < n and text[k] in _SPACE:
            k += 1
        if k < n and text[k] == '"':
            pos = k
            continue
        return "".join(parts), pos


def unquote(text: str) -> Optional[str]:
    """The value of ``text`` if it is exactly one new-syntax string literal (surrounding
    whitespace allowed), else None. ``'"a\\\\tb"'`` → ``'a\\tb'``."""
    s = text.strip(_SPACE)
    if len(s) < 2 or s[0] != '"' or s[-1] != '"':
        return None
    body = s[1:-1]
    if "\\" not in body:
        return None if '"' in body else body
    raw, end = _scan_literals(s, 0, concatenate=False)
    if raw is None or end != len(s):
        return None
    return _convert_escapes(raw)


def _padded_int(literal: str) -> Optional[int]:
    """An integer literal (sign and leading zeros allowed) as int; None when it has more
    significant digits than a 64-bit integer."""
    digits = literal.lstrip("+-")
    significant = digits.lstrip("0")
    if len(significant) > _INT64_DIGITS:
        return None
    value = int(significant or "0")
    return -value if literal[:len(literal) - len(digits)].count("-") else value


def _number(s: str) -> object:
    match = _NUMBER_RE.match(s)
    if match is None:
        return s
    sign, digits = match.groups()
    if "." not in digits and "e" not in digits and "E" not in digits:
        value = _padded_int(sign + digits)
        if value is None:
            return s
        # ClassAd integers are 64-bit; beyond that it is not a ClassAd integer any more.
        return value if _INT64_MIN <= value <= _INT64_MAX else s
    real = float(sign + digits)
    if math.isinf(real) or math.isnan(real):
        return s
    if real.is_integer() and _INT64_MIN <= real <= _INT64_MAX:
        return int(real)
    return real


def to_json_value(text: str) -> object:
    """A new-syntax ClassAd value text as a JSON-able Python value (docs/design.md §4.4).

    * a string literal → str (all escapes converted, any Unicode; octal escapes that do not
      spell UTF-8 become U+FFFD; adjacent literals are joined, as the ClassAd parser does);
    * an integer → int (64-bit range; anything larger is not a ClassAd integer → its text,
      however many digits it has);
    * a real → float, or int when its fraction is all zeros (``1.0`` → 1, ``1e10`` →
      10000000000) and it fits in 64 bits;
    * ``true``/``false`` (any case) → bool; ``undefined``/``null``/``error`` (any case) → None;
    * anything else (lists, nested ads, expressions, and the special reals such as
      ``real("NaN")``, ``real("INF")`` or a literal that overflows to infinity, which JSON
      cannot represent) → the ClassAd text itself, stripped, as a str. So does a string
      literal ClassAd would reject (one holding ``\\0``).
    """
    s = text.strip(_SPACE)
    if not s:
        return s
    first = s[0]
    if first == '"':
        # Fast path: one literal without escapes, the common case.
        if s[-1] == '"' and len(s) >= 2 and "\\" not in s and s.count('"') == 2:
            return s[1:-1]
        raw, end = _scan_literals(s, 0, concatenate=True)
        if raw is None or end != len(s):
            return s
        value = _convert_escapes(raw)
        return s if value is None else value
    if first in "0123456789+-.":
        # Fast paths for the usual unsigned "123" and "123.5", with _number's rules; isascii()
        # keeps out the other scripts' digits that isdigit() and float() accept.
        if s.isdigit() and s.isascii():
            value = int(s) if len(s) <= _INT64_DIGITS else _padded_int(s)
            return value if value is not None and value <= _INT64_MAX else s
        whole, dot, fraction = s.partition(".")
        if dot and whole.isdigit() and fraction.isdigit() and s.isascii():
            real = float(s)
            if real.is_integer():
                return int(real) if real <= _INT64_MAX else real
            return s if math.isinf(real) else real
        if _INT_RE.match(s):
            value = int(s) if len(s) <= _INT64_DIGITS else _padded_int(s)
            if value is None:
                return s
            return value if _INT64_MIN <= value <= _INT64_MAX else s
        return _number(s)
    keyword = _KEYWORDS.get(s.lower(), s) if len(s) <= 9 else s
    return keyword


def _rewrite_old(text: str) -> str:
    out = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"' or ch == "'":
            delim = ch
            body = []
            j = i + 1
            closed = False
            while True:
                k = text.find(delim, j)
                if k < 0:
                    body.append(text[j:])
                    j = n
                    break
                if k > j and text[k - 1] == "\\":
                    after = k + 1
                    if after < n and text[after] != "\n":
                        # \" inside the expression: an escaped delimiter, the string goes on.
                        body.append(text[j:k - 1])
                        body.append(delim)
                        j = after
                        continue
                    # \" at the very end: the string ends in a backslash.
                body.append(text[j:k])
                j = k + 1
                closed = True
                break
            out.append(delim)
            out.append(_escape_body("".join(body), delim))
            if closed:
                out.append(delim)
            i = j
        else:
            match = _QUOTE_CHAR_RE.search(text, i)
            k = n if match is None else match.start()
            out.append(text[i:k])
            i = k
    rewritten = "".join(out)
    # Outside strings a control character is whitespace (or an error) in ClassAd syntax; as a
    # space it cannot break the wire's TAB/LF framing. Strings were escaped above, so any
    # control character left is outside a string.
    return _CONTROL_RE.sub(" ", rewritten)


def old_to_new(text: str) -> str:
    """Rewrite an old-syntax value from job_queue.log into new syntax with the same meaning.

    Strings anywhere in the text (plain, in lists, nested ads, expressions, and quoted
    ``'attribute names'``) are re-escaped: a literal backslash becomes ``\\\\``, ``\\"`` stays an
    escaped quote except at the very end of the text where it closes a string ending in a
    backslash, and control characters become escapes. Raw control characters outside strings
    become spaces. The same object is returned when there is nothing to rewrite (no backslash
    and no control character anywhere), which is nearly always.
    """
    if ("\\" not in text and text.isprintable()) or _NEEDS_REWRITE_RE.search(text) is None:
        return text
    return _rewrite_old(text)
