"""When the follower reloads the whole file, and how its differences are replayed.

Two decisions, pure functions over plain data:

- :func:`rotation_reason`: has the file at the path been rotated (a new (dev, ino), a size
  below the read offset, a changed or vanished ``107`` first line)?  A new file is drained
  first (the old one is final); a file rewritten in place is not.
- :func:`corrupt_line_action`: what a corrupt line calls for.  One at the end of what is
  written is waited on (a write in progress, or NULs that become data); one followed by
  complete records is skipped, or resynced from (the whole file reloaded and diffed) when
  the file is a snapshot and no rotation is draining it.  A ``tailscan.Skipped`` region is
  never waited on: it would be scanned again every poll.

And :func:`replay_differences`, the diff of a freshly loaded mirror into the live one.
"""

from typing import Optional, Tuple

from schedd_plugin.callbacks import ClassAdLogPlugin
from schedd_plugin.mirror import Mirror, normalise_value

__all__ = ["WAIT", "SKIP", "RESYNC", "corrupt_line_action", "rotation_reason",
           "replay_differences"]

WAIT = "wait"        # read it again next poll
SKIP = "skip"        # count it, log it, go on after it
RESYNC = "resync"    # count it, reload the whole file and diff it in


def corrupt_line_action(follows: bool, skipped: bool, draining: bool, snapshot: bool) -> str:
    """:data:`WAIT`, :data:`SKIP` or :data:`RESYNC` for a corrupt line not seen before.

    ``follows``: a valid complete record comes after it (or the file is being drained, so
    nothing more will be written); ``skipped``: it is a ``tailscan.Skipped`` region;
    ``snapshot``: the file has a ``107`` first line (only a snapshot is ever diffed).
    """
    if not follows and not skipped:
        return WAIT
    if not follows or draining or not snapshot:
        return SKIP
    return RESYNC


def rotation_reason(known: Tuple[int, int], now: Tuple[int, int], size: int, read_offset: int,
                    first_known: Optional[Tuple[int, int]],
                    first_now: Optional[Tuple[int, int]]) -> Optional[Tuple[str, bool]]:
    """``(reason, drain)`` if the file at the path is not the one followed any more, else None.

    ``known``/``now`` are (dev, ino) of the followed file and of the path; ``first_*`` the
    (seq, birth) of the followed file's 107 first line as known and as read now.
    """
    if now != known:
        return "new file", True
    if size < read_offset:
        return f"size {size} below offset {read_offset}", False
    if first_now != first_known and (first_known or read_offset):
        # (A 107 appearing in a file that was empty is the schedd creating it.)
        return "first line changed", False
    return None


def replay_differences(mirror: Mirror, fresh: Mirror, plugin: ClassAdLogPlugin) -> int:
    """Make ``mirror`` equal ``fresh``, calling back each real difference; returns how many.

    Values that differ only in their spelling (normalise_value) are updated silently.
    All of it is one begin/end pair. ``mirror`` is changed only through its own methods.
    """
    changes = 0
    plugin.begin_transaction()
    for key in [key for key in mirror.ads if key not in fresh.ads]:
        plugin.destroy_classad(key)
        mirror.destroy_classad(key)
        changes += 1
    for key, ad in fresh.ads.items():
        current = mirror.ads.get(key)
        if current is None:
            mirror.new_classad(key, ad.mytype, ad.targettype)
            plugin.new_classad(key, ad.mytype, ad.targettype)
            current = mirror.ads[key]
            changes += 1
        else:
            mirror.set_types(key, ad.mytype, ad.targettype)
        attrs = current.attrs
        for lname, item in ad.attrs.items():
            old = attrs.get(lname)
            if old is None or (old[1] != item[1]
                               and normalise_value(old[1]) != normalise_value(item[1])):
                mirror.set_attribute(key, item[0], item[1])
                plugin.set_attribute(key, item[0], item[1])
                changes += 1
            elif old != item:
                mirror.set_attribute(key, item[0], item[1])     # a new spelling, no news
        for lname in [lname for lname in attrs if lname not in ad.attrs]:
            name = attrs[lname][0]
            mirror.delete_attribute(key, name)
            plugin.delete_attribute(key, name)
            changes += 1
    plugin.end_transaction()
    return changes
