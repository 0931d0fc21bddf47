"""What a grid site installs: 60-panda.conf, the systemd unit, the wrappers, the man pages,
the admin guide, and the package metadata, checked against the code they describe.

The packages themselves are built and checked by ``packaging/check.sh`` (the CI step
"packages"); these tests are the fast, file-level half.
"""

import configparser
import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

from tests.support import (ATTRIBUTE_MAP_2014, MAP_2014, REPO, python_env, require_module,
                           require_tool)

PACKAGING = REPO / "packaging"
CONF = PACKAGING / "60-panda.conf"
UNIT = PACKAGING / "condor-panda.service"
MAN_PAGES = (REPO / "docs" / "man" / "pandad.8", REPO / "docs" / "man" / "panda_plugin.8")
ADMIN_GUIDE = REPO / "docs" / "admin-guide.md"

# Set (uncommented) in 60-panda.conf, to these values: the logs go under $(LOG) instead of
# stderr and /tmp. Every other knob of pandad.knobs.KNOBS is shown commented out, with its
# built-in default.
ACTIVE = {"PANDA_STATISTICS_LOG": "$(LOG)/PandaStatistics", "PANDAD_LOG": "$(LOG)/PandadLog",
          "PANDA_PLUGIN_LOG": "$(LOG)/PandaPluginLog"}
# Offered commented out, after the knob's default line: a value for a known case.
OFFERED = {"PANDA_ATTRIBUTE_MAP": ATTRIBUTE_MAP_2014}
ENABLE_LINE = "SCHEDD.PLUGINS = $(SCHEDD.PLUGINS) $(LIBEXEC)/panda_plugin"
MASTER_LINES = ("PANDA_PLUGIN = $(LIBEXEC)/panda_plugin", "DAEMON_LIST = $(DAEMON_LIST) PANDA_PLUGIN")

# A host laid out as the HTCondor packages lay it out.
HOST_DIRS = {"LOG": "/var/log/condor", "SPOOL": "/var/lib/condor/spool",
             "LIBEXEC": "/usr/libexec/condor"}


def conf_assignments(text: str) -> List[Tuple[str, str, bool]]:
    """(NAME, value, active) for every ``NAME = value`` line, commented out or not, but the
    OFFERED ones commented out."""
    found = []
    for line in text.splitlines():
        match = re.match(r"^(#?)([A-Za-z_][A-Za-z0-9_.]*)\s*=\s?(.*)$", line)
        if match and match.group(1) and OFFERED.get(match.group(2)) == match.group(3).rstrip():
            continue
        if match:
            found.append((match.group(2), match.group(3).rstrip(), not match.group(1)))
    return found


def write_host_config(tmp_path: Path, conf_text: str, extra: str = "") -> Path:
    """A root config like a real host's, with 60-panda.conf (as given) in LOCAL_CONFIG_DIR."""
    config_d = tmp_path / "config.d"
    config_d.mkdir()
    (config_d / "60-panda.conf").write_text(conf_text)
    if extra:
        (config_d / "99-site.conf").write_text(extra)
    root = tmp_path / "condor_config"
    root.write_text("".join(f"{name} = {value}\n" for name, value in HOST_DIRS.items())
                    + f"LOCAL_CONFIG_DIR = {config_d}\n")
    return root


def uncomment(text: str, lines) -> str:
    """``text`` with each of ``lines`` (given without their leading ``#``) uncommented."""
    for line in lines:
        pattern = re.compile("^#" + re.escape(line.rstrip()) + r"\s*$", re.M)
        assert pattern.search(text), line
        text = pattern.sub(lambda _: line.rstrip(), text)
    return text


def code_knobs():
    """pandad.knobs.KNOBS: the one table of knobs, defaults and meanings."""
    return runtime_module("pandad.knobs").KNOBS


def runtime_module(name: str):
    """A runtime module another engineer owns; missing fails in CI, skips elsewhere."""
    require_module(name)
    return importlib.import_module(name)


def load_config(config: Path, subsystem: str):
    HTCondorConfig = runtime_module("pandad.config").HTCondorConfig
    return HTCondorConfig.load(subsystem, {"CONDOR_CONFIG": str(config)})


# --- versions -------------------------------------------------------------------------

def test_spec_changelog_and_package_agree_on_the_version():
    version = runtime_module("pandad").__version__
    spec = (PACKAGING / "pandad.spec").read_text()
    assert re.search(r"^Version:\s*(\S+)$", spec, re.M).group(1) == version
    changelog = (PACKAGING / "debian" / "changelog").read_text().splitlines()[0]
    assert changelog.startswith(f"pandad ({version}-")
    for page in MAN_PAGES:
        assert f'"pandad {version}"' in page.read_text().splitlines()[0]


# --- 60-panda.conf ----------------------------------------------------------------------

def test_config_file_documents_every_knob_with_its_default():
    text = CONF.read_text()
    assignments = {name: (value, active) for name, value, active in conf_assignments(text)}
    for knob in code_knobs():
        assert knob.name in assignments, f"{knob.name} is not in 60-panda.conf"
        value, active = assignments[knob.name]
        if knob.name in ACTIVE:
            assert active and value == ACTIVE[knob.name], knob.name
            continue
        assert not active, f"{knob.name} should be commented out"
        if knob.default is not None:
            assert value == knob.default, \
                f"60-panda.conf shows {knob.name} = {value!r}, the default is {knob.default!r}"
    # Each knob line follows a comment that says what it means (or another knob line).
    lines = text.splitlines()
    names = {knob.name for knob in code_knobs()}
    for index, line in enumerate(lines):
        match = re.match(r"^#?([A-Z_][A-Z0-9_.]*)\s*=", line)
        if match and match.group(1) in names:
            above = lines[index - 1]
            assert above.startswith("# ") or re.match(r"^#?[A-Z_]+\s*=", above), \
                f"{match.group(1)} has no comment explaining it"


def test_config_file_holds_the_enabling_lines_commented_out():
    text = CONF.read_text()
    for line in (ENABLE_LINE, *MASTER_LINES):
        assert re.search("^#" + re.escape(line) + "$", text, re.M), line
    assert "DC_DAEMON_LIST" not in [name for name, _, active in conf_assignments(text) if active]


def test_config_file_as_installed_reads_with_the_logs_under_LOG(tmp_path):
    config = load_config(write_host_config(tmp_path, CONF.read_text()), "PANDAD")
    assert config.get("PANDA_STATISTICS_LOG") == "/var/log/condor/PandaStatistics"
    assert config.get("PANDAD_LOG") == "/var/log/condor/PandadLog"
    assert config.get("PANDA_PLUGIN_LOG") == "/var/log/condor/PandaPluginLog"
    assert config.get("PANDA_URL") is None


def test_feed_is_off_as_installed_and_on_with_the_enabling_line(tmp_path):
    knobs = runtime_module("pandad.knobs")
    site = "PANDA_URL = https://monitor.example.org/api/jobs/\n"
    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    off = write_host_config(tmp_path / "off", CONF.read_text(), site)
    assert knobs.load_plugin_settings(load_config(off, "SCHEDD")).enabled is False
    on = write_host_config(tmp_path / "on", uncomment(CONF.read_text(), [ENABLE_LINE]), site)
    settings = knobs.load_plugin_settings(load_config(on, "SCHEDD"))
    assert settings.enabled is True
    assert settings.log == "/var/log/condor/PandaPluginLog"
    assert settings.job_queue_log == "/var/lib/condor/spool/job_queue.log"
    assert tuple(settings.pandad) == ("/usr/libexec/condor/pandad",)


def test_the_2014_monitors_attribute_map_is_one_line_to_uncomment(tmp_path):
    knobs = runtime_module("pandad.knobs")
    site = "PANDA_URL = https://monitor.example.org/api/jobs/\n"
    line = f"PANDA_ATTRIBUTE_MAP = {ATTRIBUTE_MAP_2014}"
    text = CONF.read_text()
    assert text.index(f"#{line}\n") > text.index("#PANDA_ATTRIBUTE_MAP =\n")
    (tmp_path / "as_shipped").mkdir()
    (tmp_path / "2014").mkdir()
    plain = write_host_config(tmp_path / "as_shipped", text, site)
    mapped = write_host_config(tmp_path / "2014", uncomment(text, [line]), site)
    assert knobs.load_pandad_settings(load_config(plain, "PANDAD")).attribute_map == ()
    assert knobs.load_pandad_settings(load_config(mapped, "PANDAD")).attribute_map == MAP_2014


def test_uncommenting_every_default_changes_no_setting(tmp_path):
    """The defaults 60-panda.conf shows are the ones the code uses."""
    knobs = runtime_module("pandad.knobs")
    text = uncomment(CONF.read_text(), [ENABLE_LINE])
    site = "PANDA_URL = https://monitor.example.org/api/jobs/\n"
    defaults = {knob.name: knob.default for knob in code_knobs()}
    shown = [f"{name} = {value}" for name, value, active in conf_assignments(text)
             if not active and defaults.get(name) is not None]
    (tmp_path / "as_shipped").mkdir()
    (tmp_path / "all_set").mkdir()
    plain = write_host_config(tmp_path / "as_shipped", text, site)
    spelled = write_host_config(tmp_path / "all_set", uncomment(text, shown), site)
    assert knobs.load_pandad_settings(load_config(spelled, "PANDAD")) == \
        knobs.load_pandad_settings(load_config(plain, "PANDAD"))
    assert knobs.load_plugin_settings(load_config(spelled, "SCHEDD")) == \
        knobs.load_plugin_settings(load_config(plain, "SCHEDD"))


def test_htcondor_reads_the_config_file_as_pandad_does(tmp_path):
    """HTCondor's own parser (the htcondor2 wheel, dev-only) agrees on the shipped file."""
    require_module("htcondor2")
    text = uncomment(CONF.read_text(), [ENABLE_LINE, *MASTER_LINES])
    config_path = write_host_config(tmp_path, text)
    names = ["PANDA_STATISTICS_LOG", "PANDAD_LOG", "PANDA_PLUGIN_LOG", "PANDA_PLUGIN",
             "SCHEDD.PLUGINS", "JOB_QUEUE_LOG"]
    script = ("import json, sys, htcondor2\n"
              "print(json.dumps({n: htcondor2.param.get(n) for n in sys.argv[1:]}))\n")
    env = python_env({"CONDOR_CONFIG": str(config_path)})
    out = subprocess.run([sys.executable, "-c", script, *names], env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    oracle = __import__("json").loads(out)
    assert oracle["SCHEDD.PLUGINS"].split() == ["/usr/libexec/condor/panda_plugin"]
    assert "PANDA_PLUGIN" in __import__("json").loads(subprocess.run(
        [sys.executable, "-c", script, "DAEMON_LIST"], env=env, check=True,
        capture_output=True, text=True, timeout=60).stdout)["DAEMON_LIST"].replace(",", " ").split()
    config = load_config(config_path, "PANDAD")
    for name in names:
        if name == "SCHEDD.PLUGINS":
            continue
        assert config.get(name) == oracle[name], name


# --- the systemd unit -----------------------------------------------------------------------

def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit


def test_unit_runs_the_plugin_as_condor_after_htcondor():
    unit = read_unit()
    service = unit["Service"]
    assert service["ExecStart"] == "/usr/libexec/condor/panda_plugin"
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["User"] == "condor"
    assert service["Restart"] == "on-failure"
    assert "99" in service["RestartPreventExitStatus"].split()
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "condor.service" in unit["Unit"]["After"].split()
    assert unit["Unit"]["PartOf"] == "condor.service"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "ProtectKernelTunables": "yes",
                       "ProtectControlGroups": "yes", "LockPersonality": "yes",
                       "MemoryDenyWriteExecute": "yes", "RestrictRealtime": "yes",
                       "SystemCallArchitectures": "native", "CapabilityBoundingSet": ""}.items():
        assert service[key] == value, key
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}


def test_unit_can_write_every_file_the_shipped_config_names(tmp_path):
    """ProtectSystem=strict: the state file and every log must be under ReadWritePaths."""
    knobs = runtime_module("pandad.knobs")
    writable = [Path(p.lstrip("-")) for p in read_unit()["Service"]["ReadWritePaths"].split()]
    text = uncomment(CONF.read_text(), [ENABLE_LINE])
    config_path = write_host_config(tmp_path, text, "PANDA_URL = https://monitor.example.org/jobs/\n")
    pandad = knobs.load_pandad_settings(load_config(config_path, "PANDAD"))
    plugin = knobs.load_plugin_settings(load_config(config_path, "SCHEDD"))
    for path in (pandad.statistics_log, pandad.log, plugin.log, plugin.state_file):
        assert any(Path(path).parent == d or d in Path(path).parents for d in writable), path


# --- the wrappers -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["pandad", "panda_plugin"])
def test_wrappers_name_the_system_python(name):
    first = (PACKAGING / "libexec" / name).read_text().splitlines()[0]
    assert first in ("#!/usr/bin/python3", "#!/usr/bin/python3 -s")
    assert (PACKAGING / "libexec" / name).stat().st_mode & 0o111


def test_pandad_wrapper_runs_from_the_checkout():
    version = runtime_module("pandad").__version__
    out = subprocess.run([sys.executable, str(PACKAGING / "libexec" / "pandad"), "--version"],
                         env=python_env(), capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == f"pandad {version}"


def test_panda_plugin_wrapper_runs_from_the_checkout():
    out = subprocess.run([sys.executable, str(PACKAGING / "libexec" / "panda_plugin"), "--help"],
                         env=python_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--dry-run" in out.stdout


# --- man pages and the admin guide ---------------------------------------------------------------

@pytest.mark.parametrize("page", MAN_PAGES, ids=lambda p: p.name)
def test_man_page_renders_without_warnings(page):
    groff = require_tool("groff")
    result = subprocess.run([groff, "-man", "-ww", "-z", str(page)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "EXIT STATUS",
                    "FILES", "SEE ALSO"):
        assert f".SH {section}" in page.read_text(), section


def test_man_pages_summarise_every_knob():
    text = "".join(page.read_text() for page in MAN_PAGES).replace("\\-", "-")
    missing = [knob.name for knob in code_knobs() if knob.name not in text]
    assert not missing, f"knobs in neither man page: {missing}"


def test_admin_guide_explains_every_statistic():
    stats = runtime_module("pandad.stats")
    guide = ADMIN_GUIDE.read_text()
    missing = [name for name, _ in stats.STATISTICS if f"`{name}`" not in guide]
    assert not missing, f"statistics the admin guide does not explain: {missing}"
    wire = runtime_module("pandad.wire")
    reasons = [getattr(wire, name) for name in dir(wire) if name.startswith("REASON_")]
    missing = [reason for reason in reasons if f"`{reason}`" not in guide]
    assert not missing, f"bad-record reasons the admin guide does not name: {missing}"
    for prefix in stats.DYNAMIC_PREFIXES:
        assert f"`{prefix}" in guide, prefix


def test_admin_guide_names_every_plugin_counter():
    """The plug-in's counters (logged by it) are explained too: grep them from its code."""
    guide = ADMIN_GUIDE.read_text()
    names = set()
    for path in (REPO / "schedd_plugin").glob("*.py"):
        names.update(re.findall(r"stats\.(?:add|set)\(\"([a-z_]+)\"", path.read_text()))
    names.discard("spill_bytes")  # a gauge of the pipe, not a counter the log shows
    missing = sorted(name for name in names if f"`{name}`" not in guide)
    assert not missing, f"plug-in counters the admin guide does not name: {missing}"


# --- package metadata -------------------------------------------------------------------------------

def test_packages_depend_on_python3_and_htcondor_only():
    spec = (PACKAGING / "pandad.spec").read_text()
    requires = [line.split(":", 1)[1].split()[0] for line in spec.splitlines()
                if line.startswith("Requires:")]
    assert sorted(requires) == ["condor", "python3"]
    assert re.search(r"^BuildArch:\s*noarch$", spec, re.M)
    control = (PACKAGING / "debian" / "control").read_text()
    depends = re.search(r"^Depends: (.*?)\n(?=\S)", control, re.M | re.S).group(1)
    entries = [entry.strip() for entry in depends.split(",") if entry.strip()]
    assert entries == ["python3 (>= 3.9)", "condor | htcondor", "${misc:Depends}"]
    assert re.search(r"^Architecture: all$", control, re.M)
