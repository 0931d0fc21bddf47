"""The whole feed as real processes, for whole-system tests and benchmarks.

    with System(tmp_path) as system:                 # a RecordingMonitor + a Chain in tmp_path
        system.start_plugin()                        # python -m schedd_plugin (forks pandad)
        system.run_simulator(seed=3, jobs=500, rate=300, duration=10, rotate_every=3)
        system.finish()                              # quiet, SIGTERM the plug-in, final stats
        system.assert_monitor_matches_truth()
        assert_accounted(system.statistics())

The orchestration itself lives in ``pandad.dev.demo`` (``Chain``, ``RecordingMonitor``,
``compare``), so ``pandad demo`` and the tests run the feed the same way. Every knob can be
overridden: ``System(tmp_path, PANDA_QUEUE_SIZE="65536")``; ``system.chain.write_config(...)``
changes it for processes started afterwards. Leaving the ``with`` block kills whatever is
still running (process groups, and orphaned pandads found by their CONDOR_CONFIG).
"""

import signal
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

from pandad.dev.demo import Chain, Comparison, RecordingMonitor, compare
from pandad.stats import OUTCOMES, counter
from tests.support import python_env, wait_until

# Counters of the plug-in that mean a record never reached pandad.
PLUGIN_LOSS_COUNTERS = ("records_dropped_pipe_full", "records_dropped_pandad_down")


class System:
    """A RecordingMonitor on 127.0.0.1 and the feed's processes in ``directory``."""

    def __init__(self, directory: Path, **knobs: str) -> None:
        self.directory = Path(directory)
        self.monitor = RecordingMonitor()
        self.monitor.start()
        try:
            self.chain = Chain(str(self.directory), self.monitor.url, knobs, env=python_env())
        except BaseException:
            self.monitor.stop()
            raise

    # -- processes ----------------------------------------------------------------------------

    def start_plugin(self) -> subprocess.Popen:
        return self.chain.start_plugin()

    def start_simulator(self, **options) -> subprocess.Popen:
        """Options as ``Chain.start_simulator``: seed, jobs, rate, duration, rotate_every."""
        return self.chain.start_simulator(**options)

    def wait_simulator(self, timeout: float) -> None:
        """Wait for the simulator to finish; fail if it fails or the plug-in dies meanwhile."""
        sim = self.chain.simulator
        assert sim is not None

        def done() -> bool:
            plugin = self.chain.plugin
            if plugin is not None and plugin.poll() is not None:
                raise AssertionError(f"panda_plugin exited with {plugin.returncode} while the "
                                     f"simulator ran:\n{self.plugin_output()}")
            return sim.poll() is not None

        wait_until(done, timeout, interval=0.1, message="the simulator to finish")
        assert sim.returncode == 0, self.chain.output("simulator")

    def run_simulator(self, timeout: Optional[float] = None, **options) -> None:
        self.start_simulator(**options)
        self.wait_simulator(timeout or options.get("duration", 10) + 30)

    def wait_quiet(self, timeout: float = 60.0) -> None:
        """Until the plug-in has read the whole log, pandad has sent everything it read and
        the monitor stopped changing."""
        assert self.chain.wait_quiet(self.monitor.store.change_count, timeout), (
            f"the feed did not go quiet within {timeout}s; statistics: {self.statistics()}")

    def stop_plugin(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> Optional[int]:
        return self.chain.stop_plugin(sig, timeout)

    def wait_pandads_gone(self, pids: List[int], timeout: float = 30.0) -> None:
        wait_until(lambda: not set(pids) & set(self.chain.pandad_processes()), timeout,
                   interval=0.05, message=f"pandad {pids} to exit")

    def finish(self, timeout: float = 60.0) -> Dict[str, str]:
        """Quiet, then SIGTERM the plug-in (pandad flushes and exits); the final statistics."""
        self.wait_quiet(timeout)
        status = self.stop_plugin(signal.SIGTERM)
        assert status == 0, f"panda_plugin exited with {status}:\n{self.plugin_output()}"
        assert self.chain.processes() == [], "processes still running after the plug-in exited"
        return self.statistics()

    def close(self) -> None:
        try:
            self.chain.kill_all()
        finally:
            self.monitor.stop()

    def __enter__(self) -> "System":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what happened ------------------------------------------------------------------------

    def statistics(self) -> Dict[str, str]:
        return self.chain.statistics()

    def plugin_output(self) -> str:
        return "\n".join(self.chain.output(f"plugin-{n}") for n in range(1, 10)
                         if self.chain.output(f"plugin-{n}"))

    def compare(self) -> Comparison:
        return compare(self.chain.truth(), self.monitor.jobs())

    def assert_monitor_matches_truth(self) -> Comparison:
        comparison = self.compare()
        assert comparison.ok, (f"{comparison.matching} of {comparison.truth_jobs} truth jobs "
                               f"match; the monitor has {comparison.monitor_jobs}:\n"
                               + "\n".join(comparison.first_problems(10)))
        return comparison


def losses(stats: Dict[str, str]) -> Dict[str, int]:
    """pandad's loss counters that are not zero."""
    return {name: counter(stats, name) for name in OUTCOMES
            if name != "records_sent" and counter(stats, name)}
