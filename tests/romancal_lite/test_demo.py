"""The README's main command, ``romancal_lite demo``, at a small detector size."""

import struct

from romancal_lite import cli, datamodels
from romancal_lite.demo import DEMO_NAME


def test_demo_writes_cal_and_png_and_scores(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CRDS_PATH", raising=False)
    monkeypatch.delenv("CRDS_SERVER_URL", raising=False)
    out = tmp_path / "demo"
    argv = ["demo", "--output-dir", str(out), "--shape", "136", "256", "--seed", "3"]
    assert cli.main(argv) == 0
    text = capsys.readouterr()
    assert "cosmic rays flagged" in text.out + text.err
    cal = out / f"{DEMO_NAME}_cal.asdf"
    png = out / f"{DEMO_NAME}_cal.png"
    with datamodels.open(cal) as image:
        assert image.data.shape == (128, 248)
        assert image.meta.cal_step.flat_field == "COMPLETE"
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (248, 128)
    # a second run reuses the simulated input
    assert cli.main(argv) == 0
    assert "reusing" in "".join(capsys.readouterr())


def test_demo_bad_option_exits_nonzero(capsys):
    try:
        status = cli.main(["demo", "--shape", "x"])
    except SystemExit as exc:  # argparse
        status = exc.code
    assert status != 0
