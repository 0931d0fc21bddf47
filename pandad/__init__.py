"""pandad: HTCondor's PanDA monitor feed, standard library only.

Shared by pandad and panda_plugin."""

__version__ = "0.1.0"
