"""Physical probe frame, effective pose and effective error (docs/method.md section 1).

Frames: volume frame V (world), probe frame P (apex origin, z = beam, x = lateral,
y = elevation). Length units are whatever ``centre`` and ``radius`` use (mm in the
simulator's volume frame, m for a robot); angles are radians.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import so3
from .pose import Pose, as_pose

__all__ = [
    'EffectivePose', 'EffectiveResidual', 'ProbeFrame', 'angle_between', 'body_errors', 'effective_error',
    'effective_error_parts', 'effective_pose', 'probe_frame',
]

Array = NDArray[np.float64]


class EffectivePose(NamedTuple):
    """What an image can show: ``u = R_v e_z`` ``(..., 3)`` (unit) and ``R = R_v R_p`` ``(..., 3, 3)``."""

    u: Array
    R: Array


class ProbeFrame(NamedTuple):
    """Probe orientation ``R`` ``(..., 3, 3)`` (columns = probe axes in V) and apex ``o`` ``(..., 3)`` in V."""

    R: Array
    o: Array


def probe_frame(orbit: ArrayLike, probe: ArrayLike, centre: ArrayLike, radius: float) -> ProbeFrame:
    """Physical probe pose in the volume frame: ``R = R_v R_p`` and apex ``o = c - r R_v e_z``.

    ``orbit``, ``probe``: ``(..., 3, 3)``; ``centre``: ``(3,)`` (or broadcastable ``(..., 3)``),
    ``radius``: scalar, same length unit as ``centre``.
    """
    R_v = so3.check_rotation(orbit, 'orbit R_v')
    R_p = so3.check_rotation(probe, 'probe R_p')
    c = so3.check_vectors(centre, 3, 'centre')
    r = so3.check_scalar(radius, 'radius (length)', minimum=0.0)
    return ProbeFrame(R_v @ R_p, c - r * R_v[..., :, 2])


def effective_pose(g: Sequence[ArrayLike]) -> EffectivePose:
    """Effective pose ``(u, R) = (R_v e_z, R_v R_p)`` of ``g``; gauge invariant."""
    g = as_pose(g)
    return EffectivePose(g.orbit[..., :, 2].copy(), g.orbit @ g.probe)


def angle_between(a: ArrayLike, b: ArrayLike) -> Array:
    """Angle (rad, ``[0, pi]``) between vectors ``a`` and ``b`` ``(..., 3)`` (any non-zero length).

    Computed as ``atan2(|a x b|, a . b)``: accurate at every angle, unlike ``arccos``.
    """
    a = so3.check_vectors(a, 3, 'a')
    b = so3.check_vectors(b, 3, 'b')
    return np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, axis=-1))


def effective_error(g: Sequence[ArrayLike], h: Sequence[ArrayLike]) -> Array:
    """Effective error ``sqrt(angle_between(u_g, u_h)^2 + angle(R_g^T R_h)^2)`` in rad, shape ``(...)``.

    Gauge invariant; zero iff ``g`` and ``h`` give the same slice. (Report in degrees.)
    """
    eg, eh = effective_pose(as_pose(g, 'g')), effective_pose(as_pose(h, 'h'))
    a_u = angle_between(eg.u, eh.u)
    a_R = so3.angle(np.swapaxes(eg.R, -1, -2) @ eh.R)
    return np.hypot(a_u, a_R)


class EffectiveResidual(NamedTuple):
    """The effective error from ``g`` to ``h`` in parts (rad).

    apex: ``(...)``, the angle between the beam directions ``u_g`` and ``u_h`` (where the apex
    sits on the chest); turn: ``(..., 3)``, ``log(R_g^T R_h)``, the probe turn still to make, in
    ``g``'s probe frame (x lateral tilt, y elevation tilt, z about the beam).
    ``effective_error = hypot(apex, |turn|)``.
    """

    apex: Array
    turn: Array


def effective_error_parts(g: Sequence[ArrayLike], h: Sequence[ArrayLike]) -> EffectiveResidual:
    """:func:`effective_error` split into the apex angle and the probe-frame turn (rad); gauge invariant."""
    eg, eh = effective_pose(as_pose(g, 'g')), effective_pose(as_pose(h, 'h'))
    return EffectiveResidual(angle_between(eg.u, eh.u), so3.log(np.swapaxes(eg.R, -1, -2) @ eh.R))


def body_errors(P: Sequence[ArrayLike], T: Sequence[ArrayLike]) -> Pose:
    """Body-frame errors ``(E_v, E_p) = (P_v^T T_v, P_p^T T_p)`` from current ``P`` to target ``T``.

    Invariant under a common left factor on both estimates (docs/method.md section 6).
    """
    P, T = as_pose(P, 'P'), as_pose(T, 'T')
    return Pose(np.swapaxes(P.orbit, -1, -2) @ T.orbit, np.swapaxes(P.probe, -1, -2) @ T.probe)
