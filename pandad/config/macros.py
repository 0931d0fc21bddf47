"""Macro expansion: ``$(NAME)``, ``$(NAME:default)``, ``$ENV(X)``, ``$(DOLLAR)``, as HTCondor's
expand_macro and lookup_macro do it, over a table of entries."""

from typing import Callable, Mapping, NamedTuple, Optional, Tuple

from pandad.config.syntax import IDCHARS, ConfigError, Entry, Table

# Values HTCondor detects at run time that pandad does not: a reference to one is an error
# rather than a silently empty expansion.
UNSUPPORTED_DETECTED = frozenset((
    "IP_ADDRESS", "IPV4_ADDRESS", "IPV6_ADDRESS", "PID", "PPID", "REAL_UID", "REAL_GID",
    "CONDOR_UID", "CONDOR_GID", "ARCH", "OPSYS", "OPSYSVER", "OPSYSANDVER",
    "OPSYSMAJORVER", "OPSYSNAME", "OPSYSLONGNAME", "OPSYSSHORTNAME", "OPSYSLEGACY",
    "UNAME_ARCH", "UNAME_OPSYS", "DETECTED_CORES", "DETECTED_CPUS",
    "DETECTED_PHYSICAL_CPUS", "DETECTED_MEMORY", "DETECTED_CPUS_LIMIT", "CONDOR_VERSION",
))


MAX_EXPANSIONS = 10000
MAX_EXPANDED_CHARS = 1 << 20

_COLON_DEFAULT_EXTRA = frozenset("$ ,\\:")
_SPECIAL_FUNCTIONS = ("$ENV", "$RANDOM_CHOICE", "$RANDOM_INTEGER", "$CHOICE", "$SUBSTR",
                      "$INT", "$REAL", "$STRING", "$EVAL", "$BASENAME", "$DIRNAME")
_FILENAME_FLAGS = frozenset("pnxdqabfwuPNXDQABFWU")

# Macro kinds found by next_macro.
NORMAL = "$"
ENV = "$ENV"

# --------------------------------------------------------------------------- macros

class Macro(NamedTuple):
    kind: str             # NORMAL, ENV, or the name of an unsupported function
    dollar: int           # index of '$'
    body: int             # index of the first body character
    colon: int            # index of the default after ':' (0 = none)
    right: int            # index after ')'

    def name(self, text: str) -> str:
        return text[self.body:(self.colon - 1 if self.colon else self.right - 1)]

    def default(self, text: str) -> Optional[str]:
        return text[self.colon:self.right - 1] if self.colon else None


def _macro_kind(prefix: str) -> Tuple[Optional[str], bool]:
    """(kind, identifier-only body) for the text between '$' and '(' (inclusive of '$')."""
    if prefix == "$":
        return NORMAL, True
    if prefix.startswith("$$"):
        return None, False
    if prefix[1:2] == "F" and all(c in _FILENAME_FLAGS for c in prefix[2:]):
        return prefix, False
    if prefix in _SPECIAL_FUNCTIONS:
        return prefix, prefix == ENV
    return None, False


def next_macro(text: str, start: int, skip: Callable[[str, str], bool]) -> Optional[Macro]:
    """The next ``$(...)``/``$FUNC(...)`` at or after ``start``, as next_config_macro finds it."""
    n = len(text)
    t = start
    while True:
        d = text.find("$", t)
        if d < 0:
            return None
        p = d + 1
        if p < n and text[p] == "$":
            p += 1
        while p < n and (text[p] == "_" or (text[p].isascii() and text[p].isalnum())):
            p += 1
        if p >= n or text[p] != "(":
            t = p
            continue
        kind, idchars = _macro_kind(text[d:p])
        if kind is None:
            t = p
            continue
        body = p + 1
        v = body
        colon = 0
        if not idchars:
            v = text.find(")", body)
            v = n if v < 0 else v
        else:
            bad = False
            while v < n and text[v] != ")":
                c = text[v]
                v += 1
                if c == ":" and not colon:
                    colon = v
                    continue
                if colon:
                    if c == "(":
                        close = text.find(")", v)
                        if close >= 0:
                            v = close + 1
                            continue
                    elif c in _COLON_DEFAULT_EXTRA:
                        continue
                if c not in IDCHARS:
                    bad = True
                    break
            if bad:
                t = body
                continue
        if v < n and text[v] == ")":
            if skip(kind, text[body:v]):
                t = v
                continue
            return Macro(kind, d, body, colon, v + 1)
        t = body


def _is_dollar(kind: str, body: str) -> bool:
    return kind == NORMAL and body.upper() == "DOLLAR"


class Context:
    """What expansion needs: the table, the subsystem, built-in defaults, the environment."""

    def __init__(self, table: Table, subsystem: str, defaults: Mapping[str, str],
                 environ: Mapping[str, str]):
        self.table = table
        self.subsystem = subsystem.upper()
        self.defaults = defaults
        self.environ = environ

    def lookup_entry(self, name: str) -> Optional[Entry]:
        key = name.upper()
        if self.subsystem:
            entry = self.table.get(f"{self.subsystem}.{key}")
            if entry is not None:
                return entry
        return self.table.get(key)

    def lookup(self, name: str) -> Optional[str]:
        """The raw value, as HTCondor's lookup_macro: SUBSYS.NAME, NAME, built-in default."""
        key = name.upper()
        if key in UNSUPPORTED_DETECTED:
            raise ConfigError(f"$({name}) is detected by HTCondor at run time and pandad "
                              "does not know it; write the value out instead")
        entry = self.lookup_entry(name)
        if entry is not None:
            return entry.value
        if self.subsystem:
            value = self.defaults.get(f"{self.subsystem}.{key}")
            if value is not None:
                return value
        return self.defaults.get(key)

    def evaluate(self, macro: Macro, text: str) -> str:
        name = macro.name(text)
        default = macro.default(text)
        if macro.kind == NORMAL:
            value = self.lookup(name)
        elif macro.kind == ENV:
            # Unlike $(NAME:default), a variable that is set but empty stays empty.
            value = self.environ.get(name)
            if value is None:
                return "UNDEFINED" if default is None else default
            return value
        else:
            raise ConfigError(f"the macro function {macro.kind}() is not supported by pandad "
                              f"(in '{text[macro.dollar:macro.right]}')")
        if not value:
            return default if default is not None else ""
        return value

    def expand(self, text: str) -> str:
        """Expand every macro, as HTCondor's expand_macro: rescan each substitution."""
        pos = 0
        for _ in range(MAX_EXPANSIONS):
            macro = next_macro(text, pos, _is_dollar)
            if macro is None:
                return self._dollars(text)
            text = text[:macro.dollar] + self.evaluate(macro, text) + text[macro.right:]
            pos = macro.dollar
            if len(text) > MAX_EXPANDED_CHARS:
                break
        raise ConfigError("macro expansion does not end (a $(NAME) refers to itself "
                          "through other macros)")

    @staticmethod
    def _dollars(text: str) -> str:
        pos = 0
        while True:
            macro = next_macro(text, pos, lambda kind, body: not _is_dollar(kind, body))
            if macro is None:
                return text
            text = text[:macro.dollar] + "$" + text[macro.right:]
            pos = macro.dollar

    def expand_self(self, text: str, name: str) -> str:
        """Expand only references to ``name`` (and to NAME when name is SUBSYS.NAME)."""
        selves = {name.upper()}
        prefix = self.subsystem + "."
        if self.subsystem and name.upper().startswith(prefix) and len(name) > len(prefix):
            selves.add(name[len(prefix):].upper())

        def not_self(kind: str, body: str) -> bool:
            if kind != NORMAL and not kind.startswith("$F"):
                return True
            return body.split(":", 1)[0].upper() not in selves

        for _ in range(MAX_EXPANSIONS):
            macro = next_macro(text, 0, not_self)
            if macro is None:
                return text
            text = text[:macro.dollar] + self.evaluate(macro, text) + text[macro.right:]
        raise ConfigError(f"self reference in {name} does not end")
