"""Expected errors of romancal_lite, each with the runner's exit status.

The runner prints ``str(error)`` on one line and exits with ``error.exit_status``,
without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InputFileError",
    "NoScienceDataError",
    "OutputError",
    "ReferenceFileError",
    "RomancalLiteError",
]


class RomancalLiteError(Exception):
    """Base class of the errors the runner reports in one line (exit status 1)."""

    exit_status: int = 1


class InputFileError(RomancalLiteError):
    """An input file cannot be used: not ASDF, truncated, wrong model, missing metadata."""


class ReferenceFileError(RomancalLiteError):
    """A reference file is missing, unreadable or does not match the science data."""


class ConfigError(RomancalLiteError):
    """Bad step or pipeline parameters (unknown name, wrong type, bad config file)."""


class OutputError(RomancalLiteError):
    """An output cannot be written (e.g. unwritable output directory)."""


class NoScienceDataError(RomancalLiteError):
    """The input holds no science data to process (exit status 64, seeds/000:326-334)."""

    exit_status = 64
