"""Conversion and encoding: a batch's commands → JSON array bodies within the size limit (pure).

The flusher's conversion stage. ``bodies`` converts commands to the monitor's objects
(``pandad.convert``), encodes them with one C encoder a body and cuts bodies at
``PANDA_MAX_REQUEST_BYTES``; a command that cannot be converted is handed to a callback, never
raised. With ``fast`` a plain UPDATE's JSON is written as text (``Converter.entry_texts`` +
``encode_pieces``); ``fast=False`` is the readable reference (objects, ``encode_objects``).
"""

import json
from itertools import groupby, islice
from typing import Callable, Iterator, List, Tuple

from pandad.coalesce import Entry, JobCommand, command_of
from pandad.convert import Converter

# One encoder for every body: json.dumps with arguments would build a new one per object.
# No circular-reference check: the objects are convert's flat dicts of str, int, float, bool
# and None, which cannot hold a cycle, and the check costs a dict insert and delete per
# object (~0.1 µs of the ~0.8 µs an e2e object takes to encode).
_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)
# A body is aimed at this share of max_request_bytes: the objects' sizes are estimated from
# the previous body, and an estimate a little short saves encoding a body twice.
BODY_FILL = 0.9


def encode_objects(objects: List[dict]) -> bytes:
    """A JSON array of ``objects``, encoded at once (one C encoder for the whole list).

    ``ensure_ascii`` makes the text ASCII, so its length is the body's length in bytes. The
    objects come from ``convert`` (str, int, finite float, bool, None values), which every
    JSON encoder takes, so this does not fail on input.
    """
    return _JSON.encode(objects).encode("ascii")


def encode_pieces(pieces: List[object]) -> bytes:
    """``encode_objects`` for a list that mixes objects with objects' JSON texts
    (``Converter.entry_texts``): texts go in as they are, each run of objects is encoded at
    once, so the body is byte for byte the one ``encode_objects`` makes of the objects."""
    # Runs of texts and runs of objects, grouped in C (texts are nearly all of them).
    out = [",".join(run) if kind is str else _JSON.encode(list(run))[1:-1]
           for kind, run in groupby(pieces, type)]
    return ("[" + ",".join(out) + "]").encode("ascii")


def bodies(commands: List[Entry], converter: Converter, with_condor_id: bool, max_bytes: int,
           fast: bool, unconvertible: Callable[[JobCommand, Exception], None]
           ) -> Iterator[Tuple[List[Entry], bytes]]:
    """(commands, JSON array body) within ``max_bytes``, in order; ``condorid`` only
    ``with_condor_id`` (POST). A command convert refuses goes to ``unconvertible``.

    A list of objects is encoded at once; how many go in a body is estimated from the
    bytes per object so far, and a body over the limit is cut to fit and encoded again.
    An object larger than the limit on its own is sent alone (the monitor decides).
    """
    job_object = converter.job_object
    per_object = 100.0                       # bytes per encoded object, learnt as we go
    # The commands ready and their objects, side by side (no tuple per command).
    ready: List[Entry] = []
    objects: List[object] = []              # dicts, or their JSON texts when fast
    encode = encode_pieces if fast else encode_objects
    pending = iter(commands)
    while True:
        want = max(1, int(max_bytes * BODY_FILL / per_object))
        while len(ready) < want:
            chunk = list(islice(pending, want - len(ready)))
            if not chunk:
                break
            # PlainUpdates convert from their fields in one loop (no call per entry); a
            # JobCommand, or a PlainUpdate that needs job_object's care, from its attrs.
            converted, missing = (converter.entry_texts(chunk) if fast else
                                  converter.entry_objects(chunk))
            if missing:
                refused = False
                for index, entry in enumerate(chunk):
                    if converted[index] is not None:
                        continue
                    command = command_of(entry)
                    try:
                        converted[index] = job_object(
                            command.job_id, command.condor_id if with_condor_id else None,
                            command.attrs.values())
                    except (ValueError, TypeError) as error:
                        unconvertible(command, error)
                        refused = True
                if refused:
                    chunk = [entry for entry, obj in zip(chunk, converted) if obj is not None]
                    converted = [obj for obj in converted if obj is not None]
            ready += chunk
            objects += converted
        if not ready:
            return
        count = min(want, len(ready))
        body = encode(objects[:count])                  # type: ignore[arg-type]
        while len(body) > max_bytes and count > 1:
            count = max(1, min(count - 1, int(count * max_bytes * BODY_FILL / len(body))))
            body = encode(objects[:count])              # type: ignore[arg-type]
        per_object = len(body) / count
        yield ready[:count], body
        del ready[:count], objects[:count]
