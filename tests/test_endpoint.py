"""pandad.endpoint: what each answer means, Retry-After, episodes and the stall watch (pure)."""

import email.utils

import pytest

from pandad.endpoint import (SMALL_BODY_BYTES, Action, EndpointEpisodes, StallWatch, decide,
                             describe, refusal_reason, retry_after)

ITEM = {400, 409, 422}
RETRY = {408, 429} | set(range(500, 600))
ENDPOINT = {401, 403, 404, 405, 407}
SMALL, LARGE = SMALL_BODY_BYTES, SMALL_BODY_BYTES + 1


def expected(status, body_bytes, commands):
    """The table of issue 13, written out independently of the code."""
    if status is None or status in RETRY:
        return Action.RETRY
    if 200 <= status <= 299:
        return Action.ACCEPT
    if status in ITEM:
        return Action.SPLIT if commands > 1 else Action.UPSERT
    if status == 413 and body_bytes > SMALL:
        return Action.SPLIT if commands > 1 else Action.REJECT
    return Action.REFUSE


@pytest.mark.parametrize("commands", [1, 2, 1000])
@pytest.mark.parametrize("body_bytes", [0, 100, SMALL, LARGE, 10 * LARGE])
def test_decide_for_every_status(body_bytes, commands):
    for status in [None, 0, 99, 600, 999, -1] + list(range(100, 600)):
        assert decide(status, body_bytes, commands) is expected(status, body_bytes, commands), \
            (status, body_bytes, commands)


@pytest.mark.parametrize("status", sorted(ENDPOINT | {300, 301, 302, 303, 304, 307, 308}))
def test_endpoint_answers_are_never_split_or_upserted(status):
    for commands in (1, 2, 5000):
        assert decide(status, 10 * LARGE, commands) is Action.REFUSE


def test_413_depends_on_the_body_size():
    assert decide(413, SMALL, 50) is Action.REFUSE
    assert decide(413, LARGE, 50) is Action.SPLIT
    assert decide(413, LARGE, 1) is Action.REJECT


@pytest.mark.parametrize("status,reason", [
    (301, "redirect"), (302, "redirect"), (307, "redirect"), (308, "redirect"),
    (300, "redirect"), (401, "unauthorized"), (403, "forbidden"), (404, "not_found"),
    (405, "method_not_allowed"), (407, "proxy_auth"), (413, "too_large"), (410, "other"),
    (101, "other"), (600, "other")])
def test_refusal_reasons(status, reason):
    assert refusal_reason(status) == reason


def test_describe_names_url_status_location_and_counter():
    line = describe("POST", "http://u:***@h/api/", 301, "https://h/api/")
    assert "http://u:***@h/api/" in line and "HTTP 301" in line
    assert "(Location: https://h/api/)" in line
    assert "records_lost_endpoint_redirect" in line
    assert "Location" not in describe("PUT", "http://h/", 404)
    assert "PANDA_URL" in describe("PUT", "http://h/", 404)


NOW = 1_700_000_000.0


@pytest.mark.parametrize("value,seconds", [
    ("30", 30.0), (" 0 ", 0.0), ("120", 120.0),
    (email.utils.formatdate(NOW + 45, usegmt=True), 45.0),
    (email.utils.formatdate(NOW - 100, usegmt=True), 0.0),     # in the past: now
    ("", None), (None, None), ("soon", None), ("-5", None), ("1.5", None),
    ("Mon, 99 Foo 2026 99:99:99 GMT", None), ("9" * 40, float(int("9" * 12)))])
def test_retry_after(value, seconds):
    assert retry_after(value, NOW) == seconds


def test_episodes_start_on_a_new_status_and_end_with_success():
    episodes = EndpointEpisodes()
    assert episodes.answer(404)
    assert not episodes.answer(404)
    assert episodes.answer(401)                 # the status changed
    assert not episodes.answer(401)
    episodes.success()
    assert episodes.answer(401)                 # it came back after a success


def test_stall_watch_names_a_request_once_then_every_remind():
    watch = StallWatch(after=60, remind=300)
    assert watch.check(0.0, None) == (False, 60)
    assert watch.check(10.0, 5.0) == (False, 55.0)      # started at 5: named at 65
    assert watch.check(65.0, 5.0) == (True, 300)
    assert watch.check(100.0, 5.0) == (False, 265.0)
    assert watch.check(365.0, 5.0) == (True, 300)
    assert watch.check(400.0, None) == (False, 60)      # answered
    assert watch.check(401.0, 400.5) == (False, 59.5)   # a new request starts the count again


def test_in_flight_ages_and_names_the_request_on_its_clock():
    from pandad.endpoint import InFlight
    now = [100.0]
    in_flight = InFlight(lambda: now[0], stall_after=60)
    assert in_flight.age() is None and in_flight.watch(0) == ("", 60)
    in_flight.start("POST http://h/api/")
    now[0] = 130.0
    assert in_flight.age() == (30.0, "POST http://h/api/")
    assert in_flight.watch(0) == ("", 30.0)
    now[0] = 161.0
    line, wait = in_flight.watch(0)
    assert line.startswith("no answer yet to POST http://h/api/ after 61 s") and wait == 300
    assert "PANDA_UPDATE_TIMEOUT 0 waits" in line
    other = InFlight(lambda: 0.0, stall_after=0)
    other.start("PUT http://h/api/")
    assert "PANDA_UPDATE_TIMEOUT 90 s gives it up" in other.watch(90)[0]
    in_flight.end()
    assert in_flight.age() is None and in_flight.watch(0) == ("", 60)
