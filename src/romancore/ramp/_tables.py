"""Per-read-pattern tables of the Casertano (2022) fit, computed once per call.

Everything in a segment fit except the resultant values themselves depends only on
the read pattern, the segment ``[a, b]`` and the weight exponent ``P``, which takes one
of six values (Casertano et al. 2022, Table 2).  We therefore tabulate, for every
segment and every ``P``, the coefficients ``K_i`` (Eq. 37) and the two variance
factors ``sum K_i^2 / N_i`` (Eq. 39, to be multiplied by the read noise squared) and
``sum K_i^2 tau_i + 2 sum_{j<i} K_i K_j t_bar_j`` (Eq. 40, to be multiplied by the
slope).  A segment fit is then a dot product; no ``pow`` on the per-pixel path.

For ``n`` resultants there are ``n (n - 1) / 2`` segments of two or more resultants;
the tables hold ``6 n (n^2 - 1) / 6`` coefficients (about 27 kB for 16 resultants).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from romancore.readpattern import ReadPatternMetadata

__all__ = ["P_EDGES", "P_VALUES", "FitTables", "build_tables"]

#: Lower edges of the signal-to-noise bins of Casertano et al. (2022), Table 2.
P_EDGES = np.array([5.0, 10.0, 20.0, 50.0, 100.0])
#: The weight exponent ``P`` of each bin (S < 5, 5 <= S < 10, ..., S >= 100).
P_VALUES = np.array([0.0, 0.4, 1.0, 3.0, 6.0, 10.0])
N_P = len(P_VALUES)


class FitTables(NamedTuple):
    """Flat tables indexed by segment ``[a, b]`` (see module docstring).

    Attributes
    ----------
    k : float64 array
        Coefficients; those of segment ``(a, b)`` and bin ``p`` start at
        ``k_offset[a * n + b] + p * (b - a + 1)``.
    k_offset : int64 array, shape (n * n,)
    var_read : float64 array, shape (n * n * 6,)
        ``sum K_i^2 / N_i`` at ``(a * n + b) * 6 + p``; NaN for a degenerate segment
        (determinant ``D = 0``), which carries no weight.
    var_poisson : float64 array, shape (n * n * 6,)
        The Poisson variance per unit slope, same indexing.
    jump : float32 array, shape (8, n - 1)
        The read-pattern terms of the jump statistics (see ``_jump.pxd``), float32 as
        in stcal so that the statistics round the same way.
    t_bar32 : float32 array, shape (n,)
        Mean times, float32, for the statistic's slope correction.
    """

    k: np.ndarray
    k_offset: np.ndarray
    var_read: np.ndarray
    var_poisson: np.ndarray
    jump: np.ndarray
    t_bar32: np.ndarray


def _segment(t_bar, tau, n_reads, a, b):
    """Return K (6, L), var_read (6,), var_poisson (6,) for segment [a, b]."""
    t = t_bar[a : b + 1]
    nr = n_reads[a : b + 1].astype(np.float64)
    ta = tau[a : b + 1]
    t_mid = 0.5 * (t[0] + t[-1])
    # Rescale |t - t_mid| to [0, 1] before raising it to the power P (up to 10): this
    # changes all weights of a segment by one factor, so K is unchanged (as stcal does).
    t_scale = 0.5 * (t[-1] - t[0])
    t_scale = 1.0 if t_scale == 0 else t_scale
    p = P_VALUES[:, None]
    # Casertano+2022 Eq. 45: W_i = (1 + P) N_i / (1 + P N_i) |t_i - t_mid|^P
    w = ((1 + p) * nr) / (1 + p * nr) * np.abs((t - t_mid) / t_scale) ** p
    # Eq. 35: F0, F1, F2 and Eq. 36: D = F2 F0 - F1^2
    f0 = w.sum(axis=1)
    f1 = (w * t).sum(axis=1)
    f2 = (w * t * t).sum(axis=1)
    det = f2 * f0 - f1 * f1
    with np.errstate(divide="ignore", invalid="ignore"):
        # Eq. 37: K_i = (F0 t_i - F1) W_i / D
        k = (f0[:, None] * t - f1[:, None]) * w / det[:, None]
    # Eq. 39 (per unit read-noise variance): sum K_i^2 / N_i
    var_read = (k * k / nr).sum(axis=1)
    # Eq. 40 (per unit slope): sum K_i^2 tau_i + 2 sum_{j<i} K_i K_j t_j
    cum = np.cumsum(k * t, axis=1) - k * t  # sum_{j<i} K_j t_j
    var_poisson = (k * k * ta + 2.0 * k * cum).sum(axis=1)
    bad = det == 0
    k[bad] = 0.0
    var_read[bad] = np.nan
    var_poisson[bad] = np.nan
    return k, var_read, var_poisson


def _jump_terms(t_bar, tau, n_reads):
    """Read-pattern terms of the single (i, i+1) and double (i, i+2) differences."""
    n = len(t_bar)
    t32 = t_bar.astype(np.float32)
    tau32 = tau.astype(np.float32)
    nr = n_reads.astype(np.float32)
    out = np.full((8, max(n - 1, 0)), np.nan, dtype=np.float32)
    one = np.float32(1)
    for i in range(n - 1):
        for j, row in ((1, 0), (2, 1)):
            if i + j >= n:
                continue
            dt = t32[i + j] - t32[i]
            out[row, i] = dt  # t_bar difference
            out[2 + row, i] = dt * dt  # its square
            out[4 + row, i] = one / nr[i + j] + one / nr[i]  # read-noise factor
            # Poisson factor of Var(R_j - R_i): tau_i + tau_j - 2 min(t_i, t_j)
            out[6 + row, i] = tau32[i + j] + tau32[i] - np.float32(2) * min(t32[i + j], t32[i])
    return out


def build_tables(meta: ReadPatternMetadata) -> FitTables:
    """Tabulate the fit of every segment of ``meta``'s read pattern for every P.

    Parameters
    ----------
    meta : ReadPatternMetadata
        From :func:`romancore.read_pattern_metadata`.

    Returns
    -------
    FitTables
    """
    t_bar, tau, n_reads = meta
    n = len(t_bar)
    k_offset = np.zeros(n * n, dtype=np.int64)
    var_read = np.full(n * n * N_P, np.nan)
    var_poisson = np.full(n * n * N_P, np.nan)
    chunks = []
    pos = 0
    for a in range(n):
        for b in range(a + 1, n):
            k, vr, vp = _segment(t_bar, tau, n_reads, a, b)
            idx = a * n + b
            k_offset[idx] = pos
            chunks.append(k.ravel())
            pos += k.size
            var_read[idx * N_P : (idx + 1) * N_P] = vr
            var_poisson[idx * N_P : (idx + 1) * N_P] = vp
    k_all = np.concatenate(chunks) if chunks else np.zeros(1)
    return FitTables(
        k_all,
        k_offset,
        var_read,
        var_poisson,
        _jump_terms(t_bar, tau, n_reads),
        t_bar.astype(np.float32),
    )
