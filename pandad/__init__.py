"""pandad: HTCondor's PanDA monitor feed, standard library only."""

__version__ = "0.1.0"
