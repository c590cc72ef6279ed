"""The adapted model's check on sweep poses it never trained on: mean relative-pose error (deg).

An adaptation sweep holds the probe at a ladder of poses; with ``sweep_holdout`` a share of those holds
is kept out of training (``data.Sweep``). Every ``sweep_val_every`` steps the ensemble reads a few frames
of each held-out hold (different cardiac phases) and the relative rotation it estimates between frames of
two different holds is compared with the arm's: the probe's orientation ``R_v R_p`` (orbit then turn,
3x3), error ``angle((R_i^T R_j)^T (R^_i^T R^_j))``. Memorising the trained poses shows here as it happens,
so the run keeps the checkpoint where this error is lowest (``best.pt``), the warm start included.
"""
from __future__ import annotations

import numpy as np

from echoposed_ros.geometry import angle

from .data import Sweep
from .model import EnsembleNet
from .orchestrator import Orchestrator
from .quickcal import predict

__all__ = ['check_frames', 'relative_pose_error_deg', 'sweep_check_deg']


def check_frames(sweep: Sweep, per_hold: int = 6) -> np.ndarray:
    """Indices of up to ``per_hold`` frames per held-out hold, evenly spread over the hold (its phases)."""
    picks = []
    for h in np.unique(sweep.hold[sweep.val]):
        frames = sweep.val[sweep.hold[sweep.val] == h]
        picks.append(frames[np.unique(np.linspace(0, len(frames) - 1, min(per_hold, len(frames))).round().astype(int))])
    return np.concatenate(picks) if picks else np.zeros(0, np.int64)


def relative_pose_error_deg(orbit_hat: np.ndarray, probe_hat: np.ndarray, orbit: np.ndarray, probe: np.ndarray,
                            hold: np.ndarray, max_pairs: int = 4000, seed: int = 0) -> float:
    """Mean over pairs of frames at different holds of the error of the estimated relative rotation (deg).

    orbit_hat, probe_hat: (N, 3, 3) estimates; orbit, probe: (N, 3, 3) labels; hold: (N,) hold numbers.
    At most ``max_pairs`` pairs, drawn with ``seed`` when there are more. NaN when no pair exists.
    """
    i, j = np.triu_indices(len(hold), 1)
    keep = hold[i] != hold[j]
    i, j = i[keep], j[keep]
    if len(i) == 0:
        return float('nan')
    if len(i) > max_pairs:
        pick = np.random.default_rng(seed).choice(len(i), max_pairs, replace=False)
        i, j = i[pick], j[pick]
    R_hat, R = orbit_hat @ probe_hat, orbit @ probe
    T = np.swapaxes(R_hat[i], -1, -2) @ R_hat[j]
    rel = np.swapaxes(R[i], -1, -2) @ R[j]
    return float(np.degrees(angle(np.swapaxes(rel, -1, -2) @ T)).mean())


def sweep_check_deg(model: EnsembleNet, orch: Orchestrator, sweep: Sweep, frames: np.ndarray) -> float:
    """The ensemble's mean relative-pose error (deg) on the sweep ``frames`` (:func:`check_frames`)."""
    mv, mp, _ = predict(model, orch, sweep.images[frames])
    return relative_pose_error_deg(mv, mp, sweep.orbit[frames], sweep.probe[frames], sweep.hold[frames])
