"""pandad.config: parsing and expansion as pure functions, errors with file and line."""

import subprocess

import pytest

from pandad.config import ConfigError, HTCondorConfig, detect_host_names, logical_lines
from tests.support import python_command, python_env


def cfg(text, subsystem="PANDAD", environ=None, files=None):
    return HTCondorConfig.from_text(text, subsystem, environ, "/etc/condor/condor_config",
                                    files)


def test_logical_lines_join_continuations_and_keep_the_first_line_number():
    text = "A = 1\nB = x \\\n  y\\\nz\n# c \\\nC = 3\n"
    assert list(logical_lines(text)) == [(1, "A = 1"), (2, "B = x yz"), (5, "# c "),
                                         (6, "C = 3")]


def test_comment_inside_continuation_keeps_its_last_character_as_htcondor_does():
    assert list(logical_lines("A = a\\\n# note\nB = 1\n")) == [(1, "A = ae"), (3, "B = 1")]
    # A commented-out line that itself ends in a backslash continues the value.
    assert list(logical_lines("A = a \\\n# old \\\n b\n")) == [(1, "A = a b")]


def test_lazy_expansion_sees_later_definitions_and_self_reference_is_immediate():
    c = cfg("A = $(B) x\nB = 1\nB = $(B) 2\nC = $(C) c\nD = $(NOPE:dd) $(NOPE)\n")
    assert c.get("A") == "1 2 x"
    assert c.get("B") == "1 2"
    assert c.get("C") == " c"
    assert c.get("D") == "dd "


def test_names_are_case_insensitive_and_empty_is_undefined():
    c = cfg("Foo = bar\nEMPTY =\nREF = $(foo)\n")
    assert c.get("FOO") == c.get("foo") == c.get("REF") == "bar"
    assert c.get("EMPTY") is None
    assert c.get("NEVER") is None


def test_dollar_env_and_double_dollar():
    c = cfg("A = $(DOLLAR)(X) $$(Y) $ENV(HOME_X) $ENV(NOPE) $ENV(NOPE:d) $ENV(EMPTY:d)\n",
            environ={"HOME_X": "/h", "EMPTY": ""})
    assert c.get("A") == "$(X) $$(Y) /h UNDEFINED d "


def test_subsystem_prefix_wins_over_plain_name_and_in_references():
    text = "X = plain\nPANDAD.X = mine\nSCHEDD.X = schedd\nY = $(X)\n"
    assert cfg(text).get("Y") == "mine"
    assert cfg(text, "SCHEDD").get("X") == "schedd"
    assert cfg(text, "TOOL").get("X") == "plain"
    assert cfg(text).location("X") == ("/etc/condor/condor_config", 2)


def test_builtin_defaults_follow_overrides():
    c = cfg("LOCAL_DIR = /var/lib/condor\nRELEASE_DIR = /opt\n")
    assert c.get("SPOOL") == "/var/lib/condor/spool"
    assert c.get("JOB_QUEUE_LOG") == "/var/lib/condor/spool/job_queue.log"
    assert c.get("LIBEXEC") == "/opt/libexec"
    assert c.get("LOCK") == "/var/lib/condor/log"
    assert c.location("LIBEXEC") is None


def test_include_if_else_and_multiline_values():
    c = cfg("include : /inc\ninclude ifexist : /absent\nif defined A\n B = yes\nelse\n"
            " B = no\nendif\nif version >= 9.0\n V = 1\nendif\nML @=end\n one\n $(A) two\n@end\n",
            files={"/inc": "A = from include\n"})
    assert c.get("B") == "yes"
    assert c.get("V") == "1"
    assert c.get("ML") == "one\nfrom include two"
    assert c.location("A") == ("/inc", 1)
    assert c.location("ML") == ("/etc/condor/condor_config", 11)


@pytest.mark.parametrize("text, message", [
    ("A = 1\nbad-name = 2\n", "/etc/condor/condor_config:2: illegal identifier: <bad-name>"),
    ("A = 1\njustaword\n", "/etc/condor/condor_config:2: syntax error"),
    ("include : /missing\n", "/etc/condor/condor_config:1: cannot open included file /missing"),
    ("include command : /bin/true\n", "runs a program"),
    ("if defined A\nB = 1\n", "endif(s) not found"),
    ("endif\n", "/etc/condor/condor_config:1: endif without matching if"),
    ("if $(A) == 1\nendif\n", "complex conditionals are not supported"),
    ("if version >= 24.0\nendif\n", "cannot decide"),
    ("ML @=end\nx\n", "end of file while looking for '@end'"),
    ("A = 1\nerror : stop $(A)\n", "/etc/condor/condor_config:2: error: stop 1"),
])
def test_syntax_errors_name_file_and_line(text, message):
    with pytest.raises(ConfigError) as info:
        cfg(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unsupported_macro_functions_and_cycles_are_errors_at_lookup():
    c = cfg("A = 1\nB = $INT(A)\nC = $(D)\nD = $(C)\nE = $(IP_ADDRESS)\n")
    assert c.get("A") == "1"
    with pytest.raises(ConfigError, match=r"condor_config:2: B: the macro function \$INT"):
        c.get("B")
    with pytest.raises(ConfigError, match="does not end"):
        c.get("C")
    with pytest.raises(ConfigError, match="IP_ADDRESS"):
        c.get("E")


def test_host_names_as_htcondor_detects_them():
    canonical = {"node": "node.example.org", "bare": "bare"}.get
    assert detect_host_names({}, "node", canonical) == ("node", "node.example.org")
    assert detect_host_names({"DEFAULT_DOMAIN_NAME": "site.org"}, "bare", canonical) == \
        ("bare", "bare.site.org")
    assert detect_host_names({"NETWORK_HOSTNAME": "node"}, "other", canonical) == \
        ("node", "node.example.org")
    assert detect_host_names({}, "gone", canonical) == ("gone", "gone")


def test_load_reads_local_files_directory_and_environment(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_text("ORDER = $(ORDER) b\n")
    (tmp_path / "d" / "a").write_text("ORDER = $(ORDER) a\n")
    (tmp_path / "d" / "x.rpmsave").write_text("ORDER = $(ORDER) excluded\n")
    (tmp_path / "local").write_text("ORDER = $(ORDER) local\n")
    main = tmp_path / "condor_config"
    main.write_text(f"ORDER = g\nLOCAL_CONFIG_DIR = {tmp_path}/d\n"
                    f"LOCAL_CONFIG_FILE = {tmp_path}/local\n")
    c = HTCondorConfig.load("PANDAD", {"CONDOR_CONFIG": str(main),
                                       "_CONDOR_ORDER": "$(ORDER) env", "_CONDOR_X": " v"})
    assert c.get("ORDER") == "g a b local env"
    assert c.get("X") == "v"
    assert c.location("X") == ("environment _CONDOR_X", 0)
    assert c.get("SUBSYSTEM") == "PANDAD"


def test_load_missing_files_are_fatal(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        HTCondorConfig.load("PANDAD", {"CONDOR_CONFIG": str(tmp_path / "nope")})
    main = tmp_path / "condor_config"
    main.write_text(f"LOCAL_CONFIG_FILE = {tmp_path}/missing\n")
    with pytest.raises(ConfigError, match="cannot read config source"):
        HTCondorConfig.load("PANDAD", {"CONDOR_CONFIG": str(main)})
    main.write_text(f"REQUIRE_LOCAL_CONFIG_FILE = false\nLOCAL_CONFIG_FILE = {tmp_path}/m\n")
    assert HTCondorConfig.load("PANDAD", {"CONDOR_CONFIG": str(main)}).get("A") is None


def test_config_val_command_output_and_exit_status(tmp_path):
    main = tmp_path / "condor_config"
    main.write_text("A = 1\nB = $(A) two\nSCHEDD.B = for the schedd\n")
    run = lambda *args, cfg=str(main): subprocess.run(  # noqa: E731
        python_command("pandad", "--config-val", *args), env=python_env({"CONDOR_CONFIG": cfg}),
        capture_output=True, text=True, timeout=30)
    ok = run("A", "B")
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "1\n1 two\n", "")
    schedd = run("-subsystem", "SCHEDD", "B")
    assert schedd.stdout == "for the schedd\n"
    missing = run("A", "NOPE")
    assert (missing.returncode, missing.stdout, missing.stderr) == (1, "1\n", "Not defined: NOPE\n")
    # pandad's own knobs have built-in defaults, shown as condor_config_val shows HTCondor's.
    defaults = run("PANDA_QUEUE_SIZE", "PANDA_STATISTICS_LOG")
    assert (defaults.returncode, defaults.stdout) == (0, "131072\n/tmp/pandaStatisticsLog\n")
    main.write_text("A = 1\nSPOOL = /var/spool/x\nPANDA_QUEUE_SIZE = 42\n")
    expanded = run("PANDA_QUEUE_SIZE", "PANDA_PLUGIN_STATE_FILE")
    assert expanded.stdout == "42\n/var/spool/x/panda_plugin.state\n"
    main.write_text("A = 1\nB = $(A) two\nSCHEDD.B = for the schedd\n")
    main.write_text("A = 1\nbroken line here\n")
    bad = run("A")
    assert bad.returncode == 99
    assert bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1 and f"{main}:2" in bad.stderr
    gone = run("A", cfg=str(tmp_path / "absent"))
    assert gone.returncode == 99 and len(gone.stderr.splitlines()) == 1


def test_metaknob_lines_are_skipped_and_the_rest_is_read(tmp_path):
    config = tmp_path / "condor_config"
    config.write_text("use SECURITY : recommended_v9_0\nuse ROLE : Submit\nA = 1\n"
                      "LOCAL_CONFIG_FILE =\nLOCAL_CONFIG_DIR =\n")
    loaded = HTCondorConfig.load("PANDAD", {"CONDOR_CONFIG": str(config)})
    assert loaded.get("A") == "1"
