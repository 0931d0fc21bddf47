"""The development PanDA monitor: the BigPanDA HTCondor jobs API on http.server + sqlite3.

    pandad devmonitor [--host 127.0.0.1] [--port N] [--db FILE]

A developer's and tester's stand-in for the BigPanDA monitor's Django REST Framework bulk
endpoint (docs/design.md §7), with the same contract on ``/api/jobs/``:

- ``POST`` a JSON array of objects creates them all (201). An element without a string ``"id"``,
  or an id that already exists (or repeats within the array), rejects the whole array with 400
  and nothing is applied: DRF validates every element before it saves any.
- ``PUT`` a JSON array partially updates by ``id`` (200): the given fields are merged into the
  stored object, JSON null stores null. One unknown id rejects the whole array with 400.
- ``DELETE`` a JSON array marks the known jobs ``removed`` (204); fields given are merged too;
  unknown ids are ignored.
- A body that is not a JSON array of objects is 400; a body over 64 MiB is 413.
- ``GET /api/jobs/`` lists every job as JSON; ``GET /api/stats/`` gives job counts by status and
  request counts by method and status; ``GET /`` is a page with both and the jobs
  (pandad/dev/devpage.py), whatever names their fields arrived under.

It is a development tool: it listens on 127.0.0.1 by default and is never started by pandad.
"""

import argparse
import contextlib
import json
import signal
import socket
import sqlite3
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from pandad.dev.devpage import job_status, render_page, status_name

JOBS_PATH = "/api/jobs/"
STATS_PATH = "/api/stats/"
MAX_BODY_BYTES = 64 * 1024 * 1024
PAGE_ROWS = 1000            # the page shows the newest jobs; the JSON list shows all

class BadBody(ValueError):
    """The request body breaks the contract; str(e) is the one-line reason sent back."""


# -- pure: body parsing and merging ----------------------------------------------------------

def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_job_array(body: bytes) -> List[Dict[str, Any]]:
    """A request body → its list of job objects, each with a string "id"; raises BadBody."""
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadBody(f"body is not JSON: {e}") from None
    if not isinstance(value, list):
        raise BadBody(f"body is a JSON {type(value).__name__}, not an array")
    for index, element in enumerate(value):
        if not isinstance(element, dict):
            raise BadBody(f"element {index} is a JSON {type(element).__name__}, not an object")
        if not isinstance(element.get("id"), str):
            raise BadBody(f'element {index} has no string "id"')
    return value


def merged(stored: Dict[str, Any], fields: Dict[str, Any]) -> Dict[str, Any]:
    """A partial update: the given fields replace the stored ones (null included)."""
    result = dict(stored)
    result.update(fields)
    return result


# -- the job store ---------------------------------------------------------------------------

class JobStore:
    """Jobs in SQLite, one connection guarded by a lock; one transaction per request.

    Each job is a row holding its JSON object, with JobStatus and removed copied into
    columns so the counts are one query. The objects are also kept in memory (id → object,
    in creation order, and id → row number), written through to SQLite: checking and merging
    a 512 KiB bulk request then reads nothing back, and rows are found by row number, so
    the table needs no index on the id (the memory map keeps ids unique).
    """

    def __init__(self, db: str = ":memory:") -> None:
        self._lock = threading.Lock()
        self._encoder = json.JSONEncoder(check_circular=False)   # objects from json.loads
        self._db = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        if db != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS jobs (seq INTEGER PRIMARY KEY,"
                         " id TEXT NOT NULL, data TEXT NOT NULL,"
                         " status INTEGER, removed INTEGER NOT NULL DEFAULT 0)")
        self._jobs: Dict[str, Dict[str, Any]] = {}
        self._rows: Dict[str, int] = {}
        for seq, job_id, data in self._db.execute("SELECT seq, id, data FROM jobs ORDER BY seq"):
            self._jobs[job_id] = json.loads(data)
            self._rows[job_id] = seq
        self._next_row = max(self._rows.values(), default=0) + 1

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Every request waits while this is held: a monitor that stops answering (tests)."""
        with self._lock:
            yield

    def create(self, jobs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Create every job, or none: raises BadBody naming the first id that exists."""
        ids = [job["id"] for job in jobs]
        if len(set(ids)) != len(ids):
            twice = next(job_id for job_id in ids if ids.count(job_id) > 1)
            raise BadBody(f"job {twice!r} appears twice in the array")
        for job in jobs:
            job.setdefault("removed", False)
        with self._lock:
            existing = self._jobs.keys() & set(ids)
            if existing:
                first = next(job_id for job_id in ids if job_id in existing)
                raise BadBody(f"job with this id already exists: {first!r}")
            first_row = self._next_row
            rows = range(first_row, first_row + len(jobs))
            self._write("INSERT INTO jobs (data, status, removed, seq, id) VALUES (?,?,?,?,?)",
                        jobs, rows, ids)
            self._next_row += len(jobs)
            self._rows.update(zip(ids, rows))
            self._jobs.update(zip(ids, jobs))
        return jobs

    def update(self, jobs: List[Dict[str, Any]], remove: bool = False,
               ignore_unknown: bool = False) -> List[Dict[str, Any]]:
        """Merge fields into existing jobs; an unknown id raises BadBody unless ignored."""
        with self._lock:
            known = self._jobs
            if not ignore_unknown:
                unknown = [job["id"] for job in jobs if job["id"] not in known]
                if unknown:
                    raise BadBody(f"could not find all objects to update:"
                                  f" {len(unknown)} unknown, first {unknown[0]!r}")
            changed: Dict[str, Dict[str, Any]] = {}
            for job in jobs:
                stored = changed.get(job["id"]) or known.get(job["id"])
                if stored is not None:
                    job = merged(stored, job)
                    if remove:
                        job["removed"] = True
                    changed[job["id"]] = job
            rows = [self._rows[job_id] for job_id in changed]
            self._write("UPDATE jobs SET data = ?, status = ?, removed = ? WHERE seq = ?",
                        list(changed.values()), rows)
            known.update(changed)
        return list(changed.values())

    def _write(self, sql: str, jobs: List[Dict[str, Any]], *columns: Iterable[Any]) -> None:
        """Run sql once per job with (data, status, removed, *columns), in one transaction."""
        encode = self._encoder.encode
        rows = zip([encode(job) for job in jobs], [job_status(job) for job in jobs],
                   [bool(job.get("removed")) for job in jobs], *columns)
        self._db.execute("BEGIN")
        try:
            self._db.executemany(sql, rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def all(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [dict(job) for job in jobs[:limit]]

    def tally(self) -> Dict[Tuple[Optional[int], bool], int]:
        """Jobs by (JobStatus, removed flag): one query, what the counts and the page need."""
        with self._lock:
            rows = list(self._db.execute(
                "SELECT status, removed, COUNT(*) FROM jobs GROUP BY status, removed"))
        return {(status, bool(removed)): count for status, removed, count in rows}

    def newest(self, limit: int) -> List[Dict[str, Any]]:
        """The last ``limit`` jobs created, newest first (what the page lists)."""
        with self._lock:
            jobs = list(self._jobs.values())[-limit:]
        return [dict(job) for job in reversed(jobs)]

    def counts(self) -> Dict[str, Any]:
        """Live jobs by JobStatus name, removed jobs separately, and the total."""
        statuses: Dict[str, int] = {}
        removed = total = 0
        for (status, gone), count in self.tally().items():
            total += count
            if gone:
                removed += count
            else:
                name = status_name(status)
                statuses[name] = statuses.get(name, 0) + count
        return {"by_status": statuses, "removed": removed, "total": total}


# -- HTTP ------------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive: a client may reuse its connection
    disable_nagle_algorithm = True    # headers and body are two writes: no delayed-ACK stall
    server: "_MonitorServer"

    def log_message(self, format: str, *args: Any) -> None:
        pass                           # 100+ requests/s: the counters say what happened

    def _send(self, status: int, body: bytes = b"",
              content_type: str = "application/json") -> None:
        self.server.monitor._count(self.command, status)
        self.send_response(status)
        if body or status not in (204, 304):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode())

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        store = self.server.monitor.store
        path = self._path()
        if path == JOBS_PATH:
            self._send_json(200, store.all())
        elif path == STATS_PATH:
            self._send_json(200, self.server.monitor.stats())
        elif path == "/":
            tally = store.tally()
            page = render_page(store.newest(PAGE_ROWS), tally,
                               self.server.monitor.request_counts(), sum(tally.values()),
                               JOBS_PATH)
            self._send(200, page.encode(), "text/html; charset=utf-8")
        else:
            self._send_json(404, {"detail": "Not found."})

    def do_POST(self) -> None:
        self._change("create", 201)

    def do_PUT(self) -> None:
        self._change("update", 200)

    def do_DELETE(self) -> None:
        self._change("remove", 204)

    def _change(self, action: str, success: int) -> None:
        if self._path() != JOBS_PATH:
            self._discard_body()
            self._send_json(404, {"detail": "Not found."})
            return
        body = self._read_body()
        if body is None:
            return
        store = self.server.monitor.store
        try:
            jobs = parse_job_array(body)
            if action == "create":
                result = store.create(jobs)
            elif action == "update":
                result = store.update(jobs)
            else:
                store.update(jobs, remove=True, ignore_unknown=True)
                result = []
        except BadBody as e:
            self._send_json(400, {"detail": str(e)})
            return
        except sqlite3.ProgrammingError:
            # The monitor is stopping and its database is closed: what a server going down
            # answers, instead of a traceback from this handler thread.
            self.close_connection = True
            self._send_json(503, {"detail": "the monitor is stopping"})
            return
        if success == 204:
            self._send(204)
        else:
            # DRF echoes every object back; nothing reads it, and echoing 512 KiB halves the
            # throughput, so the answer is the count (the objects are at GET /api/jobs/).
            self._send_json(success, {"created" if success == 201 else "updated": len(result)})

    def _read_body(self) -> Optional[bytes]:
        """The body, or None after answering 411/413 (and closing: the body is unread)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send_json(411, {"detail": "Content-Length is required."})
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send_json(400, {"detail": "bad Content-Length"})
            return None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_json(413, {"detail": f"body over {MAX_BODY_BYTES} bytes"})
            return None
        return self.rfile.read(length)

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if 0 < length <= MAX_BODY_BYTES:
            self.rfile.read(length)
        elif length:
            self.close_connection = True


class _MonitorServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: Tuple[str, int], monitor: "DevMonitor") -> None:
        self.monitor = monitor
        # An IPv6 literal (it always holds a colon) needs an IPv6 socket to bind it.
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class DevMonitor:
    """The monitor in a thread: ``start()`` returns the PANDA_URL, ``stop()`` ends it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, db: str = ":memory:") -> None:
        self.host = host
        self.port = port
        self.store = JobStore(db)
        self._counts: Counter = Counter()
        self._lock = threading.Lock()
        self._server: Optional[_MonitorServer] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> str:
        self._server = _MonitorServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name="devmonitor")
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{JOBS_PATH}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join()
            self._server = None
        self.store.close()

    def __enter__(self) -> "DevMonitor":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def jobs(self) -> Dict[str, Dict[str, Any]]:
        """Every job by id, as stored, including its ``removed`` flag."""
        return {job["id"]: job for job in self.store.all()}

    def _count(self, method: str, status: int) -> None:
        with self._lock:
            self._counts[f"{method} {status}"] += 1

    def request_counts(self) -> Dict[str, int]:
        """Requests answered, by "METHOD STATUS" (e.g. "PUT 400")."""
        with self._lock:
            return dict(self._counts)

    def stats(self) -> Dict[str, Any]:
        return {"jobs": self.store.counts(), "requests": self.request_counts()}


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pandad devmonitor",
                                     description="Run the development PanDA monitor.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    try:
        monitor = DevMonitor(args.host, args.port, args.db)
        url = monitor.start()
    except (OSError, sqlite3.Error) as e:
        print(f"pandad devmonitor: cannot start: {e}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(url, flush=True)
    print(f"pandad devmonitor: jobs page at {url[:-len(JOBS_PATH)]}/ ; stop with Ctrl-C",
          file=sys.stderr, flush=True)
    while not stopping.wait(3600):
        pass
    monitor.stop()
    return 0
