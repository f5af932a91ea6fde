"""The step/pipeline framework of romancal_lite (a small stpipe).

`Step` and `Pipeline` are the base classes; `Param` declares a parameter; `registry`
maps the runnable aliases to class paths for the command-line runner.
"""

from romancal_lite.stpipe.params import Param
from romancal_lite.stpipe.pipeline import Pipeline
from romancal_lite.stpipe.step import Step

__all__ = ["Param", "Pipeline", "Step"]
