"""pandad.knobs: defaults, validation naming knob/file/line, the enabling rule, the docs."""

import dataclasses
from pathlib import Path

import pytest

from pandad.config import ConfigError, HTCondorConfig
from pandad.knobs import (EXIT_CONFIG_ERROR, KNOBS, PandadSettings, PluginSettings,
                          load_pandad_settings, load_plugin_settings, markdown_table,
                          plugin_enabled)
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
    (URL + "PANDA_QUEUE_SIZE = -5\n", f"{FILE}:2: PANDA_QUEUE_SIZE = '-5' must be at least 1"),
    (URL + "\n\nPANDA_QUEUE_GRACE = soon\n", f"{FILE}:4: PANDA_QUEUE_GRACE = 'soon' is not a"),
    (URL + "PANDA_UPDATE_TIMEOUT = -1\n", "PANDA_UPDATE_TIMEOUT = '-1' must not be negative"),
    (URL + "PANDA_STATISTICS_INTERVAL = 0\n", "PANDA_STATISTICS_INTERVAL = '0' must be more"),
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
    ("PANDA_PLUGIN_POLL_INTERVAL = 0\n", "PANDA_PLUGIN_POLL_INTERVAL = '0' must be more"),
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
