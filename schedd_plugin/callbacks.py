"""HTCondor's ClassAdLogPlugin interface, and the PanDA plug-in that turns it into records.

:class:`ClassAdLogPlugin` has the hooks of HTCondor's C++ interface
(``src/condor_utils/ClassAdLogPlugin.h``), all no-ops.  The follower calls them the way the
schedd's ``Play()`` does: the mirror is changed first and then the hook is called, except
``destroy_classad``, which is called while the ad is still in the mirror.

:class:`PandaPlugin` writes wire records (``pandad.wire``), docs/design.md §5.2:

- a job (``C.P``, P ≥ 0) created in a transaction → one ``ADD`` at the transaction's end,
  carrying its effective attributes (cluster ad ⊕ proc ad) at that moment;
- later changes → one ``UPDATE`` per job per transaction, attributes in the order they were
  first changed, last value winning; the value sent is the job's *effective* value, so a
  deleted proc attribute that the cluster ad still has is sent with the cluster's value, and
  one nobody has any more is sent as ``null``;
- a set or delete on the cluster ad (``0C.-1``) → an ``UPDATE`` for every existing job of
  the cluster that does not override the attribute;
- a destroyed job → ``REMOVE`` (after its ``ADD``/``UPDATE`` if it had any in the same
  transaction);
- nothing for the ``0.0`` header, cluster ads themselves, ClusterPvt, job sets, user records;
- operations outside a transaction (bare records) are written at once;
- private attributes (HTCondor's ``ClassAdPrivateAttrs``: ``Capability``, ``ChildClaimIds``,
  ``ClaimId``, ``ClaimIdList``, ``ClaimIds``, ``TransferKey``; also ``TransferSocket`` and
  any ``_condor_priv*`` name) are never sent; ``PublicClaimId`` is public and is sent;
- ``job_attributes`` (lower-case names, None = all) limits the attributes sent.  The job id
  is always the job's ``GlobalJobId``, or ``<schedd_name>#C.P`` when it has none.

Values are the log's old-syntax text, rewritten by ``pandad.classad.old_to_new``; bytes that
were not valid UTF-8 in the log (kept by ``logparse`` as surrogate escapes) become U+FFFD,
because the wire and JSON carry text.
"""

import logging
from typing import Callable, Dict, FrozenSet, Iterator, List, Optional, Tuple

from pandad import wire
from pandad.classad import old_to_new, quote, unquote
from pandad.stats import Counters
from schedd_plugin.mirror import CLUSTER, JOB, Ad, Mirror

__all__ = ["ClassAdLogPlugin", "PandaPlugin", "PRIVATE_ATTRIBUTES", "is_private"]

log = logging.getLogger("panda_plugin.callbacks")

# Lower-case. HTCondor's ClassAdPrivateAttrs (compat_classad.cpp) plus TransferSocket,
# which carries a file-transfer endpoint a job's owner should not see either.
PRIVATE_ATTRIBUTES = frozenset({
    "capability", "childclaimids", "claimid", "claimidlist", "claimids", "transferkey",
    "transfersocket",
})
# ClassAdAttributeIsPrivateV2: any name with this prefix is private.
PRIVATE_PREFIX = "_condor_priv"

NULL = "null"  # the wire's value for an attribute that is gone
# Names of attributes ever deleted from a job (lower-case), sent as null by a heal's ADD so
# the monitor loses a value whose deletion it missed. Bounded: names, not jobs.
MAX_DELETED_NAMES = 1000


def is_private(name: str) -> bool:
    lname = name.lower()
    return lname in PRIVATE_ATTRIBUTES or lname.startswith(PRIVATE_PREFIX)


class ClassAdLogPlugin:
    """HTCondor's ClassAdLogPlugin hooks; every one is a no-op here."""

    def initialize(self) -> None:
        """Called once the existing queue has been replayed (the schedd's startup)."""

    def shutdown(self) -> None:
        """Called before the process exits."""

    def begin_transaction(self) -> None:
        """A committed transaction's ops follow (not called for bare ops)."""

    def end_transaction(self) -> None:
        """The transaction's last op has been called back."""

    def new_classad(self, key: str, mytype: str, targettype: str) -> None:
        """Ad ``key`` was created (or re-created: the schedd keeps the old ad then)."""

    def destroy_classad(self, key: str) -> None:
        """Ad ``key`` is about to be removed; it can still be read from the mirror."""

    def set_attribute(self, key: str, name: str, value: str) -> None:
        """``name`` of ``key`` was set to ``value`` (raw old-syntax text)."""

    def delete_attribute(self, key: str, name: str) -> None:
        """``name`` of ``key`` was deleted (called even if it was absent)."""


class _Pending:
    """What one job's records at the end of the transaction will say."""

    __slots__ = ("key", "ad", "created", "destroyed", "changes", "job_id", "snapshot")

    def __init__(self, key: str, ad: Ad) -> None:
        self.key = key
        self.ad = ad
        self.created = False
        self.destroyed = False
        # lower-case name -> (name, old-syntax value, or None for gone)
        self.changes: Dict[str, Tuple[str, Optional[str]]] = {}
        self.job_id = ""
        # A job created and destroyed in the batch: its pairs at its destruction.
        self.snapshot: Optional[List[Tuple[str, str]]] = None


class PandaPlugin(ClassAdLogPlugin):
    """The PanDA plug-in: ClassAdLogPlugin callbacks → whole wire records for ``write``.

    ``write`` receives one encoded record (bytes) per call; what happens to it (pipe, spill,
    drop) is the caller's business.  ``stats`` is optional.
    """

    def __init__(self, mirror: Mirror, write: Callable[[bytes], object],
                 job_attributes: Optional[FrozenSet[str]], schedd_name: str,
                 stats: Optional[Counters] = None) -> None:
        self.mirror = mirror
        self.write = write
        self.schedd_name = schedd_name
        self.stats = stats
        self._wanted_cache: Dict[str, bool] = {}
        self._job_attributes: Optional[FrozenSet[str]] = None
        self.job_attributes = job_attributes
        self._in_transaction = False
        self._pending: Dict[str, _Pending] = {}   # the open entry of each job key
        self._order: List[_Pending] = []          # every entry, in order of first touch
        self._created: Dict[int, int] = {}        # cluster -> its jobs created in this batch
        self._job_ids: Dict[str, str] = {}        # job key -> job id (cache)
        self._update_prefixes: Dict[str, str] = {}  # job key -> wire.update_prefix (cache)
        self._fallback_logged = False
        self._bad_names_logged: Dict[str, bool] = {}
        # lower-case name -> name, of attributes deleted from a job or cluster ad
        self.deleted_names: Dict[str, str] = {}
        # Healing (schedd_plugin.healer): asked whether a leaving job needs a tombstone.
        self.healer: Optional[object] = None

    @property
    def job_attributes(self) -> Optional[FrozenSet[str]]:
        return self._job_attributes

    @job_attributes.setter
    def job_attributes(self, names: Optional[FrozenSet[str]]) -> None:
        # Settable at run time (SIGHUP); takes effect for the next records.
        self._job_attributes = None if not names else frozenset(n.lower() for n in names)
        self._wanted_cache = {}

    def _wanted(self, lname: str) -> bool:
        wanted = self._wanted_cache.get(lname)
        if wanted is None:
            wanted = not (lname in PRIVATE_ATTRIBUTES or lname.startswith(PRIVATE_PREFIX))
            if wanted and self._job_attributes is not None:
                wanted = lname in self._job_attributes
            self._wanted_cache[lname] = wanted
        return wanted

    # -- hooks ---------------------------------------------------------------------------

    def initialize(self) -> None:
        # Idempotent: the follower calls it after its start-up replay; calling it earlier
        # as well does no harm.
        self._flush()

    def shutdown(self) -> None:
        self._flush()

    def begin_transaction(self) -> None:
        self._in_transaction = True

    def end_transaction(self) -> None:
        self._in_transaction = False
        if self._order:
            self._flush()

    def new_classad(self, key: str, mytype: str, targettype: str) -> None:
        ad = self.mirror.ads.get(key)
        if ad is not None and ad.kind == JOB:
            entry = self._entry(key, ad)
            if not entry.created:
                entry.created = True
                self._created[ad.cluster] = self._created.get(ad.cluster, 0) + 1
        if not self._in_transaction:
            self._flush()

    def destroy_classad(self, key: str) -> None:
        ad = self.mirror.ads.get(key)
        if ad is not None and ad.kind == JOB:
            entry = self._entry(key, ad)
            entry.job_id = self._job_id(key, ad)
            healer = self.healer
            if healer is not None:
                field = id_field_of(entry.job_id)
                if healer.wants_tombstone(field):
                    record = self.heal_record(key)
                    if record is not None:
                        healer.keep_tombstone(field, record)
            if entry.created:
                entry.snapshot = self._effective_pairs(key)
                self._created[ad.cluster] -= 1
            entry.destroyed = True
            # A later 101 of the same key starts a new entry, after this one.
            del self._pending[key]
            self._forget_job_id(key)
        if not self._in_transaction:
            self._flush()

    def set_attribute(self, key: str, name: str, value: str) -> None:
        entry = self._pending.get(key)
        if entry is not None and entry.created and self._in_transaction:
            # A job new in this transaction: its ADD will carry the value (the hot path of
            # a submit and of a start-up replay).
            if len(name) == 11 and name.lower() == "globaljobid":
                self._forget_job_id(key)
            return
        ad = self.mirror.ads.get(key)
        if ad is not None:
            if ad.kind == JOB:
                # _changed's job branch, inline: this is the hot path of every live change.
                lname = name.lower()
                if lname == "globaljobid":
                    self._forget_job_id(key)
                wanted = self._wanted_cache.get(lname)
                if wanted is None:
                    wanted = self._wanted(lname)
                if wanted:
                    if entry is None:
                        entry = self._pending[key] = _Pending(key, ad)
                        self._order.append(entry)
                    if not entry.created:
                        entry.changes[lname] = (name, value)
            else:
                self._changed(ad, name, value)
        if not self._in_transaction:
            self._flush()

    def delete_attribute(self, key: str, name: str) -> None:
        ad = self.mirror.ads.get(key)
        if ad is not None:
            lname = name.lower()
            if (lname not in self.deleted_names and ad.kind in (JOB, CLUSTER)
                    and len(self.deleted_names) < MAX_DELETED_NAMES):
                self.deleted_names[lname] = name
            if ad.kind == JOB:
                # The job's effective value now: the cluster's, if it has one.
                item = self.mirror.lookup(key, name)
                self._changed(ad, name, None if item is None else item[1])
            else:
                self._changed(ad, name, None)
        if not self._in_transaction:
            self._flush()

    # -- bookkeeping ---------------------------------------------------------------------

    def _entry(self, key: str, ad: Ad) -> _Pending:
        entry = self._pending.get(key)
        if entry is None:
            entry = self._pending[key] = _Pending(key, ad)
            self._order.append(entry)
        return entry

    def _changed(self, ad: Ad, name: str, value: Optional[str]) -> None:
        """``name`` of ``ad`` is now ``value`` (None: deleted); note what jobs see."""
        lname = name.lower()
        kind = ad.kind
        if kind == JOB:
            if lname == "globaljobid":
                self._forget_job_id(ad.key)
            if self._wanted(lname):
                entry = self._pending.get(ad.key) or self._entry(ad.key, ad)
                if not entry.created:
                    entry.changes[lname] = (name, value)
        elif kind == CLUSTER:
            if lname == "globaljobid":
                self._job_ids.clear()
                self._update_prefixes.clear()
            if self._wanted(lname):
                self._fan_out(ad.cluster, lname, name, value)

    def _fan_out(self, cluster: int, lname: str, name: str, value: Optional[str]) -> None:
        created = self._created.get(cluster, 0)
        if created and created >= self.mirror.proc_count(cluster):
            # Every job of the cluster is new in this batch (a submit, a start-up replay):
            # their ADDs will carry the effective value anyway.
            return
        for proc in self.mirror.procs_of(cluster):
            if lname in proc.attrs:
                continue  # the proc overrides the cluster's value
            entry = self._entry(proc.key, proc)
            if not entry.created:
                entry.changes[lname] = (name, value)

    def _forget_job_id(self, key: str) -> None:
        """Job ``key``'s GlobalJobId changed or the job left: drop what was cached of it."""
        self._job_ids.pop(key, None)
        self._update_prefixes.pop(key, None)

    def _job_id(self, key: str, ad: Ad) -> str:
        job_id = self._job_ids.get(key)
        if job_id is not None:
            return job_id
        item = self.mirror.lookup(key, "GlobalJobId")
        if item is not None:
            job_id = unquote(_new_syntax(item[1]))
        if not job_id:
            job_id = f"{self.schedd_name}#{ad.cluster}.{ad.proc}"
            if not self._fallback_logged:
                self._fallback_logged = True
                log.debug("job %s has no GlobalJobId; using %s (logged once)", key, job_id)
            if self.stats is not None:
                self.stats.add("plugin_jobs_without_globaljobid")
        self._job_ids[key] = job_id
        return job_id

    def _effective_pairs(self, key: str) -> List[Tuple[str, str]]:
        pairs = []
        cached_wanted, wanted = self._wanted_cache.get, self._wanted
        for lname, pair in self.mirror.effective_attrs(key).items():
            keep = cached_wanted(lname)
            if keep is None:
                keep = wanted(lname)
            if keep:
                value = pair[1]
                if not (value.isascii() and value.isprintable() and "\\" not in value):
                    pair = (pair[0], _new_syntax(value))
                # else: _new_syntax would return the value as it is (the mirror's pair is sent)
                pairs.append(pair)
        return pairs

    # -- healing -------------------------------------------------------------------------

    def heal_record(self, key: str) -> Optional[bytes]:
        """An ADD of job ``key`` as it is now: every attribute, and null for each attribute
        name ever deleted that it does not have, so that whatever the monitor holds (nothing,
        or a stale job: pandad's upsert then PUTs it) ends up equal to the job."""
        ad = self.mirror.ads.get(key)
        if ad is None or ad.kind != JOB:
            return None
        pairs = self._effective_pairs(key)
        if self.deleted_names:
            present = {name.lower() for name, _ in pairs}
            pairs += [(name, NULL) for lname, name in self.deleted_names.items()
                      if lname not in present and self._wanted(lname)]
        job_id = self._job_id(key, ad)
        condor_id = f"{ad.cluster}.{ad.proc}"
        try:
            return wire.encode_add(job_id, condor_id, pairs)
        except ValueError:
            return wire.encode_add(job_id, condor_id, self._encodable(pairs))

    def remove_record(self, field: bytes) -> Optional[bytes]:
        """A REMOVE of the job whose wire id field is ``field``; None if it is not one."""
        job_id = unquote(field.decode("utf-8", "replace"))
        if not job_id:
            return None
        try:
            return wire.encode_remove(job_id, [])
        except ValueError:
            return None

    def key_of(self, field: bytes) -> Optional[str]:
        """The mirror key of the job in the queue whose wire id field is ``field``, or None.

        A GlobalJobId is ``schedd#C.P#time`` (or ``schedd#C.P``, the fallback id), so the key
        is read from it and checked against the job's own id."""
        job_id = unquote(field.decode("utf-8", "replace"))
        if not job_id:
            return None
        parts = job_id.split("#")
        if len(parts) < 2:
            return None
        key = parts[1]
        ad = self.mirror.ads.get(key)
        if ad is None or ad.kind != JOB or self._job_id(key, ad) != job_id:
            return None
        return key

    def id_field(self, key: str) -> bytes:
        """The wire id field of job ``key`` (in the mirror)."""
        return id_field_of(self._job_id(key, self.mirror.ads[key]))

    def queue_id_fields(self) -> Iterator[bytes]:
        """The wire id field of every job in the queue."""
        for key, ad in list(self.mirror.ads.items()):
            if ad.kind == JOB:
                yield id_field_of(self._job_id(key, ad))

    # -- records -------------------------------------------------------------------------

    def _flush(self) -> None:
        order = self._order
        if not order:
            return
        self._order = []
        self._pending.clear()
        if self._created:
            self._created.clear()
        prefixes = self._update_prefixes
        for entry in order:
            key = entry.key
            destroyed = entry.destroyed
            if entry.created:
                ad = entry.ad
                pairs = entry.snapshot if destroyed else self._effective_pairs(key)
                self._emit(wire.encode_add, self._entry_job_id(entry), pairs,
                           f"{ad.cluster}.{ad.proc}")
            elif entry.changes:
                pairs = []
                for pair in entry.changes.values():
                    value = pair[1]
                    if value is None:
                        pair = (pair[0], NULL)
                    elif not (value.isascii() and value.isprintable() and "\\" not in value):
                        pair = (pair[0], _new_syntax(value))
                    # else: old_to_new would return the value as it is
                    pairs.append(pair)
                # The hot path of every live change: the job's UPDATE prefix (its quoted id)
                # is kept until the job's id changes or the job leaves.
                prefix = None if destroyed else prefixes.get(key)
                try:
                    if prefix is None:
                        prefix = wire.update_prefix(self._entry_job_id(entry))
                        if not destroyed:
                            prefixes[key] = prefix
                    record = wire.encode_update_from(prefix, pairs)
                except ValueError:
                    self._emit(wire.encode_update, self._entry_job_id(entry), pairs)
                else:
                    self.write(record)
            if destroyed:
                self._emit(wire.encode_remove, entry.job_id, [])

    def _entry_job_id(self, entry: _Pending) -> str:
        """The id a pending entry's records carry (a destroyed job's was noted as it left)."""
        if entry.destroyed:
            return entry.job_id
        return self._job_id(entry.key, entry.ad)

    def _emit(self, encode: Callable[..., bytes], job_id: str,
              pairs: List[Tuple[str, str]], condor_id: Optional[str] = None) -> None:
        args = (job_id, condor_id) if condor_id is not None else (job_id,)
        try:
            record = encode(*args, pairs)
        except ValueError:
            pairs = self._encodable(pairs)
            if not pairs and encode is wire.encode_update:
                return
            record = encode(*args, pairs)
        self.write(record)

    def _encodable(self, pairs: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
        """The pairs the wire can carry; the others are logged (once per name) and counted."""
        good = []
        for pair in pairs:
            try:
                wire.encode_remove("x", [pair])
            except ValueError as e:
                if self.stats is not None:
                    self.stats.add("plugin_attributes_skipped")
                if pair[0] not in self._bad_names_logged and len(self._bad_names_logged) < 100:
                    self._bad_names_logged[pair[0]] = True
                    log.warning("attribute not sent (further ones of this name not logged): %s", e)
            else:
                good.append(pair)
        return good


def id_field_of(job_id: str) -> bytes:
    """A job id as the records' second field carries it (what pandad's LOST names)."""
    return quote(job_id).encode("utf-8")


def _new_syntax(value: str) -> str:
    if not value.isascii():
        # Bytes that were not UTF-8 in the log (surrogate escapes, see logparse).
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return old_to_new(value)
