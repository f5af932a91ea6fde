"""asn_from_list and ``romancal-lite asn``: romancal's association format."""

import json
import os

import pytest

from romancal_lite.associations import asn_from_list, catalog_name, load_asn
from romancal_lite.cli import main
from romancal_lite.errors import ConfigError, InputFileError


@pytest.fixture
def files(tmp_path):
    names = ["r1_0001_wfi01_cal.asdf", "r1_0001_wfi02_cal.asdf", "r1_0002_wfi01_cal.asdf"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "r1_0001_wfi02_cat.parquet").write_bytes(b"x")
    return [tmp_path / n for n in names]


def test_catalog_name():
    assert catalog_name("d/x_wfi01_cal.asdf") == "d/x_wfi01_cat.parquet"
    assert catalog_name("x.asdf") == "x_cat.parquet"


def test_same_tree_as_romancal(files, monkeypatch):
    """romancal 1.1's asn_from_list (test-only) writes the same tree from the same files."""
    rc = pytest.importorskip("romancal.associations.asn_from_list")
    monkeypatch.chdir(files[0].parent)
    names = [p.name for p in files]
    for kwargs, ours_kwargs in (
        ({"target": "r274dp63x31y81"}, {"target": "r274dp63x31y81", "tweakreg_catalogs": False}),
        ({"_tweakreg_catalogs": True}, {"tweakreg_catalogs": True}),
        ({"data_release_id": "r1"}, {"data_release_id": "r1", "tweakreg_catalogs": False}),
    ):
        theirs = json.loads(rc.asn_from_list(names, product_name="mos", **kwargs).dump()[1])
        ours = asn_from_list(names, "mos", **ours_kwargs)
        assert json.dumps(ours) == json.dumps(theirs)  # same keys, same order, same values


def test_catalogs_only_when_present(files):
    tree = asn_from_list(files, "mos")
    members = tree["products"][0]["members"]
    assert ["tweakreg_catalog" in m for m in members] == [False, True, False]
    assert members[1]["tweakreg_catalog"].endswith("r1_0001_wfi02_cat.parquet")


def test_cli_writes_a_loadable_association(files, tmp_path, capsys):
    out = tmp_path / "sub" / "mos_asn.json"
    out.parent.mkdir()
    status = main(["asn", "-o", str(out), "--product-name", "mos", "-t", "r1x2y3",
                   *map(str, files)])  # fmt: skip
    assert status == 0
    tree = json.loads(out.read_text())
    assert tree["target"] == "r1x2y3" and tree["products"][0]["name"] == "mos"
    assert tree["products"][0]["members"][0]["expname"] == os.path.join("..", files[0].name)
    loaded = load_asn(out)
    assert [m.path.resolve() for m in loaded.members] == [p.resolve() for p in files]
    assert loaded.members[1].tweakreg_catalog is not None
    assert "3 members" in capsys.readouterr().out


def test_cli_default_target_is_the_string_none(files, tmp_path):
    out = tmp_path / "a_asn.json"
    assert main(["asn", "-o", str(out), "--product-name", "a", str(files[0])]) == 0
    assert json.loads(out.read_text())["target"] == "None"  # as romancal's CLI


def test_errors(files, tmp_path, capsys):
    with pytest.raises(ConfigError, match="product name"):
        asn_from_list(files, " ")
    with pytest.raises(InputFileError, match="nope_cal.asdf"):
        asn_from_list([tmp_path / "nope_cal.asdf"], "x")
    out = tmp_path / "bad_asn.json"
    assert main(["asn", "-o", str(out), "--product-name", "x", str(tmp_path / "nope.asdf")]) == 1
    assert "nope.asdf" in capsys.readouterr().err
    assert not out.exists()
