"""One HTTP client for the tests: a request on a new connection, every status returned.

http.client rather than urllib: a 4xx or 5xx is an answer to check, not an exception, and no
proxy from the environment comes between a test and its server on 127.0.0.1.
"""

import http.client
import json
import urllib.parse
from typing import Any, Optional, Tuple


def request(url: str, method: str = "GET", body: Any = None, raw: Optional[bytes] = None,
            path: Optional[str] = None, timeout: float = 10.0) -> Tuple[int, bytes]:
    """(status, body bytes) of one request; ``body`` is sent as JSON, ``raw`` as it is, and
    ``path`` replaces the URL's path."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        target = path or (parts.path + (f"?{parts.query}" if parts.query else ""))
        conn.request(method, target, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def request_json(url: str, method: str, body: Any = None) -> Tuple[int, Any]:
    """(status, parsed JSON answer or None when the answer has no body)."""
    status, data = request(url, method, body)
    return status, (json.loads(data) if data else None)


def get_json(url: str) -> Any:
    """The JSON a GET of ``url`` answers; anything but 200 fails the test."""
    status, data = request(url)
    assert status == 200, f"GET {url}: HTTP {status}: {data[:200]!r}"
    return json.loads(data)
