"""Selection through crds against small generated caches (no network)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import asdf
import pytest

from romancal_lite.errors import ReferenceFileError
from romancal_lite.references import (
    CONTEXT,
    REFTYPES,
    active_cache,
    crds_parameters,
    generate_cache,
    get_reference_file,
    get_reference_files,
    open_reference_tree,
    use_builtin_cache,
)
from romancal_lite.references._crds import USER_CRDS_VARS

SHAPE = (32, 32)
EARLY, LATE = "2020-01-01T00:00:00", "2027-01-01T00:00:00"


def params(detector="WFI01", element="F158", start="2026-05-01T00:00:00.000"):
    return {
        "roman.meta.instrument.name": "WFI",
        "roman.meta.instrument.detector": detector,
        "roman.meta.instrument.optical_element": element,
        "roman.meta.exposure.type": "WFI_IMAGE",
        "roman.meta.exposure.start_time": start,
    }


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("lite_crds")
    return generate_cache(root, full_shape=SHAPE, useafters=(EARLY, LATE))


@pytest.fixture(autouse=True)
def builtin(monkeypatch, small_cache):
    for name in (*USER_CRDS_VARS, "CRDS_MODE", "CRDS_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    use_builtin_cache(small_cache)
    yield small_cache
    use_builtin_cache(None)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def meta_of(path):
    with open_reference_tree(path) as node:
        meta = node["meta"]
        return {
            "reftype": meta["reftype"],
            "detector": meta["instrument"]["detector"],
            "element": meta["instrument"].get("optical_element"),
            "useafter": meta["useafter"].isot,
            "tag": node.tag,
        }


def test_mappings_only_until_first_use(tmp_path):
    cache = generate_cache(tmp_path, full_shape=SHAPE)
    names = sorted(p.name for p in cache.mapping_dir.iterdir())
    assert names[0] == CONTEXT
    assert "roman_lite_wfi_0001.imap" in names
    assert {f"roman_lite_wfi_{r}_0001.rmap" for r in REFTYPES} <= set(names)
    assert list(cache.reference_dir.iterdir()) == []
    # every detector is listed, but nothing is written until selected; DARKDECAYSIGNAL
    # is one file for all detectors
    per_detector = {info["detector"] for info in cache.files.values()
                    if info["reftype"] != "darkdecaysignal"}
    assert len(per_detector) == 18
    assert [info["detector"] for info in cache.files.values()
            if info["reftype"] == "darkdecaysignal"] == ["ALL"]
    use_builtin_cache(cache)
    path = get_reference_file(params("WFI03"), "gain")
    assert [p.name for p in cache.reference_dir.iterdir()] == [Path(path).name]


def test_per_detector(no_network):
    a = get_reference_file(params("WFI01"), "mask")
    b = get_reference_file(params("WFI07"), "mask")
    assert a != b
    assert meta_of(a)["detector"] == "WFI01"
    assert meta_of(b)["detector"] == "WFI07"
    assert meta_of(b)["tag"].endswith("/reference_files/mask-2.0.0")


def test_per_date(no_network):
    before = get_reference_file(params(start="2026-12-31T23:59:59.000"), "gain")
    after = get_reference_file(params(start="2027-01-01T00:00:01.000"), "gain")
    assert before != after
    assert meta_of(before)["useafter"].startswith(EARLY[:10])
    assert meta_of(after)["useafter"].startswith(LATE[:10])


def test_per_optical_element():
    f158 = get_reference_file(params(element="F158"), "flat")
    f062 = get_reference_file(params(element="F062"), "flat")
    assert f158 != f062
    assert meta_of(f062)["element"] == "F062"
    d = get_reference_file(params(element="GRISM"), "distortion")
    assert meta_of(d)["element"] == "GRISM"


def test_all_pipeline_types(no_network):
    types = list(REFTYPES) + ["darkdecaysignal", "pars-dqinitstep"]
    paths = get_reference_files(params("WFI18"), types)
    for reftype in REFTYPES:
        assert Path(paths[reftype]).is_file()
        assert meta_of(paths[reftype])["reftype"] == reftype.upper()
    assert "integralnonlinearity" in REFTYPES
    assert paths["pars-dqinitstep"] == "N/A"


def test_environment_restored():
    get_reference_file(params(), "readnoise")
    for name in ("CRDS_PATH", "CRDS_MODE", "CRDS_CONTEXT", "CRDS_SERVER_URL"):
        assert name not in os.environ
    import crds.client.api

    assert "serverless" in crds.client.api.get_crds_server()


def test_overrides_win(tmp_path):
    own = tmp_path / "my_gain.asdf"
    own.write_bytes(b"anything")
    assert get_reference_file(params(), "gain", override=own) == str(own)
    got = get_reference_files(params(), ["gain", "mask"], {"gain": str(own), "mask": None})
    assert got["gain"] == str(own)
    assert "roman_lite_wfi_mask_wfi01" in got["mask"]
    assert get_reference_file(params(), "dark", override="N/A") == "N/A"


def test_override_missing(tmp_path):
    with pytest.raises(ReferenceFileError, match=r"override_flat: .*nope\.asdf: no such file"):
        get_reference_file(params(), "flat", override=tmp_path / "nope.asdf")


def test_unknown_detector_is_reference_error():
    with pytest.raises(ReferenceFileError, match="no MASK reference selected") as info:
        get_reference_file(params("WFI19"), "mask")
    assert "\n" not in str(info.value)


def test_user_crds_left_alone(monkeypatch, tmp_path):
    user = generate_cache(tmp_path / "user", full_shape=SHAPE, useafters=("2021-06-01T00:00:00",))
    user.materialize(["gain"])
    monkeypatch.setenv("CRDS_PATH", str(user.root))
    monkeypatch.setenv("CRDS_MODE", "local")
    monkeypatch.setenv("CRDS_CONTEXT", CONTEXT)
    assert active_cache() is None
    path = get_reference_file(params("WFI05"), "gain")
    assert Path(path).parent == user.reference_dir
    assert meta_of(path)["useafter"].startswith("2021-06-01")
    assert os.environ["CRDS_PATH"] == str(user.root)
    assert os.environ["CRDS_MODE"] == "local"
    assert os.environ["CRDS_CONTEXT"] == CONTEXT
    # the user's cache is not ours: a selected but absent file is an error, not generated
    with pytest.raises(ReferenceFileError) as info:
        get_reference_file(params("WFI05"), "mask")
    assert "MASK" in str(info.value)
    assert not any("mask" in p.name for p in user.reference_dir.iterdir())
    monkeypatch.delenv("CRDS_PATH")
    monkeypatch.delenv("CRDS_MODE")
    monkeypatch.delenv("CRDS_CONTEXT")
    assert "roman_lite_wfi_gain_wfi05_0001" in get_reference_file(params("WFI05"), "gain")


def test_user_crds_path_without_config(monkeypatch, tmp_path):
    monkeypatch.setenv("CRDS_PATH", str(tmp_path / "empty"))
    with pytest.raises(ReferenceFileError, match="CRDS"):
        get_reference_file(params(), "gain")


def test_default_cache_dir_env(monkeypatch, tmp_path):
    from romancal_lite.references import default_cache_dir

    monkeypatch.setenv("ROMANCAL_LITE_CRDS_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ROMANCAL_LITE_CRDS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name == "posix" and not os.uname().sysname == "Darwin":
        assert default_cache_dir() == tmp_path / "xdg" / "romancal_lite" / "crds"


def test_default_cache_is_generated_lazily(monkeypatch, tmp_path):
    monkeypatch.setenv("ROMANCAL_LITE_CRDS_CACHE", str(tmp_path / "default"))
    use_builtin_cache(None)
    cache = active_cache()
    assert cache.root == tmp_path / "default"
    assert cache.full_shape == (4096, 4096)
    assert (cache.mapping_dir / CONTEXT).is_file()
    assert list(cache.reference_dir.iterdir()) == []  # nothing full-size written


def test_crds_parameters_normalised():
    from astropy.time import Time

    class Model:
        def get_crds_parameters(self):
            return {
                "roman.meta.instrument.detector": "WFI02",
                "roman.meta.exposure.start_time": "2026-01-01T00:00:00.000Z",
                "roman.meta.exposure.nresultants": 6,
                "roman.meta.wcs": object(),
            }

    got = crds_parameters(Model())
    assert got["roman.meta.exposure.start_time"] == "2026-01-01T00:00:00.000"
    assert got["roman.meta.instrument.name"] == "WFI"
    assert "roman.meta.wcs" not in got
    nested = {"roman": {"meta": {"exposure": {"start_time": Time("2026-02-03T04:05:06")}}}}
    assert crds_parameters(nested)["roman.meta.exposure.start_time"] == "2026-02-03T04:05:06.000"
    with pytest.raises(ReferenceFileError):
        crds_parameters(42)


def test_generated_file_is_plain_asdf(builtin):
    path = get_reference_file(params(), "saturation")
    with asdf.open(path) as af:
        assert af.tree["roman"]["meta"]["reftype"] == "SATURATION"


def test_builtin_cache_context_restores_selection_and_environment(tmp_path, monkeypatch,
                                                                   small_cache):
    from romancal_lite.references import active_cache, builtin_cache

    other = generate_cache(tmp_path / "other", full_shape=SHAPE)
    monkeypatch.setenv("CRDS_PATH", str(tmp_path / "user"))
    assert active_cache() is None  # the user's CRDS wins
    with builtin_cache(other, hide_user_crds=True) as cache:
        assert cache.root == other.root
        assert "CRDS_PATH" not in os.environ
    assert os.environ["CRDS_PATH"] == str(tmp_path / "user")
    monkeypatch.delenv("CRDS_PATH")
    assert active_cache().root == small_cache.root  # the selection before the block
    with builtin_cache(other):
        assert active_cache().root == other.root
    assert active_cache().root == small_cache.root
