"""Scoring a recorded session: the pure core of ``echoposed bag eval`` (numpy / scipy; no rclpy, no I/O).

Frames. Ground truth (``probe/true_pose``) is in the simulator's heart frame; estimates are in the
model's frame, which differs from it by an unknown constant left factor per pose factor
(docs/method.md sections 4 and 6). Before comparing, :func:`fit_left_factor` fits that factor per factor
over the whole run by Procrustes, ``L = proj_SO3(sum_k T_k E_k^T)`` (the rotation that best maps
the estimates E_k onto the truths T_k in the least-squares chordal sense), and the reported
tracking error is the effective error (docs/method.md section 1) between ``(L_v E_v, L_p E_p)`` and the
truth: the residual after the best constant alignment, i.e. what the policy (which only uses
body-frame differences) can see. Estimates are taken before gauge fixing (the projected mean of
the aligned ensemble members) where the members are known, since a constant left factor acts on
that representative. Times: int64 ns in, seconds out; angles: radians in, degrees in reports.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..geometry import effective_error, project_to_so3
from .errors import BagError

__all__ = ['Alignment', 'Tracking', 'fit_left_factor', 'latency_stats', 'match_stamps', 'spearman',
           'stats', 'target_error', 'tracking']


@dataclass(frozen=True)
class Alignment:
    """Constant left factors (L_v, L_p) (3, 3) mapping estimates onto ground truth."""

    orbit: np.ndarray
    probe: np.ndarray


@dataclass(frozen=True)
class Tracking:
    """Per matched sample: ``stamps`` (int64 ns, the estimate's), ``error`` (rad, effective error of
    the aligned estimate to ground truth), ``sigma2`` (rad^2); the fitted :class:`Alignment`."""

    stamps: np.ndarray
    error: np.ndarray
    sigma2: np.ndarray
    alignment: Alignment


def stats(x: Sequence[float] | np.ndarray, scale: float = 1.0) -> dict[str, Any]:
    """count, mean, median, p90, max, first, last of ``x * scale`` (None entries when empty)."""
    a = np.asarray(x, dtype=np.float64).ravel() * scale
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {'count': 0, 'mean': None, 'median': None, 'p90': None, 'max': None, 'first': None, 'last': None}
    return {'count': int(a.size), 'mean': float(a.mean()), 'median': float(np.median(a)),
            'p90': float(np.percentile(a, 90)), 'max': float(a.max()), 'first': float(a[0]), 'last': float(a[-1])}


def match_stamps(a: np.ndarray, b: np.ndarray, tolerance_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ia, ib) pairing each stamp of ``a`` with the nearest stamp of sorted-or-not ``b``
    within ``tolerance_ns`` (int64 ns); unmatched stamps of ``a`` are left out."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.size == 0 or b.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(b, kind='stable')
    bs = b[order]
    pos = np.clip(np.searchsorted(bs, a), 1, bs.size - 1) if bs.size > 1 else np.zeros(a.size, np.int64)
    left = np.maximum(pos - 1, 0)
    best = np.where(np.abs(bs[left] - a) <= np.abs(bs[pos] - a), left, pos)
    ok = np.abs(bs[best] - a) <= tolerance_ns
    return np.flatnonzero(ok), order[best[ok]]


def fit_left_factor(truth: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Rotation L (3, 3) minimising ``sum_k ||T_k - L E_k||_F^2``: ``proj_SO3(sum_k T_k E_k^T)``.

    truth, estimate: (N, 3, 3) rotations, N >= 1.
    """
    T = np.asarray(truth, dtype=np.float64)
    E = np.asarray(estimate, dtype=np.float64)
    if T.shape != E.shape or T.ndim != 3 or T.shape[0] == 0:
        raise BagError(f'fit_left_factor: truth {T.shape} and estimate {E.shape}; expected equal (N >= 1, 3, 3)')
    return project_to_so3(np.einsum('kij,klj->il', T, E), 'sum of T_k E_k^T')


def tracking(truth_stamps: np.ndarray, truth_orbit: np.ndarray, truth_probe: np.ndarray,
             est_stamps: np.ndarray, est_orbit: np.ndarray, est_probe: np.ndarray, sigma2: np.ndarray,
             tolerance_ns: int = 20_000_000) -> Tracking | None:
    """Effective error of constant-left-aligned estimates to ground truth, per estimate matched to a
    truth sample by stamp (within ``tolerance_ns``); None when nothing matches."""
    ie, it = match_stamps(est_stamps, truth_stamps, tolerance_ns)
    if ie.size == 0:
        return None
    T_v, T_p = truth_orbit[it], truth_probe[it]
    E_v, E_p = est_orbit[ie], est_probe[ie]
    L_v, L_p = fit_left_factor(T_v, E_v), fit_left_factor(T_p, E_p)
    error = effective_error((L_v @ E_v, L_p @ E_p), (T_v, T_p))
    return Tracking(np.asarray(est_stamps)[ie], np.asarray(error, dtype=np.float64), np.asarray(sigma2)[ie],
                    Alignment(L_v, L_p))


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation of x and y; None with fewer than 3 pairs or a constant input."""
    from scipy.stats import spearmanr

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    rho = spearmanr(x, y).statistic
    return float(rho) if np.isfinite(rho) else None


def latency_stats(stamps: np.ndarray, receive_times: np.ndarray) -> dict[str, Any]:
    """Latency image stamp -> pose received by the recorder, ms (stats)."""
    return stats((np.asarray(receive_times, np.int64) - np.asarray(stamps, np.int64)) * 1e-6)


def target_error(truth_orbit: np.ndarray, truth_probe: np.ndarray, target_orbit: np.ndarray,
                 target_probe: np.ndarray) -> np.ndarray:
    """Effective error (rad) of each ground-truth pose (N, 3, 3) to the target pose (3, 3)."""
    n = len(truth_orbit)
    return np.asarray(effective_error((truth_orbit, truth_probe),
                                      (np.broadcast_to(target_orbit, (n, 3, 3)),
                                       np.broadcast_to(target_probe, (n, 3, 3)))), dtype=np.float64)
