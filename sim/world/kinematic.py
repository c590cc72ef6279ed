"""A probe without an arm: every command is reached exactly and at once (fast evaluation)."""
from __future__ import annotations

import numpy as np

from echoposed_ros.geometry import Pose, probe_frame

from .base import Array, ProbeWorld, WorldStatus, _check_dt
from .robot import IIWA, probe_urdf_text

__all__ = ['KinematicWorld']


class KinematicWorld(ProbeWorld):
    """The :class:`ProbeWorld` interface with the probe pose equal to the setpoint at all times.

    ``command_body_twist`` integrates exactly: ``R_v <- R_v exp(omega_v dt)``, ``R_p <- R_p
    exp(omega_p dt)``, then canonical gauge. Every pose is reachable; there are no joints. The
    scene frame W is V itself (in metres): ``heart`` is the identity.
    """

    def _apply(self, g: Pose, teleport: bool, large: bool) -> bool:
        return True

    def read_probe_frame(self) -> tuple[Array, Array]:
        R, o = probe_frame(self._setpoint.orbit, self._setpoint.probe, self.centre, self.radius)
        return R, o

    def read_pose(self) -> Pose:
        return self.commanded_pose()

    def step(self, dt: float) -> None:
        self.time_s += _check_dt(dt)

    def status(self) -> WorldStatus:
        return WorldStatus(reachable=True, message='', joint_positions=np.zeros(0), time_s=self.time_s)

    def joint_names(self) -> tuple[str, ...]:
        return ()

    def robot_description(self) -> str:
        return probe_urdf_text(IIWA)

    def link_poses(self) -> dict[str, tuple[Array, Array]]:
        """``probe_tip`` at the apex and ``probe_body`` ``probe_length`` behind it along the beam (W, m)."""
        R_V, o_V = self.read_probe_frame()
        R = self.heart.rotation_to_scene(R_V)
        tip = self.heart.point_to_scene(o_V)
        return {'probe_body': (R, tip - IIWA.probe_length * R[:, 2]), IIWA.tip_link: (R, tip)}
