"""Group parsed job_queue.log operations into what is replayed: transactions and bare ops (pure).

The schedd writes a transaction as ``105``, its operations, ``106``; it is applied only when
its ``106`` is read (``docs/job-queue-log.md`` §8).  An operation outside a transaction
is applied at once.  A transaction whose ``106`` is not written yet is kept open across
:meth:`TransactionGrouper.feed` calls (the next poll may bring its end); whoever reads a new
file calls :meth:`TransactionGrouper.drop` (the schedd drops an unterminated one too).

Inside a transaction a nested ``105`` and a ``107`` are ignored, as the schedd ignores them
(it only warns); a nested ``105`` is reported so the follower can say so.  Both
:func:`schedd_plugin.logread.load_log` and the live :class:`schedd_plugin.follower.Follower`
group through this class.
"""

from typing import List, Optional, Sequence, Tuple, Union

from schedd_plugin.logparse import BEGIN_TRANSACTION, END_TRANSACTION, LogOp

__all__ = ["TransactionGrouper", "Unit"]

# What feed gives out, in log order: a list is a committed transaction's ops, a tuple a bare
# op (101-104), an int the index in the fed ops of a nested 105 (ignored).
Unit = Union[List[LogOp], LogOp, int]


class TransactionGrouper:
    """Feed parsed ops; get committed transactions and bare ops out (see the module docstring)."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        # The ops of the transaction whose 106 is not read yet (None: none is open).
        self.open: Optional[List[LogOp]] = None

    def feed(self, ops: Sequence[LogOp], stop_at_begin: bool = False) -> Tuple[List[Unit], int]:
        """``(units, committed)``: what ``ops`` complete, and how many of ``ops`` lead up to
        the last point where no transaction is open (0: none; the position may advance past
        exactly those).

        With ``stop_at_begin``, grouping stops before the first ``105`` outside a transaction
        (it and what follows are not consumed; ``committed`` then counts up to it).
        """
        units: List[Unit] = []
        txn = self.open
        committed = 0
        append = units.append
        for index, op in enumerate(ops):
            code = op[0]
            if txn is not None:
                if code < BEGIN_TRANSACTION:
                    txn.append(op)
                elif code == END_TRANSACTION:
                    append(txn)
                    txn = None
                    committed = index + 1
                elif code == BEGIN_TRANSACTION:
                    append(index)
                # a 107 inside a transaction: ignored, as the schedd ignores it
            elif code < BEGIN_TRANSACTION:
                append(op)
                committed = index + 1
            elif code == BEGIN_TRANSACTION:
                if stop_at_begin:
                    break
                txn = []
            else:
                committed = index + 1      # a 106 without its 105, a 107: nothing to apply
        self.open = txn
        return units, committed

    def drop(self) -> int:
        """Forget the open transaction; how many ops it held (0: none was open)."""
        count = len(self.open) if self.open else 0
        self.open = None
        return count
