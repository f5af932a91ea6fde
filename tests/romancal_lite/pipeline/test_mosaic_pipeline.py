"""roman_mos / roman_hlp: association in, _coadd, _cat.parquet, _segm out."""

import sys
from pathlib import Path

import numpy as np
import pytest

from romancal_lite import datamodels
from romancal_lite.associations import asn_from_list, write_asn
from romancal_lite.cli import main
from romancal_lite.pipeline import HighLevelPipeline, MosaicPipeline
from romancal_lite.references import builtin_cache, generate_cache

sys.path.insert(0, str(Path(__file__).parents[1] / "steps"))
import mosaic_data as md  # noqa: E402


@pytest.fixture(scope="module")
def mosaic_set(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mos")
    cache = generate_cache(tmp / "crds", full_shape=(72, 72), reftypes=("epsf", "apcorr"))
    stars = [(a, b, 20 * f) for a, b, f in md.stars_in((64, 64), 8, 3)]
    paths = []
    for e, dither in enumerate([(0.0, 0.0), (5.3, 3.1)], start=1):
        for det in (1, 2):
            model = md.make_image(e, det, dither=dither, stars=stars, sigma=2.0)
            # in DN/s, as roman_elp writes it: flux converts (x 0.5)
            model.data = model.data / np.float32(0.5)
            model.meta.photometry.conversion_megajanskys = 0.5
            model.meta.cal_step.flux = "INCOMPLETE"
            paths.append(model.save(tmp / model.meta.filename))
    asn = tmp / "field_asn.json"
    write_asn(asn_from_list(paths, "field", relative_to=tmp), asn)
    return {"dir": tmp, "asn": asn, "paths": paths, "cache": cache}


def test_products_and_steps(mosaic_set, tmp_path, caplog):
    originals = [p.read_bytes() for p in mosaic_set["paths"]]
    with builtin_cache(mosaic_set["cache"], hide_user_crds=True), caplog.at_level("INFO"):
        mosaic = MosaicPipeline.call(mosaic_set["asn"], save_results=True,
                                     output_dir=str(tmp_path))  # fmt: skip
    assert isinstance(mosaic, datamodels.MosaicModel)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["field_cat.parquet", "field_coadd.asdf", "field_segm.asdf"]
    # flux ran (x 0.5 back to the 0.5 MJy/sr sky); skymatch's relative levels ("match",
    # the lowest sky 0) of these small noisy images are a few 1e-3, and resample
    # subtracts them (skipping skymatch: test_skymatch_levels_reach_the_mosaic)
    assert np.nanmedian(mosaic.data) == pytest.approx(0.5, abs=5e-3)
    assert mosaic.meta.cal_step.flux == "COMPLETE"
    assert mosaic.meta.cal_step.resample == "COMPLETE"
    messages = [r.getMessage() for r in caplog.records]
    for step in MosaicPipeline.step_defs:
        assert any(m.startswith(f"Step {step} done") for m in messages), step
    # the inputs are untouched (flux worked on the library's copies)
    assert [p.read_bytes() for p in mosaic_set["paths"]] == originals
    with datamodels.open(tmp_path / "field_segm.asdf") as segm:
        assert isinstance(segm, datamodels.MosaicSegmentationMapModel)
        assert segm.data.shape == mosaic.data.shape and segm.data.max() >= 1
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "field_cat.parquet")
    assert table.num_rows >= 1
    assert table.schema.metadata[b"roman.meta.model_type"] == b"MosaicSourceCatalogModel"


def test_lz4_inputs_give_the_same_products(mosaic_set, tmp_path):
    """Members with lz4 blocks (as roman_datamodels writes a _cal file; the library
    decompresses each once into its scratch folder) give the products of the same
    members uncompressed, bit for bit; the inputs are untouched."""
    import pyarrow.parquet as pq

    lz4_dir = tmp_path / "lz4"
    lz4_dir.mkdir()
    paths = []
    for path in mosaic_set["paths"]:
        with datamodels.open(path) as model:
            paths.append(model.save(lz4_dir / path.name, all_array_compression="lz4"))
    asn = lz4_dir / "field_asn.json"
    write_asn(asn_from_list(paths, "field", relative_to=lz4_dir), asn)
    originals = [p.read_bytes() for p in paths]
    outputs = {}
    for kind, association in (("plain", mosaic_set["asn"]), ("lz4", asn)):
        outputs[kind] = tmp_path / kind / "out"
        outputs[kind].mkdir(parents=True)
        with builtin_cache(mosaic_set["cache"], hide_user_crds=True):
            MosaicPipeline.call(association, save_results=True,
                                output_dir=str(outputs[kind]))  # fmt: skip
    assert [p.read_bytes() for p in paths] == originals
    for name in ("field_coadd.asdf", "field_segm.asdf"):
        with datamodels.open(outputs["plain"] / name) as a, \
                datamodels.open(outputs["lz4"] / name) as b:  # fmt: skip
            arrays = [k for k in a._node._data if k != "meta"]
            assert "data" in arrays
            for key in arrays:
                np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]),
                                              err_msg=f"{name} {key}")  # fmt: skip
    plain = pq.read_table(outputs["plain"] / "field_cat.parquet")
    lz4 = pq.read_table(outputs["lz4"] / "field_cat.parquet")
    assert plain.column_names == lz4.column_names and plain.num_rows >= 1
    for column in plain.column_names:
        np.testing.assert_array_equal(plain[column].to_numpy(zero_copy_only=False),
                                      lz4[column].to_numpy(zero_copy_only=False),
                                      err_msg=column)  # fmt: skip


def test_skymatch_levels_reach_the_mosaic(mosaic_set, tmp_path):
    """Without skymatch the mosaic keeps the inputs' 0.5 MJy/sr sky; with it, less."""
    with builtin_cache(mosaic_set["cache"], hide_user_crds=True):
        plain = MosaicPipeline.call(mosaic_set["asn"], steps={
            "skymatch": {"skip": True}, "source_catalog": {"skip": True}})
        matched = MosaicPipeline.call(mosaic_set["asn"], steps={
            "source_catalog": {"skip": True}})
    assert np.nanmedian(plain.data) == pytest.approx(0.5, abs=1e-4)
    assert np.nanmedian(matched.data) < np.nanmedian(plain.data) - 1e-4


def test_catalog_libraries_are_imported_while_the_steps_run(mosaic_set, monkeypatch):
    """roman_mos starts importing the catalog's libraries in a background thread as it
    starts (unless source_catalog is skipped), before flux runs."""
    import romancal_lite.pipeline.mosaic_pipeline as mp
    from romancal_lite.steps.source_catalog import catalog

    events = []
    monkeypatch.setattr(mp, "preload_dependencies",
                        lambda names=catalog.DEPENDENCIES: events.append(tuple(names)))
    real_flux = mp.FluxStep.run
    monkeypatch.setattr(mp.FluxStep, "run",
                        lambda self, *a, **k: events.append("flux") or real_flux(self, *a, **k))
    with builtin_cache(mosaic_set["cache"], hide_user_crds=True):
        MosaicPipeline.call(mosaic_set["asn"], steps={"source_catalog": {"skip": True}})
        assert events == ["flux"]
        MosaicPipeline.call(mosaic_set["asn"], steps={"outlier_detection": {"skip": True},
                                                      "resample": {"pixel_scale_ratio": 0.5}})
    assert events[1:] == [catalog.DEPENDENCIES, "flux"]


def test_preload_dependencies_imports_each_module_once(monkeypatch):
    from romancal_lite.steps.source_catalog import catalog

    started = []
    monkeypatch.setattr(catalog, "_preloading", set())
    monkeypatch.setattr(catalog.threading, "Thread", lambda target, args, **kw: started.append(
        args[0]) or type("T", (), {"start": lambda self: None})())
    catalog.preload_dependencies(("json", "csv"))
    catalog.preload_dependencies(("csv", "decimal"))
    catalog.preload_dependencies(("json",))
    assert started == [("json", "csv"), ("decimal",)]


def test_roman_datamodels_reads_the_products(mosaic_set, tmp_path):
    rdm = pytest.importorskip("roman_datamodels.datamodels")
    with builtin_cache(mosaic_set["cache"], hide_user_crds=True):
        HighLevelPipeline.call(mosaic_set["asn"], save_results=True, output_dir=str(tmp_path))
    for name, kind in (("field_coadd.asdf", "MosaicModel"),
                       ("field_segm.asdf", "MosaicSegmentationMapModel")):  # fmt: skip
        with rdm.open(tmp_path / name) as model:
            assert type(model).__name__ == kind
            model.validate()


def test_cli_and_skipping(mosaic_set, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with builtin_cache(mosaic_set["cache"], hide_user_crds=True):
        status = main(["run", "roman_mos", str(mosaic_set["asn"]), "--output-dir", "out",
                       "--steps.source_catalog.skip", "true",
                       "--steps.resample.pixel_scale_ratio", "0.8"])  # fmt: skip
    assert status == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["field_coadd.asdf"]
    with datamodels.open(tmp_path / "out" / "field_coadd.asdf") as mosaic:
        assert mosaic.meta.resample.pixel_scale_ratio == pytest.approx(0.8)


def test_missing_member_is_one_clear_error(mosaic_set, tmp_path, capsys):
    import json

    tree = json.loads(mosaic_set["asn"].read_text())
    tree["products"][0]["members"].append({"expname": "lost_cal.asdf", "exptype": "science"})
    bad = mosaic_set["dir"] / "bad_asn.json"
    bad.write_text(json.dumps(tree))
    status = main(["run", "roman_mos", str(bad), "--output-dir", str(tmp_path / "out")])
    assert status == 1
    err = capsys.readouterr().err
    assert "lost_cal.asdf" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _without_crds(monkeypatch):
    monkeypatch.delenv("CRDS_PATH", raising=False)
    monkeypatch.delenv("CRDS_SERVER_URL", raising=False)


def test_cal_images_of_generated_references_need_no_option(mosaic_set, tmp_path,
                                                           monkeypatch, capsys):  # fmt: skip
    """_cal images calibrated with generated references (their meta.ref_file paths in
    one generated cache, as roman_elp writes them for simulated exposures): roman_mos
    selects source_catalog's references from that cache, without --builtin-references."""
    _without_crds(monkeypatch)
    cache = mosaic_set["cache"]
    used = str(cache.ensure_reference(sorted(cache.files)[0]))
    paths = []
    for path in mosaic_set["paths"]:
        with datamodels.open(path) as model:
            model.load_arrays()
            model.meta["ref_file"] = {"flat": used, "dark": "N/A",
                                      "source": f"built-in references ({cache.root})"}
            paths.append(model.save(tmp_path / path.name))
    asn = tmp_path / "cal_asn.json"
    write_asn(asn_from_list(paths, "field", relative_to=tmp_path), asn)
    status = main(["run", "roman_mos", str(asn), "--output-dir", str(tmp_path / "out")])
    assert status == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "field_cat.parquet", "field_coadd.asdf", "field_segm.asdf"]
    with datamodels.open(tmp_path / "out" / "field_coadd.asdf") as mosaic:
        source = str(mosaic.meta.ref_file.source)
        assert str(cache.root) in source and "calibrated with" in source
        assert str(mosaic.meta.ref_file.apcorr).startswith(str(cache.root))


def test_cal_images_without_references_say_how_to_combine(mosaic_set, tmp_path,
                                                          monkeypatch, capsys):  # fmt: skip
    """No CRDS and no record of generated references: one error naming the first input
    and saying that only source_catalog needs them; skipping it combines them."""
    _without_crds(monkeypatch)
    out = tmp_path / "out"
    status = main(["run", "roman_mos", str(mosaic_set["asn"]), "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert mosaic_set["paths"][0].name in err
    assert "source_catalog (epsf, apcorr)" in err and "--steps.source_catalog.skip true" in err
    assert not out.exists() or not any(out.iterdir())
    status = main(["run", "roman_mos", str(mosaic_set["asn"]), "--output-dir", str(out),
                   "--steps.source_catalog.fit_psf", "false"])  # fmt: skip
    assert status == 1 and "source_catalog (apcorr)" in capsys.readouterr().err
    status = main(["run", "roman_mos", str(mosaic_set["asn"]), "--output-dir", str(out),
                   "--steps.source_catalog.skip", "true"])  # fmt: skip
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["field_coadd.asdf"]


def test_pixel_maps_are_computed_while_skymatch_runs(mosaic_set, monkeypatch, tmp_path):
    """roman_mos computes outlier_detection's pixel maps in a helper thread started
    before skymatch (each member's once, kept for the later steps), not in the steps;
    nothing is started when outlier_detection will not drizzle; the products are the
    same as without the helper."""
    import threading

    from romancal_lite.steps.outlier_detection import outlier_detection_step as ods
    from romancal_lite.steps.resample import pixmap

    calls = []
    real = pixmap.calc_pixmap

    def counted(*args, **kwargs):
        calls.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(pixmap, "calc_pixmap", counted)
    with builtin_cache(mosaic_set["cache"], hide_user_crds=True):
        MosaicPipeline.call(mosaic_set["asn"], output_dir=str(tmp_path / "a"), save_results=True,
                            steps={"source_catalog": {"skip": True}})  # fmt: skip
        assert len(calls) == len(mosaic_set["paths"])
        assert all(name.startswith("outlier-pixmaps") for name in calls), calls
        # without the helper (what the steps compute themselves): the same products
        calls.clear()
        monkeypatch.setattr(ods.OutlierDetectionStep, "start_pixel_maps", lambda self, lib: [])
        MosaicPipeline.call(mosaic_set["asn"], output_dir=str(tmp_path / "b"), save_results=True,
                            steps={"source_catalog": {"skip": True}})  # fmt: skip
        assert len(calls) == len(mosaic_set["paths"]) and "MainThread" in calls
    with datamodels.open(tmp_path / "a" / "field_coadd.asdf") as a, \
            datamodels.open(tmp_path / "b" / "field_coadd.asdf") as b:  # fmt: skip
        for name in ("data", "weight", "err", "context"):
            assert np.array_equal(np.asarray(a[name]), np.asarray(b[name]), equal_nan=True)
    # nothing to start: skipped, without resampling, one exposure
    library = datamodels.ModelLibrary(mosaic_set["asn"])
    assert ods.OutlierDetectionStep(skip=True).start_pixel_maps(library) == []
    assert ods.OutlierDetectionStep(resample_data=False).start_pixel_maps(library) == []
    single = datamodels.ModelLibrary([mosaic_set["paths"][0]])
    assert ods.OutlierDetectionStep().start_pixel_maps(single) == []


def test_pixel_maps_not_started_are_dropped_when_skymatch_fails(mosaic_set, monkeypatch):
    """An error (or Ctrl-C) in skymatch cancels the pixel maps the helper has not
    started: the pipeline ends after the one being computed, not after all of them."""
    import time

    import romancal_lite.pipeline.mosaic_pipeline as mp
    from romancal_lite.steps.resample import pixmap

    calls = []
    real = pixmap.calc_pixmap

    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(0.5)
        return real(*args, **kwargs)

    def failing(self, *args, **kwargs):
        raise RuntimeError("skymatch failed")

    monkeypatch.setattr(pixmap, "calc_pixmap", slow)
    monkeypatch.setattr(mp.SkyMatchStep, "run", failing)
    with builtin_cache(mosaic_set["cache"], hide_user_crds=True), \
            pytest.raises(RuntimeError, match="skymatch failed"):  # fmt: skip
        MosaicPipeline.call(mosaic_set["asn"], steps={"source_catalog": {"skip": True}})
    assert len(calls) == 1 < len(mosaic_set["paths"])
