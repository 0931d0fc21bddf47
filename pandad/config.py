"""HTCondor configuration, read exactly as HTCondor 25 reads it (docs/design.md §6).

The answers must equal the real HTCondor library's (``htcondor2.param``), which
tests/test_config_oracle.py checks. What is mirrored from HTCondor's
``config.cpp`` / ``condor_config.cpp``:

* sources: ``CONDOR_CONFIG`` (else ``/etc/condor/condor_config``; ``ONLY_ENV`` reads no
  file), then every file of ``LOCAL_CONFIG_DIR`` (byte order, skipping
  ``LOCAL_CONFIG_DIR_EXCLUDE_REGEXP``), then ``LOCAL_CONFIG_FILE`` (a list; a file may
  change the list), ``LOCAL_CONFIG_DIR`` again if a local file changed it, the user
  config file (``~/.condor/user_config``), then ``_CONDOR_NAME`` environment variables;
* lines: continuation with a trailing ``\\``, comment lines (a comment line inside a
  continuation keeps only its last character, as HTCondor does), ``NAME = value``,
  ``NAME : value``, ``NAME @=TAG`` ... ``@TAG``, ``include [ifexist] : file``,
  ``if``/``elif``/``else``/``endif``, ``error :`` and ``warning :``;
* macros: expanded lazily at lookup, except self references (``X = $(X) more``), which are
  expanded when the line is read; ``$(NAME)``, ``$(NAME:default)``, ``$ENV(X)``,
  ``$ENV(X:default)``, ``$(DOLLAR)``; ``$$(X)`` is left alone;
* lookup order: ``SUBSYS.NAME``, then ``NAME``, then HTCondor's built-in default; the host
  names are detected and cannot be overridden.

Metaknob lines (``use ROLE : ...``) are skipped: they set daemon, security and policy knobs,
none of which these programs read, so ``--config-val`` of a knob only a metaknob sets says it
is not defined.

Not supported, each a ``ConfigError`` naming file and line (never a silent wrong answer):
``if defined use ...``, ``include command``/``include output``/``into``, piped
configuration sources (``cmd |``), and the macro functions other than ``$ENV``
(``$INT``, ``$CHOICE``, ``$F...`` and friends) when a value that is looked up uses them.

Parsing and expansion are functions of text and dicts; only :meth:`HTCondorConfig.load`
touches files, the host name and the password database.
"""

import os
import pwd
import re
import socket
import sys
from typing import Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Tuple

DEFAULT_CONFIG_FILE = "/etc/condor/condor_config"
EXIT_CONFIG_ERROR = 99          # also exported by pandad.knobs; HTCondor's "do not restart"

# HTCondor's built-in defaults (param_info) for the names pandad and the plug-in use and
# every name those refer to. LOCAL_DIR defaults to $(TILDE), the condor user's home.
BUILTIN_DEFAULTS: Mapping[str, str] = {
    "RELEASE_DIR": "/usr",
    "BIN": "$(RELEASE_DIR)/bin",
    "SBIN": "$(RELEASE_DIR)/sbin",
    "LIB": "$(RELEASE_DIR)/lib",
    "LIBEXEC": "$(RELEASE_DIR)/libexec",
    "LOCAL_DIR": "$(TILDE)",
    "ETC": "$(LOCAL_DIR)",
    "LOG": "$(LOCAL_DIR)/log",
    "LOCK": "$(LOG)",
    "RUN": "$(LOCK)",
    "SPOOL": "$(LOCAL_DIR)/spool",
    "EXECUTE": "$(LOCAL_DIR)/execute",
    "JOB_QUEUE_LOG": "$(SPOOL)/job_queue.log",
    "SCHEDD_LOG": "$(LOG)/SchedLog",
    "REQUIRE_LOCAL_CONFIG_FILE": "true",
    "USER_CONFIG_FILE": "user_config",
    "LOCAL_CONFIG_DIR_EXCLUDE_REGEXP":
        r"^((\..*)|(.*\.pl)|(.*\.py)|(.*\.sh)|(.*~)|(#.*)|(.*\.rpmsave)|(.*\.rpmnew)"
        r"|(.*\.dpkg-old)|(.*\.dpkg-dist)|(.*\.cfsaved))$",
}

# Values HTCondor detects at run time that pandad does not: a reference to one is an error
# rather than a silently empty expansion.
UNSUPPORTED_DETECTED = frozenset((
    "IP_ADDRESS", "IPV4_ADDRESS", "IPV6_ADDRESS", "PID", "PPID", "REAL_UID", "REAL_GID",
    "CONDOR_UID", "CONDOR_GID", "ARCH", "OPSYS", "OPSYSVER", "OPSYSANDVER",
    "OPSYSMAJORVER", "OPSYSNAME", "OPSYSLONGNAME", "OPSYSSHORTNAME", "OPSYSLEGACY",
    "UNAME_ARCH", "UNAME_OPSYS", "DETECTED_CORES", "DETECTED_CPUS",
    "DETECTED_PHYSICAL_CPUS", "DETECTED_MEMORY", "DETECTED_CPUS_LIMIT", "CONDOR_VERSION",
))

# 'if version' is compared against the HTCondor releases pandad supports; a comparison
# whose answer differs across that range cannot be decided and is an error.
SUPPORTED_HTCONDOR_VERSIONS = ((23, 0, 0), (25, 99, 99))

MAX_INCLUDE_DEPTH = 20
MAX_EXPANSIONS = 10000
MAX_EXPANDED_CHARS = 1 << 20

_SPACE = " \t\n\v\f\r"            # C isspace() in the "C" locale
_IDCHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./")
_COLON_DEFAULT_EXTRA = frozenset("$ ,\\:")
_SPECIAL_FUNCTIONS = ("$ENV", "$RANDOM_CHOICE", "$RANDOM_INTEGER", "$CHOICE", "$SUBSTR",
                      "$INT", "$REAL", "$STRING", "$EVAL", "$BASENAME", "$DIRNAME")
_FILENAME_FLAGS = frozenset("pnxdqabfwuPNXDQABFWU")
_LIST_SPLIT = re.compile(r"[ ,\t\r\n]+")

# Macro kinds found by _next_macro.
_NORMAL = "$"
_ENV = "$ENV"


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

def _rstrip(text: str) -> str:
    return text.rstrip(_SPACE)


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
        piece = raw.strip(_SPACE)
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


# --------------------------------------------------------------------------- macros

class _Macro(NamedTuple):
    kind: str             # _NORMAL, _ENV, or the name of an unsupported function
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
        return _NORMAL, True
    if prefix.startswith("$$"):
        return None, False
    if prefix[1:2] == "F" and all(c in _FILENAME_FLAGS for c in prefix[2:]):
        return prefix, False
    if prefix in _SPECIAL_FUNCTIONS:
        return prefix, prefix == _ENV
    return None, False


def _next_macro(text: str, start: int, skip: Callable[[str, str], bool]) -> Optional[_Macro]:
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
                if c not in _IDCHARS:
                    bad = True
                    break
            if bad:
                t = body
                continue
        if v < n and text[v] == ")":
            if skip(kind, text[body:v]):
                t = v
                continue
            return _Macro(kind, d, body, colon, v + 1)
        t = body


def _is_dollar(kind: str, body: str) -> bool:
    return kind == _NORMAL and body.upper() == "DOLLAR"


class _Context:
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

    def evaluate(self, macro: _Macro, text: str) -> str:
        name = macro.name(text)
        default = macro.default(text)
        if macro.kind == _NORMAL:
            value = self.lookup(name)
        elif macro.kind == _ENV:
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
            macro = _next_macro(text, pos, _is_dollar)
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
            macro = _next_macro(text, pos, lambda kind, body: not _is_dollar(kind, body))
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
            if kind != _NORMAL and not kind.startswith("$F"):
                return True
            return body.split(":", 1)[0].upper() not in selves

        for _ in range(MAX_EXPANSIONS):
            macro = _next_macro(text, 0, not_self)
            if macro is None:
                return text
            text = text[:macro.dollar] + self.evaluate(macro, text) + text[macro.right:]
        raise ConfigError(f"self reference in {name} does not end")


# --------------------------------------------------------------------------- booleans

def parse_bool(text: str) -> Optional[bool]:
    """HTCondor's boolean spellings (case-insensitive), or None if ``text`` is not one."""
    word = text.strip(_SPACE).lower()
    if word in ("true", "yes", "t", "1"):
        return True
    if word in ("false", "no", "f", "0"):
        return False
    return None


# --------------------------------------------------------------------------- if/else

_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_VERSION = re.compile(r"version\s*(!?)([<=>]?)(=?)\s*[vV]?(\d+)\.(\d+)(?:\.(\d+))?\s*",
                      re.IGNORECASE)


def _version_test(match: "re.Match[str]", version: Tuple[int, int, int]) -> bool:
    negated, op_char, or_equal = match.group(1), match.group(2), match.group(3)
    literal = (int(match.group(4)), int(match.group(5)),
               int(match.group(6)) if match.group(6) is not None else version[2])
    op = {"<": -1, "=": 0, ">": 1, "": 0}[op_char]
    diff = (version > literal) - (version < literal)
    result = diff == op or (bool(or_equal) and diff == 0)
    return not result if negated else result


def evaluate_if(expression: str, ctx: _Context) -> bool:
    """The value of an ``if``/``elif`` condition; raises ConfigError when it has none."""
    expr = expression
    expanded = "$" in expr
    if expanded:
        expr = _rstrip(ctx.expand(expr))
    expr = expr.lstrip(_SPACE)
    inverted = expr.startswith("!")
    if inverted:
        expr = expr[1:].lstrip(_SPACE)
    expr = _rstrip(expr)
    if expanded and not expr:
        return inverted
    return _evaluate_condition(expr, expression, ctx) != inverted


def _evaluate_condition(expr: str, original: str, ctx: _Context) -> bool:
    if _NUMBER.fullmatch(expr):
        return float(expr) != 0
    as_bool = parse_bool(expr)
    if as_bool is not None:
        return as_bool
    words = expr.split(None, 1)
    keyword = words[0].lower() if words else ""
    if keyword == "defined":
        argument = words[1].strip(_SPACE) if len(words) > 1 else ""
        if not argument:
            return False
        if argument.lower().startswith("use "):
            raise ConfigError(f"'if defined use ...' needs metaknobs, which pandad does not "
                              f"support: {original}")
        if _NUMBER.fullmatch(argument) or argument.lower() in ("true", "false"):
            return True
        if all(c in _IDCHARS for c in argument):
            value = ctx.lookup(argument)
            if value is None and parse_bool(argument) is not None:
                return True
            return bool(value)
        raise ConfigError(f"{original} is not a valid if condition because defined argument "
                          "must be param name, boolean, or number")
    if keyword.startswith("version"):
        match = _VERSION.fullmatch(expr)
        if not match or int(match.group(4)) < 6:
            raise ConfigError(f"{original} is not a valid if condition because the version "
                              "literal is invalid")
        low, high = (_version_test(match, v) for v in SUPPORTED_HTCONDOR_VERSIONS)
        if low != high:
            raise ConfigError(f"cannot decide 'if {original}': pandad assumes an HTCondor "
                              "release from 23.0 to 25.x and the answer differs across them")
        return low
    raise ConfigError(f"{original} is not a valid if condition because complex "
                      "conditionals are not supported")


class _IfStack:
    """if/elif/else/endif nesting, as HTCondor's ConfigIfStack."""

    def __init__(self) -> None:
        self.frames: List[List[bool]] = []   # [active, any_branch_taken, in_else]

    def enabled(self) -> bool:
        return all(frame[0] for frame in self.frames)

    def handle(self, line: str, ctx: _Context) -> bool:
        """True if ``line`` was an if/elif/else/endif (and applies it)."""
        word = line.split(None, 1)[0].lower() if line.strip(_SPACE) else ""
        if word not in ("if", "elif", "else", "endif"):
            return False
        rest = line[len(word):].strip(_SPACE)
        outer = self.enabled()
        if word == "if":
            value = evaluate_if(rest, ctx) if outer else False
            self.frames.append([value, value, False])
        elif word == "elif":
            if not self.frames or self.frames[-1][2]:
                raise ConfigError("elif is not allowed after else" if self.frames
                                  else "elif without matching if")
            frame = self.frames[-1]
            live = all(f[0] for f in self.frames[:-1])
            value = (not frame[1]) and live and evaluate_if(rest, ctx)
            frame[0] = value
            frame[1] = frame[1] or value
        elif word == "else":
            if not self.frames or self.frames[-1][2]:
                raise ConfigError("else is not allowed after else" if self.frames
                                  else "else without matching if")
            frame = self.frames[-1]
            frame[0] = not frame[1]
            frame[2] = True
        else:
            if not self.frames:
                raise ConfigError("endif without matching if")
            self.frames.pop()
        return True


# --------------------------------------------------------------------------- parser

def _valid_name(name: str) -> bool:
    return bool(name) and all(c in _IDCHARS for c in name)


class Parser:
    """Reads config text into a table, as HTCondor's Parse_macros.

    ``read_source(path)`` returns a file's text or None if it cannot be opened; it is the
    only I/O, so the parser can be driven from strings in tests.
    """

    def __init__(self, ctx: _Context, read_source: Callable[[str], Optional[str]]):
        self.ctx = ctx
        self.read_source = read_source
        self.sources: List[str] = []

    def insert(self, name: str, value: str, file: str, line: int) -> None:
        value = self.ctx.expand_self(value, name)
        self.ctx.table[name.upper()] = Entry(name, value, file, line)

    def parse(self, text: str, filename: str, depth: int = 0) -> None:
        self.sources.append(filename)
        ifs = _IfStack()
        here: Optional[Tuple[str, str, int, List[str]]] = None
        line_number = 0
        for line_number, line in logical_lines(text):
            try:
                if not line.strip(_SPACE) or line.startswith("#"):
                    continue
                if here is not None:
                    name, tag, start, body = here
                    if line.startswith("@") and line[1:] == tag:
                        self.insert(name, "\n".join(body), filename, start)
                        here = None
                    else:
                        body.append(line)
                    continue
                if line.startswith(":") and (ifs.frames or re.match(r":if(\s|$)", line)):
                    line = line[1:]
                if ifs.handle(line, self.ctx):
                    continue
                if not ifs.enabled():
                    continue
                here = self._statement(line, filename, line_number, depth)
            except ConfigError as error:
                if error.file is None:
                    raise ConfigError(error.message, filename, line_number) from None
                raise
        if here is not None:
            raise ConfigError(f"end of file while looking for '@{here[1]}'", filename,
                              line_number)
        if ifs.frames:
            raise ConfigError("endif(s) not found before end-of-file", filename, line_number)

    def _statement(self, line: str, filename: str, number: int,
                   depth: int) -> Optional[Tuple[str, str, int, List[str]]]:
        i = 0
        while i < len(line) and line[i] not in _SPACE and line[i] not in "=:":
            i += 1
        if i == len(line):
            if line.startswith("["):
                return None     # an .ini-style section header, ignored as HTCondor does
            raise ConfigError(f"syntax error, expected NAME = VALUE: {line}")
        name = line[:i]
        op = line[i]
        pop = i
        j = i + 1
        if op not in "=:":
            while j < len(line) and line[j] in _SPACE:
                j += 1
            while j < len(line) and line[j] not in "=:@":
                j += 1
            pop = j
            op = line[j] if j < len(line) else ""
            j += 1
            if op == "@":
                if line[j:j + 1] == "=":
                    j += 1
                else:
                    op = ""
        if op not in ("=", ":", "@"):
            raise ConfigError(f"syntax error, missing : or = in: {line}")
        rhs = line[j:].lstrip(_SPACE)
        keyword = name[1:] if name.startswith("@") else name
        keyword = keyword.lower()
        if op == ":" and keyword == "use":
            # Metaknobs (use ROLE/SECURITY/FEATURE/POLICY : ...) set daemon, security and
            # policy knobs, never one pandad or the plug-in reads, and nearly every packaged
            # HTCondor has some: skip them rather than refuse the site's configuration.
            return None
        if op == ":" and keyword in ("error", "warning"):
            if keyword == "error":
                raise ConfigError(f"error: {self.ctx.expand(rhs)}")
            return None
        if op == ":" and keyword == "include":
            self._include(line[i:pop].strip(_SPACE), rhs, filename, depth)
            return None
        name = self.ctx.expand(name)
        if not _valid_name(name):
            raise ConfigError(f"illegal identifier: <{name}>")
        if op == "@":
            return name, rhs, number, []
        self.insert(name, rhs, filename, number)
        return None

    def _include(self, options: str, target: str, filename: str, depth: int) -> None:
        words = options.split()
        must_exist = True
        if words and words[0] in ("ifexist", "ifexists"):
            must_exist = False
            words = words[1:]
        if words and words[0] in ("command", "output"):
            raise ConfigError(f"'include {options}' runs a program, which pandad does not "
                              "support")
        if words:
            raise ConfigError(f"unexpected keyword(s) '{options}' after include")
        path = self.ctx.expand(target)
        if "|" in path:
            raise ConfigError(f"piped configuration sources are not supported: {path}")
        text = self.read_source(path)
        if text is None:
            if must_exist:
                raise ConfigError(f"cannot open included file {path}")
            return
        if depth + 1 >= MAX_INCLUDE_DEPTH:
            raise ConfigError("includes nested too deep")
        self.parse(text, path, depth + 1)


# --------------------------------------------------------------------------- host names

def detect_host_names(settings: Mapping[str, Optional[str]], local_name: str,
                      resolve: Callable[[str], Optional[str]]) -> Tuple[str, str]:
    """(HOSTNAME, FULL_HOSTNAME) as HTCondor's init_local_hostname_impl computes them.

    ``settings`` holds the expanded NETWORK_HOSTNAME, DEFAULT_DOMAIN_NAME and NO_DNS,
    ``local_name`` is gethostname(), ``resolve(host)`` getaddrinfo's canonical name or None.
    """
    hostname = settings.get("NETWORK_HOSTNAME") or local_name
    fqdn = hostname
    domain = settings.get("DEFAULT_DOMAIN_NAME")
    if parse_bool(settings.get("NO_DNS") or "false"):
        if "." not in hostname and domain:
            fqdn = hostname + ("" if domain.startswith(".") else ".") + domain
        return hostname.split(".", 1)[0], fqdn
    canonical = resolve(hostname)
    if canonical:
        if "." in canonical:
            return canonical.split(".", 1)[0], canonical
        fqdn = canonical
        if domain:
            fqdn += ("" if domain.startswith(".") else ".") + domain
        return canonical, fqdn
    return hostname, fqdn


def _resolve_canonical(host: str) -> Optional[str]:
    try:
        infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM, 0, socket.AI_CANONNAME)
    except (OSError, UnicodeError):
        return None
    return infos[0][3] or None if infos else None


# --------------------------------------------------------------------------- the config

class HTCondorConfig:
    """A loaded configuration; immutable once loaded."""

    def __init__(self, table: Table, subsystem: str, environ: Mapping[str, str],
                 defaults: Mapping[str, str] = BUILTIN_DEFAULTS,
                 sources: Tuple[str, ...] = ()):
        self._table = dict(table)
        self._ctx = _Context(self._table, subsystem, defaults, dict(environ))
        self.subsystem = subsystem.upper()
        self.sources = sources

    @classmethod
    def from_text(cls, text: str, subsystem: str = "PANDAD",
                  environ: Optional[Mapping[str, str]] = None,
                  filename: str = "<config>",
                  files: Optional[Mapping[str, str]] = None) -> "HTCondorConfig":
        """Parse one text (and in-memory includes ``files``), without defaults' detection."""
        table: Table = {}
        ctx = _Context(table, subsystem, BUILTIN_DEFAULTS, dict(environ or {}))
        parser = Parser(ctx, lambda path: (files or {}).get(path))
        parser.parse(text, filename)
        return cls(table, subsystem, environ or {}, sources=tuple(parser.sources))

    @classmethod
    def load(cls, subsystem: str,
             environ: Mapping[str, str] = os.environ) -> "HTCondorConfig":
        """Read the configuration from its files and the environment, as HTCondor does."""
        return _Loader(subsystem, environ).load()

    def get(self, name: str) -> Optional[str]:
        """The fully expanded value (None if undefined or empty): SUBSYS.NAME, then NAME,
        ``_CONDOR_`` overrides (already in the table), then built-in defaults."""
        try:
            raw = self._ctx.lookup(name)
            value = self._ctx.expand(raw) if raw else raw
        except ConfigError as error:
            where = self.location(name)
            if error.file is None and where is not None:
                raise ConfigError(f"{name}: {error.message}", where[0], where[1]) from None
            raise ConfigError(f"{name}: {error.message}", error.file, error.line) from None
        return value or None

    def expand(self, text: str) -> str:
        """``text`` with its macros expanded against this configuration."""
        return self._ctx.expand(text)

    def location(self, name: str) -> Optional[Tuple[str, int]]:
        """(file, line) of the line that set ``name``; None for built-in defaults. An
        environment override is reported as ``("environment _CONDOR_NAME", 0)``."""
        entry = self._ctx.lookup_entry(name)
        return (entry.file, entry.line) if entry is not None else None


class _Loader:
    """The file and environment side of HTCondorConfig.load (real_config in HTCondor)."""

    def __init__(self, subsystem: str, environ: Mapping[str, str]):
        self.subsystem = subsystem.upper()
        self.environ = dict(environ)
        self.table: Table = {}
        self.ctx = _Context(self.table, self.subsystem, BUILTIN_DEFAULTS, self.environ)
        self.parser = Parser(self.ctx, self._read)
        self._canonical: Dict[str, Optional[str]] = {}

    @staticmethod
    def _read(path: str) -> Optional[str]:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            return None
        return data.decode("utf-8", "surrogateescape")

    def _detected(self, name: str, value: Optional[str]) -> None:
        if value is not None:
            self.table[name] = Entry(name, value, "<detected>", 0)

    def _host_names(self) -> None:
        settings = {name: self.ctx.expand(self.ctx.lookup(name) or "")
                    for name in ("NETWORK_HOSTNAME", "DEFAULT_DOMAIN_NAME", "NO_DNS")}

        def resolve(host: str) -> Optional[str]:
            if host not in self._canonical:
                self._canonical[host] = _resolve_canonical(host)
            return self._canonical[host]

        hostname, fqdn = detect_host_names(settings, socket.gethostname(), resolve)
        self._detected("HOSTNAME", hostname)
        self._detected("FULL_HOSTNAME", fqdn)

    def _source(self, path: str, required: bool, what: str, depth: int = 1) -> None:
        if "|" in path:
            raise ConfigError(f"piped configuration sources are not supported: {path}")
        text = self._read(path)
        if text is None:
            if required:
                raise ConfigError(f"cannot read {what} {path}")
            return
        self.parser.parse(text, path, depth)

    def _required(self) -> bool:
        value = self.ctx.expand(self.ctx.lookup("REQUIRE_LOCAL_CONFIG_FILE") or "")
        parsed = parse_bool(value) if value else True
        return True if parsed is None else parsed

    def _directories(self, dirlist: str) -> None:
        pattern = self.ctx.expand(self.ctx.lookup("LOCAL_CONFIG_DIR_EXCLUDE_REGEXP") or "")
        try:
            exclude = re.compile(pattern) if pattern else None
        except re.error as error:
            raise ConfigError(f"LOCAL_CONFIG_DIR_EXCLUDE_REGEXP is not a valid regular "
                              f"expression: {error}") from None
        required = self._required()
        for directory in filter(None, _LIST_SPLIT.split(dirlist)):
            try:
                names = os.listdir(directory)
            except OSError:
                continue        # HTCondor logs and skips a directory it cannot open
            for name in sorted(names, key=lambda n: n.encode("utf-8", "surrogateescape")):
                path = os.path.join(directory, name)
                if os.path.isdir(path) or (exclude is not None and exclude.search(name)):
                    continue
                self._source(path, required, "config source")

    def _local_files(self) -> None:
        value = self.ctx.expand(self.ctx.lookup("LOCAL_CONFIG_FILE") or "")
        if not value:
            return
        required = self._required()
        done: List[str] = []
        todo = [value] if "|" in value else list(filter(None, _LIST_SPLIT.split(value)))
        while todo:
            source = todo.pop(0)
            self._source(source, required, "config source")
            done.append(source)
            new = self.ctx.expand(self.ctx.lookup("LOCAL_CONFIG_FILE") or "")
            if new and new != value:
                value = new
                todo = [s for s in filter(None, _LIST_SPLIT.split(new)) if s not in done]

    def _user_config(self) -> None:
        name = self.ctx.expand(self.ctx.lookup("USER_CONFIG_FILE") or "")
        if not name:
            return
        if not os.path.isabs(name):
            try:
                home = pwd.getpwuid(os.geteuid()).pw_dir
            except KeyError:
                return
            name = os.path.join(home, ".condor", name)
        if os.access(name, os.R_OK):
            self._source(name, False, "user config")

    def _environment(self) -> None:
        for key, value in self.environ.items():
            if not key.lower().startswith("_condor_"):
                continue
            name = _rstrip(key[8:])
            value = value.lstrip(_SPACE)
            origin = f"environment {key}"
            if name == "START_owner":
                self.parser.insert("START", f'Owner == "{value}"', origin, 0)
            elif name:
                try:
                    self.parser.insert(name, value, origin, 0)
                except ConfigError as error:
                    raise ConfigError(error.message, origin) from None

    def load(self) -> HTCondorConfig:
        try:
            tilde = pwd.getpwnam("condor").pw_dir
        except KeyError:
            tilde = None
        self._detected("TILDE", tilde)
        self._detected("SUBSYSTEM", self.subsystem)
        path = self.environ.get("CONDOR_CONFIG") or DEFAULT_CONFIG_FILE
        if path.upper() != "ONLY_ENV":
            self._source(path, True, "the configuration file (CONDOR_CONFIG)", depth=0)
        self._host_names()
        self._detected("TILDE", tilde)
        dirlist = self.ctx.expand(self.ctx.lookup("LOCAL_CONFIG_DIR") or "")
        if dirlist:
            self._directories(dirlist)
        self._local_files()
        new_dirlist = self.ctx.expand(self.ctx.lookup("LOCAL_CONFIG_DIR") or "")
        if new_dirlist and new_dirlist != dirlist:
            self._directories(new_dirlist)
        self._user_config()
        self._environment()
        # Detected values win over the files, as HTCondor re-inserts them last.
        self._host_names()
        self._detected("TILDE", tilde)
        self._detected("SUBSYSTEM", self.subsystem)
        return HTCondorConfig(self.table, self.subsystem, self.environ,
                              sources=tuple(self.parser.sources))


# --------------------------------------------------------------------------- the tool

def config_val_main(names: List[str], subsystem: str,
                    defaults: Optional[Mapping[str, str]] = None) -> int:
    """``pandad --config-val [-subsystem NAME] NAME...``: print each knob's expanded value,
    one a line, as ``condor_config_val`` does (``-subsystem SCHEDD`` shows what the plug-in
    reads). ``defaults`` are built-in defaults (config text) of knobs HTCondor's own table
    lacks: like condor_config_val, an undefined knob with a default prints the default."""
    names = list(names)
    while names and names[0].lstrip("-") in ("subsystem",) or (
            names and names[0].startswith("--subsystem=")):
        option = names.pop(0)
        if "=" in option:
            subsystem = option.split("=", 1)[1]
        elif names:
            subsystem = names.pop(0)
        else:
            names = []
    if not names:
        print("usage: pandad --config-val [-subsystem NAME] NAME...", file=sys.stderr)
        return 2
    try:
        config = HTCondorConfig.load(subsystem)
        values = [config.get(name) for name in names]
        for i, (name, value) in enumerate(zip(names, values)):
            default = (defaults or {}).get(name.upper())
            if value is None and default:
                values[i] = config.expand(default)
    except ConfigError as error:
        print(f"pandad: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    status = 0
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
    for name, value in zip(names, values):
        if value is None:
            print(f"Not defined: {name}", file=sys.stderr)
            status = 1
        elif out is not None:
            sys.stdout.flush()
            out.write(value.encode("utf-8", "surrogateescape") + b"\n")
            out.flush()
        else:
            print(value)
    return status
