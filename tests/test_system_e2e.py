"""The whole system as real processes: schedd simulator → panda_plugin → forked pandad →
development monitor, for 30 s with log rotations, holds, removals and jobs leaving the queue.

Once the feed is quiet and the plug-in stopped, every job in the monitor must match the
simulator's truth (names mapped, values converted as pandad.convert does), nothing may be
dropped at a queue size made for the rate, every record the plug-in wrote must have been
read by pandad, and pandad's accounting must add up.
"""

import pytest

from pandad.dev.demo import counter
from tests.support.pandad_process import assert_accounted
from tests.support.system import PLUGIN_LOSS_COUNTERS, System, losses

DURATION = 30.0
RATE = 300.0


@pytest.mark.slow
def test_thirty_seconds_of_a_busy_schedd_reach_the_monitor_exactly(tmp_path):
    with System(tmp_path, PANDA_QUEUE_SIZE=str(8 << 20)) as system:
        system.start_plugin()
        system.run_simulator(seed=11, jobs=100_000, rate=RATE, duration=DURATION,
                             rotate_every=DURATION / 6)
        stats = system.finish()

        submitted, changes, rotations = system.chain.simulator_summary()
        assert rotations >= 4
        assert changes >= RATE * DURATION / 2          # it really was busy (on a slow machine too)
        truth = system.chain.truth()
        assert len(truth) == submitted
        kinds = {
            "left the queue": sum(entry["removed"] for entry in truth.values()),
            "held": sum("NumHolds" in entry["attrs"] for entry in truth.values()),
            "removed with condor_rm": sum("RemoveReason" in entry["attrs"]
                                          for entry in truth.values()),
            "still in the queue": sum(not entry["removed"] for entry in truth.values()),
        }
        assert all(kinds.values()), kinds

        comparison = system.assert_monitor_matches_truth()
        assert comparison.monitor_jobs == len(truth)

        assert_accounted(stats)
        assert losses(stats) == {}
        assert counter(stats, "records_read") > 0
        assert counter(stats, "records_sent") == counter(stats, "records_read")
        plugin = system.chain.plugin_counters()
        assert {name: plugin.get(name, 0) for name in PLUGIN_LOSS_COUNTERS} == \
            dict.fromkeys(PLUGIN_LOSS_COUNTERS, 0)
        # Everything the plug-in wrote into the pipe, pandad read.
        assert plugin["records_written"] == counter(stats, "records_read")
        # The monitor never refused anything.
        refused = {key: n for key, n in system.monitor.request_counts().items()
                   if not key.split()[1].startswith("2")}
        assert refused == {}
