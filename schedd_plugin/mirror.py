"""A copy of every ad in the schedd's job queue, as job_queue.log describes it (pure).

The mirror applies log operations with the semantics of HTCondor's ``Play()``
(``docs/job-queue-log.md`` §2.4, §7):

- ``new_classad`` on an existing key keeps the old ad (the caller still calls back);
  on a new key it seeds ``MyType`` (and ``TargetType = "Machine"`` for Job ads), which the
  schedd sets in memory without a log record;
- ``set_attribute`` / ``delete_attribute`` / ``destroy_classad`` on an unknown key are
  no-ops and return False, so the caller skips the callback;
- ``delete_attribute`` of an absent attribute on an existing ad returns True (the schedd
  still calls back).

Attribute names are case-insensitive, as in ClassAds; an ad keeps the spelling last
written.  Values are the raw old-syntax text from the log.

Memory: a job's ad holds only its own attributes; its cluster's are in the cluster ad, once
(as the schedd chains them).  What repeats from ad to ad is shared, not copied (``Mirror.item``):
an attribute name as written and its lower-case form are one string each for the whole mirror,
and an attribute whose value was seen lately under the same name (``JobStatus 1`` in every proc
of a submit, the seeded ``MyType``) is the very same ``(name, value)`` pair.  Sharing is
bounded without any bookkeeping at removal: at most ``NAMES_SHARED`` spellings, each remembering
its ``VALUES_PER_NAME`` latest short values, so what it keeps alive after the ads are gone is
small and fixed.

Keys (``docs/job-queue-log.md`` §2.1): ``0.0`` header, ``0.N`` user/project records,
``0C.-1`` cluster ad (with a leading zero), ``C.-2`` ClusterPvt, ``N.-100`` job set,
``C.P`` (P ≥ 0) job.  A job's *effective* ad is its cluster ad overlaid by its own ad.
"""

import math
from typing import Dict, Iterator, List, Optional, Protocol, Tuple

__all__ = ["Ad", "Mirror", "classify", "cluster_key", "normalise_value",
           "HEADER", "USER", "CLUSTER", "CLUSTER_PVT", "JOBSET", "JOB", "OTHER"]

HEADER = "header"            # 0.0
USER = "user"                # 0.N, N >= 1: user or project records
CLUSTER = "cluster"          # 0C.-1
CLUSTER_PVT = "cluster_pvt"  # C.-2
JOBSET = "jobset"            # N.-100
JOB = "job"                  # C.P, C >= 1, P >= 0
OTHER = "other"              # anything else: kept, never sent

_NUMBER_START = frozenset("0123456789.-+")

# Bounds of what Mirror.item shares (see the module docstring).  A schedd uses a few hundred
# attribute names; a value worth sharing is short (a status, a number, a boolean, a type).
NAMES_SHARED = 4096
VALUES_PER_NAME = 4
SHARED_VALUE_MAX = 64
TYPES_SHARED = 64            # distinct MyType/TargetType strings shared

# lower-case name -> (name as last written, old-syntax value text)
Attrs = Dict[str, Tuple[str, str]]


def classify(key: str) -> Tuple[str, int, int]:
    """``(kind, cluster, proc)`` of a key; unparseable keys are ``(OTHER, 0, 0)``."""
    cluster_text, dot, proc_text = key.partition(".")
    if not dot:
        return OTHER, 0, 0
    try:
        cluster, proc = int(cluster_text), int(proc_text)
    except ValueError:
        return OTHER, 0, 0
    if cluster < 0:
        return OTHER, cluster, proc
    if cluster == 0:
        if proc == 0:
            return HEADER, 0, 0
        return (USER if proc > 0 else OTHER), cluster, proc
    if proc >= 0:
        return JOB, cluster, proc
    if proc == -1:
        # The schedd writes cluster keys with a leading zero (commit f363fa5a, 1999);
        # a "C.-1" without it is not a key it writes.
        return (CLUSTER if key[0] == "0" else OTHER), cluster, proc
    if proc == -2:
        return CLUSTER_PVT, cluster, proc
    if proc == -100:
        return JOBSET, cluster, proc
    return OTHER, cluster, proc


def cluster_key(cluster: int) -> str:
    """The key of cluster ``cluster``'s ad: ``"0" + C + ".-1"``, never rebuilt without the 0."""
    return f"0{cluster}.-1"


class Ad:
    """One ad: its kind, ids, types and attributes."""

    __slots__ = ("key", "kind", "cluster", "proc", "mytype", "targettype", "attrs")

    def __init__(self, key: str, mytype: str, targettype: str) -> None:
        self.key = key
        self.kind, self.cluster, self.proc = classify(key)
        self.mytype = mytype
        self.targettype = targettype
        self.attrs: Attrs = {}

    def get(self, name: str) -> Optional[str]:
        item = self.attrs.get(name.lower())
        return None if item is None else item[1]

    def __repr__(self) -> str:
        return f"Ad({self.key!r}, {self.kind}, {len(self.attrs)} attributes)"


class Mirror:
    """Every ad by key, with the schedd's Play semantics; see the module docstring."""

    def __init__(self) -> None:
        self.ads: Dict[str, Ad] = {}
        # cluster number -> {job key: its Ad}, so a cluster-ad change reaches its procs
        self._procs: Dict[int, Dict[str, Ad]] = {}
        # name as written -> (that name, lower-case name, {recent short value: its pair}):
        # the entry holds the name so that every pair shares the one string.  apply reads it
        # inline (the follower's hot path): a change here must be made there too.
        self.names: Dict[str, Tuple[str, str, Dict[str, Tuple[str, str]]]] = {}
        self._types: Dict[str, str] = {}

    # -- sharing -------------------------------------------------------------------------

    def item(self, name: str, value: str) -> Tuple[str, Tuple[str, str]]:
        """``(lower-case name, (name, value))`` to store in an ad, shared where it repeats.

        The follower's hot path calls this for every SetAttribute: one dict lookup for the
        name, one for the value.
        """
        entry = self.names.get(name)
        if entry is None:
            if len(self.names) >= NAMES_SHARED:
                return name.lower(), (name, value)
            entry = self.names[name] = (name, name.lower(), {})
        shared_name, lname, values = entry
        pair = values.get(value)
        if pair is None:
            pair = (shared_name, value)
            if len(value) <= SHARED_VALUE_MAX:
                if len(values) >= VALUES_PER_NAME:
                    values.clear()
                values[value] = pair
        return lname, pair

    def name(self, name: str) -> str:
        """``name`` as the one string the mirror shares for that spelling.

        The follower holds an open transaction's names this way, so a submit of thousands of
        procs holds each attribute name once while it waits for its commit.
        """
        entry = self.names.get(name)
        if entry is None:
            if len(self.names) >= NAMES_SHARED:
                return name
            entry = self.names[name] = (name, name.lower(), {})
        return entry[0]

    def lower(self, name: str) -> str:
        """The lower-case form of ``name``, shared like ``item``'s."""
        entry = self.names.get(name)
        return entry[1] if entry is not None else name.lower()

    def _type(self, text: str) -> str:
        shared = self._types.get(text)
        if shared is None:
            if len(self._types) >= TYPES_SHARED:
                return text
            shared = self._types[text] = text
        return shared

    # -- the four data operations --------------------------------------------------------

    def new_classad(self, key: str, mytype: str, targettype: str) -> bool:
        """Create the ad; False (and the old ad kept) if the key exists already."""
        if key in self.ads:
            return False
        ad = Ad(key, self._type(mytype), self._type(targettype))
        if mytype:
            # Seeded without a record, as the schedd does in memory (§2.4): a compacted
            # log then shows them as 103s, and a rotation diff stays quiet.
            lname, pair = self.item("MyType", _old_syntax_string(mytype))
            ad.attrs[lname] = pair
            if mytype.lower() == "job":
                lname, pair = self.item("TargetType", '"Machine"')
                ad.attrs[lname] = pair
        self.ads[key] = ad
        if ad.kind == JOB:
            self._procs.setdefault(ad.cluster, {})[key] = ad
        return True

    def set_types(self, key: str, mytype: str, targettype: str) -> bool:
        """The ad's MyType/TargetType as a 101 line gives them (a reload's diff)."""
        ad = self.ads.get(key)
        if ad is None:
            return False
        ad.mytype, ad.targettype = self._type(mytype), self._type(targettype)
        return True

    def destroy_classad(self, key: str) -> bool:
        ad = self.ads.pop(key, None)
        if ad is None:
            return False
        if ad.kind == JOB:
            procs = self._procs.get(ad.cluster)
            if procs is not None:
                procs.pop(key, None)
                if not procs:
                    del self._procs[ad.cluster]
        return True

    # apply does what set_attribute and delete_attribute do inline (the follower's hot
    # path): a change here must be made there too.
    def set_attribute(self, key: str, name: str, value: str) -> bool:
        ad = self.ads.get(key)
        if ad is None:
            return False
        lname, pair = self.item(name, value)
        ad.attrs[lname] = pair
        return True

    def delete_attribute(self, key: str, name: str) -> bool:
        ad = self.ads.get(key)
        if ad is None:
            return False
        ad.attrs.pop(self.lower(name), None)
        return True

    # -- a batch of log operations ---------------------------------------------------------

    def apply(self, ops: List[tuple], listener: Optional["Listener"] = None) -> None:
        """Apply ``ops`` (``logparse.LogOp`` tuples, 101-104) in order, emptying the list.

        With a ``listener`` (the plug-in), each op that takes effect is called back after it
        is applied, except a destroy, which is called back first (the ad is still readable);
        a new_classad is always called back, a set/delete/destroy of an unknown key never,
        a delete of an absent attribute is (the schedd's Play).  Each op is let go once
        applied, so the ads a big submit adds grow into the memory its ops held.
        """
        if listener is None:
            self._load(ops)
            return
        # SetAttribute and DeleteAttribute are nearly every op: done inline (what
        # set_attribute / delete_attribute do, then the callback), methods bound once.
        ads_get, item, lower, names_get = self.ads.get, self.item, self.lower, self.names.get
        listener_set, listener_delete = listener.set_attribute, listener.delete_attribute
        ops.reverse()
        pop = ops.pop
        while ops:
            op = pop()
            code = op[0]
            if code == 103:                     # SetAttribute
                key = op[1]
                ad = ads_get(key)
                if ad is not None:
                    name, value = op[2], op[3]
                    # item's common case inline: a known name, a value seen lately.
                    entry = names_get(name)
                    pair = None if entry is None else entry[2].get(value)
                    if pair is None:
                        lname, pair = item(name, value)
                        ad.attrs[lname] = pair
                    else:
                        ad.attrs[entry[1]] = pair
                    listener_set(key, name, value)
            elif code == 104:                   # DeleteAttribute: an absent one is called back
                key = op[1]
                ad = ads_get(key)
                if ad is not None:
                    name = op[2]
                    ad.attrs.pop(lower(name), None)
                    listener_delete(key, name)
            elif code == 101:                   # NewClassAd
                self.new_classad(op[1], op[4][0], op[4][1])
                listener.new_classad(op[1], op[4][0], op[4][1])
            elif code == 102 and op[1] in self.ads:   # DestroyClassAd
                listener.destroy_classad(op[1])
                self.destroy_classad(op[1])

    def _load(self, ops: List[tuple]) -> None:
        """:meth:`apply` without a listener (a silent load: start-up, rotation)."""
        ads_get, item = self.ads.get, self.item
        for op in ops:
            code = op[0]
            if code == 103:
                ad = ads_get(op[1])
                if ad is not None:
                    lname, pair = item(op[2], op[3])
                    ad.attrs[lname] = pair
            elif code == 101:
                self.new_classad(op[1], op[4][0], op[4][1])
            elif code == 102:
                self.destroy_classad(op[1])
            elif code == 104:
                self.delete_attribute(op[1], op[2])
        ops.clear()

    # -- questions -----------------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        return key in self.ads

    def __len__(self) -> int:
        return len(self.ads)

    def get(self, key: str) -> Optional[Ad]:
        return self.ads.get(key)

    def kind(self, key: str) -> Optional[str]:
        ad = self.ads.get(key)
        return None if ad is None else ad.kind

    def job_keys(self) -> List[str]:
        """Keys of every job ad (``C.P``, P ≥ 0), in the order they were created."""
        return [key for key, ad in self.ads.items() if ad.kind == JOB]

    def procs_of(self, cluster: int) -> Iterator[Ad]:
        """The job ads of cluster ``cluster`` (a snapshot: safe to mutate while iterating)."""
        procs = self._procs.get(cluster)
        return iter(list(procs.values())) if procs else iter(())

    def proc_count(self, cluster: int) -> int:
        procs = self._procs.get(cluster)
        return len(procs) if procs else 0

    def effective_attrs(self, key: str) -> Attrs:
        """The job's effective attributes, lower-case name -> (name, value); proc wins."""
        ad = self.ads.get(key)
        if ad is None:
            return {}
        cluster = self.ads.get(cluster_key(ad.cluster)) if ad.kind == JOB else None
        if cluster is None or not cluster.attrs:
            return dict(ad.attrs)
        merged = dict(cluster.attrs)
        merged.update(ad.attrs)
        return merged

    def effective(self, key: str) -> Dict[str, str]:
        """The job's effective ad, name -> value: cluster ad overlaid by the proc ad."""
        return dict(self.effective_attrs(key).values())

    def lookup(self, key: str, name: str) -> Optional[Tuple[str, str]]:
        """``(name, value)`` of one effective attribute of ``key``, or None."""
        ad = self.ads.get(key)
        if ad is None:
            return None
        lname = name.lower()
        item = ad.attrs.get(lname)
        if item is None and ad.kind == JOB:
            cluster = self.ads.get(cluster_key(ad.cluster))
            if cluster is not None:
                item = cluster.attrs.get(lname)
        return item

    def clear(self) -> None:
        self.ads.clear()
        self._procs.clear()
        self.names.clear()
        self._types.clear()


class Listener(Protocol):
    """What :meth:`Mirror.apply` calls back (``callbacks.ClassAdLogPlugin`` is one)."""

    def new_classad(self, key: str, mytype: str, targettype: str) -> None: ...
    def destroy_classad(self, key: str) -> None: ...
    def set_attribute(self, key: str, name: str, value: str) -> None: ...
    def delete_attribute(self, key: str, name: str) -> None: ...


def _old_syntax_string(text: str) -> str:
    # Old ClassAd syntax escapes only the delimiter (§1.4).
    return '"' + text.replace('"', '\\"') + '"'


def normalise_value(text: str) -> str:
    """A comparison form of old-syntax value text, for rotation diffs.

    A compaction re-unparses every value (§1.4), so equal values can differ in spacing,
    keyword case (``UNDEFINED``/``undefined``) or number spelling (``1.50``/``1.5``,
    ``0``/``0.0``; the monitor sees the same JSON number).  Outside string literals,
    whitespace is dropped and letters are lower-cased (ClassAd names and keywords are
    case-insensitive); a value that is a plain number compares as a float.
    """
    stripped = text.strip()
    if stripped[:1] in _NUMBER_START:
        try:
            number = float(stripped)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return repr(number)
    if '"' not in text:
        return "".join(text.split()).lower()
    out: List[str] = []
    in_string = False
    i, n = 0, len(text)
    start = 0
    while i < n:
        c = text[i]
        if in_string:
            if c == "\\" and i + 1 < n and text[i + 1] == '"':
                i += 2
                continue
            if c == '"':
                out.append(text[start:i + 1])
                in_string = False
                start = i + 1
        elif c == '"':
            out.append("".join(text[start:i].split()).lower())
            in_string = True
            start = i
        i += 1
    tail = text[start:]
    out.append(tail if in_string else "".join(tail.split()).lower())
    return "".join(out)
