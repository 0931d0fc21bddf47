"""The flusher's transport in-process: scripted answers, every request kept.

The flusher needs only ``exchange(method, body) -> Answer`` (or TransportError) and
``url_for_log``; tests of what it sends and how it acts on answers use this, and the tests of
pandad.transport (and a few flusher tests) keep a real server on 127.0.0.1.
"""

import json
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Union

from pandad.transport import Answer, TransportError

# The success statuses of the bulk jobs endpoint, per method.
ACCEPT: Dict[str, int] = {"POST": 201, "PUT": 200, "DELETE": 204}

# One scripted reply: an Answer, a bare status, a status per method, an exception to raise
# (TransportError: no answer), or a function of (method, body) giving one of those.
Reply = Union[Answer, int, Mapping[str, int], BaseException, Callable[[str, bytes], Any]]


class Sent(NamedTuple):
    method: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeTransport:
    """Each exchange takes the next of ``answers``, then ``otherwise`` for every later one.

    ``clock`` (a tests.support.FakeClock) moves on by ``takes`` seconds per request, as time
    passes while a real request is in flight.
    """

    def __init__(self, answers: Optional[List[Reply]] = None, otherwise: Reply = ACCEPT,
                 url_for_log: str = "http://127.0.0.1:9/api/jobs/",
                 clock: Any = None, takes: float = 0.0) -> None:
        self.answers: List[Reply] = list(answers or ())
        self.otherwise = otherwise
        self.url_for_log = url_for_log
        self.clock = clock
        self.takes = takes
        self.received: List[Sent] = []

    @property
    def requests(self) -> int:
        return len(self.received)

    @property
    def methods(self) -> List[str]:
        return [sent.method for sent in self.received]

    def exchange(self, method: str, body: bytes) -> Answer:
        self.received.append(Sent(method, body))
        if self.clock is not None:
            self.clock.now += self.takes
        reply = self.answers.pop(0) if self.answers else self.otherwise
        if callable(reply):
            reply = reply(method, body)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Mapping):
            reply = reply[method]
        return reply if isinstance(reply, Answer) else Answer(reply)


def refused() -> TransportError:
    """What the transport raises when nothing listens at the monitor's address."""
    return TransportError("refused", "connection refused (127.0.0.1:9)")
