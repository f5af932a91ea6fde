"""Reading romancal association files."""

import json

import pytest

from romancal_lite.associations import is_association, load_asn
from romancal_lite.errors import InputFileError


def _write(path, tree):
    path.write_text(json.dumps(tree) if not isinstance(tree, str) else tree)
    return path


def test_members_resolved_against_the_association_directory(tmp_path):
    sub = tmp_path / "data"
    sub.mkdir()
    for name in ("a_cal.asdf", "b_cal.asdf", "c_cal.asdf"):
        (sub / name).write_bytes(b"x")
    asn = _write(sub / "x_asn.json", {
        "asn_id": "a3001",
        "products": [{"name": "mosaic", "members": [
            {"expname": "a_cal.asdf", "exptype": "science", "group_id": "exp1"},
            {"expname": str(sub / "b_cal.asdf"), "exptype": "SCIENCE"},
            {"expname": "c_cal.asdf", "exptype": "background", "tweakreg_catalog": "c.ecsv"},
        ]}],
    })  # fmt: skip
    loaded = load_asn(asn)
    assert loaded.name == "mosaic" and loaded.asn_id == "a3001"
    assert [m.path for m in loaded.members] == [sub / "a_cal.asdf", sub / "b_cal.asdf",
                                                sub / "c_cal.asdf"]
    assert [m.exptype for m in loaded.members] == ["science", "science", "background"]
    assert loaded.members[0].group_id == "exp1" and loaded.members[1].group_id is None
    assert loaded.members[2].tweakreg_catalog == str(sub / "c.ecsv")
    assert [m.path.name for m in loaded.science()] == ["a_cal.asdf", "b_cal.asdf"]


def test_product_name_defaults_to_the_file_name(tmp_path):
    (tmp_path / "a.asdf").write_bytes(b"x")
    asn = _write(tmp_path / "survey_asn.json",
                 {"products": [{"members": [{"expname": "a.asdf"}]}]})
    assert load_asn(asn).name == "survey"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{ not json", "not a JSON association"),
        ("[1, 2]", "a JSON object is expected"),
        ({"products": []}, "no 'products' list"),
        ({"products": [{"name": "p", "members": []}]}, "no members"),
        ({"products": [{"members": [{"exptype": "science"}]}]}, "expname"),
        ({"products": [{"members": [{"expname": "missing.asdf"}]}]}, "missing.asdf"),
        ({"products": [{"members": ["a.asdf"]}]}, "member 0"),
    ],
)
def test_malformed_associations_are_one_clear_error(tmp_path, content, message):
    asn = _write(tmp_path / "bad_asn.json", content)
    with pytest.raises(InputFileError, match=message) as info:
        load_asn(asn)
    assert "bad_asn.json" in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputFileError, match="nope_asn.json"):
        load_asn(tmp_path / "nope_asn.json")
    (tmp_path / "dir_asn.json").mkdir()
    with pytest.raises(InputFileError, match="dir_asn.json"):
        load_asn(tmp_path / "dir_asn.json")


def test_is_association():
    assert is_association("x_asn.json") and is_association("X.JSON")
    assert not is_association("x_cal.asdf") and not is_association(["x_asn.json"])
