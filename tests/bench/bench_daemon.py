#!/usr/bin/env python3
"""Benchmark: pandad's flush cycle in process, and a real pandad process end to end.

    python3 tests/bench/bench_daemon.py [--records 300000]

The workload is a burst of new jobs: per job one ADD with a few attributes and three
UPDATEs, so coalescing merges four records into one command.

Targets (docs/design.md §4):
  flush cycle (coalesce + JSON)   >= 150,000 records/s, no network
  end to end (stdin → 2xx)        >= 150,000 records/s, a real process and HTTP on 127.0.0.1
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from pandad.buffer import RecordBuffer  # noqa: E402
from pandad.flusher import Flusher  # noqa: E402
from pandad.knobs import PandadSettings  # noqa: E402
from pandad.stats import Statistics  # noqa: E402
from pandad.wire import encode_add, encode_update  # noqa: E402
from tests.support import wait_until  # noqa: E402
from tests.support.fake_transport import ACCEPT, FakeTransport  # noqa: E402
from tests.support.faultserver import FaultServer, respond  # noqa: E402
from tests.support.pandad_process import PandadProcess  # noqa: E402

TARGET = 150_000


def workload(records: int) -> list:
    out = []
    for i in range(records // 4):
        job = f"schedd.example.org#{i}.0#1700000000"
        out.append(encode_add(job, f"{i}.0", [("Owner", '"atlasprd"'), ("JobStatus", "1"),
                                              ("QDate", "1700000000"), ("Cmd", '"/bin/x"')]))
        for status in ("2", "2", "4"):
            out.append(encode_update(job, [("JobStatus", status), ("ImageSize", "1234")]))
    return out


def rate(label: str, count: int, seconds: float) -> bool:
    per_second = count / seconds
    verdict = "  ok" if per_second >= TARGET else "  BELOW TARGET"
    print(f"{label:<34} {per_second:>12,.0f} records/s{verdict}")
    return per_second >= TARGET


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    args = parser.parse_args()
    records = workload(args.records)
    ok = True

    buffer = RecordBuffer(1 << 40, 0, 1 << 40)
    buffer.put_many([record[:-1] for record in records])
    settings = PandadSettings(url="http://127.0.0.1:9/api/jobs/")
    flusher = Flusher(buffer, FakeTransport(), Statistics(), settings)
    start = time.perf_counter()
    flusher.flush_once()
    ok &= rate("flush cycle (coalesce + JSON)", len(records), time.perf_counter() - start)

    def answer(server, conn, request):
        return respond(conn, ACCEPT[request.method], b"[]", keep_alive=True)

    with tempfile.TemporaryDirectory() as directory, FaultServer(answer) as server, \
            PandadProcess(Path(directory), url=server.url, PANDA_QUEUE_SIZE=str(1 << 30),
                          PANDA_QUEUE_MAX_SIZE=str(1 << 30),
                          PANDA_FLUSH_INTERVAL="1") as pandad:
        data = b"".join(records)
        start = time.perf_counter()
        pandad.write(data)
        wait_until(lambda: pandad.counter("records_sent") == len(records), 600,
                   interval=0.05, message="every record sent")
        ok &= rate("end to end (stdin → 2xx)", len(records), time.perf_counter() - start)
        pandad.close_stdin()
        pandad.wait(30)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
