"""The simulator's command line: ``python3 -m pandad.dev.simulate --log FILE ...``.

Runs a ``ScheddSimulator`` paced at ``--rate`` changes per second, rotating every
``--rotate-every``, until ``--duration`` passes, every job has left the queue, or SIGTERM/SIGINT.
"""

import argparse
import signal
import sys
import time
from typing import Callable, List, Optional

from pandad.dev.simulate import DEFAULT_SCHEDD_NAME, ScheddSimulator


class Pacer:
    """Keeps ``sim.changes`` at ``rate`` per second of monotonic time."""

    def __init__(self, rate: float, stop: Callable[[], bool]) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self._stop = stop
        # set once the simulator exists (it calls pace() while it writes its first records)
        self.changes: Callable[[], int] = lambda: 0

    def pace(self) -> None:
        if self.rate <= 0:
            return
        target = self.start + self.changes() / self.rate
        while not self._stop():
            delay = target - time.monotonic()
            if delay <= 0:
                return
            time.sleep(min(delay, 0.1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m pandad.dev.simulate",
        description="Append to a job_queue.log as a real schedd does (tests, demo, benchmarks).")
    parser.add_argument("--log", required=True, help="the job_queue.log to create and append to")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--jobs", type=int, default=100, help="jobs to submit (default 100)")
    parser.add_argument("--procs-per-cluster", type=int, default=3,
                        help="procs per submitted cluster (default 3)")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="changes (101/102/103/104 records) per second; 0 = unpaced")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds to run (default 10; 0 = until SIGTERM/SIGINT); it also "
                             "stops early once every job was submitted and has left the queue")
    parser.add_argument("--rotate-every", type=float, default=0.0,
                        help="rotate every S seconds (with --rate: every S*rate changes, so "
                             "rotations fall at the same places for a seed); 0 = never")
    parser.add_argument("--truth", help="write every job's final effective attributes here (JSON)")
    parser.add_argument("--timestamps", action="store_true",
                        help="write '106 # <iso time>[ NONDURABLE]' (SCHEDD_JOB_QUEUE_TIMESTAMPS)")
    parser.add_argument("--schedd-name", default=DEFAULT_SCHEDD_NAME,
                        help="the schedd's Name, used in GlobalJobId")
    parser.add_argument("--flush-delay", type=float, default=5.0,
                        help="seconds non-durable commits may stay buffered (default 5)")
    parser.add_argument("--buffer-bytes", type=int, default=4096,
                        help="the schedd's stdio buffer: big transactions go out in such chunks")
    parser.add_argument("--fsync", action="store_true", help="fdatasync after durable commits")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.jobs < 0 or args.procs_per_cluster < 1 or args.rate < 0 or args.duration < 0 \
            or args.rotate_every < 0 or args.buffer_bytes < 1:
        print("simulate: --jobs, --rate, --duration, --rotate-every must be >= 0 and "
              "--procs-per-cluster, --buffer-bytes >= 1", file=sys.stderr)
        return 2
    stopping = []

    def on_signal(signum: int, frame: object) -> None:
        stopping.append(signum)

    pacer = Pacer(args.rate, lambda: bool(stopping))
    try:
        sim = ScheddSimulator(args.log, seed=args.seed, procs_per_cluster=args.procs_per_cluster,
                              schedd_name=args.schedd_name, jobs=args.jobs,
                              buffer_bytes=args.buffer_bytes, flush_delay=args.flush_delay,
                              timestamps=args.timestamps, fsync=args.fsync, on_write=pacer.pace)
    except OSError as err:
        print("simulate: cannot create %s: %s" % (args.log, err), file=sys.stderr)
        return 1
    pacer.changes = lambda: sim.changes
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    # Paced runs rotate every rotate_every*rate changes (the same places for a seed);
    # unpaced ones every rotate_every seconds.
    if args.rate > 0:
        rotate_step, progress = args.rotate_every * args.rate, lambda: float(sim.changes)
    else:
        rotate_step, progress = args.rotate_every, time.monotonic
    next_rotation = progress() + rotate_step
    start = time.monotonic()
    try:
        while not stopping:
            if args.duration and time.monotonic() - start >= args.duration:
                break
            if sim.done:
                if args.duration:
                    break
                sim.tick()
                time.sleep(0.1)  # nothing left to do: idle until told to stop
                continue
            sim.step()
            if rotate_step and progress() >= next_rotation:
                sim.rotate()
                next_rotation += rotate_step
            pacer.pace()
    finally:
        sim.finish()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.truth:
        sim.write_truth(args.truth)
    print("simulate: %d jobs submitted, %d changes written, %d rotations"
          % (sim.submitted, sim.changes, sim.rotations), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())