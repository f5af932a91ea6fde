"""The ``romancal_lite`` logger tree.

Library code only creates loggers (``romancal_lite.step.<step>`` for each step,
``romancal_lite.step.<pipeline>.<step>`` inside a pipeline); handlers and levels are set
by the application, here `log_to_stderr` used by the command-line runner.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator

__all__ = ["LOG_FORMAT", "ROOT_LOGGER", "log_to_stderr", "step_logger"]

ROOT_LOGGER = "romancal_lite"
LOG_FORMAT = "%(asctime)s.%(msecs)03dZ - %(name)s - %(levelname)s - %(message)s"

logging.getLogger(ROOT_LOGGER).addHandler(logging.NullHandler())


def step_logger(*names: str) -> logging.Logger:
    """Return the logger of a step, a child of ``romancal_lite.step``.

    Parameters
    ----------
    *names : str
        Step names from the outermost pipeline down to the step.

    Returns
    -------
    logging.Logger
        ``logging.getLogger("romancal_lite.step.<n1>.<n2>...")``.
    """
    return logging.getLogger(".".join([ROOT_LOGGER, "step", *names]))


@contextlib.contextmanager
def log_to_stderr(verbose: bool = False) -> Iterator[logging.Handler]:
    """Send ``romancal_lite`` log records to stderr for the duration of the context.

    Parameters
    ----------
    verbose : bool, optional
        Show DEBUG records; otherwise INFO and above.

    Yields
    ------
    logging.Handler
        The handler installed (removed again on exit, with the previous level).
    """
    logger = logging.getLogger(ROOT_LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    previous = logger.level
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
