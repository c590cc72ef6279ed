"""Inverse kinematics of the arm's flange: damped least squares on a private PyBullet client.

The solver owns its own DIRECT client holding a copy of the arm that is never simulated, so
forward kinematics (set joints, read the link) never disturbs the physics of the world. Each
iteration solves

    dq = J^T (J J^T + lambda^2 I)^-1 e + (I - J^+ J) k (q_rest - q)

- ``e``: the 6-vector error (position m, rotation vector rad) in the scene frame W, shortened to
  at most ``max_step_m`` / ``max_step_rad`` per iteration (large jumps otherwise diverge);
- ``J``: from ``p.calculateJacobian``, turned from the arm's base frame into W;
- the null-space term pulls the redundant elbow towards the rest configuration;
- joints are clamped to their limits; a joint at a limit that the step would push further out is
  frozen and the step solved again without it.

Seeding with the current joints gives the solution nearest them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p
from numpy.typing import ArrayLike, NDArray

from echoposed_ros.geometry import so3_log

__all__ = ['ArmIK', 'IKResult']

Array = NDArray[np.float64]


@dataclass(frozen=True)
class IKResult:
    """q: (n,) rad arm joints; residual_m / residual_rad: flange pose error of q; iterations used."""

    q: Array
    residual_m: float
    residual_rad: float
    iterations: int


def link_pose(client: int, body: int, link: int) -> tuple[Array, Array]:
    """World position (3,) m and rotation (3, 3) of a link's URDF frame (forward kinematics)."""
    state = p.getLinkState(body, link, computeForwardKinematics=True, physicsClientId=client)
    return np.array(state[4]), np.array(p.getMatrixFromQuaternion(state[5])).reshape(3, 3)


class ArmIK:
    """IK for ``link`` of the arm at ``urdf_path`` fixed at ``base_position`` (m) / ``base_orientation`` (x, y, z, w).

    joints: indices of the arm joints the solver moves (the first ``len(joints)`` DoF of the body);
    lower, upper: (n,) rad limits; rest: (n,) rad, the configuration the null space pulls towards.
    """

    def __init__(self, urdf_path: str, base_position: ArrayLike, base_orientation: ArrayLike,
                 joints: list[int], link: int, lower: ArrayLike, upper: ArrayLike, rest: ArrayLike,
                 damping: float = 1e-3, null_gain: float = 0.2, max_step_m: float = 0.03,
                 max_step_rad: float = 0.15) -> None:
        self._client = p.connect(p.DIRECT)
        self._body = p.loadURDF(urdf_path, list(base_position), list(base_orientation), useFixedBase=True,
                                flags=p.URDF_IGNORE_VISUAL_SHAPES, physicsClientId=self._client)
        self._joints = list(joints)
        self._link = link
        self._dof = sum(1 for j in range(p.getNumJoints(self._body, physicsClientId=self._client))
                        if p.getJointInfo(self._body, j, physicsClientId=self._client)[2] != p.JOINT_FIXED)
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.rest = np.asarray(rest, dtype=np.float64)
        self._damping2 = damping ** 2
        self._null_gain = null_gain
        self.max_step_m = max_step_m
        self.max_step_rad = max_step_rad
        self._zeros = [0.0] * self._dof
        # p.calculateJacobian answers in the base frame; the errors are in W.
        self.set_base(base_position, base_orientation)

    def set_base(self, position: ArrayLike, orientation: ArrayLike) -> None:
        """Move the arm's base to ``position`` (3,) m / ``orientation`` (x, y, z, w) in W."""
        # resetBasePositionAndOrientation places the base's inertial frame, not its URDF link frame.
        info = p.getDynamicsInfo(self._body, -1, physicsClientId=self._client)
        com_p, com_q = p.multiplyTransforms(list(position), list(orientation), info[3], info[4])
        p.resetBasePositionAndOrientation(self._body, com_p, com_q, physicsClientId=self._client)
        R_base = np.array(p.getMatrixFromQuaternion(list(orientation))).reshape(3, 3)
        self._to_world = np.kron(np.eye(2), R_base)

    def forward(self, q: ArrayLike) -> tuple[Array, Array]:
        """Flange position (3,) m and rotation (3, 3) in W at arm joints ``q`` (n,) rad."""
        for j, value in zip(self._joints, q):
            p.resetJointState(self._body, j, float(value), physicsClientId=self._client)
        return link_pose(self._client, self._body, self._link)

    def _jacobian(self, q: Array) -> Array:
        full = [float(x) for x in q] + [0.0] * (self._dof - len(q))
        lin, ang = p.calculateJacobian(self._body, self._link, [0.0, 0.0, 0.0], full, self._zeros, self._zeros,
                                       physicsClientId=self._client)
        n = len(q)
        return self._to_world @ np.vstack([np.asarray(lin)[:, :n], np.asarray(ang)[:, :n]])

    def solve(self, position: ArrayLike, rotation: ArrayLike, seed: ArrayLike, max_iterations: int = 12,
              tol_m: float = 1e-5, tol_rad: float = 1e-4) -> IKResult:
        """Joints placing the flange at ``position`` (3,) m with ``rotation`` (3, 3), starting from ``seed``."""
        target_p = np.asarray(position, dtype=np.float64)
        target_R = np.asarray(rotation, dtype=np.float64)
        q = np.clip(np.asarray(seed, dtype=np.float64), self.lower, self.upper)
        n = len(q)
        eye = np.eye(n)
        it = 0
        for it in range(1, max_iterations + 1):
            pos, R = self.forward(q)
            e = np.concatenate([target_p - pos, so3_log(target_R @ R.T)])
            if np.linalg.norm(e[:3]) < tol_m and np.linalg.norm(e[3:]) < tol_rad:
                return IKResult(q, float(np.linalg.norm(e[:3])), float(np.linalg.norm(e[3:])), it - 1)
            e[:3] *= min(1.0, self.max_step_m / max(np.linalg.norm(e[:3]), 1e-300))
            e[3:] *= min(1.0, self.max_step_rad / max(np.linalg.norm(e[3:]), 1e-300))
            J = self._jacobian(q)
            free = np.ones(n, dtype=bool)
            for _ in range(n):  # active set: a joint at a limit that the step pushes outwards is frozen
                Jf = J * free
                J_pinv = Jf.T @ np.linalg.solve(Jf @ Jf.T + self._damping2 * np.eye(6), np.eye(6))
                dq = J_pinv @ e + (eye - J_pinv @ Jf) @ (self._null_gain * (self.rest - q) * free)
                out = free & (((q + dq) < self.lower) | ((q + dq) > self.upper)) & \
                    (((q <= self.lower) & (dq < 0)) | ((q >= self.upper) & (dq > 0)))
                if not out.any():
                    break
                free &= ~out
            q = np.clip(q + dq, self.lower, self.upper)
        pos, R = self.forward(q)
        return IKResult(q, float(np.linalg.norm(target_p - pos)), float(np.linalg.norm(so3_log(target_R @ R.T))), it)

    def close(self) -> None:
        """Disconnect the private client (idempotent)."""
        if self._client is not None and p.isConnected(self._client):
            p.disconnect(self._client)
        self._client = None
