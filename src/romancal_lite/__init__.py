"""romancal_lite: the Python orchestration of the romancal-lite pipeline."""

__version__ = "0.1.0"
