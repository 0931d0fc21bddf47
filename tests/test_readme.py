"""Every command in README.md is run somewhere: by .ci/run, by packaging/check.sh (which, in CI,
installs the .deb on the machine and runs the post-install commands for real), or, for the few
that need a live schedd or a running systemd, is listed below with what verifies it instead.

The cheap ones are also run here, from the checkout, against a test configuration built from
the packaged 60-panda.conf as the README says to edit it.
"""

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from tests.support import FIXTURES, REPO, python_env, require_module, require_tool

README = REPO / "README.md"
CONF = REPO / "packaging" / "60-panda.conf"
# What CI runs; a README command must appear in one of them as a command.
RUNNERS = (REPO / ".ci" / "run", REPO / "packaging" / "check.sh")
LIBEXEC = "/usr/libexec/condor/"

# The README's placeholders, and what packaging/check.sh writes in their place.
SUBSTITUTIONS = {"<version>": "${pkgver}"}

# Commands only a live schedd or a running systemd can run: (why not here, what verifies it).
NOT_RUN_IN_CI: Dict[str, Tuple[str, str]] = {
    "condor_reconfig": (
        "needs a running condor_master and schedd",
        "tests/test_packaging.py reads 60-panda.conf's PANDA_PLUGIN/DAEMON_LIST/SCHEDD.PLUGINS "
        "lines as HTCondor does; tests/test_plugin_main.py and tests/test_daemon.py send the "
        "SIGHUP condor_reconfig sends"),
    "systemctl enable --now condor-panda.service": (
        "--now starts the unit, which needs a running systemd",
        "packaging/check.sh runs `systemctl enable` and `systemctl is-enabled` on the installed "
        ".deb (offline) and `systemd-analyze verify` on the unit"),
    "dnf install ./pandad-<version>.noarch.rpm": (
        "CI runs on Debian: no dnf, no EL repositories",
        "packaging/check.sh installs that same file with `rpm -i --root` into an empty root, "
        "runs its wrappers there and erases it"),
}


# --- reading the README ------------------------------------------------------------------------

def fenced_blocks(text: str) -> List[Tuple[str, List[str]]]:
    """(language, lines) of every fenced block, indented ones (in list items) included."""
    blocks: List[Tuple[str, List[str]]] = []
    language, lines, indent = None, [], 0
    for line in text.splitlines():
        fence = re.match(r"^(\s*)```(\w*)\s*$", line)
        if language is None and fence:
            language, lines, indent = fence.group(2), [], len(fence.group(1))
        elif language is not None and fence:
            blocks.append((language, lines))
            language = None
        elif language is not None:
            lines.append(line[indent:] if line[:indent].isspace() else line)
    assert language is None, "README.md: a fenced block is not closed"
    return blocks


def shell_commands(lines: List[str]) -> List[str]:
    """The commands of an sh block: continuations joined, comments and blank lines dropped."""
    commands, pending = [], ""
    for line in lines:
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        line = re.sub(r"\s+#\s.*$", "", line)
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def readme_commands() -> List[str]:
    text = README.read_text()
    return [command for language, lines in fenced_blocks(text) if language == "sh"
            for command in shell_commands(lines)]


def config_lines() -> List[str]:
    """The ``NAME = value`` lines of the README's bare blocks: what it says to uncomment."""
    return [line.strip() for language, lines in fenced_blocks(README.read_text()) if not language
            for line in lines if re.match(r"^\s*[A-Za-z_][A-Za-z0-9_.]*\s*=", line)]


def runner_lines() -> List[str]:
    """Non-comment lines of .ci/run and packaging/check.sh, continuations joined."""
    joined = []
    for runner in RUNNERS:
        joined.extend(shell_commands(runner.read_text().splitlines()))
    return joined


def is_run_by_ci(command: str, lines: List[str]) -> bool:
    """``command`` stands as a command (not inside a message) on one of ``lines``."""
    for placeholder, value in SUBSTITUTIONS.items():
        command = command.replace(placeholder, value)
    pattern = re.compile(r"(?:^|[;&|(]\s*|\$\(\s*|\bbash\s+)" + re.escape(command)
                         + r"(?=$|[\s;&|)\"'])")
    return any(pattern.search(line) for line in lines)


# --- every command is accounted for ----------------------------------------------------------

def test_readme_has_the_two_setup_commands_first():
    commands = readme_commands()
    assert commands[:2] == ["python3 -m pandad demo", "python3 tests/run.py"]


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_is_run_by_ci_or_listed_with_its_stand_in(command):
    lines = runner_lines()
    if command in NOT_RUN_IN_CI:
        why, instead = NOT_RUN_IN_CI[command]
        assert why and instead
        assert not is_run_by_ci(command, lines), \
            f"{command!r} is run by CI now: remove it from NOT_RUN_IN_CI in tests/test_readme.py"
        return
    assert is_run_by_ci(command, lines), (
        f"README.md command {command!r} is run by neither .ci/run nor packaging/check.sh. "
        "Run it, as written (placeholders: " + ", ".join(SUBSTITUTIONS) + "), in .ci/run or in "
        "packaging/check.sh's real-install section; or, if only a live schedd or systemd can "
        "run it, add it to NOT_RUN_IN_CI in tests/test_readme.py with what verifies it instead.")


def test_the_not_run_list_names_only_readme_commands():
    stale = set(NOT_RUN_IN_CI) - set(readme_commands())
    assert not stale, f"NOT_RUN_IN_CI lists commands README.md no longer has: {sorted(stale)}"


def test_command_extraction_sees_indented_blocks_and_drops_comments():
    text = "x\n  ```sh\n  a --b   # note\n  # only a comment\n  c \\\n    d\n  ```\n```\nK = v\n```\n"
    blocks = fenced_blocks(text)
    assert blocks == [("sh", ["a --b   # note", "# only a comment", "c \\", "  d"]), ("", ["K = v"])]
    assert shell_commands(blocks[0][1]) == ["a --b", "c d"]
    assert is_run_by_ci("a --b", ['out="$(a --b)"'])
    assert not is_run_by_ci("a --b", ['fail "a --b printed"', "xa --b"])


# --- what the README says to configure is what the package ships -----------------------------

def test_every_line_the_readme_says_to_uncomment_is_in_the_packaged_config_commented_out():
    conf = CONF.read_text().splitlines()
    lines = config_lines()
    assert any(line.startswith("PANDA_URL = ") for line in lines)
    assert "SCHEDD.PLUGINS = $(SCHEDD.PLUGINS) $(LIBEXEC)/panda_plugin" in lines
    assert "DAEMON_LIST = $(DAEMON_LIST) PANDA_PLUGIN" in lines
    for line in lines:
        name = line.split("=")[0].strip()
        if name == "PANDA_URL":   # the README shows an example value to put in
            assert any(c.startswith("#PANDA_URL = ") for c in conf), "60-panda.conf: no #PANDA_URL"
        else:
            assert "#" + line in conf, f"60-panda.conf has no line '#{line}' to uncomment"


def test_every_knob_and_statistic_the_readme_names_exists():
    require_module("pandad.knobs")
    from pandad.knobs import KNOBS
    from pandad.stats import DYNAMIC_PREFIXES, STATISTICS

    text = README.read_text()
    knobs = {knob.name for knob in KNOBS}
    for name in set(re.findall(r"`(PANDA\w*)`", text)):
        assert name in knobs or name in ("PANDA_PLUGIN",), f"README.md names unknown knob {name}"
    names = {name for name, _ in STATISTICS}
    table = re.findall(r"^\| `([a-z_<>]+)`", text, re.M)
    assert "records_read" in table and "records_lost_transport" in table
    for name in table:
        if "<" in name:
            assert name.split("<")[0] in DYNAMIC_PREFIXES, name
        else:
            assert name in names, f"README.md's statistics table names unknown {name}"
    for name in re.findall(r"`((?:enqueue calls|queue full count|commands sent|request success %))`", text):
        assert name in names


# --- the cheap commands, run here from the checkout ------------------------------------------

@pytest.fixture
def host(tmp_path: Path) -> Dict[str, Path]:
    """A schedd host's layout in tmp_path: the README's lines applied to the packaged
    60-panda.conf, a fixture as the job queue log, and /usr/libexec/condor's programs as
    shims that run the checkout's wrappers."""
    for sub in ("log", "spool", "config.d", "libexec"):
        (tmp_path / sub).mkdir()
    conf = CONF.read_text()
    for line in config_lines():
        name = line.split("=")[0].strip()
        if name == "PANDA_URL":
            conf = re.sub(r"^#PANDA_URL = .*$", lambda _: line, conf, flags=re.M)
        elif name in ("SCHEDD.PLUGINS",):
            conf = conf.replace("#" + line + "\n", line + "\n")
    (tmp_path / "config.d" / "60-panda.conf").write_text(conf)
    (tmp_path / "condor_config").write_text(
        f"LOG = {tmp_path}/log\nSPOOL = {tmp_path}/spool\nLIBEXEC = {tmp_path}/libexec\n"
        f"LOCAL_CONFIG_DIR = {tmp_path}/config.d\n")
    shutil.copy(FIXTURES / "03_synth_multiproc_submit.log", tmp_path / "spool" / "job_queue.log")
    for program in ("pandad", "panda_plugin"):
        shim = tmp_path / "libexec" / program
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -s '
                        f'"{REPO}/packaging/libexec/{program}" "$@"\n')
        shim.chmod(0o755)
    return {"root": tmp_path, "config": tmp_path / "condor_config"}


def run_readme_command(command: str, host: Dict[str, Path]) -> str:
    """A README command, with /usr/libexec/condor/ as the host's shims, through bash."""
    bash = require_tool("bash")
    local = command.replace(LIBEXEC, f"{host['root']}/libexec/")
    result = subprocess.run([bash, "-o", "pipefail", "-c", local], cwd=host["root"],
                            env=python_env({"CONDOR_CONFIG": str(host["config"])}),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stderr}"
    return result.stdout


def readme_command(start: str) -> str:
    found = [command for command in readme_commands() if command.startswith(start)]
    assert len(found) == 1, f"README.md has {len(found)} commands starting {start!r}"
    return found[0]


def test_config_val_and_dry_run_as_the_readme_shows(host):
    require_module("pandad.config")
    out = run_readme_command(readme_command(LIBEXEC + "pandad --config-val"), host)
    url = next(line for line in config_lines() if line.startswith("PANDA_URL")).split("=", 1)[1]
    log = host["root"] / "log"
    assert out.splitlines() == [url.strip(), f"{log}/PandaStatistics", f"{log}/PandadLog"]
    out = run_readme_command(readme_command(LIBEXEC + "panda_plugin --dry-run"), host)
    records = out.rstrip("\n").split("\n")   # records begin with \v, which splitlines() splits on
    assert len(records) == 3 and all(r.startswith("\vADD\t") for r in records), out


def test_statistics_and_loss_commands_as_the_readme_shows(host):
    """The feed sends to a port that refuses: what pandad read is lost, counted and logged, and
    the README's commands find it."""
    refuser = socket.socket()   # bound, never listening: connections are refused
    refuser.bind(("127.0.0.1", 0))
    try:
        port = refuser.getsockname()[1]
        (host["root"] / "config.d" / "99-test.conf").write_text(
            f"PANDA_URL = http://127.0.0.1:{port}/api/jobs/\n"
            "PANDA_UPDATE_TIMEOUT = 2\nPANDA_SHUTDOWN_GRACE = 2\n")
        run_readme_command(f"{LIBEXEC}panda_plugin --dry-run --once | {LIBEXEC}pandad", host)
    finally:
        refuser.close()
    block = run_readme_command(readme_command("tail -n 40"), host)
    figures = dict(re.findall(r"^\[[^]]+\] ([^:]+): (.*)$", block, re.M))
    read = int(figures["records_read"])
    assert read > 0 and int(figures["records_lost_transport"]) == read, block
    assert figures["enqueue calls"] == str(read)
    losses = run_readme_command(readme_command("grep -E 'records_("), host).splitlines()
    assert len(losses) == 6 and any(f"records_lost_transport: {read}" in line for line in losses)
    log_lines = run_readme_command(readme_command("grep -E 'lost|"), host)
    assert re.search(r"lost \d+ record\(s\) in \d+ command\(s\): .*refused", log_lines), log_lines
