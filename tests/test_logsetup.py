"""pandad.logsetup: HTCondor-style log lines, rotation to .old, stderr under systemd."""

import logging
import os
import re
import stat

import pytest

from pandad.logsetup import redact_url, redact_urls, setup_logging

LINE_RE = re.compile(r"\d\d/\d\d/\d\d \d\d:\d\d:\d\d (.*)")
NO_SYSTEMD = {}


@pytest.fixture
def logger_name(request):
    name = "test_logsetup." + request.node.name
    yield name
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def messages(path):
    lines = path.read_text().splitlines()
    for line in lines:
        assert LINE_RE.fullmatch(line), line
    return [LINE_RE.fullmatch(line).group(1) for line in lines]


def test_file_lines_look_like_htcondor(tmp_path, logger_name):
    path = tmp_path / "PandadLog"
    log = setup_logging(logger_name, str(path), 1 << 20, "", environ=NO_SYSTEMD)
    log.info("hello %s", "world")
    log.debug("not shown")
    assert messages(path) == ["hello world"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_full_debug_turns_on_debug_lines(tmp_path, logger_name):
    path = tmp_path / "PandadLog"
    log = setup_logging(logger_name, str(path), 1 << 20, "D_ALWAYS D_FULLDEBUG",
                        environ=NO_SYSTEMD)
    log.debug("detail")
    assert messages(path) == ["detail"]
    assert log.level == logging.DEBUG


def test_rotates_to_old(tmp_path, logger_name):
    path = tmp_path / "PandadLog"
    log = setup_logging(logger_name, str(path), 2000, "", environ=NO_SYSTEMD)
    for i in range(100):
        log.info("line %03d %s", i, "x" * 40)
    old = tmp_path / "PandadLog.old"
    assert old.exists()
    assert path.stat().st_size <= 2000 and old.stat().st_size <= 2000
    assert sorted(os.listdir(tmp_path)) == ["PandadLog", "PandadLog.old"]
    assert messages(path)[-1].startswith("line 099")


def test_calling_again_replaces_the_handler(tmp_path, logger_name):
    first = tmp_path / "first"
    second = tmp_path / "second"
    log = setup_logging(logger_name, str(first), 1 << 20, "", environ=NO_SYSTEMD)
    log.info("one")
    log = setup_logging(logger_name, str(second), 1 << 20, "", environ=NO_SYSTEMD)
    log.info("two")
    assert messages(first) == ["one"]
    assert messages(second) == ["two"]
    assert len(log.handlers) == 1


def test_stderr_without_a_path(capsys, logger_name):
    log = setup_logging(logger_name, None, 0, "", environ=NO_SYSTEMD)
    log.warning("to stderr")
    err = capsys.readouterr().err.splitlines()
    assert LINE_RE.fullmatch(err[-1]).group(1) == "to stderr"


@pytest.mark.parametrize("variable", ["JOURNAL_STREAM", "INVOCATION_ID"])
def test_stderr_under_systemd(tmp_path, capsys, logger_name, variable):
    path = tmp_path / "PandadLog"
    log = setup_logging(logger_name, str(path), 1 << 20, "", environ={variable: "8:1234"})
    log.info("to the journal")
    assert not path.exists()
    assert capsys.readouterr().err.strip().endswith("to the journal")


def test_does_not_follow_a_symlink(tmp_path, capsys, logger_name):
    target = tmp_path / "target"
    target.write_text("")
    link = tmp_path / "PandadLog"
    link.symlink_to(target)
    log = setup_logging(logger_name, str(link), 1 << 20, "", environ=NO_SYSTEMD)
    log.info("still logged")
    assert target.read_text() == ""
    err = capsys.readouterr().err
    assert f"log file {link} is a symbolic link" in err and "still logged" in err


def planted(tmp_path, kind):
    """A file someone else could have put at the log's path; (path, the file it must spare)."""
    path = tmp_path / "PandadLog"
    other = tmp_path / "someone-elses"
    other.write_text("precious\n")
    if kind == "hard link":
        os.link(other, path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "foreign":
        path.write_text("")
        os.chown(path, 12345, 12345)
        other = path
    return path, other


@pytest.mark.parametrize("kind, reason", [
    ("hard link", "has 2 hard links; refusing to write to it"),
    ("fifo", "is not a regular file; refusing to write to it"),
    ("foreign", "is owned by uid 12345, not by this user"),
])
def test_a_planted_log_file_is_refused_with_the_reason(tmp_path, capsys, logger_name, kind,
                                                      reason):
    if kind == "foreign" and os.geteuid() != 0:
        pytest.skip("needs root to create a file owned by another user")
    path, other = planted(tmp_path, kind)
    before = other.read_text() if other.is_file() else None
    log = setup_logging(logger_name, str(path), 1 << 20, "", environ=NO_SYSTEMD)
    log.info("still logged")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2, err
    assert f"log file {path} {reason}" in err[0], err[0]
    assert err[0].endswith("; logging to stderr"), err[0]
    assert err[1].endswith("still logged")
    if before is not None:
        assert other.read_text() == before


def test_a_file_planted_at_rotation_is_refused(tmp_path, capfd, logger_name):
    path = tmp_path / "PandadLog"
    other = tmp_path / "someone-elses"
    other.write_text("precious\n")
    log = setup_logging(logger_name, str(path), 300, "", environ=NO_SYSTEMD)
    handler = log.handlers[0]
    real_replace = os.replace

    def replace_then_plant(src, dst):
        # The race the rotation loses: a hard link appears where the new file goes.
        real_replace(src, dst)
        os.link(other, src)

    for i in range(3):
        log.info("line %d %s", i, "x" * 100)
    os.replace = replace_then_plant
    try:
        for i in range(3, 6):
            log.info("line %d %s", i, "x" * 100)
    finally:
        os.replace = real_replace
    log.info("after")
    assert other.read_text() == "precious\n"
    err = capfd.readouterr().err.splitlines()
    assert err[0].endswith(f"log file {path} has 2 hard links; refusing to write to it;"
                           " logging to stderr"), err
    assert err[-1].endswith("after"), err
    assert handler.maxBytes == 0


def test_unwritable_directory_falls_back_to_stderr(tmp_path, capsys, logger_name):
    log = setup_logging(logger_name, str(tmp_path / "missing" / "PandadLog"), 1 << 20, "",
                        environ=NO_SYSTEMD)
    log.info("still logged")
    assert "still logged" in capsys.readouterr().err


@pytest.mark.parametrize("url, expected", [
    ("https://user:secret@panda.example.org/api/jobs/",
     "https://user:***@panda.example.org/api/jobs/"),
    ("http://u:p%40ss@host:8080/x", "http://u:***@host:8080/x"),
    ("https://u:p@ss@host/x", "https://u:***@host/x"),
    ("https://:secret@host/x", "https://:***@host/x"),
    ("https://user@host/x", "https://user@host/x"),
    ("https://host/x?user=a:b@c", "https://host/x?user=a:b@c"),
    ("http://[::1]:80/x", "http://[::1]:80/x"),
    ("not a url", "not a url"),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_urls_in_free_text():
    text = "PANDA_URL = 'ftp://user:s3cret@host/x' must be an http:// URL; also https://a:b@c/"
    redacted = redact_urls(text)
    assert "s3cret" not in redacted and ":b@" not in redacted
    assert "ftp://user:***@host/x" in redacted and "https://a:***@c/" in redacted
