"""Every knob, its default, its type; the immutable settings objects built from them.

Shared by pandad and panda_plugin.

``KNOBS`` is the one table: the settings dataclasses are filled from it and
docs/configuration.md documents it (tests/test_knobs.py checks that every knob there
appears in the document with its default). A value that does not parse, or that breaks a
rule, raises ``ConfigError`` naming the knob and the file and line that set it.

Values are read as HTCondor reads them (``pandad.config``): pandad's with subsystem
``PANDAD`` (so ``PANDAD.PANDA_URL`` wins over ``PANDA_URL``), the plug-in's with subsystem
``SCHEDD``.
"""

import os
import re
import shlex
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

from pandad import knobvalues
from pandad.config import EXIT_CONFIG_ERROR, ConfigError, HTCondorConfig, parse_bool
from pandad.logsetup import redact_urls

__all__ = ["EXIT_CONFIG_ERROR", "KNOBS", "Knob", "PandadSettings", "PluginSettings",
           "invalid_attribute_names", "list_items",
           "PLUGIN_FILE_NAMES", "load_pandad_settings", "load_plugin_settings",
           "plugin_enabled", "markdown_table"]

# The file names under which the schedd may name this plug-in in PLUGINS / PLUGIN_DIR:
# this project's program and the C++ plug-in's shared object it replaces.
PLUGIN_FILE_NAMES = ("panda_plugin", "panda-plugin.so")

AUTO_QUEUE_MAX_SIZE = 16 * 1024 * 1024      # PANDA_QUEUE_MAX_SIZE = 0: max(this, 4 x size)
HOUR = 3600
DAY = 24 * HOUR
GIB = 1 << 30
TIB = 1 << 40


class Knob(NamedTuple):
    name: str                # the HTCondor configuration name
    default: Optional[str]   # config text (macros allowed); None = unset
    kind: str                # a key of _PARSERS
    field: str               # the settings field it fills
    program: str             # "pandad" or "plugin"
    meaning: str             # one line, for docs/configuration.md
    sighup: str = "yes"      # whether a SIGHUP applies it while running
    # (least, most) a numeric knob may be: every value in it is safe to sleep, wait or
    # allocate with (threading and select take at most ~292 years, fcntl a C int).
    limits: Optional[Tuple[float, float]] = None


KNOBS: Tuple[Knob, ...] = (
    # pandad (subsystem PANDAD)
    Knob("PANDA_URL", None, "url", "url", "pandad",
         "The PanDA monitor's REST interface (http or https), e.g. "
         "`https://bigpanda.cern.ch/condor/api/jobs/`. Required."),
    Knob("PANDA_UPDATE_TIMEOUT", "0", "seconds", "update_timeout", "pandad",
         "Seconds one HTTP request may take in all before it is given up and its commands "
         "are lost (0 = wait forever).", limits=(0, DAY)),
    Knob("PANDA_STALL_WARNING", "60", "seconds", "stall_warning", "pandad",
         "Seconds a request may wait for its answer before the log names it (its URL and "
         "age; again every 5 minutes while it lasts), whatever PANDA_UPDATE_TIMEOUT says.",
         limits=(1, DAY)),
    Knob("PANDA_QUEUE_SIZE", "131072", "size", "queue_size", "pandad",
         "Bytes of records pandad buffers before the grace window opens.", limits=(1, 4 * GIB)),
    Knob("PANDA_QUEUE_GRACE", "3", "seconds", "queue_grace", "pandad",
         "Seconds the buffer accepts records over PANDA_QUEUE_SIZE while the sender takes "
         "nothing; then records are dropped (and counted) until it takes again.",
         limits=(0, DAY)),
    Knob("PANDA_QUEUE_MAX_SIZE", "0", "size", "queue_max_size", "pandad",
         "Hard ceiling in bytes, even inside the grace window. 0 = automatic: "
         "max(16 MiB, 4 x PANDA_QUEUE_SIZE). Must not be below PANDA_QUEUE_SIZE.",
         limits=(0, 16 * GIB)),
    Knob("PANDA_FLUSH_INTERVAL", "1", "seconds", "flush_interval", "pandad",
         "Least seconds between two send cycles (0 = send as soon as records arrive). "
         "A cycle also takes each whole slice (a quarter of `PANDA_MAX_REQUEST_BYTES` of "
         "records) that arrives while it is younger than this, so a burst is sent back to "
         "back.",
         limits=(0, HOUR)),
    Knob("PANDA_MAX_REQUEST_BYTES", "524288", "size", "max_request_bytes", "pandad",
         "Largest HTTP request body; bigger batches are split.", limits=(1, GIB)),
    Knob("PANDA_MAX_RECORD_BYTES", "524288", "size", "max_record_bytes", "pandad",
         "Longest record pandad accepts from the plug-in; longer ones are counted bad.",
         limits=(1, GIB)),
    Knob("PANDA_SHUTDOWN_GRACE", "5", "seconds", "shutdown_grace", "pandad",
         "Seconds pandad spends on its final flush at SIGTERM or end of input.", limits=(0, DAY)),
    Knob("PANDA_RETRY_LIMIT", "0", "count", "retry_limit", "pandad",
         "Send cycles a failed command (connection error, timeout, 429, 5xx) is retried in; "
         "0 = never (at most once).", limits=(0, 1000000)),
    Knob("PANDA_UPSERT", "true", "bool", "upsert", "pandad",
         "Re-send a rejected ADD as UPDATE and a rejected UPDATE as ADD, once."),
    Knob("PANDA_ATTRIBUTE_MAP", "", "attribute_map", "attribute_map", "pandad",
         "`ClassAdName=json_name` pairs, comma or space separated (ClassAd side "
         "case-insensitive): send those attributes under the monitor's names; whatever "
         "maps to `submitted` goes as local time `YYYY-MM-DD HH:MM:SS`. Empty = every "
         "attribute under its ClassAd name (see [Attribute names](#attribute-names))."),
    Knob("PANDA_STATISTICS_LOG", "/tmp/pandaStatisticsLog", "path", "statistics_log",
         "pandad", "File pandad appends its statistics to."),
    Knob("PANDA_STATISTICS_INTERVAL", "60", "seconds", "statistics_interval", "pandad",
         "Seconds between two statistics entries (written only when something changed).",
         limits=(1, DAY)),
    Knob("PANDA_CA_FILE", None, "path", "ca_file", "pandad",
         "PEM file of CA certificates to verify the monitor with (default: the system's)."),
    Knob("PANDA_CA_DIR", None, "path", "ca_dir", "pandad",
         "Directory of hashed CA certificates (e.g. /etc/grid-security/certificates)."),
    Knob("PANDA_CERT_FILE", None, "path", "cert_file", "pandad",
         "Client certificate (PEM); needs PANDA_KEY_FILE."),
    Knob("PANDA_KEY_FILE", None, "path", "key_file", "pandad",
         "Private key of PANDA_CERT_FILE."),
    Knob("PANDA_X509_PROXY", None, "path", "x509_proxy", "pandad",
         "X.509 proxy file (certificate and key), re-read when it changes; not together "
         "with PANDA_CERT_FILE."),
    Knob("PANDA_TOKEN_FILE", None, "path", "token_file", "pandad",
         "File holding a bearer token sent as `Authorization: Bearer`, re-read when it "
         "changes."),
    Knob("PANDA_VERIFY_SERVER", "true", "bool", "verify_server", "pandad",
         "Verify the monitor's TLS certificate and host name. Turn off only for tests."),
    Knob("PANDA_HTTP_PROXY", "", "proxy", "http_proxy", "pandad",
         "Web proxy to reach the monitor through: `http://[user:password@]host:port`, or "
         "`none`; empty = the environment's `https_proxy`/`http_proxy`/`no_proxy`, "
         "as libcurl."),
    Knob("PANDAD_LOG", None, "path", "log", "pandad",
         "pandad's log file (unset, or under systemd: standard error)."),
    Knob("MAX_PANDAD_LOG", "10485760", "size", "max_log", "pandad",
         "Bytes at which PANDAD_LOG is rotated to PANDAD_LOG.old (0 = never).", limits=(0, TIB)),
    Knob("PANDAD_DEBUG", "", "text", "debug", "pandad",
         "HTCondor-style debug flags; `D_FULLDEBUG` logs every record."),
    # the plug-in (subsystem SCHEDD)
    Knob("JOB_QUEUE_LOG", "$(SPOOL)/job_queue.log", "path", "job_queue_log", "plugin",
         "The schedd's job queue log the plug-in follows (HTCondor's own knob).",
         "restart"),
    Knob("PANDAD", "$(LIBEXEC)/pandad", "argv", "pandad", "plugin",
         "Command line of the daemon the plug-in forks (split as a shell would).",
         "at pandad's next start"),
    Knob("PANDA_JOB_ATTRIBUTES", "", "attributes", "job_attributes", "plugin",
         "Job attributes to send, an HTCondor list (commas and/or spaces), "
         "case-insensitive; an entry that is not an attribute name is logged as a warning; "
         "empty = all."),
    Knob("PANDA_PLUGIN_POLL_INTERVAL", "0.25", "seconds", "poll_interval", "plugin",
         "Seconds between two looks at JOB_QUEUE_LOG.", limits=(0.01, HOUR)),
    Knob("PANDA_PLUGIN_STATE_FILE", "$(SPOOL)/panda_plugin.state", "path", "state_file",
         "plugin", "Where the plug-in saves its position in JOB_QUEUE_LOG.", "restart"),
    Knob("PANDA_PLUGIN_SPILL_BYTES", "1048576", "size", "spill_bytes", "plugin",
         "Bytes of partly written records the plug-in keeps when the pipe is full; beyond "
         "that whole records are dropped and counted.", limits=(0, GIB)),
    Knob("PANDA_PLUGIN_PIPE_BYTES", "1048576", "size", "pipe_bytes", "plugin",
         "Pipe size the plug-in asks the kernel for (Linux caps it at "
         "/proc/sys/fs/pipe-max-size).", limits=(0, GIB)),
    Knob("PANDA_RESYNC_INTERVAL", "0", "seconds", "resync_interval", "plugin",
         "Seconds over which the plug-in re-sends the whole queue, again and again (0 = off).",
         limits=(0, DAY)),
    Knob("PANDA_PLUGIN_LOG", None, "path", "log", "plugin",
         "The plug-in's log file (unset, or under systemd: standard error)."),
    Knob("MAX_PANDA_PLUGIN_LOG", "10485760", "size", "max_log", "plugin",
         "Bytes at which PANDA_PLUGIN_LOG is rotated to PANDA_PLUGIN_LOG.old (0 = never).",
         limits=(0, TIB)),
    Knob("PANDA_PLUGIN_DEBUG", "", "text", "debug", "plugin",
         "HTCondor-style debug flags; `D_FULLDEBUG` logs every record."),
    Knob("SCHEDD_NAME", "$(FULL_HOSTNAME)", "daemon_name", "schedd_name", "plugin",
         "The schedd's name (HTCondor's knob); the prefix of a GlobalJobId the log lacks. "
         "A name without `@` gets `@$(FULL_HOSTNAME)` appended, as HTCondor does.",
         "restart"),
)


@dataclass(frozen=True)
class PandadSettings:
    url: str
    update_timeout: float = 0.0
    stall_warning: float = 60.0
    queue_size: int = 131072
    queue_grace: float = 3.0
    queue_max_size: int = AUTO_QUEUE_MAX_SIZE
    flush_interval: float = 1.0
    max_request_bytes: int = 524288
    max_record_bytes: int = 524288
    shutdown_grace: float = 5.0
    retry_limit: int = 0
    upsert: bool = True
    attribute_map: Tuple[Tuple[str, str], ...] = ()
    statistics_log: str = "/tmp/pandaStatisticsLog"
    statistics_interval: float = 60.0
    ca_file: Optional[str] = None
    ca_dir: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    x509_proxy: Optional[str] = None
    token_file: Optional[str] = None
    verify_server: bool = True
    http_proxy: str = ""
    log: Optional[str] = None
    max_log: int = 10485760
    debug: str = ""


@dataclass(frozen=True)
class PluginSettings:
    job_queue_log: str
    pandad: Tuple[str, ...]
    poll_interval: float = 0.25
    state_file: str = ""
    job_attributes: Optional[FrozenSet[str]] = None
    invalid_job_attributes: Tuple[str, ...] = ()   # entries of it that name no attribute
    spill_bytes: int = 1048576
    pipe_bytes: int = 1048576
    enabled: bool = False
    log: Optional[str] = None
    max_log: int = 10485760
    debug: str = ""
    schedd_name: str = ""
    resync_interval: float = 0.0


# --------------------------------------------------------------------------- parsers
# Each takes the expanded text and returns the value or raises ValueError(reason); the
# numeric ones are in pandad.knobvalues.

def range_text(knob: Knob) -> str:
    """The documented range of a numeric knob, e.g. ``0 to 86400`` or ``1 to 4G``."""
    assert knob.limits is not None
    return knobvalues.range_text(knob.kind, knob.limits)


def _bool(text: str) -> bool:
    value = parse_bool(text)
    if value is None:
        raise ValueError("is not a boolean (true/false, yes/no, 1/0)")
    return value


def _url(text: str) -> str:
    """PANDA_URL: http(s)://host[:port]/path, nothing a request line cannot carry."""
    url = text.strip()
    bad = next((c for c in url if c.isspace() or not c.isprintable()), None)
    if bad is not None:
        raise ValueError(f"holds {'a space' if bad == ' ' else repr(bad)}: a URL cannot"
                         f" (write a space in a path as %20)")
    try:
        parts = urlsplit(url)
        parts.port                                     # raises on a bad port
    except ValueError:
        raise ValueError("is not a valid URL (bad port or [address]?)") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.fragment or url.endswith("#"):
        raise ValueError("has a #fragment, which is never sent to a server")
    return url


def _proxy(text: str) -> str:
    """PANDA_HTTP_PROXY: empty (the environment decides), ``none``, or an http:// URL."""
    value = text.strip()
    if not value or value.lower() == "none":
        return value.lower()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL (bad port?)") from None
    if parts.scheme.lower() != "http":
        raise ValueError("must be empty, none, or an http://host:port URL (only http://"
                         " proxies are supported)")
    if not parts.hostname or port == 0:
        raise ValueError("has no host" if not parts.hostname else "has port 0")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be http://host:port with no path")
    return value


def _argv(text: str) -> Tuple[str, ...]:
    try:
        argv = tuple(shlex.split(text))
    except ValueError as error:
        raise ValueError(f"cannot be split into a command line ({error})") from None
    if not argv:
        raise ValueError("is an empty command")
    return argv


_ATTRIBUTE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAP_ENTRY_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=([^=]+)\Z")


def list_items(text: str) -> List[str]:
    """The entries of an HTCondor list value: separated by commas and/or white space."""
    return [item for item in re.split(r"[\s,]+", text) if item]


def invalid_attribute_names(text: str) -> List[str]:
    """The entries of a PANDA_JOB_ATTRIBUTES value that are not ClassAd attribute names."""
    return [item for item in list_items(text) if not _ATTRIBUTE_NAME_RE.match(item)]


def _attributes(text: str) -> Optional[FrozenSet[str]]:
    return frozenset(n.lower() for n in list_items(text)) or None


def _attribute_map(text: str) -> Tuple[Tuple[str, str], ...]:
    """PANDA_ATTRIBUTE_MAP: ``(lower-case ClassAd name, json name)`` pairs, in order."""
    # "Cmd = cmd" is one entry, as a reader of the configuration would take it.
    pairs: Dict[str, str] = {}
    bad: List[str] = []
    for item in list_items(re.sub(r"\s*=\s*", "=", text)):
        match = _MAP_ENTRY_RE.match(item)
        if match is None:
            bad.append(f"{item!r} is not ClassAdName=json_name")
        elif match.group(1).lower() in pairs:
            bad.append(f"{match.group(1)!r} is mapped twice")
        elif match.group(2) in ("id", "condorid"):     # pandad's own keys: dropped
            bad.append(f"{item!r} maps onto {match.group(2)!r}, a key pandad fills itself")
        else:
            pairs[match.group(1).lower()] = match.group(2)
    if bad:
        raise ValueError("has a bad entry: " + "; ".join(bad))
    return tuple(pairs.items())


# A knob that is unset (and has no default) by kind, where that is not "".
_UNSET: Dict[str, object] = {"path": None, "attributes": None, "attribute_map": ()}

NUMERIC_KINDS = frozenset({"seconds", "size", "count"})   # each such knob has limits
_PARSERS: Dict[str, Callable[[str], object]] = {
    "url": _url,
    "seconds": knobvalues.seconds,
    "size": knobvalues.size,
    "count": knobvalues.integer,
    "bool": _bool,
    "path": lambda text: text.strip(),
    "text": lambda text: text.strip(),
    "proxy": _proxy,
    "argv": _argv,
    "attributes": _attributes,
    "attribute_map": _attribute_map,
    "daemon_name": lambda text: text.strip(),
}


# --------------------------------------------------------------------------- loading

def _error(config: HTCondorConfig, knob: str, value: str, reason: str) -> ConfigError:
    value = redact_urls(value)      # credentials never reach logs
    place = config.location(knob)
    if place is None:
        return ConfigError(f"{knob} = {value!r} (built-in default) {reason}")
    return ConfigError(f"{knob} = {value!r} {reason}", place[0], place[1] or None)


def _values(config: HTCondorConfig, program: str) -> Dict[str, object]:
    values: Dict[str, object] = {}
    for knob in KNOBS:
        if knob.program != program:
            continue
        text = config.get(knob.name)
        if text is None and knob.default:
            text = config.expand(knob.default)
        if text is None or (not text.strip() and knob.kind in ("path", "url")):
            if knob.kind == "url":
                raise ConfigError(f"{knob.name} is not set: pandad needs the PanDA "
                                  "monitor's URL (e.g. PANDA_URL = https://host/api/jobs/)")
            values[knob.field] = _UNSET.get(knob.kind, "")
            continue
        try:
            values[knob.field] = value = _PARSERS[knob.kind](text)
            if knob.kind in NUMERIC_KINDS:
                assert knob.limits is not None, knob.name
                knobvalues.check_range(knob.kind, knob.limits, value)  # type: ignore[arg-type]
        except ValueError as error:
            raise _error(config, knob.name, text, str(error)) from None
    return values


def load_pandad_settings(config: HTCondorConfig) -> PandadSettings:
    """pandad's settings from ``config`` (loaded with subsystem PANDAD)."""
    values = _values(config, "pandad")
    size = values["queue_size"]
    assert isinstance(size, int)
    if values["queue_max_size"] == 0:
        values["queue_max_size"] = max(AUTO_QUEUE_MAX_SIZE, 4 * size)
    elif values["queue_max_size"] < size:  # type: ignore[operator]
        raise _error(config, "PANDA_QUEUE_MAX_SIZE", str(values["queue_max_size"]),
                     f"is below PANDA_QUEUE_SIZE ({size})")
    if bool(values["cert_file"]) != bool(values["key_file"]):
        given, missing = (("PANDA_CERT_FILE", "PANDA_KEY_FILE") if values["cert_file"]
                          else ("PANDA_KEY_FILE", "PANDA_CERT_FILE"))
        raise _error(config, given, str(values[given[6:].lower()]),
                     f"is set but {missing} is not; set both or neither")
    if values["x509_proxy"] and values["cert_file"]:
        raise _error(config, "PANDA_X509_PROXY", str(values["x509_proxy"]),
                     "and PANDA_CERT_FILE are both set; use one or the other")
    for name in ("statistics_log",):
        if not values[name]:
            values[name] = "/tmp/pandaStatisticsLog"
    return PandadSettings(**values)  # type: ignore[arg-type]


def _daemon_name(name: str, full_hostname: str) -> str:
    """HTCondor's build_valid_daemon_name: a bare name gets ``@FULL_HOSTNAME``."""
    if "@" in name or not full_hostname or name.lower() == full_hostname.lower():
        return name
    return f"{name}@{full_hostname}"


def plugin_enabled(config: HTCondorConfig) -> bool:
    """Whether the schedd's configuration (subsystem SCHEDD) turns the PanDA plug-in on.

    On iff an entry of PLUGINS (comma or space separated) has a basename in
    PLUGIN_FILE_NAMES, or PLUGIN_DIR is set and is $(LIBEXEC) (where panda_plugin is
    installed) or holds a file of one of those names.
    """
    plugins = config.get("PLUGINS") or ""
    for entry in re.split(r"[\s,]+", plugins):
        if entry and os.path.basename(entry.rstrip("/")) in PLUGIN_FILE_NAMES:
            return True
    plugin_dir = (config.get("PLUGIN_DIR") or "").strip()
    if not plugin_dir:
        return False
    libexec = (config.get("LIBEXEC") or "").strip()
    if libexec and (os.path.normpath(plugin_dir) == os.path.normpath(libexec)
                    or os.path.realpath(plugin_dir) == os.path.realpath(libexec)):
        return True
    return any(os.path.isfile(os.path.join(plugin_dir, name)) for name in PLUGIN_FILE_NAMES)


def load_plugin_settings(config: HTCondorConfig) -> PluginSettings:
    """The plug-in's settings from ``config`` (loaded with subsystem SCHEDD)."""
    values = _values(config, "plugin")
    for name, knob in (("job_queue_log", "JOB_QUEUE_LOG"), ("state_file",
                                                             "PANDA_PLUGIN_STATE_FILE")):
        if not values[name]:
            raise ConfigError(f"{knob} is empty")
    values["schedd_name"] = _daemon_name(str(values["schedd_name"] or ""),
                                         config.get("FULL_HOSTNAME") or "")
    values["enabled"] = plugin_enabled(config)
    values["invalid_job_attributes"] = tuple(
        invalid_attribute_names(config.get("PANDA_JOB_ATTRIBUTES") or ""))
    return PluginSettings(**values)  # type: ignore[arg-type]


def markdown_table(program: str) -> str:
    """The knobs of ``program`` as the Markdown table docs/configuration.md holds."""
    lines: List[str] = ["| knob | default | range | SIGHUP | meaning |",
                        "|---|---|---|---|---|"]
    for knob in KNOBS:
        if knob.program == program:
            if knob.default is None:
                default = "none (required)" if knob.kind == "url" else "unset"
            else:
                default = f"`{knob.default}`" if knob.default else "empty"
            limits = range_text(knob) if knob.limits else ""
            lines.append(f"| `{knob.name}` | {default} | {limits} | {knob.sighup} "
                         f"| {knob.meaning} |")
    return "\n".join(lines)
