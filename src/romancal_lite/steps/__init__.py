"""The calibration steps, one sub-package each, named by the step's ``class_alias``.

Each sub-package exports one `romancal_lite.stpipe.Step` subclass and keeps its array
work in a plain, separately tested function (or in `romancore`); the step class only
selects and checks reference files, calls that function and records metadata. Nothing
is imported here, so listing the runnable names (``romancal_lite --help``) stays cheap;
`romancal_lite.stpipe.registry` maps each alias to its class path.
"""
