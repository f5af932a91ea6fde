"""A real-data step for the integration tests: datamodels + references + stpipe + CLI."""

from __future__ import annotations

import numpy as np

from romancal_lite import datamodels
from romancal_lite.datamodels import frame_time, read_pattern
from romancal_lite.references import check_reference
from romancal_lite.stpipe import Step

MODULE_NAME = "romancal_lite_integration_steps"


class SatProbeStep(Step):
    """Open a raw exposure, select and check its SATURATION reference, count pixels."""

    class_alias = "sat_probe"
    reference_file_types = ("saturation",)
    model_type = datamodels.ScienceRawModel

    def process(self, model):
        rp = read_pattern(model)
        ft = frame_time(model)
        ref = self.get_reference_file(model, "saturation")
        check_reference(ref, "saturation", model, expected_shape=model.data.shape[1:])
        with datamodels.open(ref) as sat:
            over = int(np.count_nonzero(model.data[-1] >= sat.data))
        self.log.info("%d resultants, frame time %.5f s, %d pixels over threshold",
                      len(rp), ft, over)
        return model
