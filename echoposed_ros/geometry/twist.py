"""Body-frame pose velocity -> Cartesian twist of the probe (docs/method.md section 6).

A body twist is ``(omega_v, omega_p)`` (rad/s, each ``(..., 3)``), meaning
``dR_v/dt = R_v [omega_v]_x`` and ``dR_p/dt = R_p [omega_p]_x``. Differentiating the probe
frame ``o = c - r R_v e_z``, ``R = R_v R_p`` gives the apex velocity and angular velocity.
Length unit of ``v`` is that of ``radius`` per second.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import so3

__all__ = ['CartesianTwist', 'body_twist_to_cartesian', 'body_twist_to_probe_cartesian']

Array = NDArray[np.float64]

_EZ = np.array([0.0, 0.0, 1.0])


class CartesianTwist(NamedTuple):
    """Apex linear velocity ``v`` ``(..., 3)`` and angular velocity ``omega`` ``(..., 3)`` (rad/s)."""

    v: Array
    omega: Array


def _check(orbit: ArrayLike, probe: ArrayLike, omega_v: ArrayLike, omega_p: ArrayLike,
           radius: float) -> tuple[Array, Array, Array, Array, float]:
    R_v = so3.check_rotation(orbit, 'orbit R_v')
    R_p = so3.check_rotation(probe, 'probe R_p')
    w_v = so3.check_vectors(omega_v, 3, 'omega_v')
    w_p = so3.check_vectors(omega_p, 3, 'omega_p')
    r = so3.check_scalar(radius, 'radius (length)', minimum=0.0)
    return R_v, R_p, w_v, w_p, r


def body_twist_to_cartesian(orbit: ArrayLike, probe: ArrayLike, omega_v: ArrayLike, omega_p: ArrayLike,
                            radius: float) -> CartesianTwist:
    """Cartesian twist of the probe in the volume (world) frame.

    ``v = -r R_v (omega_v x e_z)`` (apex velocity) and ``omega = R_v omega_v + R_v R_p omega_p``.
    ``orbit``, ``probe``: ``(..., 3, 3)``; ``omega_v``, ``omega_p``: ``(..., 3)`` rad/s, body frame.
    """
    R_v, R_p, w_v, w_p, r = _check(orbit, probe, omega_v, omega_p, radius)
    v = -r * (R_v @ np.cross(w_v, _EZ)[..., None])[..., 0]
    omega = (R_v @ w_v[..., None])[..., 0] + (R_v @ R_p @ w_p[..., None])[..., 0]
    return CartesianTwist(v, omega)


def body_twist_to_probe_cartesian(orbit: ArrayLike, probe: ArrayLike, omega_v: ArrayLike, omega_p: ArrayLike,
                                  radius: float) -> CartesianTwist:
    """The same twist as :func:`body_twist_to_cartesian`, expressed in the probe frame: ``(R^T v, R^T omega)``.

    ``R = R_v R_p``; ``v`` is still the velocity of the apex (the probe frame origin).
    """
    world = body_twist_to_cartesian(orbit, probe, omega_v, omega_p, radius)
    Rt = np.swapaxes(so3.check_rotation(orbit) @ so3.check_rotation(probe), -1, -2)
    return CartesianTwist((Rt @ world.v[..., None])[..., 0], (Rt @ world.omega[..., None])[..., 0])
