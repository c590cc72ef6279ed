"""Random probe poses around a volume's base pose (docs/method.md section 3).

The distribution training uses and the simulator starts guidance runs from:
- orbit factor: angle uniform in [0, orbit_max] about a random axis normal to z (twist-free);
- probe factor: a turn about z uniform in [-turn_max, turn_max] (the full circle by default),
  and tilts about x and about y each uniform in [-tilt_max, tilt_max];
composed on the right of the base pose, ``(B_v S, B_p Rz Rx Ry)``, then put in canonical gauge.
Angles in radians; rotations (..., 3, 3).

With ``turn_clusters = c > 0`` the turns about z come in c clusters instead of independently:
pose i turns by ``centre[i mod c] + u_i``, centres uniform in [-turn_max, turn_max] and u_i
uniform in [-cluster_width, cluster_width], so a batch holds many pairs a few degrees apart about
the beam (training's fine-turn signal) as well as far ones. Off (0) the draws are unchanged.
"""
from __future__ import annotations

import numpy as np

from echoposed_ros.geometry import gauge_fix, rot_x, rot_y, rot_z, so3_exp

from .errors import SimError

__all__ = ['sample_poses']


def sample_poses(rng: np.random.Generator, n: int, base_orbit: np.ndarray | None = None,
                 base_probe: np.ndarray | None = None, *, orbit_max: float = np.deg2rad(20.0),
                 tilt_max: float = np.deg2rad(20.0), turn_max: float = np.pi, turn_clusters: int = 0,
                 cluster_width: float = np.deg2rad(10.0)) -> tuple[np.ndarray, np.ndarray]:
    """``n`` poses -> (orbits (n, 3, 3), probes (n, 3, 3)), canonical gauge."""
    for name, value in (('orbit_max', orbit_max), ('tilt_max', tilt_max), ('turn_max', turn_max),
                        ('cluster_width', cluster_width)):
        if not (np.isfinite(value) and 0 <= value <= np.pi):
            raise SimError(f'{name} = {value} rad; expected a finite angle in [0, pi]')
    if not 0 <= turn_clusters <= n:
        raise SimError(f'turn_clusters = {turn_clusters}; expected 0 (independent turns) to n = {n}')
    base_orbit = np.eye(3) if base_orbit is None else np.asarray(base_orbit, dtype=np.float64)
    base_probe = np.eye(3) if base_probe is None else np.asarray(base_probe, dtype=np.float64)
    axis_angle = rng.uniform(0.0, 2 * np.pi, n)
    axes = np.stack([np.cos(axis_angle), np.sin(axis_angle), np.zeros(n)], axis=-1)
    swing = so3_exp(axes * rng.uniform(0.0, orbit_max, n)[:, None])
    if turn_clusters:
        centres = rng.uniform(-turn_max, turn_max, turn_clusters)
        turn = rot_z(centres[np.arange(n) % turn_clusters] + rng.uniform(-cluster_width, cluster_width, n))
    else:
        turn = rot_z(rng.uniform(-turn_max, turn_max, n))
    tilt = rot_x(rng.uniform(-tilt_max, tilt_max, n)) @ rot_y(rng.uniform(-tilt_max, tilt_max, n))
    g = gauge_fix((base_orbit @ swing, base_probe @ turn @ tilt))
    return g.orbit, g.probe
