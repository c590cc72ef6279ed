"""The proportional guidance policy on body-frame errors (docs/method.md section 6), pure numpy.

Poses are :class:`echoposed_ros.geometry.Pose` pairs ``(R_v, R_p)`` of (3, 3) rotations in
canonical gauge, as the pose node publishes them (frame: the model's, known only up to an
unknown constant left factor). Body-frame errors ``E_v = P_v^T T_v``, ``E_p = P_p^T T_p``
(P current, T target) give body angular velocities ``omega = gain * log(E)`` (rad/s) per
factor, with a deadband and a norm clip per factor.

Which command is frame-free. Let the estimate be ``P = gauge_fix(A g)`` for the true pose
``g`` and an unknown ``A = (A_v, A_p)``. The probe-frame Cartesian twist
``v_P = -r R_p^T (omega_v x e_z)``, ``omega_P = R_p^T omega_v + omega_p`` (``R^T v`` and
``R^T omega`` of docs/method.md section 6, using ``R^T R_v = R_p^T``) computed from the estimate equals the
true probe-frame twist of the same motion for every ``A_v`` when ``A_p = I``: then the
estimate is the world turned by ``A_v`` about the heart centre (``u_P = A_v u``,
``R_P = A_v R``), and gauge fixing only re-labels the twist about the beam, which the
probe-frame twist does not see (``P_p = Rz(a) R_p``, body ``omega_v`` turned by ``Rz(a)``, and
``Rz(a)`` fixes ``e_z``). The body twists themselves (``ProbeTwist``) are expressed in the
estimate's gauge: applied literally to the true pose by right multiplication they are turned
by ``Rz(-a)`` about the beam, ``a`` the twist of ``A_v R_v``, which diverges for ``|a| > 90``
degrees. A robot (or a simulator) should therefore apply the probe-frame twist
(:func:`apply_probe_frame_twist` is that kinematics). An ``A_p != I`` changes what the model
calls the probe's own axes; no command computed from the estimate alone can undo it, and
the loop tolerates it only up to tens of degrees (see ``docs/policy.md``).

Un-gauge-fixed estimates remove both limits for body twists. The ensemble's aligned members are
``A g`` for the canonical true ``g`` (the network is trained on canonical poses), so their
projected mean ``Q = A g`` (:func:`ungauged_mean`), used for the current pose *and* the target,
gives ``Q^{-1} Q_T = g^{-1} g_T``: the body twists are then the true ones for every
``A`` in SO(3) x SO(3), exact under right multiplication of the true pose. The state machine uses
this whenever both the pose and the target carry members (image targets), else the canonical
poses.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from echoposed_ros.geometry import (
    CartesianTwist,
    GeometryError,
    Pose,
    as_pose,
    body_errors,
    body_twist_to_probe_cartesian,
    effective_error,
    project_to_so3,
    quat_xyzw_to_matrix,
    so3_log,
    step,
)

from .config import ControllerConfig
from .errors import PolicyError

__all__ = [
    'BodyTwist',
    'TrackingResidual',
    'apply_probe_frame_twist',
    'clip_norm',
    'probe_frame_to_body_twist',
    'probe_frame_twist',
    'proportional_twist',
    'tracking_error',
    'ungauged_mean',
]

Array = NDArray[np.float64]


class TrackingResidual(NamedTuple):
    """Error from the current estimate to the target.

    orbit, probe: (3,) rad, ``log(E_v)`` and ``log(E_p)``, body frames of the current estimate's
    factors; orbit_angle, probe_angle: rad, their norms; effective: rad, the gauge-free
    effective error ``sqrt(angle(u, u_T)^2 + angle(R^T R_T)^2)``.
    """

    orbit: Array
    probe: Array
    orbit_angle: float
    probe_angle: float
    effective: float


class BodyTwist(NamedTuple):
    """Body angular velocities (3,) rad/s: ``R_v <- R_v exp(orbit dt)``, ``R_p <- R_p exp(probe dt)``."""

    orbit: Array
    probe: Array

    @classmethod
    def zero(cls) -> BodyTwist:
        """The hold-still command every fail-safe path returns."""
        return cls(np.zeros(3), np.zeros(3))


def tracking_error(current: Sequence[ArrayLike], target: Sequence[ArrayLike]) -> TrackingResidual:
    """Body-frame errors ``E_v = P_v^T T_v``, ``E_p = P_p^T T_p`` as rotation vectors, and the effective error.

    ``current``, ``target``: poses ``(R_v, R_p)`` of (3, 3) rotations in one (model) frame.
    """
    P, T = as_pose(current, 'current'), as_pose(target, 'target')
    if P.orbit.shape != (3, 3) or T.orbit.shape != (3, 3):
        raise PolicyError(f'tracking_error: expected single poses of (3, 3) rotations, got '
                          f'{P.orbit.shape} and {T.orbit.shape}')
    E = body_errors(P, T)
    w_v, w_p = so3_log(E.orbit), so3_log(E.probe)
    return TrackingResidual(w_v, w_p, float(np.linalg.norm(w_v)), float(np.linalg.norm(w_p)),
                         float(effective_error(P, T)))


def clip_norm(w: ArrayLike, limit: float) -> Array:
    """``w`` (3,) scaled down so that ``|w| <= limit`` (direction kept); unchanged when already within."""
    w = np.asarray(w, dtype=np.float64)
    n = float(np.linalg.norm(w))
    if not np.isfinite(n):
        raise PolicyError(f'clip_norm: w must be finite, got {w.tolist()}')
    if limit < 0 or not np.isfinite(limit):
        raise PolicyError(f'clip_norm: limit must be a finite number >= 0, got {limit!r}')
    return w * (limit / n) if n > limit else w.copy()


def proportional_twist(error: TrackingResidual, config: ControllerConfig) -> BodyTwist:
    """``omega = gain * log(E)`` per factor (rad/s, body frame), zero inside the deadband, norm-clipped.

    The orbit factor is clipped to ``config.max_orbit_speed``, the probe factor to
    ``config.max_probe_speed``; a factor whose error angle is below ``config.deadband`` gets 0.
    """
    out = []
    for w, angle, limit in ((error.orbit, error.orbit_angle, config.max_orbit_speed),
                            (error.probe, error.probe_angle, config.max_probe_speed)):
        if angle < config.deadband:
            out.append(np.zeros(3))
        else:
            out.append(clip_norm(config.gain * np.asarray(w, dtype=np.float64), limit))
    return BodyTwist(out[0], out[1])


def probe_frame_twist(current: Sequence[ArrayLike], twist: BodyTwist, radius: float) -> CartesianTwist:
    """Cartesian twist of the probe in the probe frame.

    ``v = -r R_p^T (omega_v x e_z)`` (apex velocity) and ``omega = R_p^T omega_v + omega_p``.

    ``current``: the pose ``(R_v, R_p)`` the twist was computed at (only ``R_p`` matters);
    ``radius``: orbit radius (m for a robot, so ``v`` is m/s); ``omega`` in rad/s. This is
    ``(R^T v, R^T omega)`` of the world-frame twist of docs/method.md section 6 and does not depend on the
    estimate's world rotation (module docstring).
    """
    P = as_pose(current, 'current')
    return body_twist_to_probe_cartesian(P.orbit, P.probe, twist.orbit, twist.probe, radius)


def probe_frame_to_body_twist(current: Sequence[ArrayLike], twist: CartesianTwist, radius: float) -> BodyTwist:
    """The body twists at pose ``current`` whose probe-frame twist is ``twist`` (the inverse of
    :func:`probe_frame_twist`, as :func:`apply_probe_frame_twist` executes it): the apex velocity's
    tangential part moves the orbit factor, the rest of ``omega`` the probe factor. Exact at the true pose;
    from an estimate, the slide direction is turned by the estimate's error about the beam."""
    P = as_pose(current, 'current')
    h = P.probe @ np.asarray(twist.v, dtype=np.float64) / float(radius)
    w_v = np.array([h[1], -h[0], 0.0])
    return BodyTwist(w_v, np.asarray(twist.omega, dtype=np.float64) - P.probe.T @ w_v)


def apply_probe_frame_twist(pose: Sequence[ArrayLike], twist: CartesianTwist, radius: float, dt: float) -> Pose:
    """Move a true pose ``(R_v, R_p)`` as a robot executing a probe-frame twist for ``dt`` seconds would.

    Inverts :func:`probe_frame_twist` at the true pose: the apex stays on the orbit sphere
    (``omega_v x e_z = -(R_p v) / r``; the radial part of ``v`` and the twist about the beam
    of ``omega_v`` are not orbit motion and are left out), ``omega_p = omega - R_p^T omega_v``,
    then one control step with canonical gauge. ``radius`` in the unit of ``v`` times s.
    """
    g = as_pose(pose, 'pose')
    r = float(radius)
    if not np.isfinite(r) or r <= 0:
        raise PolicyError(f'apply_probe_frame_twist: radius must be a finite length > 0, got {radius!r}')
    body = probe_frame_to_body_twist(g, twist, r)
    return step(g, body.orbit, body.probe, dt)


#: rad: how far the members' mean may be from the published pose (effective error) to be used.
UNGAUGED_ATOL = 1e-3


def ungauged_mean(member_orbits_xyzw: ArrayLike, member_probes_xyzw: ArrayLike,
                  pose: Sequence[ArrayLike] | None, atol: float = UNGAUGED_ATOL) -> Pose | None:
    """Projected mean per factor of the ensemble members, NOT gauge-fixed (docs/method.md section 5), or None.

    ``member_*_xyzw``: (K, 4) ROS quaternions (x, y, z, w) of the aligned members ``A_k``.
    Returns None when there are no members, they are malformed (NaN, non-unit, unequal counts),
    or their mean does not show the same slice as ``pose`` (the published, gauge-fixed mean)
    within ``atol`` rad of effective error: members are then not trusted, never guessed.
    """
    if pose is None:
        return None
    try:
        q_v = np.asarray(member_orbits_xyzw, dtype=np.float64).reshape(-1, 4)
        q_p = np.asarray(member_probes_xyzw, dtype=np.float64).reshape(-1, 4)
        if len(q_v) == 0 or len(q_v) != len(q_p):
            return None
        Q = Pose(project_to_so3(quat_xyzw_to_matrix(q_v, 'member_orbit').mean(axis=0), 'mean of member_orbit'),
                 project_to_so3(quat_xyzw_to_matrix(q_p, 'member_probe').mean(axis=0), 'mean of member_probe'))
        if not float(effective_error(Q, as_pose(pose))) <= atol:
            return None
    except (GeometryError, TypeError, ValueError):
        return None
    return Q
