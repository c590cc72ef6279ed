"""Pose bookkeeping of the simulated probe, on top of the geometry core ``echoposed_ros.geometry``.

Poses are canonical-gauge pairs ``(R_v, R_p)`` of (3, 3) float64 rotations (docs/method.md section 1);
the probe frame is ``R = R_v R_p`` with apex ``o = c - r R_v e_z`` in the volume frame V (mm).
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from echoposed_ros.geometry import Pose, gauge_fix, so3_exp

from .errors import WorldError

__all__ = ['as_finite_vector', 'canonical_pose', 'integrate_cartesian', 'pose_from_probe_frame', 'swing_to']

Array = NDArray[np.float64]


def as_finite_vector(x: ArrayLike, name: str) -> Array:
    """``x`` as a finite float64 (3,) vector, else :class:`WorldError` naming ``name``."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise WorldError(f'{name}: expected 3 finite numbers, got {x!r}') from exc
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise WorldError(f'{name}: expected 3 finite numbers, got {np.asarray(x).tolist()!r}')
    return a


def canonical_pose(orbit: ArrayLike, probe: ArrayLike) -> Pose:
    """Check ``(orbit, probe)`` are (3, 3) rotations and return them in canonical gauge."""
    try:
        R_v = np.asarray(orbit, dtype=np.float64)
        R_p = np.asarray(probe, dtype=np.float64)
        if R_v.shape != (3, 3) or R_p.shape != (3, 3):
            raise WorldError(f'pose: expected two (3, 3) rotations, got shapes {R_v.shape} and {R_p.shape}')
        return gauge_fix((R_v, R_p))
    except WorldError:
        raise
    except ValueError as exc:  # GeometryError names the bad factor
        raise WorldError(f'pose: {exc}') from exc


def swing_to(u: ArrayLike) -> Array:
    """The twist-free rotation (3, 3) taking e_z to the unit vector ``u`` (about an axis normal to z).

    For ``u = -e_z`` (undefined axis) the half turn about x is returned.
    """
    u = np.asarray(u, dtype=np.float64)
    u = u / np.linalg.norm(u)
    axis = np.array([-u[1], u[0], 0.0])  # e_z x u
    s = np.linalg.norm(axis)
    if s < 1e-15:
        return np.eye(3) if u[2] > 0 else np.diag([1.0, -1.0, -1.0])
    return so3_exp(axis / s * np.arctan2(s, u[2]))


def pose_from_probe_frame(R: ArrayLike, o_mm: ArrayLike, centre_mm: ArrayLike) -> Pose:
    """Canonical pose of a probe frame: ``u = (c - o) / |c - o|``, ``R_v`` = swing e_z -> u, ``R_p = R_v^T R``.

    R: (3, 3) probe orientation in V; o_mm: (3,) apex in V (mm); centre_mm: (3,) the orbit centre.
    The apex's distance from the centre is not kept (a pose has a fixed orbit radius).
    """
    d = np.asarray(centre_mm, dtype=np.float64) - np.asarray(o_mm, dtype=np.float64)
    if not np.linalg.norm(d) > 0:
        raise WorldError(f'probe apex {np.asarray(o_mm).tolist()} sits on the orbit centre; no orbit direction')
    R_v = swing_to(d)
    return Pose(R_v, R_v.T @ np.asarray(R, dtype=np.float64))


def integrate_cartesian(R: Array, o_mm: Array, v_mm_s: Array, omega: Array, dt: float,
                        frame: str) -> tuple[Array, Array]:
    """Move the probe frame by a constant Cartesian twist for ``dt`` seconds (servo convention).

    ``v_mm_s`` is the apex velocity (mm/s) and ``omega`` the angular velocity (rad/s), both in
    probe axes (``frame='probe'``) or volume-frame axes (``frame='world'``); the apex moves in a
    straight line, the orientation by ``exp(omega dt)`` (left in V, right in the probe frame).
    Returns the new ``(R, o_mm)``.
    """
    if frame == 'probe':
        return R @ so3_exp(omega * dt), o_mm + R @ v_mm_s * dt
    if frame == 'world':
        return so3_exp(omega * dt) @ R, o_mm + v_mm_s * dt
    raise WorldError(f"frame: expected 'probe' or 'world', got {frame!r}")
