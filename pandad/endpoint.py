"""What an HTTP answer means for the commands it carried, and when the endpoint is in trouble.

Pure decisions over plain data, used by the flusher (``pandad.flusher``):

- ``decide(status, body_bytes, commands)``: the action for one answer. Only answers that can
  concern single items (400, 409, 422, and 413 for a large body) are isolated by splitting;
  every other non-2xx answer is about the endpoint (a wrong URL, a credential, a redirect, an
  overloaded or broken server) and says nothing about the jobs in the body, so splitting it
  or re-sending with the other verb would only multiply the requests.
- ``retry_after(value, now)``: a ``Retry-After`` header (seconds or an HTTP date) in seconds.
- ``EndpointEpisodes``: one log line per episode of endpoint answers.
- ``StallWatch``: when a request has been outstanding long enough to be named in the log;
  ``InFlight``: the flusher's request in flight, as other threads see it, and its watch.
"""

import enum
import email.utils
import time
from typing import Callable, Optional, Tuple

# A 413 for a body this small is the endpoint's limit, not the jobs' size: splitting it
# cannot help. nginx's default limit is 1 MiB, Apache's unlimited; no monitor sensibly
# refuses 64 KiB of JSON.
SMALL_BODY_BYTES = 64 * 1024
ITEM_STATUSES = frozenset({400, 409, 422})        # can concern single items: isolated
RETRY_STATUSES = frozenset({408, 429})           # and every 5xx: the endpoint may recover
STALL_AFTER = 60.0                               # seconds before a request is named
STALL_REMIND = 300.0                             # and again this often while it lasts


class Action(enum.Enum):
    ACCEPT = "accept"        # 2xx: delivered
    SPLIT = "split"          # an item-level refusal of several commands: halve and re-send
    UPSERT = "upsert"        # an item-level refusal of one command: the other verb, or reject
    REJECT = "reject"        # one command the monitor cannot take (too large): rejected
    RETRY = "retry"          # no answer, 408, 429, 5xx: retried up to PANDA_RETRY_LIMIT, or lost
    REFUSE = "refuse"        # an endpoint-level refusal (3xx, 401, 403, 404 ...): lost


def decide(status: Optional[int], body_bytes: int, commands: int) -> Action:
    """The action for an answer ``status`` (None: no answer) to a body of ``commands``."""
    if status is None or status in RETRY_STATUSES or 500 <= status <= 599:
        return Action.RETRY
    if 200 <= status <= 299:
        return Action.ACCEPT
    if status in ITEM_STATUSES:
        return Action.SPLIT if commands > 1 else Action.UPSERT
    if status == 413 and body_bytes > SMALL_BODY_BYTES:
        return Action.SPLIT if commands > 1 else Action.REJECT
    return Action.REFUSE


_REASONS = {301: "redirect", 302: "redirect", 303: "redirect", 307: "redirect",
            308: "redirect", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 407: "proxy_auth", 413: "too_large"}


def refusal_reason(status: int) -> str:
    """The counter suffix of an endpoint-level refusal: records_lost_endpoint_<reason>."""
    return _REASONS.get(status, "redirect" if 300 <= status <= 399 else "other")


_HINTS = {"redirect": "point PANDA_URL at the new location",
          "unauthorized": "check the credential (PANDA_TOKEN_FILE, the user:password in"
                          " PANDA_URL, the client certificate)",
          "forbidden": "the monitor refuses this client: check its credential and rights",
          "not_found": "check the path in PANDA_URL",
          "method_not_allowed": "check the path in PANDA_URL",
          "proxy_auth": "the web proxy wants credentials: PANDA_HTTP_PROXY = http://user:"
                        "password@host:port",
          "too_large": "the monitor refuses small bodies: lower PANDA_MAX_REQUEST_BYTES or"
                       " raise the server's limit"}


def describe(method: str, url: str, status: int, location: str = "") -> str:
    """The one line naming an episode of endpoint refusals (``url`` already redacted)."""
    text = f"monitor endpoint {url} answered {method} with HTTP {status}"
    if location:
        text += f" (Location: {location})"
    reason = refusal_reason(status)
    hint = _HINTS.get(reason, "an answer about the endpoint, not about the jobs")
    return (f"{text}: records sent there are lost (records_lost_endpoint_{reason}) until it"
            f" answers otherwise; {hint}")


def stall_line(request: str, age: float, timeout: float) -> str:
    """The line naming ``request`` ("METHOD url"), outstanding for ``age`` seconds."""
    limit = (f"PANDA_UPDATE_TIMEOUT {timeout:g} s gives it up" if timeout else
             "PANDA_UPDATE_TIMEOUT 0 waits as long as the connection is alive")
    return (f"no answer yet to {request} after {age:.0f} s: nothing else is sent until it"
            f" comes ({limit})")


def retry_after(value: Optional[str], now: float) -> Optional[float]:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date, against the
    epoch time ``now``); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value[:12]))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


class EndpointEpisodes:
    """An episode of endpoint answers starts with the first one and ends when a request
    succeeds or the status changes; only its start is worth a log line."""

    def __init__(self) -> None:
        self.status: Optional[int] = None
        self.loss_logged = False        # the episode's losses have had their line

    def answer(self, status: int) -> bool:
        """Note an endpoint-level answer; True when it starts a new episode."""
        new = status != self.status
        if new:
            self.status = status
            self.loss_logged = False
        return new

    def success(self) -> None:
        self.status = None
        self.loss_logged = False


class StallWatch:
    """Names a request outstanding for ``after`` seconds, then every ``remind`` seconds."""

    def __init__(self, after: float = STALL_AFTER, remind: float = STALL_REMIND) -> None:
        self.after = after
        self.remind = remind
        self._started: Optional[float] = None      # the request last named
        self._next = 0.0                           # when to name it again

    def set_after(self, after: float) -> None:
        """A new threshold (SIGHUP) counts for the request outstanding now too."""
        if after != self.after:
            self.after = after
            self._started = None

    def check(self, now: float, started: Optional[float]) -> Tuple[bool, float]:
        """(name it now?, seconds until worth checking again) for a request started at
        ``started`` (None: no request outstanding)."""
        if started is None:
            self._started = None
            return False, self.after
        if started != self._started:
            self._started = started
            self._next = started + self.after
        if now < self._next:
            return False, self._next - now
        self._next = now + self.remind
        return True, self.remind


class InFlight:
    """The request in flight: started and ended by the flusher, read by other threads (the
    statistics thread watches it for stalls, the reader names it when the buffer is full)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 stall_after: Optional[float] = None) -> None:
        self._clock = clock
        self._request: Optional[Tuple[float, str]] = None     # (started, "METHOD url")
        self._watch = StallWatch(STALL_AFTER if stall_after is None else stall_after)

    def start(self, request: str) -> None:
        self._request = (self._clock(), request)

    def end(self) -> None:
        self._request = None

    def age(self) -> Optional[Tuple[float, str]]:
        """(seconds outstanding, "METHOD url"), or None when no request is in flight."""
        request = self._request
        return None if request is None else (self._clock() - request[0], request[1])

    def watch(self, timeout: float, after: Optional[float] = None) -> Tuple[str, float]:
        """(the line to log now or "", seconds until worth watching again); one caller.
        ``after``: seconds before a request is named (PANDA_STALL_WARNING), if changed."""
        if after is not None:
            self._watch.set_after(after)
        request = self._request
        now = self._clock()
        name, wait = self._watch.check(now, request[0] if request else None)
        if not name or request is None:
            return "", wait
        return stall_line(request[1], now - request[0], timeout), wait
