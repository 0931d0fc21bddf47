"""The plug-in's memory per queued job: a real panda_plugin process and one big submit.

``tests/bench/run.py`` (``plugin_kib_per_job``) prints the exact figure; this asserts a bound
with room for the allocator's mood, so that a per-job copy creeping back in fails here.
"""

from tests.bench.run import plugin_memory

# Measured 2.4 KiB/job (VmHWM over the idle VmRSS); 4.3 KiB/job before the mirror shared
# names and values and the follower let a transaction's ops go as it applied them.
BOUND_KIB_PER_JOB = 3.0


def test_a_20000_proc_submit_costs_the_plugin_a_bounded_few_kib_per_job(tmp_path):
    result = plugin_memory(tmp_path / "memory", 20_000)
    assert result["in_monitor"] >= 20_000
    assert result["kib_per_job"] <= BOUND_KIB_PER_JOB, result
