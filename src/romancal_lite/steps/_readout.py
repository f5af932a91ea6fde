"""Read-out times of the pixels of one WFI frame (shared by dark_decay and wfi18_transient).

The timing model is romancal 1.1's provisional one (``romancal/lib/basic_utils.py``,
``frame_read_times``): 32 amplifiers each read a 128-column channel, row after row,
with 14 idle clock cycles between rows and a pixel clock of 4.915263 us; every 256
rows the read-out visits the guide window, whose time is what remains of the frame
time, inflated by a factor 1.5 (the WFI18 transient decays faster while the guide
window is read). Adjacent channels read in opposite directions, and the detector's
science -> detector orientation flips the columns (detectors 3, 6, ..., 18) or the
rows (the others).

The map is periodic in columns with period two channels (256 columns): everything
here computes one ``(4096, 256)`` period, and a pixel ``(y, x)`` of the frame reads
at ``period[y, x % 256]``. That is 16 times less work than the full map, and the
full-frame arithmetic is reproduced value for value. A correction computed on a
period is subtracted by `romancore.decay.subtract_periodic`.

Frames that are not 4096 x 4096 (small test or simulated exposures) are taken as the
lower-left corner of a full frame: pixel ``(y, x)`` reads when full-frame pixel
``(y, x)`` does. romancal 1.1 supports only full frames.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = [
    "FULL_ROWS",
    "PERIOD",
    "frame_read_times",
    "read_time_period",
]

#: Rows of a full frame (the timing model is defined for 4096 x 4096).
FULL_ROWS = 4096
#: Columns of one channel.
_CHANNEL_COLS = 128
#: Number of readout channels across a full frame.
_N_CHANNELS = 32
#: Column period of the map: two channels, read in opposite directions.
PERIOD = 2 * _CHANNEL_COLS
#: Idle clock cycles between two rows of a channel.
_ROW_PAD = 14
#: Pixel clock period (s).
_PIXEL_TIME = 4.915263e-06
#: Science rows read between two guide-window excursions.
_GW_STRIDE = 256
#: Inflation of the guide-window time (romancal 1.1's empirical factor).
_GW_FACTOR = 1.5


def read_time_period(
    frame_time: float, sca: int, frame_number: float = 0.0, rows: int = FULL_ROWS
) -> np.ndarray:
    """Return one column period of the pixel read-time map of a full frame (s).

    Parameters
    ----------
    frame_time : float
        Frame time of the exposure (s).
    sca : int
        WFI detector number, 1 ... 18.
    frame_number : float, optional
        Frame whose read times are wanted; ``frame_number * frame_time`` is added
        (romancal 1.1's convention: frame 0 starts at t = 0).
    rows : int, optional
        Only the first ``rows`` rows of the frame (default all 4096).

    Returns
    -------
    numpy.ndarray of float64, (rows, 256)
        ``period[y, x % 256]`` is the read time of frame pixel ``(y, x)``.
    """
    # computed once per set of arguments (a few ms) and copied: callers may modify it
    return _read_time_period(float(frame_time), int(sca), float(frame_number),
                             int(rows)).copy()


@lru_cache(maxsize=2)  # 8.4 MB each on a full frame
def _read_time_period(frame_time: float, sca: int, frame_number: float,
                      rows: int) -> np.ndarray:
    if not 0 < rows <= FULL_ROWS:
        raise ValueError(f"rows must be 1 ... {FULL_ROWS}, got {rows}")
    flip_rows = sca % 3 != 0
    # channel rows (before the science -> detector flip) of the wanted frame rows
    start = FULL_ROWS - rows if flip_rows else 0
    channel_rows = np.arange(start, start + rows)
    # clock cycle of each pixel of one channel, counted from the frame start
    # (romancal basic_utils.frame_read_times: icol + irow * (ncol + npad))
    col = np.arange(_CHANNEL_COLS, dtype=np.float64)
    clock = col + channel_rows.astype(np.float64)[:, None] * (_CHANNEL_COLS + _ROW_PAD)
    # what the frame time leaves beyond the science pixels is the guide window's,
    # spread over FULL_ROWS / stride visits and inflated by the pseudo-time factor
    last = float((_CHANNEL_COLS - 1) + (FULL_ROWS - 1) * (_CHANNEL_COLS + _ROW_PAD))
    gw_total = frame_time / _PIXEL_TIME - last
    n_visits = FULL_ROWS // _GW_STRIDE
    per_visit = gw_total / n_visits * _GW_FACTOR
    # every visit delays the rows after it (added one visit at a time, as romancal
    # does, so the sums round the same way); the last pixel read gets every visit
    for visit in range(1, n_visits):
        clock[channel_rows >= visit * _GW_STRIDE] += per_visit
        last += per_visit
    # scaled so that the frame ends after one last visit
    times = frame_time * clock
    times /= last + per_visit
    period = np.concatenate([times, times[:, ::-1]], axis=1)
    # science -> detector orientation (romancal: sca % 3 == 0 flips the columns of
    # the full frame, i.e. x -> 4095 - x, which is 255 - x within a period)
    period = period[:, ::-1] if not flip_rows else period[::-1, :]
    period = np.ascontiguousarray(period)
    if frame_number:
        period += frame_number * frame_time
    period.flags.writeable = False
    return period


def frame_read_times(
    frame_time: float,
    sca: int,
    shape: tuple[int, int] = (FULL_ROWS, FULL_ROWS),
    frame_number: float = 0.0,
) -> np.ndarray:
    """Return the read time (s) of every pixel of a frame (a full 2-D map).

    For tests and small frames; the steps use `read_time_period`.

    Parameters
    ----------
    frame_time : float
        Frame time (s).
    sca : int
        WFI detector number, 1 ... 18.
    shape : tuple of int, optional
        ``(ny, nx)``, at most 4096 rows (the lower-left corner of a full frame).
    frame_number : float, optional
        See `read_time_period`.

    Returns
    -------
    numpy.ndarray of float64, shape ``shape``
        The read times.
    """
    ny, nx = shape
    if ny > FULL_ROWS:
        raise ValueError(f"a WFI frame has at most {FULL_ROWS} rows, got {ny}")
    period = read_time_period(frame_time, sca, frame_number, rows=ny)
    return period[:, np.arange(nx) % PERIOD]
