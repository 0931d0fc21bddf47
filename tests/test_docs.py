"""Every reference in code and docs points inside the repository, at a section that exists.

The design contract and the job_queue.log reference live in ``docs/design.md`` and
``docs/job-queue-log.md``; code cites them as ``docs/design.md §N``. A citation of the old
out-of-tree contract ("DESIGN §N") or a path into a directory beside the checkout would leave a
reader of the repository alone with a dangling reference.
"""

import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

from tests.support import REPO

# Where references are checked: runtime code, docs (man pages included), packaging, README.
SCANNED = ("pandad", "schedd_plugin", "docs", "packaging", "tests", "README.md")
SUFFIXES = {".py", ".md", ".8", ".sh", ".conf", ".service", ".cfg", ".txt", ".spec", ""}
# packaging/check.sh reads the test fixtures beside the checkout: test data, not a reference.
# tests/ reach the same fixtures through tests.support.FIXTURES; only their citations count.
OUTSIDE_ALLOWED = {"packaging/check.sh"}

# The C++ pandad's comparison kit (shared/anchor) is a tool a maintainer runs, not a document the
# code cites: docs/performance.md says how to run it.
OUTSIDE = re.compile(r"\bDESIGN(?:\.md)?\s*§|\.\./shared/(?!anchor\b)|/work/shared\b(?!/anchor\b)"
                     r"|reference/job_queue_log")
CITATION = re.compile(r"(?:docs/)?(design|job-queue-log)\.md`*\)?\s*((?:§\s*[0-9][0-9.]*"
                      r"(?:\s*,\s*)?)+)")
HEADING = re.compile(r"^#{2,4} ([0-9]+(?:\.[0-9]+)*)\.? ", re.MULTILINE)


def files() -> Iterator[Path]:
    """Every text file under SCANNED, except this test (it names the patterns it forbids)."""
    for name in SCANNED:
        root = REPO / name
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            if path.suffix in SUFFIXES and "__pycache__" not in path.parts \
                    and path != Path(__file__).resolve():
                yield path


def sections(doc: str) -> Set[str]:
    """The section numbers of docs/<doc>.md: "4", "4.2", … from its numbered headings."""
    return set(HEADING.findall((REPO / "docs" / f"{doc}.md").read_text(encoding="utf-8")))


def citations(text: str) -> List[Tuple[str, str]]:
    """(doc, section) for every "design.md §N" / "job-queue-log.md §N, §M" in ``text``."""
    found = []
    for match in CITATION.finditer(text):
        for number in re.findall(r"§\s*([0-9][0-9.]*)", match.group(2)):
            found.append((match.group(1), number.rstrip(".")))
    return found


def relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def test_no_reference_points_outside_the_repository():
    offending = []
    for path in files():
        if relative(path) in OUTSIDE_ALLOWED or relative(path).startswith("tests/"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                      .splitlines(), 1):
            if OUTSIDE.search(line):
                offending.append(f"{relative(path)}:{number}: {line.strip()}")
    assert not offending, "references outside the repository:\n" + "\n".join(offending)


def test_tests_cite_no_out_of_tree_document():
    """tests/ may read fixtures beside the checkout, but cite only documents inside it."""
    cited = re.compile(r"\bDESIGN(?:\.md)?\s*§|shared/DESIGN|reference/job_queue_log")
    offending = [f"{relative(path)}:{number}"
                 for path in files() if relative(path).startswith("tests/")
                 for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                                .splitlines(), 1)
                 if cited.search(line)]
    assert not offending, offending


def test_every_cited_section_exists():
    known: Dict[str, Set[str]] = {doc: sections(doc) for doc in ("design", "job-queue-log")}
    missing = []
    count = 0
    for path in files():
        for doc, number in citations(path.read_text(encoding="utf-8", errors="replace")):
            count += 1
            if number not in known[doc]:
                missing.append(f"{relative(path)}: {doc}.md §{number}")
    assert not missing, "citations of sections that do not exist:\n" + "\n".join(missing)
    assert count >= 20, f"only {count} citations found: is CITATION still matching them?"


@pytest.mark.parametrize("doc, expected", [
    ("design", {"1", "2", "3", "4", "4.1", "4.7", "5", "5.1", "5.2", "5.3", "6", "7", "8"}),
    ("job-queue-log", {"0", "1", "1.1", "1.4", "2.1", "2.4", "3.3", "4.6", "7", "8"}),
])
def test_the_sections_code_relies_on_are_numbered(doc, expected):
    assert expected <= sections(doc)


def test_citation_parsing_sees_every_form():
    text = ("(docs/design.md §4.2) ``docs/job-queue-log.md`` §2.4, §7\n"
            "[design.md §3](design.md) docs/job-queue-log.md §8 is the checklist. "
            "(docs/job-queue-log.md §3.3, §4.6, §8).")
    assert citations(text) == [("design", "4.2"), ("job-queue-log", "2.4"),
                               ("job-queue-log", "7"), ("design", "3"),
                               ("job-queue-log", "8"), ("job-queue-log", "3.3"),
                               ("job-queue-log", "4.6"), ("job-queue-log", "8")]
    assert OUTSIDE.search("the contract (DESIGN §4)")
    assert OUTSIDE.search("see ../shared/DESIGN.md")
    assert not OUTSIDE.search("see docs/design.md §4")


def test_both_documents_are_linked_for_developers():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    architecture = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    first_paragraph = architecture.split("\n\n")[1]
    for doc in ("design.md", "job-queue-log.md"):
        assert f"docs/{doc}" in readme
        assert f"]({doc})" in first_paragraph
