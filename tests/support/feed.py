"""A real job_queue.log in a test's directory, a follower on it, and the records it wrote."""

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from pandad import wire
from pandad.stats import Statistics
from schedd_plugin.callbacks import PandaPlugin
from schedd_plugin.follower import Follower
from schedd_plugin.mirror import Mirror
from schedd_plugin.state import Position

# (verb, job id, condor id, {name: value}) of one decoded record.
Decoded = Tuple[str, str, Optional[str], Dict[str, str]]


class Feed:
    """``initial`` is written as the log (None: leave the file as it is); ``records()`` polls
    once and returns what the plug-in wrote since the last call, decoded."""

    def __init__(self, tmp_path: Path, initial: Optional[bytes] = b"",
                 position: Optional[Position] = None,
                 schedd_name: str = "ap1.example.org") -> None:
        self.path = tmp_path / "job_queue.log"
        if initial is not None:
            self.path.write_bytes(initial)
        self.stats = Statistics()
        self.mirror = Mirror()
        self.out: List[bytes] = []
        self.plugin = PandaPlugin(self.mirror, self.out.append, None, schedd_name)
        self.follower = Follower(str(self.path), self.plugin, self.mirror, position,
                                 stats=self.stats)

    def append(self, data: bytes) -> None:
        with open(self.path, "ab") as f:
            f.write(data)

    def rotate(self, data: bytes) -> None:
        """Rotate as the schedd does: write job_queue.log.tmp, rename it over the log."""
        tmp = self.path.with_name("job_queue.log.tmp")
        tmp.write_bytes(data)
        os.rename(tmp, self.path)

    def records(self) -> List[Decoded]:
        self.follower.poll()
        decoded = [wire.decode(r.rstrip(b"\n")) for r in self.out]
        self.out.clear()
        return [(r.verb, r.job_id, r.condor_id, dict(r.attrs)) for r in decoded]

    def count(self, name: str) -> float:
        return self.stats.get(name)
