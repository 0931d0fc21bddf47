"""Where the configuration comes from: files, directories, the environment, detected host names;
``HTCondorConfig`` (the loaded, immutable configuration) and ``--config-val``."""

import os
import pwd
import re
import socket
import sys
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from pandad.config.macros import Context
from pandad.config.parser import Parser
from pandad.config.syntax import (EXIT_CONFIG_ERROR, SPACE, ConfigError, Entry, Table, parse_bool,
                                  rstrip_space)

DEFAULT_CONFIG_FILE = "/etc/condor/condor_config"


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


_LIST_SPLIT = re.compile(r"[ ,\t\r\n]+")

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
        self._ctx = Context(self._table, subsystem, defaults, dict(environ))
        self.subsystem = subsystem.upper()
        self.sources = sources

    @classmethod
    def from_text(cls, text: str, subsystem: str = "PANDAD",
                  environ: Optional[Mapping[str, str]] = None,
                  filename: str = "<config>",
                  files: Optional[Mapping[str, str]] = None) -> "HTCondorConfig":
        """Parse one text (and in-memory includes ``files``), without defaults' detection."""
        table: Table = {}
        ctx = Context(table, subsystem, BUILTIN_DEFAULTS, dict(environ or {}))
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
        self.ctx = Context(self.table, self.subsystem, BUILTIN_DEFAULTS, self.environ)
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
        self.parser.parse_file(path, depth, f"cannot read {what}" if required else None)

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
            name = rstrip_space(key[8:])
            value = value.lstrip(SPACE)
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
