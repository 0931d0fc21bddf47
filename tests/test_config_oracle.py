"""``pandad --config-val`` answers the same as the real HTCondor library (htcondor2.param).

Every case is a directory of configuration files, an environment and a subsystem. pandad
answers in a real subprocess per case; the oracle answers in one subprocess for all cases
(htcondor2.set_subsystem + reload_config per case), so the whole module takes seconds.
Cases come from a table (one feature each) and from a seeded generator that mixes them.
"""

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import pytest

from tests.support import python_command, python_env, require_module

DEFAULT_NAMES = ["LIBEXEC", "SPOOL", "LOG", "LOCK", "LOCAL_DIR", "RELEASE_DIR",
                 "JOB_QUEUE_LOG", "FULL_HOSTNAME", "HOSTNAME", "BIN", "SBIN", "LIB", "ETC",
                 "RUN", "EXECUTE", "SCHEDD_NAME", "PLUGINS", "PLUGIN_DIR", "SUBSYSTEM"]

ORACLE = r"""
import json, os, sys
import htcondor2
cases = json.load(sys.stdin)
base = {k: v for k, v in os.environ.items() if not k.startswith("_CONDOR_")}
answers = []
for case in cases:
    for key in list(os.environ):
        if key not in base:
            del os.environ[key]
    os.environ.update(base)
    os.environ.update(case["env"])
    htcondor2.set_subsystem(case["subsystem"])
    htcondor2.reload_config()
    answers.append({name: htcondor2.param.get(name) for name in case["names"]})
json.dump(answers, sys.stdout)
"""


class Case(NamedTuple):
    label: str
    files: Dict[str, str]            # relative path -> text; "@D@" becomes the case dir
    names: List[str]
    env: Dict[str, str] = {}
    subsystem: str = "PANDAD"


TABLE = [
    # What packaged HTCondor configurations hold: the knobs pandad reads are unaffected.
    Case("metaknobs as packaged", {"condor_config": (
        "use SECURITY : recommended_v9_0\n"
        "use ROLE : Personal\n"
        "use FEATURE : GPUs\n"
        "PANDA_URL = https://panda.example.org/api/jobs/\n"
        "SCHEDD.PLUGINS = $(LIBEXEC)/panda_plugin\n"
        "PANDA_QUEUE_SIZE = 262144\n")},
        ["PANDA_URL", "PANDA_QUEUE_SIZE", "LIBEXEC", "SPOOL", "JOB_QUEUE_LOG"]),
    Case("continuation and comments", {"condor_config": (
        "A = one \\\n  two\\\n three\n"
        "# a comment \\\nB = not swallowed\n"
        "C = x \\\n# inside\\\n  y\n"
        "D = keeps # this\n"
        "E = a\\\n# ends here\n"
        "  F  =   padded   \n")}, ["A", "B", "C", "D", "E", "F"]),
    Case("expansion", {"condor_config": (
        "A = 1\nB = $(A) $(C) $(NOPE) x\nC = later\nD = $(NOPE:dflt) $(A:unused)\n"
        "E = $(DOLLAR) $$(A) $(DOLLAR)(A) $$$(A)\nF = $(NOPE:$(A))\nG = $(a)\n"
        "H = $(A\nI = $(NOPE:a(b)c) $(NOPE:/p/q r, s)\nJ = $( A) $(A )\n"
        "K = $(EMPTY:was empty)\nEMPTY =\n")},
        ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "EMPTY"]),
    Case("self reference", {"condor_config": (
        "X = a\nX = $(X) b\nY = $(Y) c\nZ = $(Z:zz) d\nW = w\nW = $(W:unused) $(W)\n"
        "V = $(U)\nU = u1\nU = $(U) u2\n")}, ["X", "Y", "Z", "W", "V", "U"]),
    Case("include", {
        "condor_config": "A = 1\ninclude : @D@/inc/one\ninclude ifexist : @D@/nothing\n"
                         "@include : @D@/inc/two\nINC = $(INC) main\n",
        "inc/one": "INC = one $(A)\nB = from one\n",
        "inc/two": "INC = $(INC) two\n"}, ["A", "B", "INC"]),
    Case("local config file and dir order", {
        "condor_config": "ORDER = g\nLOCAL_CONFIG_FILE = @D@/l1, @D@/l2\n"
                         "LOCAL_CONFIG_DIR = @D@/d\n",
        "l1": "ORDER = $(ORDER) l1\n", "l2": "ORDER = $(ORDER) l2\nLAST = l2\n",
        "d/b": "ORDER = $(ORDER) b\n", "d/a": "ORDER = $(ORDER) a\n",
        "d/B0": "ORDER = $(ORDER) B0\n", "d/10": "ORDER = $(ORDER) 10\n",
        "d/skip.py": "ORDER = $(ORDER) py\n", "d/skip~": "ORDER = $(ORDER) tilde\n",
        "d/.hidden": "ORDER = $(ORDER) hidden\n", "d/x.rpmnew": "ORDER = $(ORDER) rpmnew\n",
        "d/sub/inner": "ORDER = $(ORDER) inner\n"}, ["ORDER", "LAST"]),
    Case("local file changes the list", {
        "condor_config": "LOCAL_CONFIG_FILE = @D@/l1\nORDER = g\n",
        "l1": "ORDER = $(ORDER) l1\nLOCAL_CONFIG_FILE = @D@/l1 @D@/l3\n",
        "l3": "ORDER = $(ORDER) l3\n"}, ["ORDER"]),
    Case("subsystem pandad", {"condor_config": (
        "X = base\nPANDAD.X = pandad\nSCHEDD.X = schedd\nY = $(X)\n"
        "PANDAD.Z = $(Z) more\nZ = z\nPROBE_Q = $(Q)\nPANDAD.Q = only sub\n")},
        ["X", "Y", "Z", "PROBE_Q"]),
    Case("subsystem schedd", {"condor_config": (
        "PLUGINS = /x/other\nSCHEDD.PLUGINS = /usr/libexec/panda_plugin\n"
        "schedd.plugin_dir = $(LIBEXEC)\nPLUGIN_DIR = /nowhere\n")},
        ["PLUGINS", "PLUGIN_DIR"], subsystem="SCHEDD"),
    Case("environment overrides", {"condor_config": "A = 1\nE1 = file\nE3 = file\n"
                                                    "PROBE_E4 = $(E4)\nE5 = $(E5) file\n"},
         ["E1", "E2", "E3", "PROBE_E4", "E5", "ENVS"],
         env={"_CONDOR_E1": "$(A) env", "_condor_E2": "lower case prefix",
              "_CONDOR_E3 ": "  spaced", "_CONDOR_PANDAD.E4": "subsystem env",
              "_CONDOR_E5": "$(E5) env", "MYVAR": "value of myvar",
              "_CONDOR_ENVS": "$ENV(MYVAR) $ENV(NOT_SET) $ENV(NOT_SET:dflt)"}),
    Case("ENV macro", {"condor_config": "H = $ENV(MYVAR)\nI = $ENV(NOT_SET)\n"
                                        "J = $ENV(NOT_SET:d e f)\nK = $env(MYVAR)\n"
                                        "L = $ENV(EMPTYVAR:was empty)\n"},
         ["H", "I", "J", "K", "L"], env={"MYVAR": "my value", "EMPTYVAR": ""}),
    Case("defaults", {"condor_config": "A = 1\n"}, DEFAULT_NAMES),
    Case("defaults with LOCAL_DIR and RELEASE_DIR", {"condor_config": (
        "LOCAL_DIR = /var/lib/condor\nRELEASE_DIR = /opt/condor\nLOG = $(LOCAL_DIR)/logs\n")},
        DEFAULT_NAMES),
    Case("defaults overridden by SPOOL and LOCK", {"condor_config": (
        "SPOOL = /data/spool\nLOCK = /run/lock/condor\nLIBEXEC = /opt/libexec\n"
        "PANDAD = $(LIBEXEC)/pandad --flag\n")}, DEFAULT_NAMES + ["PANDAD"]),
    Case("host names are detected", {"condor_config": (
        "HOSTNAME = set in file\nFULL_HOSTNAME = set in file\nFH = $(FULL_HOSTNAME)\n")},
        ["HOSTNAME", "FULL_HOSTNAME", "FH"]),
    Case("if else", {"condor_config": (
        "A = 1\nif defined A\n  I1 = yes\nelse\n  I1 = no\nendif\n"
        "if defined NOPE\n I2 = a\nelif $(A)\n I2 = b\nelse\n I2 = c\nendif\n"
        "if version >= 8.0\n I3 = new\nendif\nif ! defined NOPE\n I4 = t\nendif\n"
        "if false\n if true\n  I5 = inner\n endif\nelse\n I5 = outer\nendif\n"
        "if $(NOPE)\n I6 = x\nelse\n I6 = empty is false\nendif\n")},
        ["I1", "I2", "I3", "I4", "I5", "I6"]),
    Case("multi-line value", {"condor_config": "A = 1\nML @=end\n  first\n  $(A) second\n@end\n"
                                               "AFTER = $(ML)\n"}, ["ML", "AFTER"]),
    Case("colon assignment and ini sections", {"condor_config": "[section]\nC : colon value\n"
                                                                "$(NAME_PART)_X = keyed\n"
                                                                "NAME_PART = late\n"},
         ["C", "_X", "late_X"]),
]

# HTCondor never reads a file again in a process that once saw CONDOR_CONFIG=ONLY_ENV,
# so this case runs last in the oracle process.
LAST = [
    Case("ONLY_ENV", {"condor_config": "A = file\n"}, ["A", "B", "LIBEXEC"],
         env={"CONDOR_CONFIG": "ONLY_ENV", "_CONDOR_B": "$(LIBEXEC)/b"}),
]


# --------------------------------------------------------------------------- generator

def generated_case(seed: int) -> Case:
    """A configuration mixing the features at random, as one seed decides."""
    rng = random.Random(seed)
    subsystem = rng.choice(["PANDAD", "SCHEDD"])
    knobs = [f"K{i}" for i in range(12)]
    env: Dict[str, str] = {"GENVAR": f"env-{seed}"}
    files: Dict[str, str] = {}

    def value(index: int) -> str:
        # K<i> refers only to K<j> with j > i: HTCondor loops forever on a cycle.
        parts = []
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            ref = rng.choice(knobs[index + 1:] + ["UNDEFINED_ONE", "LIBEXEC", "SPOOL", "LOG"])
            if kind < 0.35:
                parts.append(f"$({ref})")
            elif kind < 0.45:
                parts.append(f"$({ref}:dflt{rng.randint(0, 9)})")
            elif kind < 0.5:
                parts.append(rng.choice(["$ENV(GENVAR)", "$ENV(NO_SUCH_VAR:nv)", "$(DOLLAR)"]))
            else:
                parts.append(rng.choice(["alpha", "/a/b", "x,y", "1024", "http://h/p"]))
        return " ".join(parts)

    def line(name: str) -> str:
        text = value(knobs.index(name))
        if rng.random() < 0.2:
            text = f"$({name}) {text}"              # self reference
        if rng.random() < 0.2 and " " in text:       # continuation
            head, tail = text.split(" ", 1)
            text = f"{head} \\\n   {tail}"
            if rng.random() < 0.3:
                text = text.replace("\\\n", "\\\n# commented out\\\n", 1)
        # htcondor2.param[NAME] is a KeyError when only SUBSYS.NAME exists (the binding
        # looks NAME up without the prefix first), so only K0..K3, always defined plainly
        # too, get a subsystem prefix.
        prefix = f"{subsystem}." if name in knobs[:4] and rng.random() < 0.4 else ""
        return f"{prefix}{name} = {text}\n"

    def body(n: int) -> str:
        out = []
        for _ in range(n):
            if rng.random() < 0.1:
                out.append("# a comment\n")
            out.append(line(rng.choice(knobs)))
        return "".join(out)

    main = [body(rng.randint(3, 8))]
    for name in knobs[:4]:
        main.append(f"{name} = base {name}\n")      # SUBSYS.K always has a K beside it
    if rng.random() < 0.5:
        main.append(rng.choice(["LOCAL_DIR = /var/lib/condor\n", "RELEASE_DIR = /opt/c\n",
                                "SPOOL = $(LOCAL_DIR:/srv)/spool\n"]))
    if rng.random() < 0.6:
        files["inc"] = body(rng.randint(1, 4))
        main.append("include : @D@/inc\n")
    if rng.random() < 0.3:
        main.append("include ifexist : @D@/absent\n")
    if rng.random() < 0.6:
        names = rng.sample(["a", "B", "c.conf", "10-x", "z.py", ".dot", "e~"], 4)
        for name in names:
            files[f"dir/{name}"] = body(rng.randint(1, 3))
        main.append("LOCAL_CONFIG_DIR = @D@/dir\n")
    if rng.random() < 0.6:
        files["local1"] = body(rng.randint(1, 3))
        files["local2"] = body(rng.randint(1, 3))
        main.append("LOCAL_CONFIG_FILE = @D@/local1 @D@/local2\n")
    if rng.random() < 0.4:
        main.append(f"if defined {rng.choice(knobs)}\n{body(2)}else\n{body(2)}endif\n")
    rng.shuffle(main)
    files["condor_config"] = "".join(main)
    for name in rng.sample(knobs, 3):
        if rng.random() < 0.5:
            env[f"_CONDOR_{name}"] = value(knobs.index(name))
    return Case(f"generated {seed}", files, knobs + DEFAULT_NAMES[:8], env, subsystem)


GENERATED = [generated_case(seed) for seed in range(int(os.environ.get("ORACLE_SEEDS", "24")))]
ALL = TABLE + GENERATED + LAST


# --------------------------------------------------------------------------- running

def materialise(case: Case, root: Path) -> Dict[str, str]:
    """Write the case's files under ``root``; return its environment."""
    for rel, text in case.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("@D@", str(root)))
    env = {"CONDOR_CONFIG": str(root / "condor_config")}
    env.update({k: v.replace("@D@", str(root)) for k, v in case.env.items()})
    return env


def pandad_answers(case: Case, env: Dict[str, str],
                   expected: Dict[str, Optional[str]]) -> Dict[str, Optional[str]]:
    result = subprocess.run(python_command("pandad", "--config-val", "-subsystem",
                                           case.subsystem, *case.names),
                            env=python_env(env), capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 1), result.stderr
    undefined = {line[len("Not defined: "):] for line in result.stderr.splitlines()
                 if line.startswith("Not defined: ")}
    lines = result.stdout.split("\n")
    answers: Dict[str, Optional[str]] = {}
    for name in case.names:
        if name in undefined:
            answers[name] = None
            continue
        # A multi-line value takes as many lines as the oracle's does.
        n = (expected.get(name) or "").count("\n") + 1
        answers[name], lines = "\n".join(lines[:n]), lines[n:]
    return answers


def oracle_answers(cases: List[Case], envs: List[Dict[str, str]]) -> List[dict]:
    payload = [{"env": env, "subsystem": case.subsystem, "names": case.names}
               for case, env in zip(cases, envs)]
    child_env = {k: v for k, v in os.environ.items()
                 if not k.startswith("_CONDOR_") and k != "CONDOR_CONFIG"}
    result = subprocess.run([sys.executable, "-c", ORACLE], input=json.dumps(payload),
                            env=child_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _normal(value: object) -> Optional[str]:
    return None if value in (None, "") else str(value)


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    require_module("htcondor2")
    cases = ALL
    roots = [tmp_path_factory.mktemp(f"case{i}") for i in range(len(cases))]
    envs = [materialise(case, root) for case, root in zip(cases, roots)]
    return cases, envs, oracle_answers(cases, envs)


def test_at_least_twenty_configurations():
    assert len(ALL) >= 40


@pytest.mark.parametrize("index", range(len(ALL)), ids=[c.label for c in ALL])
def test_config_val_equals_htcondor(oracle_run, index):
    cases, envs, oracle = oracle_run
    case, env = cases[index], envs[index]
    expected = {name: _normal(value) for name, value in oracle[index].items()}
    got = pandad_answers(case, env, expected)
    mismatches = {name: (got[name], expected[name]) for name in case.names
                  if got[name] != expected[name]}
    assert not mismatches, (f"{case.label}: (pandad, htcondor) differ: {mismatches}\n"
                            f"config:\n{case.files.get('condor_config')}")
