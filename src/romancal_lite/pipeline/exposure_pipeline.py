"""The exposure-level pipeline ``roman_elp`` (seeds/002).

Order of the current page (seeds/002:23-47): dq_init, saturation, refpix, linearity,
ramp_fit, dark_current, assign_wcs, photom, flatfield. Routing (seeds/002:49, 85-93):

* a fully saturated exposure gets an all-zero image and every step after saturation
  is recorded SKIPPED;
* WFI_SPECTRAL, WFI_FLAT, WFI_IM_DARK and WFI_SP_DARK stop after photom;
* guide-star exposures stop after dq_init (it is the only step defined for them).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from romancal_lite import datamodels
from romancal_lite.errors import ConfigError
from romancal_lite.references._spec import BORDER
from romancal_lite.steps.assign_wcs import AssignWcsStep
from romancal_lite.steps.dark_current import DarkCurrentStep
from romancal_lite.steps.dq_init import GUIDE_STAR_TYPES, DQInitStep
from romancal_lite.steps.flatfield import FlatFieldStep
from romancal_lite.steps.linearity import LinearityStep
from romancal_lite.steps.photom import PhotomStep
from romancal_lite.steps.ramp_fit import RampFitStep
from romancal_lite.steps.ramp_fit.ramp_fit_step import image_from_ramp
from romancal_lite.steps.refpix import RefPixStep
from romancal_lite.steps.saturation import SaturationStep
from romancal_lite.stpipe import Param, Pipeline

__all__ = [
    "FLATFIELD_TYPES",
    "RAMP_STEPS",
    "ExposurePipeline",
    "applied_ramp_steps",
    "detach_from_file",
    "fully_saturated",
    "zeroed_image",
]

#: Exposure types that go on to flatfield; the others stop after photom.
FLATFIELD_TYPES = frozenset({"WFI_IMAGE", "WFI_LOLO", "WFI_WFSC"})

_SKIPPED = "SKIPPED"


class ExposurePipeline(Pipeline):
    """Calibrate one WFI exposure: raw ramps (``_uncal``) to a count-rate image (``_cal``).

    Every step is skippable (``--steps.<step>.skip``) and configurable
    (``--steps.<step>.<param>``); ``--steps.<step>.save_results`` also writes that
    step's output with its suffix. The image is in DN/s, as romancal 1.1 writes it;
    ``meta.photometry`` holds the conversion to MJy/sr.
    """

    class_alias = "roman_elp"
    suffix = Param(str, "cal", "Suffix of the output file name")
    step_defs = {
        "dq_init": DQInitStep,
        "saturation": SaturationStep,
        "refpix": RefPixStep,
        "linearity": LinearityStep,
        "ramp_fit": RampFitStep,
        "dark_current": DarkCurrentStep,
        "assign_wcs": AssignWcsStep,
        "photom": PhotomStep,
        "flatfield": FlatFieldStep,
    }

    #: The raw cube is only read (by dq_init): map it instead of copying it in.
    memmap_input = True
    _owns_input = False

    def open_input(self, input: Any) -> Any:  # noqa: A002
        """Open the input; remember whether the pipeline opened it (to free it early).

        Parameters
        ----------
        input : str, path-like or model
            The exposure.

        Returns
        -------
        DataModel
            The opened model.
        """
        self._owns_input = isinstance(input, str | os.PathLike)
        return super().open_input(input)

    def process(self, model: Any) -> Any:
        """Run the steps on one exposure, routing by exposure type and saturation.

        Parameters
        ----------
        model : ScienceRawModel or RampModel
            The exposure.

        Returns
        -------
        ImageModel
            The calibrated image (or, for guide-star data, the dq_init result).
        """
        applied = applied_ramp_steps(model)
        if self.dq_init.skip and not isinstance(model, datamodels.RampModel):
            raise ConfigError(
                f"{type(model).__name__} input: dq_init cannot be skipped (it makes the ramp "
                "the other steps work on); skip it only for a ramp (RampModel) input"
            )
        result = self.dq_init.run(model)
        if self._owns_input and result is not model:
            # the raw uint16 cube is no longer needed: free it before the next steps
            model.close()
            for name in ("data", "amp33", "resultantdq", "reference_read"):
                if name in model:
                    delattr(model, name)
        elif self._owns_input:
            # a ramp read from a file: the steps work on it in place, never in the file
            detach_from_file(result)
        del model
        exp_type = str(result.meta.exposure.type)
        if exp_type in GUIDE_STAR_TYPES:
            self.log.info("Guide-star exposure %s: nothing after dq_init", exp_type)
            return result
        result = self._run_ramp_step("saturation", result, applied)
        if fully_saturated(result):
            self.log.warning("Every science pixel is saturated: writing a zeroed image")
            return zeroed_image(result, [s.cal_step_key or s.class_alias for s in self._after(
                "saturation")])
        for name in ("refpix", "linearity"):
            result = self._run_ramp_step(name, result, applied)
        for name in ("ramp_fit", "dark_current", "assign_wcs", "photom"):
            result = self.steps[name].run(result)
        if exp_type not in FLATFIELD_TYPES:
            self.log.info("%s exposure: stopping after photom", exp_type)
            result.meta.cal_step[self.flatfield.cal_step_key or "flatfield"] = _SKIPPED
            return result
        return self.flatfield.run(result)

    def _run_ramp_step(self, name: str, ramp: Any, applied: frozenset[str]) -> Any:
        """Run a ramp step unless the input ramp records it COMPLETE already."""
        if name in applied:
            self.log.info(
                "Step %s already applied to the input ramp (meta.cal_step.%s = COMPLETE):"
                " not repeated",
                name,
                name,
            )
            return ramp
        return self.steps[name].run(ramp)

    def _after(self, name: str) -> list[Any]:
        names = list(self.steps)
        return [self.steps[n] for n in names[names.index(name) + 1 :]]


#: Ramp steps that a ramp given as input may already have had; they are not repeated
#: (a second refpix or linearity correction would be wrong, a second saturation
#: growth would grow further).
RAMP_STEPS = ("saturation", "refpix", "linearity")


def applied_ramp_steps(model: Any) -> frozenset[str]:
    """Return the ramp steps a ``RampModel`` input records as COMPLETE.

    Parameters
    ----------
    model : DataModel
        The pipeline's input.

    Returns
    -------
    frozenset of str
        Names among `RAMP_STEPS` with ``meta.cal_step.<name> == "COMPLETE"``; empty
        for a raw exposure (whatever its metadata says).
    """
    from romancal_lite import datamodels

    if not isinstance(model, datamodels.RampModel):
        return frozenset()
    try:
        cal_step = model.meta.cal_step
    except AttributeError:
        return frozenset()
    return frozenset(
        name for name in RAMP_STEPS if str(cal_step.get(name, "")).upper() == "COMPLETE"
    )


def detach_from_file(model: Any) -> None:
    """Copy every array a model still reads from its file into memory, then close it.

    Arrays of a memory-mapped input are read-only views of the file: the steps, which
    work in place, must never write there, and the file is closed once nothing
    refers to it.

    Parameters
    ----------
    model : DataModel
        A model opened from a file (memory-mapped or not).
    """
    for name in list(model):
        value = getattr(model, name)
        if isinstance(value, np.ndarray) and not value.flags.writeable:
            setattr(model, name, np.array(value, order="C"))
    model.close()


def fully_saturated(ramp: Any) -> bool:
    """Return whether every science pixel of a ramp is saturated from its first resultant.

    Saturation propagates to later resultants, so this is the first resultant's
    SATURATED flag (or the pixel's) on the whole science array (the reference border,
    which sees no light, is not looked at).

    Parameters
    ----------
    ramp : RampModel
        After the saturation step.

    Returns
    -------
    bool
        True if there is no unsaturated science pixel.
    """
    from romancore.dqflags import group, pixel

    b = BORDER
    first = ramp.groupdq[0, b:-b, b:-b]
    pdq = ramp.pixeldq[b:-b, b:-b]
    if first.size == 0:
        return False
    sat = (first & np.uint8(group.SATURATED)) != 0
    sat |= (pdq & np.uint32(pixel.SATURATED)) != 0
    return bool(sat.all())


def zeroed_image(ramp: Any, skipped_steps: list[str]) -> Any:
    """Return the all-zero image of a fully saturated exposure (seeds/002:85-93).

    Parameters
    ----------
    ramp : RampModel
        The saturated ramp.
    skipped_steps : list of str
        ``meta.cal_step`` keys to record as SKIPPED.

    Returns
    -------
    ImageModel
        Zero data, err and variances; dq = pixeldq | first-resultant flags | SATURATED.
    """
    from romancore.dqflags import pixel

    b = BORDER
    sl = (slice(b, -b), slice(b, -b))
    zeros = np.zeros(ramp.pixeldq[sl].shape, np.float32)
    dq = ramp.pixeldq[sl] | ramp.groupdq[0][sl].astype(np.uint32) | np.uint32(pixel.SATURATED)
    arrays = {
        "slope": zeros,
        "dq": dq,
        "err": zeros.copy(),
        "var_poisson": zeros.copy(),
        "var_rnoise": zeros.copy(),
        "dumo": zeros.copy(),
    }
    image = image_from_ramp(ramp, arrays)
    for key in skipped_steps:
        image.meta.cal_step[key] = _SKIPPED
    return image
