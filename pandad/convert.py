"""Job commands → the PanDA monitor's JSON objects (DESIGN §4 "JSON").

Attribute names are mapped as HTCondor's C++ plug-in mapped them; values go through
``pandad.classad.to_json_value``. Callers build request bodies with ``json.dumps`` on these
dicts, never by joining strings.
"""

import re
import time
from typing import Dict, Mapping, Optional

from pandad.classad import to_json_value

__all__ = ["json_name", "job_object", "condor_id_from_job_id", "JSON_NAMES"]

# ClassAd attribute (lower case) → the monitor's field, as the C++ plug-in sent them.
JSON_NAMES: Dict[str, str] = {
    "cmd": "cmd",
    "err": "p_stderr",
    "jobdescription": "p_description",
    "jobprio": "pri",
    "out": "p_stdout",
    "owner": "owner",
    "qdate": "submitted",
    "remotewallclocktime": "run_time",
    "residentsetsize": "size",
}

# Keys the object itself owns; an attribute of the same name must not overwrite them.
_RESERVED = frozenset({"id", "condorid"})
_CONDOR_ID_RE = re.compile(r"[0-9]+\.[0-9]+\Z")


def json_name(attr: str) -> str:
    """The monitor's name for ClassAd attribute ``attr`` (case-insensitive), else ``attr``."""
    return JSON_NAMES.get(attr.lower(), attr)


def _local_time(value: object) -> object:
    """An epoch number as local ``YYYY-MM-DD HH:MM:SS``; anything else unchanged."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    except (OverflowError, OSError, ValueError):
        return value


def job_object(job_id: str, condor_id: Optional[str], attrs: Mapping[str, str]) -> dict:
    """``{"id": job_id, ["condorid": condor_id,] <json_name(attr)>: <JSON value>, ...}``.

    ``QDate`` becomes ``submitted`` in local time. An attribute literally named ``id`` or
    ``condorid`` is left out: it would overwrite the job's identity.
    """
    obj: dict = {"id": job_id}
    if condor_id is not None:
        obj["condorid"] = condor_id
    for attr, text in attrs.items():
        name = JSON_NAMES.get(attr.lower(), attr)
        if name in _RESERVED:
            continue
        value = to_json_value(text)
        if name == "submitted":
            value = _local_time(value)
        obj[name] = value
    return obj


def condor_id_from_job_id(job_id: str) -> Optional[str]:
    """``"C.P"`` from a GlobalJobId ``schedd#C.P#epoch``; None if it does not have that form."""
    parts = job_id.rsplit("#", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    cluster_proc = parts[1]
    return cluster_proc if _CONDOR_ID_RE.match(cluster_proc) else None
