"""Job commands → the PanDA monitor's JSON objects (docs/design.md §4.4).

Attribute names go out as the schedd spells them unless ``PANDA_ATTRIBUTE_MAP`` (an
``AttributeMap``: lower-case ClassAd name → the monitor's field) renames them; values go
through ``pandad.classad.to_json_value``. Callers build request bodies with ``json.dumps`` on
these dicts, never by joining strings.
"""

import json
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
# A value's JSON text as it stands inside the flusher's bodies (scalars: the separators of
# the flusher's encoder do not matter).
_JSON_TEXT = json.JSONEncoder(check_circular=False).encode
# Unsigned integer texts up to this many digits are their own JSON text (no leading zero).
_PLAIN_INT_DIGITS = 18
_CONTROL = bytes(range(32)) + b"\x7f"      # the ASCII characters that are not printable


def _printable_ascii(text: str) -> bool:
    """``text.isascii() and text.isprintable()``, in a few C passes (isprintable looks every
    character up in the Unicode tables: the largest cost of a plain update's JSON)."""
    return text.isascii() and len(text.encode("ascii").translate(None, _CONTROL)) == len(text)


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

    __slots__ = ("_map", "_names", "_plain", "_values", "_keys", "_texts")

    def __init__(self, attribute_map: AttributeMap = ()) -> None:
        self._map: Dict[str, str] = dict(attribute_map)   # lower-case attribute → field
        self._names: Dict[str, str] = {}       # attribute name → the monitor's field
        # The same for the names whose field needs no care (not id, condorid or submitted)
        self._plain: Dict[str, str] = {}
        self._values: Dict[str, object] = {}   # value text (≤ _MEMO_TEXT_MAX) → JSON value
        # For entry_texts: plain attribute name → '"<field>":'; value text → JSON text
        self._keys: Dict[str, str] = {}
        self._texts: Dict[str, str] = {}

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

    def entry_texts(self, entries: Sequence[object]) -> Tuple[List[object], int]:
        """``entry_objects`` as JSON text where it can: the fast twin of the flusher's bodies.

        Each PlainUpdate's piece is the JSON text of its ``fields_object``, exactly as the
        flusher's encoder writes that object inside an array, built from the fields without a
        dict or an encoder call: a printable ASCII job id and a plain integer or string
        literal are their own JSON text, names and other values are worked out once.
        Where that is not sure, the piece is ``fields_object``'s dict (or None, as
        ``entry_objects``); anything else is None. ``bodies.encode_pieces`` joins them.
        tests/test_coalesce_fast.py holds it to ``entry_objects`` + ``encode_objects``.
        """
        pieces: List[object] = []
        append = pieces.append
        idents: List[str] = []            # the quoted job ids, checked together below
        ident = idents.append
        keys = self._keys
        texts = self._texts
        for fields in entries:
            piece: object = None
            if type(fields) is tuple:
                ident(fields[1])
                if len(fields) == 4:
                    # One attribute, the usual live change, inline.
                    key = keys.get(fields[2]) or self._key_text(fields[2])
                    value = fields[3]
                    if (value.isdigit() and value.isascii() and len(value) <= _PLAIN_INT_DIGITS
                            and (value[0] != "0" or len(value) == 1)):
                        text = value
                    else:
                        text = texts.get(value) or self._value_text(value)
                    if key is not None and text is not None:
                        piece = '{"id":%s,%s%s}' % (fields[1], key, text)
                elif len(fields) == 6:
                    # Two attributes, as inline; two names for one key go to fields_object.
                    key = keys.get(fields[2]) or self._key_text(fields[2])
                    other = keys.get(fields[4]) or self._key_text(fields[4])
                    text = texts.get(fields[3]) or self._value_text(fields[3])
                    second = texts.get(fields[5]) or self._value_text(fields[5])
                    if (key is not None and other is not None and key != other
                            and text is not None and second is not None):
                        piece = '{"id":%s,%s%s,%s%s}' % (fields[1], key, text, other, second)
                else:
                    piece = self._fields_text(fields)
                if piece is None:
                    piece = self.fields_object(fields)
            append(piece)
        # A piece is JSON only if its job id is printable ASCII (names and values are made
        # so): one check over all ids; where it fails, each piece is looked at.
        if not _printable_ascii("".join(idents)):
            for index, piece in enumerate(pieces):
                if piece.__class__ is str and not _printable_ascii(piece):   # type: ignore
                    pieces[index] = self.fields_object(entries[index])  # type: ignore
        return pieces, pieces.count(None)

    def _fields_text(self, fields: Sequence[str]) -> Optional[str]:
        """The JSON text of a PlainUpdate of any length, or None (ask ``fields_object``)."""
        parts = ['{"id":', fields[1]]
        seen = set()
        for index in range(2, len(fields), 2):
            key = self._keys.get(fields[index]) or self._key_text(fields[index])
            text = self._texts.get(fields[index + 1]) or self._value_text(fields[index + 1])
            if key is None or text is None or key in seen:
                return None     # two names for one key: fields_object decides
            seen.add(key)
            parts += (",", key, text)
        parts.append("}")
        return "".join(parts)

    def _key_text(self, attr: str) -> Optional[str]:
        """'"<field>":' for a name ``fields_object`` sends as it is (remembered), else None."""
        name = self._plain.get(attr) or self._plain_name(attr)
        if name is None:
            return None
        key = self._keys[attr] = _JSON_TEXT(name) + ":"
        return key

    def _value_text(self, text: str) -> Optional[str]:
        """The JSON text of ``to_json_value(text)`` (short ones remembered); None if it fails."""
        if (len(text) >= 2 and text[0] == '"' and text[-1] == '"' and "\\" not in text
                and text.count('"') == 2 and text.isascii() and text.isprintable()):
            json_text = text            # a plain string literal: the same characters in JSON
        else:
            try:
                json_text = _JSON_TEXT(to_json_value(text))
            except (ValueError, TypeError):
                return None
        if len(text) <= _MEMO_TEXT_MAX:
            self._texts[text] = json_text
        return json_text

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
