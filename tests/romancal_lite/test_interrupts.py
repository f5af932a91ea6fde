"""romancal_lite.interrupts: signals held back around file changes, and never lost."""

import os
import signal
import time

import pytest

from romancal_lite import interrupts


def test_signals_held_delivers_ctrl_c_after_the_block():
    done = []
    with pytest.raises(KeyboardInterrupt), interrupts.signals_held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # a handler would have run by now
        done.append("the block finished")
    assert done == ["the block finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class _Dropped:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs here: Python drops what it raises
            pass


def test_a_ctrl_c_dropped_in_a_del_is_raised_again(monkeypatch):
    dropped = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: dropped.append(u.exc_type))
    previous = signal.signal(
        signal.SIGINT, interrupts.raising_handler(lambda s: KeyboardInterrupt())
    )
    try:
        interrupts.raise_lost_signal()  # nothing yet
        _Dropped()
        assert dropped == [KeyboardInterrupt]
        with pytest.raises(KeyboardInterrupt):
            interrupts.raise_lost_signal()
        with pytest.raises(KeyboardInterrupt):  # until forgotten
            interrupts.raise_lost_signal()
        interrupts.forget_signals()
        interrupts.raise_lost_signal()
    finally:
        signal.signal(signal.SIGINT, previous)
        interrupts.forget_signals()


def test_the_handler_raises_what_it_is_given_with_the_signal_number():
    class Terminated(BaseException):
        pass

    handler = interrupts.raising_handler(Terminated)
    try:
        with pytest.raises(Terminated) as raised:
            handler(signal.SIGTERM, None)
        assert raised.value.args == (signal.SIGTERM,)
        with pytest.raises(Terminated):
            interrupts.raise_lost_signal()
    finally:
        interrupts.forget_signals()


def test_python_s_own_handler_leaves_nothing_to_raise_again():
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    interrupts.raise_lost_signal()  # a library call: nothing remembered
