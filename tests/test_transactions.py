"""schedd_plugin.transactions, and the follower's pure decisions (schedd_plugin.reload)."""

from schedd_plugin.logparse import LogOp, parse_line
from schedd_plugin.reload import (RESYNC, SKIP, WAIT, corrupt_line_action, rotation_reason)
from schedd_plugin.transactions import TransactionGrouper


def ops(*lines: str):
    return [parse_line(line.encode()) for line in lines]


def test_bare_ops_come_out_at_once_and_commit_each():
    grouper = TransactionGrouper()
    given = ops("101 1.0 Job Machine", "103 1.0 A 1")
    units, committed = grouper.feed(given)
    assert units == given and committed == 2 and grouper.open is None


def test_a_transaction_comes_out_at_its_106_as_one_list():
    grouper = TransactionGrouper()
    given = ops("105 ", "103 1.0 A 1", "104 1.0 B", "106 ", "103 1.0 C 3")
    units, committed = grouper.feed(given)
    assert units == [given[1:3], given[4]] and committed == 5


def test_an_unterminated_transaction_is_kept_across_feeds_and_commits_nothing():
    grouper = TransactionGrouper()
    first = ops("103 1.0 A 1", "105 ", "103 1.0 B 2")
    assert grouper.feed(first) == ([first[0]], 1)
    assert grouper.open == [first[2]]
    assert grouper.feed(ops("103 1.0 C 3")) == ([], 0)
    units, committed = grouper.feed(ops("106 "))
    assert units == [ops("103 1.0 B 2", "103 1.0 C 3")] and committed == 1


def test_nested_105_is_reported_by_index_and_107_inside_is_ignored():
    grouper = TransactionGrouper()
    given = ops("105 ", "103 1.0 A 1", "105 ", "107 3 CreationTimestamp 5", "106 ")
    units, committed = grouper.feed(given)
    assert units == [2, [given[1]]] and committed == 5


def test_106_without_105_and_107_commit_without_units():
    grouper = TransactionGrouper()
    units, committed = grouper.feed(ops("107 1 CreationTimestamp 5", "106 "))
    assert units == [] and committed == 2


def test_stop_at_begin_leaves_the_105_and_what_follows():
    grouper = TransactionGrouper()
    given = ops("103 1.0 A 1", "105 ", "103 1.0 B 2", "106 ")
    units, committed = grouper.feed(given, stop_at_begin=True)
    assert units == [given[0]] and committed == 1 and grouper.open is None


def test_drop_forgets_the_open_transaction_and_says_how_big_it_was():
    grouper = TransactionGrouper()
    grouper.feed(ops("105 ", "103 1.0 A 1", "103 1.0 B 2"))
    assert grouper.drop() == 2 and grouper.open is None
    assert grouper.drop() == 0


def test_units_are_log_op_tuples():
    units, _ = TransactionGrouper().feed(ops("102 1.0"))
    assert units == [LogOp(102, "1.0", None, None, ())]


def test_corrupt_line_policy():
    # At the end of what is written: wait (a write in progress), unless it is a Skipped region.
    assert corrupt_line_action(follows=False, skipped=False, draining=False, snapshot=True) == WAIT
    assert corrupt_line_action(follows=False, skipped=True, draining=False, snapshot=True) == SKIP
    # Followed by complete records: resync from a snapshot, skip otherwise.
    assert corrupt_line_action(follows=True, skipped=False, draining=False, snapshot=True) == RESYNC
    assert corrupt_line_action(follows=True, skipped=True, draining=False, snapshot=True) == RESYNC
    assert corrupt_line_action(follows=True, skipped=False, draining=True, snapshot=True) == SKIP
    assert corrupt_line_action(follows=True, skipped=False, draining=False, snapshot=False) == SKIP


def test_rotation_reason():
    same = ((1, 2), (1, 2))
    assert rotation_reason(*same, 100, 50, (3, 9), (3, 9)) is None
    assert rotation_reason((1, 2), (1, 3), 100, 50, (3, 9), (3, 9)) == ("new file", True)
    assert rotation_reason(*same, 40, 50, (3, 9), (3, 9)) == ("size 40 below offset 50", False)
    assert rotation_reason(*same, 100, 50, (3, 9), (4, 9)) == ("first line changed", False)
    assert rotation_reason(*same, 100, 50, (3, 9), None) == ("first line changed", False)
    # A 107 appearing in a file that was empty is the schedd creating it.
    assert rotation_reason(*same, 100, 0, None, (1, 9)) is None
    assert rotation_reason(*same, 100, 7, None, (1, 9)) == ("first line changed", False)


def test_a_reload_replays_real_differences_and_takes_new_spellings_silently():
    from schedd_plugin.mirror import Mirror
    from schedd_plugin.reload import replay_differences
    from tests.test_follower import Recorder

    def mirror_of(*lines: str) -> Mirror:
        mirror = Mirror()
        mirror.apply(ops(*lines))
        return mirror

    live = mirror_of("101 1.0 Job Machine", "103 1.0 A 1", "103 1.0 S undefined",
                     "101 2.0 Job Machine", "103 2.0 Gone 1")
    fresh = mirror_of("101 1.0 Job Machine", "103 1.0 a 1.0", "103 1.0 S UNDEFINED",
                      "103 1.0 New 5", "101 3.0 Job Machine")
    recorder = Recorder(live)
    assert replay_differences(live, fresh, recorder) == 3
    assert recorder.calls == [("begin",), ("destroy", "2.0", True), ("set", "1.0", "New", "5"),
                              ("new", "3.0", "Job"), ("end",)]
    # The live mirror is the fresh one now, spellings included, though no callback said so.
    assert live.effective("1.0") == fresh.effective("1.0") and "2.0" not in live
