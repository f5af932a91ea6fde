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


def test_a_ctrl_c_dropped_in_a_del_is_raised_again_and_not_printed(monkeypatch):
    printed = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: printed.append(u.exc_type))
    with interrupts.raising_signals({signal.SIGINT: lambda s: KeyboardInterrupt()}):
        interrupts.raise_lost_signal()  # nothing yet
        _Dropped()
        with pytest.raises(KeyboardInterrupt):
            interrupts.raise_lost_signal()
        with pytest.raises(KeyboardInterrupt):  # at every checkpoint
            interrupts.raise_lost_signal()
        _Other()
        assert printed == [ValueError]  # the Ctrl-C is not printed; other errors are
    interrupts.raise_lost_signal()  # forgotten after the block
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert printed == [ValueError]


class _Other:
    def __del__(self):
        raise ValueError("dropped and printed")


def test_a_signal_raises_what_it_is_given_with_its_number():
    class Terminated(BaseException):
        pass

    with interrupts.raising_signals({signal.SIGTERM: Terminated}):
        with pytest.raises(Terminated) as raised:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        assert raised.value.args == (signal.SIGTERM,)
        with pytest.raises(Terminated):
            interrupts.raise_lost_signal()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_python_s_own_handler_leaves_nothing_to_raise_again():
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    interrupts.raise_lost_signal()  # a library call: nothing remembered


def test_a_ctrl_c_while_a_scratch_tree_is_removed_comes_after_it_is_gone(tmp_path, monkeypatch):
    tree = tmp_path / "scratch"
    (tree / "sub").mkdir(parents=True)
    for name in ("0.f32", "1.f32", "sub/2.f32"):
        (tree / name).write_bytes(b"x")
    rmtree = interrupts.shutil.rmtree

    def interrupted_rmtree(path, ignore_errors=False):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # a handler would have run by now
        rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(interrupts.shutil, "rmtree", interrupted_rmtree)
    with pytest.raises(KeyboardInterrupt):
        interrupts.remove_tree(tree)
    assert not tree.exists()
