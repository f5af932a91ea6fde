"""The concrete model classes: exposure levels 1/ramp/2 and the reference files.

Array names, dtypes and dimensions follow the RAD 1.1 schemas (``ramp-2.1.0``,
``wfi_image-2.1.0``, ``reference_files/*-2.0.0``) that roman_datamodels 1.1
validates against; the border reference-pixel arrays are described at
seeds/000:678-700.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Self

from ._core import DataModel
from ._meta import (
    default_cal_step,
    default_common_meta,
    default_image_meta,
    default_ramp_meta,
    default_ref_meta,
    image_only_meta,
)

__all__ = [
    "DarkRefModel",
    "DistortionRefModel",
    "FlatRefModel",
    "GainRefModel",
    "ImageModel",
    "InverselinearityRefModel",
    "IpcRefModel",
    "LinearityRefModel",
    "MaskRefModel",
    "MosaicModel",
    "MosaicSegmentationMapModel",
    "PhotomRefModel",
    "PixelareaRefModel",
    "DarkdecaysignalRefModel",
    "RampModel",
    "ReadnoiseRefModel",
    "RefpixRefModel",
    "SaturationRefModel",
    "ScienceRawModel",
    "SegmentationMapModel",
    "WfiWcsModel",
    "SuperbiasRefModel",
]

_BORDER_ARRAYS: dict[str, tuple[str, int]] = {
    "border_ref_pix_left": ("float32", 3),
    "border_ref_pix_right": ("float32", 3),
    "border_ref_pix_top": ("float32", 3),
    "border_ref_pix_bottom": ("float32", 3),
    "dq_border_ref_pix_left": ("uint32", 2),
    "dq_border_ref_pix_right": ("uint32", 2),
    "dq_border_ref_pix_top": ("uint32", 2),
    "dq_border_ref_pix_bottom": ("uint32", 2),
}


class ScienceRawModel(DataModel):
    """Level 1 uncalibrated exposure (``wfi_science_raw``): uint16 ``data`` and ``amp33``."""

    _tag_name = "wfi_science_raw"
    _array_specs: ClassVar[dict[str, tuple[str, int]]] = {
        "data": ("uint16", 3),
        "amp33": ("uint16", 3),
        "resultantdq": ("uint8", 3),
        "reference_read": ("uint16", 2),
        "reference_amp33": ("uint16", 2),
    }
    _required_arrays = ("data", "amp33")

    @classmethod
    def _default_meta(cls) -> dict[str, Any]:
        return default_common_meta(cls.__name__)


class RampModel(DataModel):
    """Ramp (``ramp``): float32 ``data`` [n, y, x], uint32 ``pixeldq``, uint8 ``groupdq``.

    Also holds ``amp33`` and the original border reference pixels
    (``border_ref_pix_*`` float32 [n, ...], ``dq_border_ref_pix_*`` uint32 2-D),
    see seeds/000:678-700.
    """

    _tag_name = "ramp"
    _array_specs: ClassVar[dict[str, tuple[str, int]]] = {
        "data": ("float32", 3),
        "pixeldq": ("uint32", 2),
        "groupdq": ("uint8", 3),
        "amp33": ("uint16", 3),
        **_BORDER_ARRAYS,
        "reset_read": ("uint16", 2),
        "reset_amp33": ("uint16", 2),
    }
    _required_arrays = ("data", "pixeldq", "groupdq", "amp33", *_BORDER_ARRAYS)

    @classmethod
    def _default_meta(cls) -> dict[str, Any]:
        return default_ramp_meta(cls.__name__)

    def _prepare_meta_from(self, other: DataModel) -> None:
        super()._prepare_meta_from(other)
        meta = self._node._data["meta"]
        cal_step = meta.setdefault("cal_step", {})
        for step, status in default_cal_step().items():
            cal_step.setdefault(step, status)


class ImageModel(DataModel):
    """Level 2 calibrated image (``wfi_image``), the ``_cal`` product.

    ``data`` float32 and ``dq`` uint32 [y, x]; ``err``, ``var_poisson``,
    ``var_rnoise``, ``var_flat``, ``chisq``, ``dumo`` are float16 in the RAD 1.1
    schema (they are converted to float16 when saved); ``amp33`` and the
    border reference-pixel arrays are carried over from the ramp.
    """

    _tag_name = "wfi_image"
    _array_specs: ClassVar[dict[str, tuple[str, int]]] = {
        "data": ("float32", 2),
        "dq": ("uint32", 2),
        "err": ("float16", 2),
        "var_poisson": ("float16", 2),
        "var_rnoise": ("float16", 2),
        "var_flat": ("float16", 2),
        "chisq": ("float16", 2),
        "dumo": ("float16", 2),
        "amp33": ("uint16", 3),
        **_BORDER_ARRAYS,
    }
    _required_arrays = (
        "data",
        "dq",
        "err",
        "var_poisson",
        "chisq",
        "dumo",
        "amp33",
        *_BORDER_ARRAYS,
    )

    @classmethod
    def _default_meta(cls) -> dict[str, Any]:
        return default_image_meta(cls.__name__)

    def _prepare_meta_from(self, other: DataModel) -> None:
        super()._prepare_meta_from(other)
        meta = self._node._data["meta"]
        for key, value in image_only_meta().items():
            meta.setdefault(key, value)
        cal_step = meta.setdefault("cal_step", {})
        for step, status in default_cal_step().items():
            cal_step.setdefault(step, status)


#: ``meta`` keys every product has (RAD ``meta/basic-2.0.0``).
BASIC_META_KEYS: tuple[str, ...] = (
    "calibration_software_name",
    "calibration_software_version",
    "product_type",
    "filename",
    "file_date",
    "model_type",
    "origin",
    "prd_version",
    "sdf_software_version",
    "telescope",
)

#: ``meta`` keys of a level 2 catalog product (RAD ``meta/l2_catalog_common-2.1.0``).
L2_CATALOG_META_KEYS: tuple[str, ...] = (
    *BASIC_META_KEYS,
    "coordinates",
    "exposure",
    "image",
    "instrument",
    "observation",
    "photometry",
    "pointing",
    "program",
    "ref_file",
    "visit",
    "wcsinfo",
)


class SegmentationMapModel(DataModel):
    """Segmentation map of a level 2 image (``segmentation_map``), the ``_segm`` product.

    ``data`` uint32 [y, x]: 0 is background, ``n`` the pixels of catalog source
    ``label == n``. ``meta`` is the image's metadata restricted to the RAD
    ``l2_catalog_common`` keys, plus ``meta.image`` (the image's file name and date),
    as roman_datamodels 1.1's ``SegmentationMapModel``.
    """

    _tag_name = "segmentation_map"
    _array_specs: ClassVar[dict[str, tuple[str, int]]] = {"data": ("uint32", 2)}
    _required_arrays = ("data",)

    @classmethod
    def _default_meta(cls) -> dict[str, Any]:
        meta = default_image_meta(cls.__name__)
        meta = {key: meta[key] for key in L2_CATALOG_META_KEYS if key in meta}
        meta["image"] = {"filename": "?", "file_date": meta["file_date"]}
        return meta

    def _prepare_meta_from(self, other: DataModel) -> None:
        super()._prepare_meta_from(other)
        meta = self._node._data["meta"]
        for key in list(meta):
            if key not in L2_CATALOG_META_KEYS:
                del meta[key]
        meta["image"] = {
            "filename": str(meta.get("filename", "?")),
            "file_date": meta.get("file_date", self._default_meta()["file_date"]),
        }
        for key, value in self._default_meta().items():
            meta.setdefault(key, value)


def default_mosaic_meta() -> dict[str, Any]:
    """Return default metadata of a level 3 mosaic (RAD ``wfi_mosaic-2.1.0``).

    The keys and placeholders are those of roman_datamodels 1.1's
    ``MosaicModel.create_minimal`` (``meta/l3_common-2.1.0`` plus ``association``,
    ``cal_step`` (``l3_cal_step-2.0.0``), ``resample``, ``wcs`` and ``wcsinfo``).

    Returns
    -------
    dict
        A new metadata tree; ``wcs`` is None until resample sets it.
    """
    from ._meta import _EPOCH, _NA_FLOAT, _NA_INT, _time

    common = default_common_meta("MosaicModel")
    return {
        "calibration_software_name": "RomanCAL",
        "calibration_software_version": common["calibration_software_version"],
        "filename": "?",
        "file_date": _time(),
        "model_type": "MosaicModel",
        "origin": "STSCI/SOC",
        "product_type": "?",
        "telescope": "ROMAN",
        "cal_logs": [],
        "coordinates": {"reference_frame": "ICRS"},
        "coadd_info": {
            "time_first": _time(_EPOCH),
            "time_last": _time(_EPOCH),
            "time_mean": _time(_EPOCH),
            "exposure_time": _NA_FLOAT,
        },
        "individual_image_meta": {},
        "instrument": {"name": "WFI", "optical_element": "F062"},
        "observation": {
            "execution_plan": _NA_INT,
            "exposure": _NA_INT,
            "exposure_grouping": "?",
            "observation": _NA_INT,
            "pass": _NA_INT,
            "program": _NA_INT,
            "segment": _NA_INT,
            "visit": _NA_INT,
        },
        "program": {
            "title": "?",
            "investigator_name": "?",
            "category": "?",
            "subcategory": "?",
            "science_category": "?",
        },
        "statistics": {
            "image_median": _NA_FLOAT,
            "image_rms": _NA_FLOAT,
            "good_pixel_fraction": _NA_FLOAT,
        },
        "association": {"name": "?"},
        "cal_step": {
            "flux": "INCOMPLETE",
            "outlier_detection": "INCOMPLETE",
            "skymatch": "INCOMPLETE",
            "resample": "INCOMPLETE",
        },
        "resample": {
            "good_bits": "?",
            "pixel_scale_ratio": _NA_FLOAT,
            "pixfrac": _NA_FLOAT,
            "pointings": _NA_INT,
            "members": [],
            "weight_type": "?",
        },
        "wcs": None,
        "wcsinfo": {
            "ra_ref": _NA_FLOAT,
            "dec_ref": _NA_FLOAT,
            "x_ref": _NA_FLOAT,
            "y_ref": _NA_FLOAT,
            "pixel_scale_ref": _NA_FLOAT,
            "pixel_scale": _NA_FLOAT,
            "projection": "TAN",
            "s_region": "?",
            "image_shape": [_NA_INT, _NA_INT],
            "ra": _NA_FLOAT,
            "dec": _NA_FLOAT,
            "orientation": _NA_FLOAT,
            "orientation_ref": _NA_FLOAT,
            "rotation_matrix": [],
            "skycell_name": "?",
        },
    }


class MosaicModel(DataModel):
    """Level 3 mosaic (``wfi_mosaic``), the ``_coadd`` product of ``resample``.

    ``data`` and ``err`` float32 (MJy/sr); ``context`` uint32 [ceil(N/32), y, x]
    (bit ``i % 32`` of plane ``i // 32``: input ``i`` contributes); ``weight``
    float32; ``var_poisson``, ``var_rnoise`` and the optional ``var_flat`` float32
    (MJy^2/sr^2), as RAD ``wfi_mosaic-2.1.0``.
    """

    _tag_name = "wfi_mosaic"
    _array_specs: ClassVar[dict[str, tuple[str, int]]] = {
        "data": ("float32", 2),
        "context": ("uint32", 3),
        "err": ("float32", 2),
        "weight": ("float32", 2),
        "var_poisson": ("float32", 2),
        "var_rnoise": ("float32", 2),
        "var_flat": ("float32", 2),
        "var_sky": ("float32", 2),
    }
    _required_arrays = ("data", "context", "err", "weight", "var_poisson", "var_rnoise")

    @classmethod
    def _default_meta(cls) -> dict[str, Any]:
        return default_mosaic_meta()

    def get_crds_parameters(self) -> dict[str, str | int | float | complex | bool]:
        """Return the CRDS parameters, with a detector and a start time for selection.

        A mosaic has neither; as romancal 1.1's ``RomanStep._get_crds_parameters``,
        ``roman.meta.instrument.detector`` is ``"WFI02"`` and
        ``roman.meta.exposure.start_time`` is ``coadd_info.time_first``.

        Returns
        -------
        dict
            ``{"roman.meta.a.b": value}``.
        """
        params = super().get_crds_parameters()
        params.setdefault("roman.meta.instrument.detector", "WFI02")
        first = params.get("roman.meta.coadd_info.time_first")
        if first is not None:
            params.setdefault("roman.meta.exposure.start_time", first)
        return params


class MosaicSegmentationMapModel(DataModel):
    """Segmentation map of a mosaic (``mosaic_segmentation_map``), its ``_segm`` product.

    ``data`` uint32 [y, x] as `SegmentationMapModel`; ``meta`` is the mosaic's
    metadata without its WCS object (RAD ``l3_catalog_common`` plus ``association``,
    ``cal_step``, ``resample``) and ``meta.image`` (the mosaic's file name and date).
    """

    _tag_name = "mosaic_segmentation_map"
    _array_specs: ClassVar[dict[str, tuple[str, int]]] = {"data": ("uint32", 2)}
    _required_arrays = ("data",)

    @classmethod
    def _default_meta(cls) -> dict[str, Any]:
        meta = default_mosaic_meta()
        for key in ("wcs", "individual_image_meta", "statistics", "cal_logs"):
            meta.pop(key, None)
        meta["model_type"] = cls.__name__
        meta["image"] = {"filename": "?", "file_date": meta["file_date"]}
        return meta

    def _prepare_meta_from(self, other: DataModel) -> None:
        super()._prepare_meta_from(other)
        meta = self._node._data["meta"]
        for key in ("wcs", "individual_image_meta", "statistics", "cal_logs"):
            meta.pop(key, None)
        meta["image"] = {
            "filename": str(meta.get("filename", "?")),
            "file_date": meta.get("file_date", self._default_meta()["file_date"]),
        }
        for key, value in self._default_meta().items():
            meta.setdefault(key, value)


#: ``meta`` keys of the ``_wcs`` product (RAD ``wfi_wcs-2.1.0``): the basic keys plus
#: the exposure's pointing and WCS information.
WFI_WCS_META_KEYS: tuple[str, ...] = (
    *BASIC_META_KEYS,
    "coordinates",
    "ephemeris",
    "exposure",
    "instrument",
    "observation",
    "pointing",
    "program",
    "velocity_aberration",
    "visit",
    "wcsinfo",
    "wcs_fit_results",
)

#: Reference-pixel border of a level 1 array around the level 2 science array.
L1_BORDER = 4


class WfiWcsModel(DataModel):
    """The WCS of one exposure (``wfi_wcs``), the ``_wcs`` product of ``roman_elp``.

    ``wcs_l2`` is the image's gwcs (after tweakreg, the aligned one); ``wcs_l1`` the
    same WCS for the level 1 array (shifted by the 4-pixel reference border, its
    bounding box grown by 8 pixels), as roman_datamodels 1.1's
    ``WfiWcsModel.from_model_with_wcs`` builds them. No arrays.
    """

    _tag_name = "wfi_wcs"

    @classmethod
    def _default_meta(cls) -> dict[str, Any]:
        meta = default_image_meta(cls.__name__)
        return {key: meta[key] for key in WFI_WCS_META_KEYS if key in meta}

    @classmethod
    def from_model_with_wcs(cls, model: DataModel, l1_border: int = L1_BORDER) -> Self:
        """Return the ``_wcs`` product of a level 2 image.

        Parameters
        ----------
        model : ImageModel
            The image, after ``assign_wcs``.
        l1_border : int, optional
            Reference-pixel border of the level 1 array.

        Returns
        -------
        WfiWcsModel
            The image's WCS metadata (deep copies), ``wcs_l2`` and ``wcs_l1``.

        Raises
        ------
        ValueError
            If the model is not an image or has no WCS.
        """
        from astropy.modeling import models

        if not isinstance(model, ImageModel):
            raise ValueError(f"a _wcs product is made from an ImageModel, not {model!r}")
        image_meta = model._node._data.get("meta", {})
        wcs = image_meta.get("wcs")
        if wcs is None:
            raise ValueError(f"{model!r} has no WCS (meta.wcs)")
        meta = {
            key: copy.deepcopy(image_meta[key]) for key in WFI_WCS_META_KEYS if key in image_meta
        }
        meta["model_type"] = cls.__name__
        l2 = copy.deepcopy(wcs)
        l1 = copy.deepcopy(wcs)
        shift = models.Shift(-l1_border) & models.Shift(-l1_border)
        l1.insert_transform("detector", shift, after=True)
        bbox = l2.bounding_box
        if bbox is not None:
            (x0, x1), (y0, y1) = bbox
            l1.bounding_box = ((x0, x1 + 2 * l1_border), (y0, y1 + 2 * l1_border))
        result = cls({"meta": meta, "wcs_l2": l2, "wcs_l1": l1})
        for key, value in cls._default_meta().items():
            result._node._data["meta"].setdefault(key, value)
        return result


class _RefModel(DataModel):
    """Base of the reference-file models (``reference_files/*`` tags)."""

    _reftype: ClassVar[str] = ""
    _meta_exposure: ClassVar[bool] = False
    _meta_optical_element: ClassVar[bool] = False

    @classmethod
    def _default_meta(cls) -> dict[str, Any]:
        return default_ref_meta(
            cls._reftype, exposure=cls._meta_exposure, optical_element=cls._meta_optical_element
        )


def _ref_specs(**specs: tuple[str, int]) -> dict[str, tuple[str, int]]:
    return dict(specs)


class MaskRefModel(_RefModel):
    """Bad-pixel mask reference file: uint32 ``dq`` [y, x]."""

    _tag_name = "reference_files/mask"
    _reftype = "MASK"
    _array_specs = _ref_specs(dq=("uint32", 2))
    _required_arrays = ("dq",)


class SaturationRefModel(_RefModel):
    """Saturation reference file: float32 ``data`` (DN) and uint32 ``dq``."""

    _tag_name = "reference_files/saturation"
    _reftype = "SATURATION"
    _array_specs = _ref_specs(data=("float32", 2), dq=("uint32", 2))
    _required_arrays = ("data", "dq")


class LinearityRefModel(_RefModel):
    """Classical linearity reference file: float32 ``coeffs`` [ncoeff, y, x], uint32 ``dq``."""

    _tag_name = "reference_files/linearity"
    _reftype = "LINEARITY"
    _array_specs = _ref_specs(coeffs=("float32", 3), dq=("uint32", 2))
    _required_arrays = ("coeffs", "dq")


class InverselinearityRefModel(_RefModel):
    """Inverse linearity reference file: float32 ``coeffs``, uint32 ``dq``."""

    _tag_name = "reference_files/inverselinearity"
    _reftype = "INVERSELINEARITY"
    _array_specs = _ref_specs(coeffs=("float32", 3), dq=("uint32", 2))
    _required_arrays = ("coeffs", "dq")


class DarkRefModel(_RefModel):
    """Dark reference file: float32 ``dark_slope``/``dark_slope_error`` (DN/s), uint32 ``dq``."""

    _tag_name = "reference_files/dark"
    _reftype = "DARK"
    _meta_exposure = True
    _meta_optical_element = True
    _array_specs = _ref_specs(
        dq=("uint32", 2), dark_slope=("float32", 2), dark_slope_error=("float32", 2)
    )
    _required_arrays = ("dq", "dark_slope", "dark_slope_error")


class GainRefModel(_RefModel):
    """Gain reference file: float32 ``data`` (electron/DN)."""

    _tag_name = "reference_files/gain"
    _reftype = "GAIN"
    _array_specs = _ref_specs(data=("float32", 2))
    _required_arrays = ("data",)


class ReadnoiseRefModel(_RefModel):
    """Read-noise reference file: float32 ``data`` (DN)."""

    _tag_name = "reference_files/readnoise"
    _reftype = "READNOISE"
    _array_specs = _ref_specs(data=("float32", 2))
    _required_arrays = ("data",)


class FlatRefModel(_RefModel):
    """Flat-field reference file: float32 ``data``/``err``, uint32 ``dq``."""

    _tag_name = "reference_files/flat"
    _reftype = "FLAT"
    _meta_optical_element = True
    _array_specs = _ref_specs(data=("float32", 2), dq=("uint32", 2), err=("float32", 2))
    _required_arrays = ("data", "dq", "err")


class PhotomRefModel(_RefModel):
    """Imaging photometry reference file (``wfi_img_photom``): ``phot_table`` per element."""

    _tag_name = "reference_files/wfi_img_photom"
    _reftype = "PHOTOM"

    @classmethod
    def create_minimal(cls, defaults: Any = None) -> PhotomRefModel:  # noqa: D102
        model = super().create_minimal(defaults)
        model._node._data.setdefault("phot_table", {})
        return model


class DistortionRefModel(_RefModel):
    """Distortion reference file: ``coordinate_distortion_transform`` (astropy model)."""

    _tag_name = "reference_files/distortion"
    _reftype = "DISTORTION"
    _meta_optical_element = True


class RefpixRefModel(_RefModel):
    """Reference-pixel correction file: complex128 ``gamma``, ``zeta``, ``alpha`` [32+1, nf]."""

    _tag_name = "reference_files/refpix"
    _reftype = "REFPIX"
    _array_specs = _ref_specs(
        gamma=("complex128", 2), zeta=("complex128", 2), alpha=("complex128", 2)
    )
    _required_arrays = ("gamma", "zeta", "alpha")


class SuperbiasRefModel(_RefModel):
    """Super-bias reference file: float32 ``data``/``err``, uint32 ``dq``."""

    _tag_name = "reference_files/superbias"
    _reftype = "BIAS"
    _array_specs = _ref_specs(data=("float32", 2), dq=("uint32", 2), err=("float32", 2))
    _required_arrays = ("data", "dq", "err")


class IpcRefModel(_RefModel):
    """Inter-pixel capacitance kernel reference file: float32 ``data``."""

    _tag_name = "reference_files/ipc"
    _reftype = "IPC"
    _meta_optical_element = True
    _array_specs = _ref_specs(data=("float32", 2))
    _required_arrays = ("data",)


class PixelareaRefModel(_RefModel):
    """Pixel-area reference file: float32 ``data`` (sr)."""

    _tag_name = "reference_files/pixelarea"
    _reftype = "AREA"
    _meta_optical_element = True
    _array_specs = _ref_specs(data=("float32", 2))
    _required_arrays = ("data",)


class DarkdecaysignalRefModel(_RefModel):
    """Dark decay signal reference file: ``decay_table`` of amplitude and time constant.

    One file for every detector: ``decay_table.WFInn`` holds ``amplitude`` (DN) and
    ``time_constant`` (s), either possibly null (rad ``darkdecaysignal-2.0.0``).
    """

    _tag_name = "reference_files/darkdecaysignal"
    _reftype = "DARKDECAYSIGNAL"

    @classmethod
    def create_minimal(cls, defaults: Any = None) -> DarkdecaysignalRefModel:  # noqa: D102
        model = super().create_minimal(defaults)
        model._node._data.setdefault("decay_table", {})
        return model
