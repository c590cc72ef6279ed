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

With the pose node's cycle fusion (:func:`fused_phase_invariance`, ``fusion_window_s`` > 0) the figures are
those of what the node publishes: the probe held still, frames arrive at the volume's own frame rate
(``T / cycle_s``, one volume frame after the other, the cycle repeating), each published estimate fuses the
frames of the last ``fusion_window_s`` (:class:`~echoposed_ros.estimator.fusion.CycleFusion`), and a pose's
spread is taken over the ``T`` published estimates of one cycle after a window has filled. The window is
not matched to the heart's period (its cycle is 0.4-1.3 s with ``--motion wide``), so part of a cycle is
counted twice and the published estimate still moves with the phase. The partner is fused the same way.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from echoposed_ros.estimator.fusion import CycleFusion, heart_pose_to_arm
from echoposed_ros.geometry import effective_error, so3_exp
from echoposed_sim.sampling import sample_poses
from echoposed_sim.sector import SectorGeometry
from echoposed_sim.slicer import slice_batch

__all__ = ['PhaseProtocol', 'fused_phase_invariance', 'phase_invariance']


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
    return _figures(spreads, dists, truths, per_volume, protocol)


def _figures(spreads: list[float], dists: list[float], truths: list[float], per_volume: list[dict[str, Any]],
             protocol: PhaseProtocol, **extra: Any) -> dict[str, Any]:
    """The result dict of the module docstring from every pose's spread, estimated and true distance (rad)."""
    spread, dist = float(np.degrees(np.median(spreads))), float(np.degrees(np.median(dists)))
    return {'ratio': spread / dist if dist > 0 else float('nan'), 'median_spread_deg': spread,
            'median_estimated_distance_deg': dist,
            'median_true_distance_deg': float(np.degrees(np.median(truths))), 'poses': len(spreads),
            **extra, 'volumes': per_volume, 'protocol': asdict(protocol)}


def _published(members_v: np.ndarray, members_p: np.ndarray, sigma2: np.ndarray, cycle_s: float, window_s: float,
               arm: Any) -> tuple[np.ndarray, np.ndarray]:
    """The T published (fused) estimates of one cycle at a still pose, from the members of its T phases
    ((T, K, 3, 3) each, sigma2 (T,)): frames stream at T / cycle_s, one cycle after a window has filled."""
    t = len(members_v)
    dt = cycle_s / t
    warm = int(np.ceil(window_s / dt))
    fusion = CycleFusion(window_s, 1.0)
    orbit, probe = np.empty((t, 3, 3)), np.empty((t, 3, 3))
    for n in range(warm + t):
        out = fusion.add(n * dt, members_v[n % t], members_p[n % t], float(sigma2[n % t]), arm)
        if n >= warm:
            orbit[n - warm], probe[n - warm] = out.orbit, out.probe
    return orbit, probe


def fused_phase_invariance(volumes: Iterable[Any], predict_members: Callable[[np.ndarray], Any],
                           sector: SectorGeometry, fusion_window_s: float,
                           protocol: PhaseProtocol = PhaseProtocol()) -> dict[str, Any]:
    """:func:`phase_invariance` of the published estimates with cycle fusion over ``fusion_window_s`` (module
    docstring); ``predict_members(images) -> (member orbits (N, K, 3, 3), member probes, sigma2 (N,))``. The same
    poses and partners as without fusion; the partner is sliced at every phase too."""
    spreads, dists, truths, per_volume = [], [], [], []
    for v_index, vol in enumerate(volumes):
        rng = np.random.default_rng([protocol.seed, v_index])
        frames = int(vol.data.shape[0])
        n = protocol.poses
        R_v, R_p = sample_poses(rng, n, vol.base_orbit, vol.base_probe)
        axes = rng.normal(size=(n, 3))
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        angles = np.deg2rad(rng.uniform(protocol.near_deg, protocol.far_deg, n))
        R_p2 = R_p @ so3_exp(axes * angles[:, None])
        phases = np.arange(frames) / frames
        both_v, both_p = np.concatenate([R_v, R_v]), np.concatenate([R_p, R_p2])
        images = slice_batch(vol, np.repeat(both_v, frames, 0), np.repeat(both_p, frames, 0),
                             np.tile(phases, 2 * n), sector)
        m_v, m_p, sig = predict_members(images)
        m_v = m_v.reshape(2 * n, frames, *m_v.shape[1:])
        m_p = m_p.reshape(2 * n, frames, *m_p.shape[1:])
        sig = np.asarray(sig).reshape(2 * n, frames)
        pub = [_published(m_v[i], m_p[i], sig[i], float(vol.cycle_s), fusion_window_s,
                          heart_pose_to_arm(both_v[i], both_p[i], 1.0)) for i in range(2 * n)]
        s = [_spread(*pub[k]) for k in range(n)]
        pick = rng.integers(frames, size=n)
        d = np.array([float(effective_error((pub[k][0][pick[k]], pub[k][1][pick[k]]),
                                            (pub[n + k][0][pick[k]], pub[n + k][1][pick[k]]))) for k in range(n)])
        true = effective_error((R_v, R_p), (R_v, R_p2))
        spreads += s
        dists += list(d)
        truths += list(true)
        per_volume.append({'name': str(vol.name), 'frames': frames, 'cycle_s': float(vol.cycle_s),
                           'median_spread_deg': float(np.degrees(np.median(s))),
                           'median_estimated_distance_deg': float(np.degrees(np.median(d)))})
    return _figures(spreads, dists, truths, per_volume, protocol, fusion_window_s=float(fusion_window_s))
