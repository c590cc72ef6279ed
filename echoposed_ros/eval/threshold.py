"""Choosing the controller's ``uncertainty_threshold`` (docs/policy.md): sigma^2 of in-range
slices against sigma^2 of frames with no heart in them.

In-range slices: per volume, poses drawn as in training (docs/method.md section 3: any turn about the
beam, tilts up to ``tilt_deg``, orbit up to ``orbit_deg``, random cardiac phase), sliced with the
model's own sector. No-heart frames: speckle-like noise (smoothed Rayleigh texture under a
random depth gain) inside the same sector. For each threshold: the share of each set that would
be held (sigma^2 above it), and the in-range share held among slices the model gets right
(effective error below ``good_deg``) and wrong.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ['ThresholdProtocol', 'noise_frames', 'threshold_table']

#: (N, H, W) float images -> (orbit (N, 3, 3), probe (N, 3, 3), sigma2 (N,)); Estimator.predict.
Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ThresholdProtocol:
    """slices_per_volume in-range slices per volume; noise_frames no-heart frames in all; angles in deg."""

    slices_per_volume: int = 64
    noise_frames: int = 128
    tilt_deg: float = 20.0
    orbit_deg: float = 20.0
    good_deg: float = 20.0
    thresholds: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
    seed: int = 0


def noise_frames(n: int, sector, rng: np.random.Generator) -> np.ndarray:
    """(n, H, W) float32 speckle-like frames inside ``sector`` (0 outside), grey levels in [0, 1]."""
    from scipy.ndimage import gaussian_filter
    mask = np.asarray(sector.mask, bool)   # (H, W), a property of SectorGeometry
    h, w = sector.height, sector.width
    out = np.empty((n, h, w), np.float32)
    depth = np.linspace(0, 1, h)[:, None]
    for i in range(n):
        speckle = rng.rayleigh(1.0, (h, w))
        img = gaussian_filter(speckle, rng.uniform(0.5, 2.0))
        img = img / img.max() * rng.uniform(0.3, 0.9) * (1 - rng.uniform(0, 0.6) * depth)
        out[i] = np.clip(img, 0, 1)
    out *= mask
    return out


def threshold_table(volumes: Iterable, predict: Predict, sector, protocol: ThresholdProtocol) -> dict:
    """-> {'in_range': {'n', 'median', 'p90'}, 'no_heart': {...}, 'rows': [{'threshold', 'in_range_held',
    'in_range_good_held', 'in_range_bad_held', 'no_heart_held'}], 'good_share'} (sigma^2 in rad^2)."""
    from echoposed_ros.geometry import effective_error
    from echoposed_sim.sampling import sample_poses
    from echoposed_sim.slicer import slice_batch

    rng = np.random.default_rng(protocol.seed)
    sig, err = [], []
    for vol in volumes:
        Rv, Rp = sample_poses(rng, protocol.slices_per_volume, vol.base_orbit, vol.base_probe,
                              orbit_max=np.deg2rad(protocol.orbit_deg), tilt_max=np.deg2rad(protocol.tilt_deg))
        imgs = slice_batch(vol, Rv, Rp, rng.uniform(0, 1, len(Rv)), sector)
        ov, op, s2 = predict(imgs)
        # error of each estimate relative to the volume's first slice, compared with the truth:
        # frame-free (the model's constant left factor cancels in P_0^T P_i)
        rel_est_v, rel_est_p = np.swapaxes(ov[0], -1, -2) @ ov, np.swapaxes(op[0], -1, -2) @ op
        rel_true_v, rel_true_p = np.swapaxes(Rv[0], -1, -2) @ Rv, np.swapaxes(Rp[0], -1, -2) @ Rp
        e = np.asarray(effective_error((rel_est_v[1:], rel_est_p[1:]), (rel_true_v[1:], rel_true_p[1:])))
        sig.append(s2[1:])
        err.append(np.rad2deg(e))
    s_in, e_in = np.concatenate(sig), np.concatenate(err)
    _, _, s_noise = predict(noise_frames(protocol.noise_frames, sector, rng))
    good = e_in < protocol.good_deg

    def stats(s: np.ndarray) -> dict:
        return {'n': int(s.size), 'median': float(np.median(s)), 'p90': float(np.percentile(s, 90))}

    def held(s: np.ndarray, t: float) -> float | None:
        return float(np.mean(s > t)) if s.size else None

    rows = [{'threshold': float(t), 'in_range_held': held(s_in, t), 'in_range_good_held': held(s_in[good], t),
             'in_range_bad_held': held(s_in[~good], t), 'no_heart_held': held(s_noise, t)}
            for t in protocol.thresholds]
    return {'in_range': stats(s_in), 'no_heart': stats(s_noise), 'good_share': float(good.mean()),
            'good_deg': protocol.good_deg, 'rows': rows}
