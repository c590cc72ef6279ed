"""Cycle fusion: the ensemble's estimates of the last ``window_s`` seconds, carried to the newest frame by
the arm's measured motion and averaged, so the published pose does not swing with the heartbeat.

At one probe pose the per-frame estimate moves with the cardiac phase (docs/estimator.md, "Phase").
The arm knows exactly how the probe moved between two frames, so an older frame's estimate can be
carried to the newest frame's pose: its physical probe orientation ``R = R_v R_p`` is turned by the
probe's own measured turn ``R_i^T R_n`` (probe axes), and its heart-centre direction ``u = R_v e_z`` is
recomputed from the apex's measured displacement and the orbit radius. Averaging the carried estimates
of about one cardiac cycle (per ensemble member: mean direction and projected mean orientation) leaves
the pose and drops the phase. Nothing of the pose is taken from the arm: only relative motion, which
holds whatever the (unknown) placement of the heart in the arm's world and whatever the model's frame
turned about the heart centre (``A_v``); a model whose frame also turns the probe's own axes (``A_p != I``,
an unpinned export, docs/estimator.md) is carried wrongly, as its Cartesian twist is.

Conventions: rotations (3, 3) float64, columns = probe axes (x lateral, y elevation, z beam); members
``(K, 3, 3)`` aligned and not gauge-fixed, as :class:`echoposed_ros.estimator.Estimate` holds them;
apexes in metres (any length unit, the same as ``radius``); times in seconds. Frames whose ensemble is
unsure (``sigma2 > max_sigma2``) are not fused, and an unsure newest frame is published as it is.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..geometry import mean_and_sigma2, project_to_so3, so3_exp
from .errors import EstimatorError

__all__ = ['ArmPose', 'ArmPoseHistory', 'CycleFusion', 'FusedEstimate', 'FusionSettings', 'fuse_still',
           'heart_pose_to_arm', 'transport_members']

Array = NDArray[np.float64]


@dataclass(frozen=True)
class FusionSettings:
    """The pose node's cycle fusion (``config/pose.yaml``, ``PoseNodeConfig.fusion_settings``): ``window_s`` (0 =
    single frames), ``orbit_radius`` m, ``max_sigma2`` rad^2, ``arm_tolerance_s``: an image takes the arm pose
    stamped nearest it within this."""

    window_s: float = 0.0
    orbit_radius: float = 0.1
    max_sigma2: float = 0.5
    arm_tolerance_s: float = 0.05

    def fusion(self) -> CycleFusion:
        """A fresh :class:`CycleFusion` with these settings."""
        return CycleFusion(self.window_s, self.orbit_radius, self.max_sigma2)


class ArmPose(NamedTuple):
    """The probe's pose as the arm measures it: ``R`` (3, 3), columns = probe axes in a fixed world frame,
    and ``apex`` (3,) in that frame (m)."""

    R: Array
    apex: Array


class ArmPoseHistory:
    """The arm's latest measured poses by stamp (int64 ns), at most ``capacity`` (the oldest go first):
    :meth:`at` gives the one stamped nearest a frame's stamp within a tolerance, as the pose node pairs each
    image with the arm for cycle fusion. Stamps may arrive out of order."""

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 1:
            raise EstimatorError(f'arm pose history: expected a capacity >= 1, got {capacity!r}')
        self._poses: deque[tuple[int, ArmPose]] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._poses)

    def add(self, stamp_ns: int, pose: ArmPose) -> None:
        """Keep ``pose``, measured at ``stamp_ns``."""
        self._poses.append((int(stamp_ns), pose))

    def at(self, stamp_ns: int, tolerance_s: float) -> ArmPose | None:
        """The pose stamped nearest ``stamp_ns``, or None when none lies within ``tolerance_s`` of it."""
        if not self._poses:
            return None
        stamps = np.fromiter((t for t, _ in self._poses), dtype=np.int64, count=len(self._poses))
        k = int(np.argmin(np.abs(stamps - int(stamp_ns))))
        return self._poses[k][1] if abs(int(stamps[k]) - int(stamp_ns)) <= tolerance_s * 1e9 else None


def heart_pose_to_arm(orbit: ArrayLike, probe: ArrayLike, radius: float) -> ArmPose:
    """A simulator pose ``(R_v, R_p)`` (heart frame, centre at the origin) as an arm measures it:
    ``R = R_v R_p``, ``apex = -radius R_v e_z``."""
    R_v = np.asarray(orbit, dtype=np.float64)
    return ArmPose(R_v @ np.asarray(probe, dtype=np.float64), -float(radius) * R_v[:, 2])


def _unit(v: Array) -> Array:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _rotation_taking(a: Array, b: Array) -> Array:
    """The smallest rotations (..., 3, 3) taking unit vectors ``a`` to ``b`` (..., 3)."""
    axis = np.cross(a, b)
    s = np.linalg.norm(axis, axis=-1, keepdims=True)
    c = np.sum(a * b, axis=-1, keepdims=True)
    # antiparallel: any axis normal to a (a x e_x, or a x e_y when a is along e_x)
    other = np.cross(a, np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
    axis = np.where(s > 1e-12, axis, other)
    return so3_exp(_unit(axis) * np.arctan2(s, c))


def transport_members(orbits: ArrayLike, probes: ArrayLike, arm_from: ArmPose, arm_to: ArmPose,
                      radius: float) -> tuple[Array, Array]:
    """Members ``(..., K, 3, 3)`` estimated at ``arm_from`` -> their heart directions ``u`` (..., K, 3) and
    orientations ``R`` (..., K, 3, 3) carried to ``arm_to`` (module docstring), in the model's frame.

    ``arm_from`` may hold one pose per leading index of the members (``R`` (..., 3, 3), ``apex`` (..., 3)):
    several frames carried at once. Exact for exact members when the model's frame is the world turned about
    the heart centre and the apex stays on the orbit sphere of ``radius`` (what the ensemble is trained on);
    the arm's motion is taken as measured, so a wrong ``radius`` only bends the carried direction of slides,
    not of turns.
    """
    V, P = np.asarray(orbits, dtype=np.float64), np.asarray(probes, dtype=np.float64)
    R_from, R_to = np.asarray(arm_from.R, dtype=np.float64), np.asarray(arm_to.R, dtype=np.float64)
    R_hat = V @ P
    turn = (np.swapaxes(R_from, -1, -2) @ R_to)[..., None, :, :]   # the probe's turn in its from-axes, per member
    R_new = R_hat @ turn
    w = np.swapaxes(R_hat, -1, -2) @ V[..., :, 2:3]                  # apex -> centre in the from-probe's axes
    shift = (R_to.T @ (np.asarray(arm_from.apex, dtype=np.float64) - arm_to.apex)[..., None])[..., 0]
    d = radius * (np.swapaxes(turn, -1, -2) @ w)[..., 0] + shift[..., None, :]
    u_new = (R_new @ _unit(d)[..., None])[..., 0]
    return _unit(u_new), R_new


@dataclass(frozen=True)
class FusedEstimate:
    """The published estimate of the newest frame: ``orbit``, ``probe`` (3, 3) canonical gauge (the fused
    members' projected mean), ``sigma2`` (rad^2, the newest frame's own ensemble disagreement),
    ``member_orbits``, ``member_probes`` (K, 3, 3) fused members (not gauge-fixed), ``frames``: how many
    frames were fused (1 = the newest alone), ``span_s``: the time from the oldest fused frame to the newest."""

    orbit: Array
    probe: Array
    sigma2: float
    member_orbits: Array
    member_probes: Array
    frames: int
    span_s: float


class _Frame(NamedTuple):
    stamp: float
    orbits: Array
    probes: Array
    sigma2: float
    arm: ArmPose


class CycleFusion:
    """Fuse each new frame's members with the confident frames of the last ``window_s`` seconds.

    window_s: s, about one cardiac cycle (0: every frame is published alone); radius: apex to heart
    centre, the arm's length unit (m); max_sigma2: rad^2, frames less sure than this are not fused.
    A frame without an arm pose, a stamp earlier than the newest, or a change of member count starts
    afresh (the probe's motion since the older frames is then unknown); a frame stamped like the newest
    replaces it (the same frame sent again).
    """

    def __init__(self, window_s: float, radius: float, max_sigma2: float = 0.5) -> None:
        if not (math.isfinite(window_s) and window_s >= 0):
            raise EstimatorError(f'fusion window = {window_s!r} s; expected a finite time >= 0')
        if not (math.isfinite(radius) and radius > 0):
            raise EstimatorError(f'fusion orbit radius = {radius!r}; expected a positive length (m)')
        if not (max_sigma2 > 0):
            raise EstimatorError(f'fusion max_sigma2 = {max_sigma2!r} rad^2; expected > 0')
        self.window_s, self.radius, self.max_sigma2 = float(window_s), float(radius), float(max_sigma2)
        self._frames: deque[_Frame] = deque()

    def reset(self) -> None:
        """Forget every frame."""
        self._frames.clear()

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, stamp_s: float, member_orbits: ArrayLike, member_probes: ArrayLike, sigma2: float,
            arm: ArmPose | None) -> FusedEstimate:
        """Take one frame (its members, sigma^2, the arm's pose when it was acquired) and return what to publish."""
        V = np.asarray(member_orbits, dtype=np.float64)
        P = np.asarray(member_probes, dtype=np.float64)
        if V.ndim != 3 or V.shape[1:] != (3, 3) or V.shape != P.shape:
            raise EstimatorError(f'fusion: members of shapes {V.shape} and {P.shape}; expected two (K, 3, 3)')
        stamp_s, sigma2 = float(stamp_s), float(sigma2)
        newest = self._frames[-1] if self._frames else None
        if (arm is None or self.window_s == 0 or newest is None or stamp_s < newest.stamp
                or newest.orbits.shape != V.shape):
            self._frames.clear()
        elif stamp_s == newest.stamp:                # the same frame again (re-sent): it replaces itself
            self._frames.pop()
        sure = bool(sigma2 <= self.max_sigma2)      # NaN is not sure
        if arm is not None and sure and self.window_s > 0:
            self._frames.append(_Frame(stamp_s, V, P, sigma2, ArmPose(np.asarray(arm.R, dtype=np.float64),
                                                                      np.asarray(arm.apex, dtype=np.float64))))
        while self._frames and stamp_s - self._frames[0].stamp > self.window_s:
            self._frames.popleft()
        if not sure or len(self._frames) < 2:
            return self._publish(V, P, sigma2, 1, 0.0)
        assert arm is not None
        frames = list(self._frames)
        arms = ArmPose(np.stack([f.arm.R for f in frames]), np.stack([f.arm.apex for f in frames]))
        u, R = transport_members(np.stack([f.orbits for f in frames]), np.stack([f.probes for f in frames]), arms,
                                 frames[-1].arm, self.radius)
        u_mean, R_mean = _unit(u.sum(axis=0)), project_to_so3(R.mean(axis=0), 'fused orientations')
        # back to (R_v, R_p) in the newest frame's own gauge: R_v turned (on the left) to the fused direction
        V_new = _rotation_taking(V[:, :, 2], u_mean) @ V
        P_new = np.swapaxes(V_new, -1, -2) @ R_mean
        return self._publish(V_new, P_new, sigma2, len(self._frames), stamp_s - self._frames[0].stamp)

    @staticmethod
    def _publish(V: Array, P: Array, sigma2: float, frames: int, span: float) -> FusedEstimate:
        mean = mean_and_sigma2(V, P)    # its mean is in canonical gauge
        return FusedEstimate(mean.orbit, mean.probe, sigma2, V, P, frames, span)


def fuse_still(member_orbits: ArrayLike, member_probes: ArrayLike, sigma2: ArrayLike,
               max_sigma2: float = 0.5) -> FusedEstimate:
    """Frames of one still probe pose (a target's cine loop: members (N, K, 3, 3), sigma2 (N,)) fused as the pose
    node fuses a window: its confident frames' members averaged; ``sigma2`` the frames' median. With no confident
    frame, the first frame alone. A target set from a cine is then read as the live fused poses are (the cycle's
    mean, not one phase's)."""
    V = np.asarray(member_orbits, dtype=np.float64)
    P = np.asarray(member_probes, dtype=np.float64)
    s = np.asarray(sigma2, dtype=np.float64).reshape(-1)
    if V.ndim != 4 or V.shape[2:] != (3, 3) or V.shape != P.shape or len(s) != len(V) or len(V) == 0:
        raise EstimatorError(f'fuse_still: members of shapes {V.shape} and {P.shape} with {len(s)} sigma2; '
                             'expected two (N, K, 3, 3), N >= 1, and (N,)')
    fusion = CycleFusion(window_s=float(len(V)), radius=1.0, max_sigma2=max_sigma2)
    arm = ArmPose(np.eye(3), np.zeros(3))
    sure = [i for i in range(len(V)) if s[i] <= max_sigma2] or [0]
    out = None
    for n, i in enumerate(sure):
        out = fusion.add(float(n), V[i], P[i], float(s[i]), arm)
    assert out is not None
    return FusedEstimate(out.orbit, out.probe, float(np.median(s)), out.member_orbits, out.member_probes,
                         out.frames, 0.0)
