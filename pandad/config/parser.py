"""Config text → a table of entries, as HTCondor's Parse_macros: statements, includes, if/else."""

import re
from typing import Callable, List, Optional, Tuple

from pandad.config.conditions import IfStack
from pandad.config.macros import Context
from pandad.config.syntax import SPACE, ConfigError, Entry, logical_lines, valid_name

MAX_INCLUDE_DEPTH = 20

# --------------------------------------------------------------------------- parser

class Parser:
    """Reads config text into a table, as HTCondor's Parse_macros.

    ``read_source(path)`` returns a file's text or None if it cannot be opened; it is the
    only I/O, so the parser can be driven from strings in tests.
    """

    def __init__(self, ctx: Context, read_source: Callable[[str], Optional[str]]):
        self.ctx = ctx
        self.read_source = read_source
        self.sources: List[str] = []

    def insert(self, name: str, value: str, file: str, line: int) -> None:
        value = self.ctx.expand_self(value, name)
        self.ctx.table[name.upper()] = Entry(name, value, file, line)

    def parse(self, text: str, filename: str, depth: int = 0) -> None:
        self.sources.append(filename)
        ifs = IfStack()
        here: Optional[Tuple[str, str, int, List[str]]] = None
        line_number = 0
        for line_number, line in logical_lines(text):
            try:
                if not line.strip(SPACE) or line.startswith("#"):
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
        while i < len(line) and line[i] not in SPACE and line[i] not in "=:":
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
            while j < len(line) and line[j] in SPACE:
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
        rhs = line[j:].lstrip(SPACE)
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
            self._include(line[i:pop].strip(SPACE), rhs, filename, depth)
            return None
        name = self.ctx.expand(name)
        if not valid_name(name):
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
        self.parse_file(self.ctx.expand(target), depth + 1,
                        "cannot open included file" if must_exist else None)

    def parse_file(self, path: str, depth: int, missing: Optional[str]) -> None:
        """Parse the file at ``path`` (a configuration source or an include); one that cannot
        be read is skipped, or, with ``missing``, the error "<missing> <path>"."""
        if "|" in path:
            raise ConfigError(f"piped configuration sources are not supported: {path}")
        text = self.read_source(path)
        if text is None:
            if missing:
                raise ConfigError(f"{missing} {path}")
            return
        if depth >= MAX_INCLUDE_DEPTH:
            raise ConfigError("includes nested too deep")
        self.parse(text, path, depth)
