"""The configuration language's pieces every stage uses: errors, entries, logical lines, booleans."""

from typing import Dict, Iterator, NamedTuple, Optional, Tuple

EXIT_CONFIG_ERROR = 99          # also exported by pandad.knobs; HTCondor's "do not restart"

SPACE = " \t\n\v\f\r"            # C isspace() in the "C" locale
IDCHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./")


class ConfigError(Exception):
    """A fatal configuration problem; ``str(e)`` is one line, ``FILE:LINE: message``."""

    def __init__(self, message: str, file: Optional[str] = None, line: Optional[int] = None):
        self.message = message
        self.file = file
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        return (where + self.message).replace("\n", " ")


class Entry(NamedTuple):
    """One knob as set: its name as written, raw (self-expanded) value, and origin."""
    name: str
    value: str
    file: str
    line: int


Table = Dict[str, Entry]         # key: upper-case name


# --------------------------------------------------------------------------- lines

def rstrip_space(text: str) -> str:
    return text.rstrip(SPACE)


def logical_lines(text: str) -> Iterator[Tuple[int, str]]:
    """Yield ``(first_line_number, logical_line)`` as HTCondor's getline does.

    Each physical line is trimmed; one ending in a backslash continues onto the next. A
    comment line that starts a logical line never continues. A comment line inside a
    continuation is dropped except its last character (HTCondor keeps it so that a
    commented-out line ending in ``\\`` still continues).
    """
    physical = text.split("\n")
    if physical and physical[-1] == "":
        physical.pop()
    buf: Optional[str] = None
    first = 0
    for number, raw in enumerate(physical, 1):
        piece = raw.strip(SPACE)
        continuing = buf is not None
        if buf is None:
            buf, first = "", number
        in_comment = piece.startswith("#")
        if in_comment and continuing:
            piece, in_comment = piece[-1:], False
        buf += piece
        if buf.endswith("\\") and not in_comment:
            buf = buf[:-1]
            continue
        if buf.endswith("\\"):
            buf = buf[:-1]
        yield first, buf
        buf = None
    if buf is not None:
        yield first, buf


# --------------------------------------------------------------------------- booleans

def parse_bool(text: str) -> Optional[bool]:
    """HTCondor's boolean spellings (case-insensitive), or None if ``text`` is not one."""
    word = text.strip(SPACE).lower()
    if word in ("true", "yes", "t", "1"):
        return True
    if word in ("false", "no", "f", "0"):
        return False
    return None



def valid_name(name: str) -> bool:
    return bool(name) and all(c in IDCHARS for c in name)
