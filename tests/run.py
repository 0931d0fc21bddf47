#!/usr/bin/env python3
"""The project's test command: ``python3 tests/run.py [pytest arguments]``.

Creates a virtual environment with the development tools (``tests/requirements.txt``)
the first time, or again when that file changes, then runs pytest in it, on two workers
unless the arguments say otherwise (``-n 0``: one process). The runtime
itself needs nothing from that environment: pandad is standard library only.
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "tests" / "requirements.txt"
VENV = Path(os.environ.get("PANDAD_TEST_VENV", REPO / ".venv"))


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> None:
    """Install the pinned tools once; the stamp keeps later runs offline and fast."""
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / ".requirements.sha256"
    if venv_python().exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return
    print(f"tests/run.py: installing test tools into {VENV}", flush=True)
    # Symlinks, as `python3 -m venv` makes on Linux: copying the interpreter over an existing
    # venv's symlink to it fails (SameFileError).
    venv.EnvBuilder(with_pip=True, clear=False, symlinks=True).create(VENV)
    pip = [str(venv_python()), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted + "\n")


# Two workers (pytest-xdist): the system tests spend most of their time waiting on real
# processes and timers, so two run in about half the time even on two CPUs; work stealing
# keeps the two-minute soak from being the tail. ``-n 0`` runs everything in one process.
WORKERS = ["-n", "2", "--dist", "worksteal"]


def with_workers(argv: list) -> list:
    """``argv`` with the default workers, unless it chooses its own (or disables xdist)."""
    chosen = any(arg == "no:xdist" or arg.startswith(("-n", "--numprocesses"))
                 for arg in argv)
    return argv if chosen else WORKERS + argv


def main(argv: list) -> int:
    ensure_venv()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [str(venv_python()), "-m", "pytest", *with_workers(argv)]
    return subprocess.run(command, cwd=REPO, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
