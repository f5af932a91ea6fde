"""Static description of the WFI reference types romancal-lite selects through CRDS.

Everything here mirrors the official definitions: the CRDS selection keywords
(``parkey``) are those of the Roman rmap templates shipped with the ``crds``
client (``crds/roman/specs/wfi_<reftype>.rmap``), the ASDF tags and required
arrays are those of the ``rad`` schemas used by roman_datamodels 1.1
(``asdf://stsci.edu/datamodels/roman/tags/reference_files/<name>-2.0.0``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BORDER",
    "DETECTORS",
    "EXPOSURE_TYPES",
    "FULL_SHAPE",
    "IMAGING_ELEMENTS",
    "OPTICAL_ELEMENTS",
    "REFTYPES",
    "SCIENCE_SHAPE",
    "TAG_PREFIX",
    "RefTypeSpec",
    "get_spec",
]

#: The 18 WFI detectors (sensor chip assemblies).
DETECTORS: tuple[str, ...] = tuple(f"WFI{i:02d}" for i in range(1, 19))

#: Imaging filters of the WFI element wheel.
IMAGING_ELEMENTS: tuple[str, ...] = (
    "F062",
    "F087",
    "F106",
    "F129",
    "F146",
    "F158",
    "F184",
    "F213",
)

#: Every optical element a WFI exposure can use.
OPTICAL_ELEMENTS: tuple[str, ...] = (*IMAGING_ELEMENTS, "GRISM", "PRISM", "DARK")

#: Exposure types of the rad ``exposure_type`` enum.
EXPOSURE_TYPES: tuple[str, ...] = (
    "WFI_IMAGE",
    "WFI_SPECTRAL",
    "WFI_IM_DARK",
    "WFI_SP_DARK",
    "WFI_FLAT",
    "WFI_LOLO",
    "WFI_WFSC",
)

#: Shape of a full detector read-out, science pixels plus the reference border.
FULL_SHAPE: tuple[int, int] = (4096, 4096)

#: Width of the reference-pixel border around the science pixels.
BORDER: int = 4

#: Shape of the science pixels of a level 2 image.
SCIENCE_SHAPE: tuple[int, int] = (FULL_SHAPE[0] - 2 * BORDER, FULL_SHAPE[1] - 2 * BORDER)

#: Common prefix of the official reference-file tags.
TAG_PREFIX = "asdf://stsci.edu/datamodels/roman/tags/reference_files/"

_DETECTOR = "ROMAN.META.INSTRUMENT.DETECTOR"
_ELEMENT = "ROMAN.META.INSTRUMENT.OPTICAL_ELEMENT"
_EXPTYPE = "ROMAN.META.EXPOSURE.TYPE"
_START = "ROMAN.META.EXPOSURE.START_TIME"


@dataclass(frozen=True)
class RefTypeSpec:
    """How one reference type is selected, tagged and shaped.

    Attributes
    ----------
    reftype : str
        Lower-case CRDS reference type (``"flat"``).
    tag_name : str
        Name part of the official ASDF tag (``"wfi_img_photom"`` for photom).
    tag_version : str
        Tag version written by roman_datamodels 1.1.
    model_class : str
        Name of the roman_datamodels reference model class.
    match_keys : tuple of str
        CRDS ``Match`` parameter keys, upper case (``ROMAN.META.INSTRUMENT.DETECTOR``).
    shape_kind : str
        ``"full"`` (4096x4096 incl. reference border), ``"science"`` (4088x4088),
        ``"refpix"`` (FFT coefficients per channel) or ``"none"`` (no arrays of the
        image's shape: PHOTOM, DISTORTION, EPSF stamps, APCORR tables).
    arrays : tuple of str
        Names of the required 2-D arrays that must match ``shape_kind``.
    text_descr : str
        Human description used in the rmap header.
    """

    reftype: str
    tag_name: str
    tag_version: str
    model_class: str
    match_keys: tuple[str, ...]
    shape_kind: str
    arrays: tuple[str, ...]
    text_descr: str

    @property
    def tag(self) -> str:
        """Return the full official tag URI written for this type."""
        return f"{TAG_PREFIX}{self.tag_name}-{self.tag_version}"

    @property
    def parkey(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Return the rmap ``parkey``: match keys, then the use-after key."""
        return (self.match_keys, (_START,))

    @property
    def by_element(self) -> bool:
        """Return whether files differ per optical element."""
        return _ELEMENT in self.match_keys


def _spec(
    reftype: str,
    model_class: str,
    match_keys: tuple[str, ...],
    shape_kind: str,
    arrays: tuple[str, ...],
    text_descr: str,
    tag_name: str | None = None,
) -> RefTypeSpec:
    return RefTypeSpec(
        reftype=reftype,
        tag_name=tag_name or reftype,
        tag_version="2.0.0",
        model_class=model_class,
        match_keys=match_keys,
        shape_kind=shape_kind,
        arrays=arrays,
        text_descr=text_descr,
    )


#: The reference types of the exposure-level pipeline, keyed by lower-case reftype.
REFTYPES: dict[str, RefTypeSpec] = {
    s.reftype: s
    for s in (
        _spec("mask", "MaskRefModel", (_DETECTOR,), "full", ("dq",), "Bad Pixel Mask"),
        _spec(
            "saturation",
            "SaturationRefModel",
            (_DETECTOR,),
            "full",
            ("data", "dq"),
            "Saturation Threshhold",
        ),
        _spec(
            "linearity",
            "LinearityRefModel",
            (_DETECTOR,),
            "full",
            ("dq",),
            "Linearity coefficients",
        ),
        _spec(
            "inverselinearity",
            "InverselinearityRefModel",
            (_DETECTOR,),
            "full",
            ("dq",),
            "Inverse linearity coefficients",
        ),
        _spec(
            "integralnonlinearity",
            "IntegralnonlinearityRefModel",
            (_DETECTOR,),
            "none",
            (),
            "Integral non-linearity",
        ),
        _spec(
            "dark",
            "DarkRefModel",
            (_DETECTOR, _EXPTYPE),
            "full",
            ("dq", "dark_slope", "dark_slope_error"),
            "Dark",
        ),
        _spec("gain", "GainRefModel", (_DETECTOR,), "full", ("data",), "Gain image"),
        _spec(
            "readnoise",
            "ReadnoiseRefModel",
            (_DETECTOR, _EXPTYPE),
            "full",
            ("data",),
            "Read Noise",
        ),
        _spec(
            "flat",
            "FlatRefModel",
            (_DETECTOR, _ELEMENT),
            "science",
            ("data", "dq", "err"),
            "Flat Field",
        ),
        _spec(
            "photom",
            "WfiImgPhotomRefModel",
            (_DETECTOR,),
            "none",
            (),
            "Photom",
            tag_name="wfi_img_photom",
        ),
        _spec(
            "distortion",
            "DistortionRefModel",
            (_DETECTOR, _ELEMENT),
            "none",
            (),
            "Distortion",
        ),
        _spec(
            "epsf",
            "EpsfRefModel",
            (_DETECTOR, _ELEMENT),
            "none",
            (),
            "Empirical Point Spread Function",
        ),
        _spec("apcorr", "ApcorrRefModel", (_DETECTOR,), "none", (), "Aperture Correction"),
        _spec(
            "refpix",
            "RefpixRefModel",
            (_DETECTOR,),
            "refpix",
            ("gamma", "zeta", "alpha"),
            "Reference Pixels",
        ),
        # one file for every detector: the official rmap has no match key
        _spec(
            "darkdecaysignal",
            "DarkdecaysignalRefModel",
            (),
            "none",
            (),
            "Dark Decay Signal",
        ),
    )
}


def get_spec(reftype: str) -> RefTypeSpec:
    """Return the specification of ``reftype`` (case-insensitive).

    Parameters
    ----------
    reftype : str
        CRDS reference type, e.g. ``"flat"`` or ``"FLAT"``.

    Returns
    -------
    RefTypeSpec
        The specification.

    Raises
    ------
    KeyError
        If the type is not one romancal-lite knows.
    """
    return REFTYPES[reftype.lower()]
