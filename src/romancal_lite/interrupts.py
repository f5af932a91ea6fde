"""Ctrl-C and SIGTERM: held back around the moments files change, and never lost.

* `signals_held` holds SIGINT and SIGTERM back inside a block (a temporary file
  being made, outputs being renamed into place) and acts on them when it ends;
  `remove_tree` removes scratch directories so (never left half removed).
* `raising_signals` is how the command line handles them: inside its block each
  signal raises its exception (``KeyboardInterrupt`` for Ctrl-C) *and is
  remembered*. Python drops an exception raised where it cannot propagate (inside
  ``__del__``, a weakref callback or a garbage collection: it prints "Exception
  ignored" with a traceback and goes on), so a Ctrl-C landing there would be lost
  and the run would go on to write its outputs. `raise_lost_signal` raises a
  remembered one again; it is called at checkpoints that are reached only if no
  such exception is on its way (each step's end, before outputs are renamed into
  place, the batch's wait loop). The dropped exception is not printed: it is not
  lost.

Only the main thread runs Python signal handlers; nothing here changes the
handlers of a program that does not ask for it (a library call sees Python's own,
and `raise_lost_signal` then never raises).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["raise_lost_signal", "raising_signals", "remove_tree", "signals_held"]

_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM) if s is not None)

#: (exception maker, signal number, exception raised) of each signal handled inside
#: `raising_signals`.
_RAISED: list[tuple[Callable[[int], BaseException], int, BaseException]] = []


@contextlib.contextmanager
def raising_signals(makers: Mapping[int, Callable[[int], BaseException]]) -> Iterator[None]:
    """Inside the block, each signal raises its exception and is never lost.

    A signal's exception dropped by Python (raised inside ``__del__``...) is not
    printed, and `raise_lost_signal` raises it again. The previous handlers are
    restored at the end. Outside the main thread the block runs unchanged.

    Parameters
    ----------
    makers : mapping
        Signal number -> callable making the exception from the signal number.

    Yields
    ------
    None
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _RAISED.clear()
    previous: dict[int, Any] = {}
    hook = sys.unraisablehook

    def quiet(unraisable: Any) -> None:
        if not any(unraisable.exc_value is raised for *_, raised in _RAISED):
            hook(unraisable)

    sys.unraisablehook = quiet
    try:
        for signum, make in makers.items():
            previous[signum] = signal.signal(signum, _raising_handler(make))
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = hook
        _RAISED.clear()


def _raising_handler(make: Callable[[int], BaseException]) -> Callable[[int, Any], None]:
    def handler(signum: int, frame: Any) -> None:
        exc = make(signum)
        _RAISED.append((make, signum, exc))
        raise exc

    return handler


def raise_lost_signal() -> None:
    """Raise again the exception of a signal handled inside `raising_signals`, if any.

    Called at checkpoints that are reached only when no such exception is on its
    way: one remembered there was dropped (see the module's description).
    """
    if _RAISED:
        make, signum, _ = _RAISED[0]
        raise make(signum)


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


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a directory tree (scratch files), with SIGINT and SIGTERM held back.

    A Ctrl-C that arrives while the tree is removed is acted on once it is gone, so
    an interruption never leaves scratch files behind. Errors are ignored (a tree
    already gone, or removed by another process).

    Parameters
    ----------
    path : str or path-like
        The directory.
    """
    with signals_held():
        shutil.rmtree(path, ignore_errors=True)
