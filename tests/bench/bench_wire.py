#!/usr/bin/env python3
"""Benchmark: the hot paths of pandad.wire, pandad.classad and pandad.convert.

    python3 tests/bench/bench_wire.py [--records 1000000]

Targets (docs/design.md §4.1, the reader must never be the bottleneck):
  RecordSplitter.feed  >= 1,000,000 records/s of ~100-byte records (reader thread)
  decode               >=   150,000 records/s (flusher thread)
  to_json_value        well above decode, it runs once per attribute
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from pandad.classad import old_to_new, to_json_value  # noqa: E402
from pandad.convert import job_object  # noqa: E402
from pandad.wire import RecordSplitter, decode, encode_update  # noqa: E402

CHUNK = 1 << 20  # what the reader reads at once


def rate(label: str, count: int, seconds: float, target: float = 0) -> bool:
    per_second = count / seconds
    verdict = "" if not target else ("  ok" if per_second >= target else "  BELOW TARGET")
    print(f"{label:<28} {per_second:>14,.0f} /s{verdict}")
    return not target or per_second >= target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()

    record = encode_update("schedd.example.org#123456.0#1700000000",
                           [("JobStatus", "2"), ("RemoteWallClockTime", "1234.0")])
    record = record[:-1].ljust(99, b" ") + b"\n"  # 100 bytes; the padding joins the last value
    stream = record * args.records
    ok = True

    splitter = RecordSplitter(1 << 20)
    start = time.perf_counter()
    framed = 0
    for offset in range(0, len(stream), CHUNK):
        lines, _bad = splitter.feed(stream[offset:offset + CHUNK])
        framed += len(lines)
    ok &= rate("RecordSplitter.feed", framed, time.perf_counter() - start, 1_000_000)

    lines = [record[:-1]] * min(args.records, 300_000)
    start = time.perf_counter()
    for line in lines:
        decode(line)
    ok &= rate("decode", len(lines), time.perf_counter() - start, 150_000)

    values = ['2', '"atlasprd"', '1234.0', 'true', '"/home/x/job.out"', 'undefined',
              '(Arch == "X86_64")'] * 100_000
    start = time.perf_counter()
    for value in values:
        to_json_value(value)
    ok &= rate("to_json_value", len(values), time.perf_counter() - start, 300_000)

    start = time.perf_counter()
    for value in values:
        old_to_new(value)
    ok &= rate("old_to_new (nothing to do)", len(values), time.perf_counter() - start)

    attrs = {"JobStatus": "2", "Owner": '"atlasprd"', "QDate": "1700000000",
             "RemoteWallClockTime": "1234.0", "Cmd": '"/bin/sh"'}
    start = time.perf_counter()
    for _ in range(100_000):
        job_object("schedd#1.0#1", "1.0", attrs)
    ok &= rate("job_object (5 attributes)", 100_000, time.perf_counter() - start)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
