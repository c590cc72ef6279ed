"""The pose group SO(3) x SO(3) (docs/method.md section 1).

A pose ``g = (R_v, R_p)`` is a pair of rotation arrays of shape ``(..., 3, 3)``: the orbit
factor ``R_v`` (moves the probe over the sphere about the volume centre) and the probe factor
``R_p`` (turns the probe about its apex). Any pair (tuple, list) is accepted; results are
:class:`Pose` named tuples, so ``R_v, R_p = compose(g, h)`` works. Tangent 6-vectors are
``(omega_v, omega_p)`` in radians, body frame (right perturbation ``R exp(omega)``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import so3
from .errors import GeometryError

__all__ = [
    'Pose', 'as_pose', 'compose', 'distance', 'exp', 'gauge_fix', 'identity', 'inverse', 'log', 'right_apply',
    'step',
]

Array = NDArray[np.float64]


class Pose(NamedTuple):
    """A pose ``(orbit, probe)``: two float64 rotation arrays ``(..., 3, 3)`` (R_v, R_p)."""

    orbit: Array
    probe: Array


def as_pose(g: Sequence[ArrayLike], name: str = 'g') -> Pose:
    """Check ``g`` is a pair of rotation arrays ``(..., 3, 3)`` and return it as a float64 :class:`Pose`."""
    if isinstance(g, np.ndarray) or not hasattr(g, '__len__') or len(g) != 2:
        shape = f'array of shape {np.shape(g)}' if isinstance(g, np.ndarray) else (
            f'length {len(g)}' if hasattr(g, '__len__') else type(g).__name__)
        raise GeometryError(f'{name}: expected a pose (R_v, R_p), a pair of (..., 3, 3) rotations, got {shape}')
    return Pose(so3.check_rotation(g[0], f'{name} orbit R_v'), so3.check_rotation(g[1], f'{name} probe R_p'))


def identity(shape: tuple[int, ...] = ()) -> Pose:
    """The identity pose ``(I, I)``, broadcast to batch ``shape``."""
    eye = np.broadcast_to(np.eye(3), tuple(shape) + (3, 3)).copy()
    return Pose(eye, eye.copy())


def compose(g: Sequence[ArrayLike], h: Sequence[ArrayLike]) -> Pose:
    """Group product ``g h = (g_v h_v, g_p h_p)`` (batch axes broadcast)."""
    g, h = as_pose(g, 'g'), as_pose(h, 'h')
    return Pose(g.orbit @ h.orbit, g.probe @ h.probe)


def inverse(g: Sequence[ArrayLike]) -> Pose:
    """Group inverse ``g^{-1} = (R_v^T, R_p^T)``."""
    g = as_pose(g)
    return Pose(np.swapaxes(g.orbit, -1, -2).copy(), np.swapaxes(g.probe, -1, -2).copy())


def exp(xi: ArrayLike) -> Pose:
    """Pose ``(exp(omega_v), exp(omega_p))`` of tangent vectors ``xi = (omega_v, omega_p)`` ``(..., 6)``, rad."""
    xi = so3.check_vectors(xi, 6, 'xi (omega_v, omega_p)')
    return Pose(so3.exp(xi[..., :3]), so3.exp(xi[..., 3:]))


def log(g: Sequence[ArrayLike]) -> Array:
    """Tangent vector ``(log R_v, log R_p)`` ``(..., 6)`` in rad; each half has norm in ``[0, pi]``."""
    g = as_pose(g)
    return np.concatenate([so3.log(g.orbit), so3.log(g.probe)], axis=-1)


def distance(g: Sequence[ArrayLike], h: Sequence[ArrayLike]) -> Array:
    """Distance (docs/method.md section 1) ``sqrt(angle(g_v^T h_v)^2 + angle(g_p^T h_p)^2)`` in rad, shape ``(...)``.

    Per-factor (NOT gauge invariant): use :func:`effective.effective_error` to compare slices.
    """
    g, h = as_pose(g, 'g'), as_pose(h, 'h')
    a_v = so3.angle(np.swapaxes(g.orbit, -1, -2) @ h.orbit)
    a_p = so3.angle(np.swapaxes(g.probe, -1, -2) @ h.probe)
    return np.hypot(a_v, a_p)


def gauge_fix(g: Sequence[ArrayLike]) -> Pose:
    """Canonical gauge: split ``R_v = S rot_z(tau)`` (swing-twist) and return ``(S, rot_z(tau) R_p)``.

    Keeps the effective pose (``u = R_v e_z`` and ``R = R_v R_p``) and is idempotent; the
    result's orbit factor has no twist about z.
    """
    g = as_pose(g)
    S, tau = so3.swing_twist(g.orbit, 'g orbit R_v')
    return Pose(S, so3.rot_z(tau) @ g.probe)


def right_apply(g: Sequence[ArrayLike], omega_v: ArrayLike, omega_p: ArrayLike) -> Pose:
    """Body-frame motion ``(R_v exp(omega_v), R_p exp(omega_p))``; ``omega_*`` ``(..., 3)`` in rad. No gauge fix."""
    g = as_pose(g)
    return Pose(g.orbit @ so3.exp(omega_v, 'omega_v'), g.probe @ so3.exp(omega_p, 'omega_p'))


def step(g: Sequence[ArrayLike], omega_v: ArrayLike, omega_p: ArrayLike, dt: float) -> Pose:
    """One control step (docs/method.md section 6): ``gauge_fix(R_v exp(omega_v dt), R_p exp(omega_p dt))``.

    ``omega_v``, ``omega_p``: body-frame angular velocities ``(..., 3)`` in rad/s; ``dt`` in s.
    """
    dt = so3.check_scalar(dt, 'dt (s)')
    w_v = so3.check_vectors(omega_v, 3, 'omega_v') * dt
    w_p = so3.check_vectors(omega_p, 3, 'omega_p') * dt
    return gauge_fix(right_apply(g, w_v, w_p))
