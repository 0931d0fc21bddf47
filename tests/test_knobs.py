"""pandad.knobs: defaults, validation naming knob/file/line, the enabling rule, the docs."""

import dataclasses
import datetime
import math
import socket
import sys
import threading
import time
from pathlib import Path

import hypothesis
import hypothesis.strategies as st
import pytest

from pandad.config import ConfigError, HTCondorConfig
from pandad.knobs import (EXIT_CONFIG_ERROR, KNOBS, NUMERIC_KINDS, PandadSettings,
                          PluginSettings, load_pandad_settings, load_plugin_settings,
                          markdown_table, plugin_enabled, range_text)
from tests.support import ATTRIBUTE_MAP_2014, MAP_2014

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
FILE = "/etc/condor/config.d/60-panda.conf"
URL = "PANDA_URL = https://monitor.example/api/jobs/\n"


def pandad(text, environ=None):
    return load_pandad_settings(HTCondorConfig.from_text(text, "PANDAD", environ, FILE))


def plugin(text, environ=None):
    return load_plugin_settings(HTCondorConfig.from_text(text, "SCHEDD", environ, FILE))


def test_exit_status_is_htcondors_do_not_restart():
    assert EXIT_CONFIG_ERROR == 99


def test_pandad_defaults():
    s = pandad(URL)
    assert s == PandadSettings(url="https://monitor.example/api/jobs/")
    assert (s.update_timeout, s.queue_size, s.queue_grace, s.flush_interval) == (0, 131072, 3, 1)
    assert s.queue_max_size == 16 * 1024 * 1024
    assert (s.max_request_bytes, s.max_record_bytes, s.shutdown_grace) == (524288, 524288, 5)
    assert (s.retry_limit, s.upsert, s.statistics_interval) == (0, True, 60)
    assert s.statistics_log == "/tmp/pandaStatisticsLog"
    assert (s.ca_file, s.cert_file, s.x509_proxy, s.token_file, s.log) == (None,) * 5
    assert (s.verify_server, s.max_log, s.debug) == (True, 10485760, "")


def test_plugin_defaults_follow_htcondor_paths():
    s = plugin("LOCAL_DIR = /var/lib/condor\nFULL_HOSTNAME = submit.example\n")
    assert s.job_queue_log == "/var/lib/condor/spool/job_queue.log"
    assert s.state_file == "/var/lib/condor/spool/panda_plugin.state"
    assert s.pandad == ("/usr/libexec/pandad",)
    assert (s.poll_interval, s.spill_bytes, s.pipe_bytes) == (0.25, 1048576, 1048576)
    assert (s.job_attributes, s.enabled, s.log, s.max_log, s.debug) == \
        (None, False, None, 10485760, "")
    assert s.schedd_name == "submit.example"


def test_settings_are_immutable():
    s = pandad(URL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.queue_size = 1  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(PluginSettings)] == [
        "job_queue_log", "pandad", "poll_interval", "state_file", "job_attributes",
        "invalid_job_attributes", "spill_bytes", "pipe_bytes", "enabled", "log", "max_log",
        "debug", "schedd_name", "resync_interval"]


def test_typed_values_as_htcondor_accepts_them():
    s = pandad(URL + "PANDA_QUEUE_SIZE = 64 * 1024\nPANDA_QUEUE_MAX_SIZE = 1M\n"
               "PANDA_UPSERT = No\nPANDA_VERIFY_SERVER = FALSE\nPANDA_FLUSH_INTERVAL = 0.5\n"
               "PANDA_UPDATE_TIMEOUT = 30\nMAX_PANDAD_LOG = 16 MB\nPANDA_RETRY_LIMIT = 3\n")
    assert (s.queue_size, s.queue_max_size, s.upsert, s.verify_server) == \
        (65536, 1 << 20, False, False)
    assert (s.flush_interval, s.update_timeout, s.max_log, s.retry_limit) == \
        (0.5, 30.0, 16 << 20, 3)
    assert pandad(URL + "PANDA_QUEUE_SIZE = 8388608\n").queue_max_size == 4 * 8388608


def test_subsystem_prefix_and_environment_override():
    assert pandad("PANDA_URL = http://a/\nPANDAD.PANDA_URL = http://b/\n").url == "http://b/"
    settings = load_pandad_settings(_loaded({"_CONDOR_PANDA_QUEUE_SIZE": "1024"}))
    assert (settings.url, settings.queue_size) == ("http://127.0.0.1:1/", 1024)


def test_plugin_attributes_and_command_line():
    s = plugin("PANDA_JOB_ATTRIBUTES = Owner, JobStatus  QDate,\n"
               "PANDAD = $(LIBEXEC)/pandad --flag 'two words'\nSCHEDD_NAME = s1\n"
               "FULL_HOSTNAME = h.example\n")
    assert s.job_attributes == frozenset({"owner", "jobstatus", "qdate"})
    assert s.invalid_job_attributes == ()
    assert s.pandad == ("/usr/libexec/pandad", "--flag", "two words")
    assert s.schedd_name == "s1@h.example"
    assert plugin("SCHEDD_NAME = s2@elsewhere\n").schedd_name == "s2@elsewhere"


def test_job_attributes_that_are_not_attribute_names_are_named():
    s = plugin("PANDA_JOB_ATTRIBUTES = JobStatus;Owner,QDate\tCmd , 1st,,x-y\n")
    assert s.job_attributes == frozenset({"jobstatus;owner", "qdate", "cmd", "1st", "x-y"})
    assert s.invalid_job_attributes == ("JobStatus;Owner", "1st", "x-y")


def test_attribute_map_default_and_2014_line():
    assert pandad(URL).attribute_map == ()
    assert pandad(URL + f"PANDA_ATTRIBUTE_MAP = {ATTRIBUTE_MAP_2014}\n").attribute_map \
        == MAP_2014
    spaced = pandad(URL + "PANDA_ATTRIBUTE_MAP = CMD = cmd QDate=submitted,,\n")
    assert spaced.attribute_map == (("cmd", "cmd"), ("qdate", "submitted"))


@pytest.mark.parametrize("value, reason", [
    ("Cmd", "'Cmd' is not ClassAdName=json_name"),
    ("Cmd=cmd, Owner", "'Owner' is not ClassAdName=json_name"),
    ("Job;Status=x", "'Job;Status=x' is not ClassAdName=json_name"),
    ("Cmd=a=b", "'Cmd=a=b' is not ClassAdName=json_name"),
    ("Cmd=cmd CMD=c", "'CMD' is mapped twice"),
    ("GlobalJobId=id", "'GlobalJobId=id' maps onto 'id', a key pandad fills itself"),
])
def test_a_malformed_attribute_map_is_one_error_naming_the_knob(value, reason):
    with pytest.raises(ConfigError) as error:
        pandad(URL + f"PANDA_ATTRIBUTE_MAP = {value}\n")
    message = str(error.value)
    assert message.startswith(f"{FILE}:2: PANDA_ATTRIBUTE_MAP = ") and reason in message
    assert "\n" not in message


@pytest.mark.parametrize("text, message", [
    ("", "PANDA_URL is not set"),
    ("PANDA_URL = ftp://x/\n", f"{FILE}:1: PANDA_URL = 'ftp://x/' must be an http"),
    ("PANDA_URL = https://u:secret@/x\n", "'https://u:***@/x' has no host"),
    (URL + "PANDA_QUEUE_SIZE = -5\n",
     f"{FILE}:2: PANDA_QUEUE_SIZE = '-5' must be at least 1 (range 1 to 4G)"),
    (URL + "\n\nPANDA_QUEUE_GRACE = soon\n", f"{FILE}:4: PANDA_QUEUE_GRACE = 'soon' is not a"),
    (URL + "PANDA_UPDATE_TIMEOUT = -1\n", "PANDA_UPDATE_TIMEOUT = '-1' must not be negative"),
    (URL + "PANDA_STATISTICS_INTERVAL = 0\n", "PANDA_STATISTICS_INTERVAL = '0' must be at least 1"),
    (URL + "PANDA_RETRY_LIMIT = 1.5\n", "PANDA_RETRY_LIMIT = '1.5' is not an integer"),
    (URL + "PANDA_UPSERT = maybe\n", f"{FILE}:2: PANDA_UPSERT = 'maybe' is not a boolean"),
    (URL + "PANDA_CERT_FILE = /c.pem\n", f"{FILE}:2: PANDA_CERT_FILE = '/c.pem' is set but "
                                         "PANDA_KEY_FILE is not"),
    (URL + "PANDA_KEY_FILE = /k.pem\n", "PANDA_KEY_FILE = '/k.pem' is set but PANDA_CERT_FILE"),
    (URL + "PANDA_CERT_FILE = /c\nPANDA_KEY_FILE = /k\nPANDA_X509_PROXY = /p\n",
     f"{FILE}:4: PANDA_X509_PROXY = '/p' and PANDA_CERT_FILE are both set"),
    (URL + "PANDA_QUEUE_MAX_SIZE = 1000\n", f"{FILE}:2: PANDA_QUEUE_MAX_SIZE = '1000' is below"),
])
def test_bad_pandad_values_name_knob_file_and_line(text, message):
    with pytest.raises(ConfigError) as info:
        pandad(text)
    assert message in str(info.value)
    assert "secret" not in str(info.value)


def test_bad_values_from_the_environment_say_so():
    with pytest.raises(ConfigError, match="environment _CONDOR_PANDA_QUEUE_SIZE: "
                                          "PANDA_QUEUE_SIZE = 'x' is not a number"):
        load_pandad_settings(_loaded({"_CONDOR_PANDA_QUEUE_SIZE": "x"}))


def _loaded(environ):
    return HTCondorConfig.load("PANDAD", dict(environ, CONDOR_CONFIG="ONLY_ENV",
                                              _CONDOR_PANDA_URL="http://127.0.0.1:1/"))


@pytest.mark.parametrize("text, message", [
    ("PANDAD = 'unterminated\n", f"{FILE}:1: PANDAD = \"'unterminated\" cannot be split"),
    ("PANDA_PLUGIN_POLL_INTERVAL = 0\n", "PANDA_PLUGIN_POLL_INTERVAL = '0' must be at least 0.01"),
    ("PANDA_PLUGIN_SPILL_BYTES = -1\n", "PANDA_PLUGIN_SPILL_BYTES = '-1' must not be negative"),
])
def test_bad_plugin_values(text, message):
    with pytest.raises(ConfigError) as info:
        plugin(text)
    assert message in str(info.value)


@pytest.mark.parametrize("text, enabled", [
    ("", False),
    ("SCHEDD.PLUGINS = /usr/libexec/panda_plugin\n", True),
    ("PLUGINS = /opt/x/lib/panda-plugin.so, /opt/x/other.so\n", True),
    ("PLUGINS = /opt/x/other.so\n", False),
    ("PLUGINS = /usr/libexec/panda_plugin\nSCHEDD.PLUGINS = /x/other.so\n", False),
    ("SCHEDD.PLUGIN_DIR = $(LIBEXEC)\n", True),
    ("SCHEDD.PLUGIN_DIR = /usr/libexec/\n", True),
    ("PLUGIN_DIR = /nonexistent/plugins\n", False),
    ("PANDAD.PLUGINS = /usr/libexec/panda_plugin\n", False),
])
def test_enabled_rule(text, enabled):
    assert plugin(text).enabled is enabled


def test_enabled_by_a_plugin_dir_holding_the_plugin(tmp_path):
    text = f"SCHEDD.PLUGIN_DIR = {tmp_path}\n"
    assert plugin_enabled(HTCondorConfig.from_text(text, "SCHEDD")) is False
    (tmp_path / "panda-plugin.so").write_bytes(b"")
    assert plugin_enabled(HTCondorConfig.from_text(text, "SCHEDD")) is True


def test_every_knob_fills_a_settings_field_once():
    fields = {"pandad": {f.name for f in dataclasses.fields(PandadSettings)},
              "plugin": {f.name for f in dataclasses.fields(PluginSettings)}
              - {"enabled", "invalid_job_attributes"}}
    for program in fields:
        knobs = [k.field for k in KNOBS if k.program == program]
        assert sorted(knobs) == sorted(fields[program])


def test_docs_hold_every_knob_with_its_default():
    doc = DOCS.read_text()
    for program in ("pandad", "plugin"):
        assert markdown_table(program) in doc, "regenerate the tables in docs/configuration.md"
    for knob in KNOBS:
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{knob.name}` |"))
        default = "none (required)" if knob.name == "PANDA_URL" else (
            "unset" if knob.default is None else knob.default or "empty")
        assert default in row
    for topic in ("status 99", "SIGHUP", "panda-plugin.so", "LOCAL_CONFIG_DIR",
                  "_CONDOR_", "SCHEDD.PLUGINS", "metaknobs"):
        assert topic.lower() in doc.lower()


# --------------------------------------------------------------------------- ranges

NUMERIC = [knob for knob in KNOBS if knob.kind in NUMERIC_KINDS]


def load(knob, value):
    text = f"{knob.name} = {value}\n"
    if knob.program == "pandad":
        return pandad(URL + text)
    return plugin(text)


def test_every_numeric_knob_has_a_range_holding_its_default():
    assert {k.kind for k in KNOBS if k.limits} == set(NUMERIC_KINDS)
    for knob in NUMERIC:
        assert knob.limits is not None, knob.name
        low, high = knob.limits
        settings = load(knob, knob.default)
        assert low <= getattr(settings, knob.field) <= high or (
            knob.name == "PANDA_QUEUE_MAX_SIZE")        # 0 = automatic, resolved
    assert all(k.limits is None for k in KNOBS if k.kind not in NUMERIC_KINDS)


def test_docs_show_the_range_of_every_numeric_knob():
    doc = DOCS.read_text()
    for knob in NUMERIC:
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{knob.name}` |"))
        assert f"| {range_text(knob)} |" in row, (knob.name, row)


@pytest.mark.parametrize("name, value, message", [
    # The values of issue 13 that used to load and then raise OverflowError or busy-loop.
    ("PANDA_UPDATE_TIMEOUT", "1e10", "must be at most 86400 (range 0 to 86400)"),
    ("PANDA_SHUTDOWN_GRACE", "1e308", "must be at most 86400 (range 0 to 86400)"),
    ("PANDA_QUEUE_SIZE", "1e99", "must be at most 4G (range 1 to 4G)"),
    ("PANDA_STATISTICS_INTERVAL", "1e-300", "must be at least 1 (range 1 to 86400)"),
    ("PANDA_QUEUE_GRACE", "1e999", "must be at most 86400"),
    ("PANDA_FLUSH_INTERVAL", "1e999 - 1e999", "is not a number"),
    ("PANDA_QUEUE_MAX_SIZE", "99999999999999999999999", "must be at most 16G"),
    ("PANDA_RETRY_LIMIT", "9" * 5000, "is too large"),
    ("PANDA_MAX_REQUEST_BYTES", "9" * 5000 + "K", "must be at most 1G"),
    ("PANDA_UPDATE_TIMEOUT", "9" * 400 + " * 1.5", "is too large"),
    ("MAX_PANDAD_LOG", "-1", "must not be negative (range 0 to 1T)"),
    ("PANDA_PLUGIN_POLL_INTERVAL", "1e-300", "must be at least 0.01"),
    ("PANDA_PLUGIN_PIPE_BYTES", "1e99", "must be at most 1G"),
])
def test_out_of_range_values_are_one_configuration_error(name, value, message):
    knob = next(k for k in KNOBS if k.name == name)
    with pytest.raises(ConfigError) as info:
        load(knob, value)
    assert f"{name} = " in str(info.value) and message in str(info.value)


def test_the_ends_of_each_range_are_accepted():
    for knob in NUMERIC:
        for end in knob.limits:
            if knob.name == "PANDA_QUEUE_MAX_SIZE" and 0 < end:
                continue        # must also be >= PANDA_QUEUE_SIZE: checked below
            value = getattr(load(knob, repr(end)), knob.field)
            assert value == end or knob.name == "PANDA_QUEUE_MAX_SIZE", knob.name
    assert pandad(URL + "PANDA_QUEUE_SIZE = 4G\nPANDA_QUEUE_MAX_SIZE = 16G\n").queue_max_size \
        == 16 << 30
    assert pandad(URL + "PANDA_QUEUE_SIZE = 4G\n").queue_max_size == 16 << 30


def assert_usable(knob, value):
    """What the programs do with a value must not raise (OverflowError above all)."""
    if knob.kind == "seconds":
        assert isinstance(value, float) and math.isfinite(value)
        assert value <= threading.TIMEOUT_MAX
        lock = threading.Lock()
        assert lock.acquire(timeout=value)      # free: returns at once, after the range check
        lock.release()
        assert math.isfinite(time.monotonic() + value)
        datetime.timedelta(seconds=value)
        with socket.socket() as sock:
            sock.settimeout(value or None)
    else:
        # Compared with file offsets and lengths (C ssize_t), never beyond the range.
        assert isinstance(value, int) and 0 <= value <= min(sys.maxsize, knob.limits[1])
        if knob.name == "PANDA_PLUGIN_PIPE_BYTES":
            assert value < 2 ** 31                      # fcntl(F_SETPIPE_SZ) takes a C int


_FLOATS = st.floats(allow_nan=True, allow_infinity=True)
_VALUES = st.one_of(
    _FLOATS.map(repr),
    st.integers(min_value=-10 ** 400, max_value=10 ** 400).map(str),
    st.tuples(st.one_of(_FLOATS, st.integers(-10 ** 30, 10 ** 30)), st.sampled_from("+-*/%"),
              st.one_of(_FLOATS, st.integers(-10 ** 30, 10 ** 30))).map(
        lambda t: f"{t[0]!r} {t[1]} {t[2]!r}"),
    st.tuples(st.integers(0, 10 ** 30), st.sampled_from(["", "K", "kb", "M", "G", "T"])).map(
        lambda t: f"{t[0]}{t[1]}"),
)


@hypothesis.settings(max_examples=400, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(knob=st.sampled_from(NUMERIC), value=_VALUES)
def test_any_value_is_usable_or_a_configuration_error(knob, value):
    try:
        settings = load(knob, value)
    except ConfigError as error:
        assert knob.name in str(error)
        return
    assert_usable(knob, getattr(settings, knob.field))
    if knob.program == "pandad":        # derived from PANDA_QUEUE_SIZE when 0
        assert_usable(next(k for k in NUMERIC if k.name == "PANDA_QUEUE_MAX_SIZE"),
                      settings.queue_max_size)
