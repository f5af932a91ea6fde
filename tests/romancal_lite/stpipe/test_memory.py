"""The page policy of a running step (`romancal_lite.stpipe.memory`)."""

from __future__ import annotations

import pytest

from romancal_lite.stpipe import Step
from romancal_lite.stpipe.memory import _madvise_switch, ordinary_pages

SWITCH = _madvise_switch()
needs_switch = pytest.mark.skipif(SWITCH is None, reason="NumPy has no huge-page switch")


class _Probe(Step):
    """Records NumPy's huge-page advice while it runs."""

    class_alias = "memory_probe"
    huge_pages = False

    def process(self, model):
        self.seen = bool(SWITCH[0]())
        return model


@pytest.fixture
def advice_on(monkeypatch):
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    getter, setter = SWITCH
    before = getter()
    setter(True)
    yield
    setter(before)


@needs_switch
def test_ordinary_pages_switches_off_and_restores(advice_on):
    getter, _ = SWITCH
    with ordinary_pages() as switched:
        assert switched
        assert not getter()
    assert getter()


@needs_switch
def test_ordinary_pages_restores_after_an_error(advice_on):
    getter, _ = SWITCH
    with pytest.raises(RuntimeError), ordinary_pages():
        raise RuntimeError("boom")
    assert getter()


@needs_switch
def test_users_environment_choice_is_kept(advice_on, monkeypatch):
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    getter, _ = SWITCH
    with ordinary_pages() as switched:
        assert not switched
        assert getter()


class _HugeProbe(_Probe):
    class_alias = "memory_probe_huge"
    huge_pages = True


@needs_switch
def test_a_step_declining_huge_pages_runs_with_ordinary_pages(advice_on):
    probe = _Probe()
    assert probe.run(object()) is not None
    assert probe.seen is False
    assert SWITCH[0]()
    other = _HugeProbe()
    other.run(object())
    assert other.seen is True


def test_source_catalog_declines_huge_pages():
    from romancal_lite.steps.source_catalog import SourceCatalogStep

    assert SourceCatalogStep.huge_pages is False


class _Saved:
    """A result whose ``save`` records NumPy's huge-page advice."""

    def save(self, path):
        self.seen = bool(SWITCH[0]())


@needs_switch
def test_saving_uses_ordinary_pages(advice_on, tmp_path):
    # the arrays made only to be written (float16 casts) are filled once and dropped
    result = _Saved()
    step = _HugeProbe()
    step.save(result, tmp_path / "out.asdf")
    assert result.seen is False
    assert SWITCH[0]()  # restored
