"""Phase invariance: how far the estimate moves over a cardiac cycle at one pose, against how far it
moves between poses 10-20 degrees apart (``echoposed eval phase``).

Per volume, ``poses`` probe poses are drawn with the training sampler about the base pose; each is
sliced at every frame of the volume's cycle (phase ``k / T``). A pose's **spread** is the largest
effective distance (docs/method.md section 1, gauge invariant) between two of its phases' estimates.
Each pose also gets a **partner**: the probe factor turned about a random axis by an angle drawn in
``[near_deg, far_deg]`` (the true effective distance), sliced at one random phase with its pose; the
**estimated distance** is the effective distance between their estimates. The figure of merit is

    ratio = median spread / median estimated distance        (over all poses of all volumes; NaN when
                                                              every estimated distance is 0)

Estimates come from ``predict(images (N, H, W)) -> (orbit (N, 3, 3), probe (N, 3, 3), sigma2 (N,))``.
Angles in degrees in the results.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from echoposed_ros.geometry import effective_error, so3_exp
from echoposed_sim.sampling import sample_poses
from echoposed_sim.sector import SectorGeometry
from echoposed_sim.slicer import slice_batch

__all__ = ['PhaseProtocol', 'phase_invariance']


@dataclass(frozen=True)
class PhaseProtocol:
    """poses per volume; the partners' true distance in [near_deg, far_deg] (deg); seed of the draws."""

    poses: int = 12
    near_deg: float = 10.0
    far_deg: float = 20.0
    seed: int = 0


def _spread(orbit: np.ndarray, probe: np.ndarray) -> float:
    """Largest effective distance (rad) between two of the T estimates (T, 3, 3)."""
    t = len(orbit)
    i, j = np.triu_indices(t, 1)
    return float(effective_error((orbit[i], probe[i]), (orbit[j], probe[j])).max())


def phase_invariance(volumes: Iterable[Any], predict: Callable[[np.ndarray], Any], sector: SectorGeometry,
                     protocol: PhaseProtocol = PhaseProtocol()) -> dict[str, Any]:
    """The figures of the module doc: {'ratio', 'median_spread_deg', 'median_estimated_distance_deg',
    'median_true_distance_deg', 'volumes': [{'name', 'frames', 'median_spread_deg', 'median_estimated_distance_deg'}],
    'protocol'}."""
    spreads, dists, truths, per_volume = [], [], [], []
    for v_index, vol in enumerate(volumes):
        rng = np.random.default_rng([protocol.seed, v_index])
        frames = int(vol.data.shape[0])
        R_v, R_p = sample_poses(rng, protocol.poses, vol.base_orbit, vol.base_probe)
        phases = np.arange(frames) / frames
        images = slice_batch(vol, np.repeat(R_v, frames, 0), np.repeat(R_p, frames, 0),
                             np.tile(phases, protocol.poses), sector)
        orbit, probe, _ = predict(images)
        orbit, probe = orbit.reshape(protocol.poses, frames, 3, 3), probe.reshape(protocol.poses, frames, 3, 3)
        s = [_spread(orbit[k], probe[k]) for k in range(protocol.poses)]
        axes = rng.normal(size=(protocol.poses, 3))
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        angles = np.deg2rad(rng.uniform(protocol.near_deg, protocol.far_deg, protocol.poses))
        R_p2 = R_p @ so3_exp(axes * angles[:, None])
        t = rng.integers(frames, size=protocol.poses) / frames
        pair = slice_batch(vol, np.concatenate([R_v, R_v]), np.concatenate([R_p, R_p2]), np.concatenate([t, t]), sector)
        o2, p2, _ = predict(pair)
        n = protocol.poses
        d = effective_error((o2[:n], p2[:n]), (o2[n:], p2[n:]))
        true = effective_error((R_v, R_p), (R_v, R_p2))
        spreads += s
        dists += list(d)
        truths += list(true)
        per_volume.append({'name': str(vol.name), 'frames': frames,
                           'median_spread_deg': float(np.degrees(np.median(s))),
                           'median_estimated_distance_deg': float(np.degrees(np.median(d)))})
    spread, dist = float(np.degrees(np.median(spreads))), float(np.degrees(np.median(dists)))
    return {'ratio': spread / dist if dist > 0 else float('nan'), 'median_spread_deg': spread,
            'median_estimated_distance_deg': dist,
            'median_true_distance_deg': float(np.degrees(np.median(truths))), 'poses': len(spreads),
            'volumes': per_volume, 'protocol': asdict(protocol)}
