"""schedd_plugin.state: the saved position is atomic, private, and never read or written via a symlink."""

import json
import logging
import os
import stat

import pytest

from schedd_plugin.state import Position, load_position, save_position


def test_round_trip_and_mode(tmp_path):
    path = str(tmp_path / "position")
    pos = Position(dev=2049, ino=123456, seq=7, birth=1700000000, offset=98765)
    save_position(path, pos)
    assert load_position(path) == pos
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # Overwrite in place: the new value replaces the old, no temporary file is left behind.
    save_position(path, pos._replace(offset=99999))
    assert load_position(path).offset == 99999
    assert sorted(os.listdir(tmp_path)) == ["position"]


def test_file_has_format_and_version(tmp_path):
    path = tmp_path / "position"
    save_position(str(path), Position(1, 2, 3, 4, 5))
    doc = json.loads(path.read_text())
    assert doc["format"] == "panda_plugin-position" and doc["version"] == 1


def test_save_replaces_symlink_without_following_it(tmp_path):
    target = tmp_path / "victim"
    target.write_text("precious\n")
    link = tmp_path / "position"
    link.symlink_to(target)
    save_position(str(link), Position(1, 2, 3, 4, 5))
    assert target.read_text() == "precious\n"
    assert not link.is_symlink()
    assert load_position(str(link)) == Position(1, 2, 3, 4, 5)


def test_save_ignores_symlink_planted_at_the_temporary_name(tmp_path):
    target = tmp_path / "victim"
    target.write_text("precious\n")
    (tmp_path / f".position.{os.getpid()}.tmp").symlink_to(target)
    save_position(str(tmp_path / "position"), Position(1, 2, 3, 4, 5))
    assert target.read_text() == "precious\n"
    assert load_position(str(tmp_path / "position")) == Position(1, 2, 3, 4, 5)


def test_load_refuses_symlink(tmp_path, caplog):
    real = tmp_path / "real"
    save_position(str(real), Position(1, 2, 3, 4, 5))
    link = tmp_path / "position"
    link.symlink_to(real)
    with caplog.at_level(logging.INFO, logger="panda_plugin.state"):
        assert load_position(str(link)) is None
    assert "symlink" in caplog.text


def test_missing_is_none_with_a_log_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="panda_plugin.state"):
        assert load_position(str(tmp_path / "nope")) is None
    assert len(caplog.records) == 1


@pytest.mark.parametrize("content", [
    b"",
    b"garbage\x00\xff",
    b"{\"format\": \"panda_plugin-position\", \"version\": 1, \"dev\": 1",
    b"[1, 2, 3]",
    b"{\"format\": \"something-else\", \"version\": 1}",
    b"{\"format\": \"panda_plugin-position\", \"version\": 99, \"dev\": 1, \"ino\": 2,"
    b" \"seq\": 3, \"birth\": 4, \"offset\": 5}",
    b"{\"format\": \"panda_plugin-position\", \"version\": 1, \"dev\": 1, \"ino\": 2,"
    b" \"seq\": 3, \"birth\": 4, \"offset\": -5}",
    b"{\"format\": \"panda_plugin-position\", \"version\": 1, \"dev\": 1, \"ino\": \"2\","
    b" \"seq\": 3, \"birth\": 4, \"offset\": 5}",
    b"{\"format\": \"panda_plugin-position\", \"version\": 1, \"dev\": 1, \"ino\": 2,"
    b" \"seq\": 3, \"birth\": true, \"offset\": 5}",
    b" " * 10000,
])
def test_corrupt_is_none(tmp_path, caplog, content):
    path = tmp_path / "position"
    path.write_bytes(content)
    with caplog.at_level(logging.INFO, logger="panda_plugin.state"):
        assert load_position(str(path)) is None
    assert len(caplog.records) == 1 and "ignoring saved position" in caplog.text


def test_directory_is_none(tmp_path):
    (tmp_path / "position").mkdir()
    assert load_position(str(tmp_path / "position")) is None


def test_fifo_is_none_without_blocking(tmp_path):
    path = tmp_path / "position"
    os.mkfifo(path)
    assert load_position(str(path)) is None
