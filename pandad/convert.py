"""Job commands → the PanDA monitor's JSON objects (docs/design.md §4.4).

Attribute names go out as the schedd spells them unless ``PANDA_ATTRIBUTE_MAP`` (an
``AttributeMap``: lower-case ClassAd name → the monitor's field) renames them; values go
through ``pandad.classad.to_json_value``. Callers build request bodies with ``json.dumps`` on
these dicts, never by joining strings.
"""

import re
import time
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from pandad.classad import to_json_value
from pandad.coalesce import PlainUpdate, plain_job_id, plain_pairs

__all__ = ["json_name", "job_object", "condor_id_from_job_id", "AttributeMap", "Converter",
           "SUBMITTED"]

# PANDA_ATTRIBUTE_MAP as settings hold it: (lower-case ClassAd name, the monitor's field)
# pairs; empty = every attribute under its own name.
AttributeMap = Tuple[Tuple[str, str], ...]
# The field sent as local time "YYYY-MM-DD HH:MM:SS", as the C++ pandad sent it.
SUBMITTED = "submitted"

# Keys the object itself owns; an attribute of the same name must not overwrite them.
_RESERVED = frozenset({"id", "condorid"})
_CONDOR_ID_RE = re.compile(r"[0-9]+\.[0-9]+\Z")
# Value texts up to this length are remembered by a Converter: short values (status codes,
# sizes, hosts, owners, "undefined") repeat across the jobs of a batch; long ones seldom do.
_MEMO_TEXT_MAX = 64
_MISSING = object()


def json_name(attr: str, attribute_map: AttributeMap = ()) -> str:
    """The monitor's name for ClassAd attribute ``attr``: its entry in ``attribute_map``
    (case-insensitive), else ``attr`` itself."""
    return dict(attribute_map).get(attr.lower(), attr)


def _local_time(value: object) -> object:
    """An epoch number as local ``YYYY-MM-DD HH:MM:SS``; anything else unchanged."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    except (OverflowError, OSError, ValueError):
        return value


class Converter:
    """``job_object`` for the many commands of one batch, remembering what it worked out.

    ``json_name`` per attribute name and ``to_json_value`` per short value text are pure, so a
    remembered result is the result; the memory goes with the converter (one per batch).
    """

    __slots__ = ("_map", "_names", "_plain", "_values")

    def __init__(self, attribute_map: AttributeMap = ()) -> None:
        self._map: Dict[str, str] = dict(attribute_map)   # lower-case attribute → field
        self._names: Dict[str, str] = {}       # attribute name → the monitor's field
        # The same for the names whose field needs no care (not id, condorid or submitted)
        self._plain: Dict[str, str] = {}
        self._values: Dict[str, object] = {}   # value text (≤ _MEMO_TEXT_MAX) → JSON value

    def job_object(self, job_id: str, condor_id: Optional[str],
                   attrs: Iterable[Tuple[str, str]]) -> dict:
        """As ``job_object``, from (name, value text) pairs."""
        obj: dict = {"id": job_id}
        if condor_id is not None:
            obj["condorid"] = condor_id
        names = self._names
        values = self._values
        for attr, text in attrs:
            name = names.get(attr)
            if name is None:
                name = names[attr] = self._map.get(attr.lower(), attr)
            if name in _RESERVED:
                continue
            value = values.get(text, _MISSING)
            if value is _MISSING:
                value = to_json_value(text)
                if len(text) <= _MEMO_TEXT_MAX:
                    values[text] = value
            if name == SUBMITTED:
                value = _local_time(value)
            obj[name] = value
        return obj

    def fields_object(self, fields: PlainUpdate) -> Optional[dict]:
        """``job_object`` of a ``coalesce.PlainUpdate`` (one plain UPDATE record's fields, read
        through ``plain_job_id`` and ``plain_pairs``), or None when it takes ``job_object``
        itself: a name it leaves out or converts (id, condorid, submitted), two names for one
        key, or a value ``to_json_value`` refuses.
        """
        obj: dict = {"id": plain_job_id(fields)}
        names = self._plain
        values = self._values
        pairs = 0
        try:
            for attr, text in plain_pairs(fields):
                pairs += 1
                name = names.get(attr)
                if name is None:
                    name = self._plain_name(attr)
                    if name is None:
                        return None
                value = values.get(text, _MISSING)
                if value is _MISSING:
                    value = to_json_value(text)
                    if len(text) <= _MEMO_TEXT_MAX:
                        values[text] = value
                obj[name] = value
        except (ValueError, TypeError):
            return None           # job_object says whether the command converts, and why not
        # One key per pair, else two names shared a key (one name twice, RemoteWallClockTime
        # and run_time): which value job_object keeps then depends on its merged attrs.
        return obj if len(obj) == 1 + pairs else None

    def entry_objects(self, entries: Sequence[object]) -> Tuple[List[Optional[dict]], int]:
        """(``fields_object`` of each PlainUpdate in ``entries``, None for anything else;
        how many are None), in one loop: the flusher's way through a slice of updates."""
        objects: List[Optional[dict]] = []
        append = objects.append
        names = self._plain
        values = self._values
        missing = 0
        for fields in entries:
            obj = None
            if type(fields) is tuple:
                # One or two attributes, the usual UPDATEs, as a dict display of remembered
                # names and values (a loop costs more than the lookups); anything else, or
                # not remembered yet (KeyError), through fields_object. This twin reads the
                # PlainUpdate by index; tests/test_coalesce_fast.py holds it to fields_object.
                count = len(fields)
                try:
                    if count == 6:
                        obj = {"id": fields[1][1:-1], names[fields[2]]: values[fields[3]],
                               names[fields[4]]: values[fields[5]]}
                    elif count == 4:
                        obj = {"id": fields[1][1:-1], names[fields[2]]: values[fields[3]]}
                except KeyError:
                    pass
                if obj is None or 2 * len(obj) != count:
                    obj = self.fields_object(fields)
            append(obj)
            if obj is None:
                missing += 1
        return objects, missing

    def _plain_name(self, attr: str) -> Optional[str]:
        name = self._map.get(attr.lower(), attr)
        if name in _RESERVED or name == SUBMITTED:
            return None
        self._plain[attr] = name
        return name


def job_object(job_id: str, condor_id: Optional[str], attrs: Mapping[str, str],
               attribute_map: AttributeMap = ()) -> dict:
    """``{"id": job_id, ["condorid": condor_id,] <json_name(attr)>: <JSON value>, ...}``.

    Whatever is sent as ``submitted`` (an attribute of that name, or the one the map renames
    to it) goes in local time. An attribute sent as ``id`` or ``condorid`` is left out: it
    would overwrite the job's identity.
    """
    return Converter(attribute_map).job_object(job_id, condor_id, attrs.items())


def condor_id_from_job_id(job_id: str) -> Optional[str]:
    """``"C.P"`` from a GlobalJobId ``schedd#C.P#epoch``; None if it does not have that form."""
    parts = job_id.rsplit("#", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    cluster_proc = parts[1]
    return cluster_proc if _CONDOR_ID_RE.match(cluster_proc) else None
