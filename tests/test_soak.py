"""Two minutes of a busy schedd through an unreliable network, then the books must balance.

The whole feed runs as real processes (simulator → panda_plugin → pandad), and pandad talks to
the development monitor through ``tests.support.faultproxy.FaultProxy``, which at random
refuses connections, hangs (longer than PANDA_UPDATE_TIMEOUT, so pandad gives up first),
resets before or after forwarding, and answers 500 or 429. The simulator rotates its log every
20 s. Meanwhile pandad's resident memory is sampled.

Afterwards:

- pandad's final statistics balance exactly: records_read == sent + rejected + lost_transport +
  dropped_queue_full + bad + discarded_shutdown, nothing buffered or pending;
- its memory stayed under a ceiling, and did not keep growing;
- every fault kind actually happened, and pandad saw failures (so this tested something);
- with PANDA_RETRY_LIMIT > 0, once the faults stop the monitor converges to the simulator's
  truth: every job, every attribute (retries, upsert after a reset that the monitor had applied,
  re-sent DELETEs).
"""

import threading
from typing import List

import pytest

from pandad.dev.demo import counter
from tests.support.faultproxy import KINDS, FaultProxy
from tests.support.pandad_process import assert_accounted
from tests.support.system import PLUGIN_LOSS_COUNTERS, System

DURATION = 120.0
RATE = 300.0
UPDATE_TIMEOUT = 2.0
RSS_CEILING_KIB = 96 * 1024


def pandad_rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler:
    """VmRSS of every pandad of the chain, twice a second, in a thread."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.samples: List[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            pids = self.system.chain.pandad_processes()
            rss = max((pandad_rss_kib(pid) for pid in pids), default=0)
            if rss:
                self.samples.append(rss)

    def stop(self) -> List[int]:
        self._stop.set()
        self._thread.join(5)
        return self.samples


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_minutes_through_a_faulty_network_balance_and_converge(tmp_path):
    with System(tmp_path, PANDA_QUEUE_SIZE=str(4 << 20), PANDA_RETRY_LIMIT="1000",
                PANDA_UPDATE_TIMEOUT=str(UPDATE_TIMEOUT), PANDA_STATISTICS_INTERVAL="1",
                PANDA_SHUTDOWN_GRACE="30") as system, \
            FaultProxy(system.monitor.url, seed=20261124, fault_rate=0.25,
                       hang_seconds=UPDATE_TIMEOUT * 2, refuse_seconds=1.0) as proxy:
        system.chain.write_config(PANDA_URL=proxy.url)
        system.start_plugin()
        sampler = MemorySampler(system)
        try:
            system.run_simulator(seed=7, jobs=100_000, rate=RATE, duration=DURATION,
                                 rotate_every=20.0, timeout=DURATION + 60)
        finally:
            proxy.stop_faults()
        faults = proxy.counts()
        # Retries wait out a backoff of at most a minute; then everything goes through.
        system.wait_quiet(timeout=150)
        samples = sampler.stop()
        stats = system.finish()

        # Every fault kind happened, and pandad noticed.
        assert all(faults.get(kind, 0) > 0 for kind in KINDS), faults
        assert counter(stats, "transport_failures") > 0
        assert counter(stats, "bad_response_codes") > 0
        assert counter(stats, "retries") > 0

        # The books balance exactly; with a generous retry limit nothing was given up.
        assert_accounted(stats)
        # A record carries a whole transaction (several changes): a few thousand in two minutes.
        assert counter(stats, "records_read") > RATE * DURATION / 30
        assert counter(stats, "records_lost_transport") == 0, stats
        assert counter(stats, "records_dropped_queue_full") == 0, stats
        plugin = system.chain.plugin_counters()
        assert all(plugin.get(name, 0) == 0 for name in PLUGIN_LOSS_COUNTERS), plugin
        assert plugin["records_written"] == counter(stats, "records_read")

        # Memory stayed bounded and flat: no growth from the first minute to the second.
        assert len(samples) > DURATION, len(samples)
        assert max(samples) < RSS_CEILING_KIB, max(samples)
        half = len(samples) // 2
        assert max(samples[half:]) < max(samples[:half]) * 1.5 + 4096, (
            max(samples[:half]), max(samples[half:]))

        # Once the network behaves, the monitor holds exactly the truth.
        comparison = system.assert_monitor_matches_truth()
        assert comparison.monitor_jobs == len(system.chain.truth())
        print(f"\n[soak] faults {faults}; records read {counter(stats, 'records_read')}, "
              f"retries {counter(stats, 'retries')}, upserts "
              f"{counter(stats, 'upserts_accepted')}; pandad RSS max {max(samples) // 1024} MiB")
