"""Ctrl-C and SIGTERM: held back around the moments files change, and never lost.

* `signals_held` holds SIGINT and SIGTERM back inside a block (a temporary file
  being made, outputs being renamed into place) and acts on them when it ends.
* `raising_handler` makes the command line's handlers: each raises its exception
  (``KeyboardInterrupt`` for Ctrl-C) *and remembers it*. Python drops an exception
  raised where it cannot propagate (inside ``__del__``, a weakref callback or a
  garbage collection: it prints "Exception ignored" and goes on), so a Ctrl-C that
  lands there would be lost and the run would go on to write its outputs.
  `raise_lost_signal` raises a remembered one again; it is called where the work
  reaches a checkpoint (each step's end, before outputs are renamed into place),
  which is reached only if no such exception is on its way.
* `forget_signals` clears the memory (the command line's start and end).

Only the main thread runs Python signal handlers; nothing here changes the
handlers of a program that does not install them (a library call sees Python's own).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["forget_signals", "raise_lost_signal", "raising_handler", "signals_held"]

_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM) if s is not None)

#: (exception maker, signal number) of each signal `raising_handler` acted on since
#: `forget_signals`.
_RAISED: list[tuple[Callable[[int], BaseException], int]] = []


def raising_handler(make: Callable[[int], BaseException]) -> Callable[[int, Any], None]:
    """Return a signal handler that raises ``make(signum)`` and remembers it.

    Parameters
    ----------
    make : callable
        Called with the signal number; returns the exception to raise.

    Returns
    -------
    callable
        The handler, for `signal.signal`.
    """

    def handler(signum: int, frame: Any) -> None:
        _RAISED.append((make, signum))
        raise make(signum)

    return handler


def raise_lost_signal() -> None:
    """Raise again the exception of a signal handled since `forget_signals`, if any.

    Called at checkpoints that are reached only when no such exception is on its
    way: one remembered there was lost (see the module's description).
    """
    if _RAISED:
        make, signum = _RAISED[0]
        raise make(signum)


def forget_signals() -> None:
    """Forget the signals handled so far (`raise_lost_signal` raises nothing)."""
    _RAISED.clear()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back inside the block (acted on when it ends).

    Their Python handlers are swapped for one that only records the signal; on exit
    the previous handlers are restored and the first signal received is handed to its
    handler (``KeyboardInterrupt`` for SIGINT, the default action...). A signal mask
    would not do: another thread (OpenMP, thread pools) would take the signal and
    Python would still raise in the main thread. Only in the main thread (where Python
    runs signal handlers); elsewhere the block runs unchanged.

    Yields
    ------
    None
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        received.append(signum)

    previous: dict[int, Any] = {}
    try:
        for signum in _SIGNALS:
            previous[signum] = signal.signal(signum, hold)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signum = received[0]
            handler = previous.get(signum, signal.SIG_DFL)
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)
