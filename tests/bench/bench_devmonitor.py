#!/usr/bin/env python3
"""Benchmark: the development monitor's throughput with 512 KiB bulk bodies.

    python3 tests/bench/bench_devmonitor.py [--seconds 5] [--clients 2] [--db FILE]

Starts ``pandad devmonitor`` as its own process, then each client keeps one connection and
alternates POST (new jobs) and PUT (updates of those jobs), every body about 512 KiB
(PANDA_MAX_REQUEST_BYTES). Target: 100+ requests/s.
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import List, Tuple

REPO = Path(__file__).resolve().parent.parent.parent
BODY_BYTES = 512 * 1024
JOB = {"JobStatus": 2, "cmd": "/usr/bin/x" * 20, "owner": "atlasprd", "pri": 0,
       "Environment": "A=B " * 40}


def bodies(client: int, batches: int) -> List[Tuple[bytes, bytes]]:
    """(POST, PUT) body pairs, built before the clock starts."""
    size = len(json.dumps(dict(JOB, id=f"c{client}#0#00000", condorid="0.0"))) + 2
    per_body = BODY_BYTES // size
    pairs = []
    for batch in range(batches):
        jobs = [dict(JOB, id=f"c{client}#{batch}#{i:05d}", condorid=f"{batch}.{i}")
                for i in range(per_body)]
        updates = [dict(job, JobStatus=4, RemoteWallClockTime=12.5) for job in jobs]
        pairs.append((json.dumps(jobs).encode(), json.dumps(updates).encode()))
    return pairs


def client_loop(url: str, pairs: List[Tuple[bytes, bytes]], deadline: float,
                done: List[int]) -> None:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    count = 0
    for post, put in pairs:
        if time.monotonic() >= deadline:
            break
        for method, body, expected in (("POST", post, 201), ("PUT", put, 200)):
            conn.request(method, parts.path, body=body,
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            assert response.status == expected, (method, response.status)
            count += 1
    conn.close()
    done.append(count)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--db", default=":memory:")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    monitor = subprocess.Popen([sys.executable, "-m", "pandad", "devmonitor", "--db", args.db],
                               stdout=subprocess.PIPE, env=env, text=True)
    try:
        url = monitor.stdout.readline().strip()
        work = [bodies(c, int(args.seconds * 100)) for c in range(args.clients)]
        done: List[int] = []
        start = time.monotonic()
        threads = [threading.Thread(target=client_loop,
                                    args=(url, pairs, start + args.seconds, done))
                   for pairs in work]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - start
        total = sum(done)
        print(f"{total} requests of ~512 KiB in {elapsed:.1f}s: {total / elapsed:.0f}"
              f" requests/s (target 100+)")
    finally:
        monitor.terminate()
        monitor.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
