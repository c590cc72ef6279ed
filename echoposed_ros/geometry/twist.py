"""Body-frame pose velocity -> Cartesian twist of the probe (docs/method.md section 6).

A body twist is ``(omega_v, omega_p)`` (rad/s, each ``(..., 3)``), meaning
``dR_v/dt = R_v [omega_v]_x`` and ``dR_p/dt = R_p [omega_p]_x``. Differentiating the probe
frame ``o = c - r R_v e_z``, ``R = R_v R_p`` gives the apex velocity and angular velocity.
Length unit of ``v`` is that of ``radius`` per second.

A constant probe-frame twist held for unit time moves the probe by a rigid transform:
:func:`twist_to_transform` and its inverse :func:`transform_to_twist` (homogeneous ``(4, 4)`` matrices,
rotation and apex position in the frame the twist is expressed in) compose a robot's motion exactly.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import so3
from .errors import GeometryError

__all__ = ['CartesianTwist', 'body_twist_to_cartesian', 'body_twist_to_probe_cartesian', 'transform_to_twist',
           'twist_to_transform']

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


_SMALL = 1e-4   # rad: below this angle the series of V and its inverse are used


def _v_matrix(omega: Array) -> Array:
    """``V(omega)`` (3, 3) with ``exp([omega, v]) = [exp(omega), V v]``."""
    theta = float(np.linalg.norm(omega))
    W = so3.hat(omega)
    if theta < _SMALL:
        return np.eye(3) + 0.5 * W + W @ W / 6.0
    return (np.eye(3) + (1.0 - np.cos(theta)) / theta ** 2 * W
            + (theta - np.sin(theta)) / theta ** 3 * W @ W)


def twist_to_transform(twist: CartesianTwist) -> Array:
    """The rigid transform ``(4, 4)`` of holding the twist (``v`` length/s, ``omega`` rad/s, both (3,) in one
    frame) for one second: the exponential of the twist; rotation ``exp(omega)``, translation ``V(omega) v``."""
    v = so3.check_vectors(twist.v, 3, 'twist.v')
    omega = so3.check_vectors(twist.omega, 3, 'twist.omega')
    if v.shape != (3,) or omega.shape != (3,):
        raise GeometryError(f'twist: expected v and omega of shape (3,), got {v.shape} and {omega.shape}')
    V = _v_matrix(omega)
    T = np.eye(4)
    T[:3, :3] = so3.exp(omega)
    T[:3, 3] = V @ v
    return T


def transform_to_twist(T: ArrayLike) -> CartesianTwist:
    """The twist whose one-second motion is the rigid transform ``T`` (4, 4) (the inverse of
    :func:`twist_to_transform` for rotations below pi): ``omega = log(R)`` rad, ``v = V(omega)^-1 t``."""
    M = np.asarray(T, dtype=np.float64)
    if M.shape != (4, 4) or not np.all(np.isfinite(M)):
        raise GeometryError(f'T: expected a finite (4, 4) rigid transform, got shape {M.shape}')
    omega = so3.log(M[:3, :3], 'T rotation')
    theta = float(np.linalg.norm(omega))
    W = so3.hat(omega)
    if theta < _SMALL:
        V_inv = np.eye(3) - 0.5 * W + W @ W / 12.0
    else:
        V_inv = (np.eye(3) - 0.5 * W
                 + (1.0 - theta * np.sin(theta) / (2.0 * (1.0 - np.cos(theta)))) / theta ** 2 * W @ W)
    return CartesianTwist(V_inv @ M[:3, 3], omega)
