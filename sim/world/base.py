"""The interface every simulated world offers (arm or kinematic), and what they share.

Units and frames: poses are canonical-gauge ``(R_v, R_p)`` (3, 3) float64 rotations in the
volume frame V (docs/method.md section 1); positions are mm in V; Cartesian velocities are m/s and rad/s
(as a robot servo takes them) and converted once, by :class:`~echoposed_sim.world.frames.HeartFrame`.

A world keeps a *commanded* pose (the setpoint). ``set_pose`` teleports there (reset);
``command_pose`` and the twist commands move the setpoint and the world follows it (at once in
the kinematic world, through inverse kinematics and joint control in the arm world);
``read_pose`` reads where the probe actually is. A commanded twist whose result cannot be
reached is not applied (the setpoint holds, as a servo halts) and ``status()`` says why.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from echoposed_ros.geometry import Pose, angle, probe_frame
from echoposed_ros.geometry import step as pose_step

from .errors import WorldError
from .frames import MM_PER_M, HeartFrame
from .pose import as_finite_vector, canonical_pose, integrate_cartesian, pose_from_probe_frame

__all__ = ['ProbeWorld', 'WorldStatus']

Array = NDArray[np.float64]


@dataclass(frozen=True)
class WorldStatus:
    """What the world can say about the last command and the probe.

    reachable:        the commanded pose is reachable (IK residual within tolerance, inside the workspace)
    message:          '' when all is well, else one sentence (unreachable, joint limits, holding)
    joint_limits_hit: names of joints at (within the margin of) a limit in the commanded configuration
    ik_residual_mm, ik_residual_deg: commanded pose vs the IK solution's forward kinematics
    tracking_error_mm, tracking_error_deg: commanded pose vs the probe read back now
    joint_names, joint_positions: (J,) rad (empty in the kinematic world), as for ``joint_states``
    time_s:           simulated time since the world was made
    """

    reachable: bool
    message: str
    joint_limits_hit: tuple[str, ...] = ()
    ik_residual_mm: float = 0.0
    ik_residual_deg: float = 0.0
    tracking_error_mm: float = 0.0
    tracking_error_deg: float = 0.0
    joint_names: tuple[str, ...] = ()
    joint_positions: Array = field(default_factory=lambda: np.zeros(0))
    time_s: float = 0.0


def _check_dt(dt: float) -> float:
    try:
        dt = float(dt)
    except (TypeError, ValueError) as exc:
        raise WorldError(f'dt: expected a time step in seconds, got {dt!r}') from exc
    if not (np.isfinite(dt) and dt >= 0):
        raise WorldError(f'dt: expected a finite time step >= 0 s, got {dt}')
    return dt


class ProbeWorld(abc.ABC):
    """A probe moving about an orbit centre ``centre`` (3,) mm with orbit radius ``radius`` mm, in V."""

    def __init__(self, centre_mm: ArrayLike, radius_mm: float, base_orbit: ArrayLike | None = None,
                 base_probe: ArrayLike | None = None) -> None:
        self.centre = as_finite_vector(centre_mm, 'centre_mm')
        radius = float(radius_mm)
        if not (np.isfinite(radius) and radius > 0):
            raise WorldError(f'radius_mm: expected a positive finite orbit radius, got {radius_mm!r}')
        self.radius = radius
        self.base_pose = canonical_pose(np.eye(3) if base_orbit is None else base_orbit,
                                        np.eye(3) if base_probe is None else base_probe)
        self._setpoint = self.base_pose
        self.time_s = 0.0
        # Placement of V in the scene frame W (m); a world with a scene places V in it.
        self.heart = HeartFrame(np.eye(3), np.zeros(3))

    @classmethod
    def from_volume(cls, volume, **kwargs) -> ProbeWorld:
        """A world about ``volume.centre`` with ``volume.radius``, starting at its base pose."""
        return cls(volume.centre, volume.radius, volume.base_orbit, volume.base_probe, **kwargs)

    # -- commands -------------------------------------------------------------------------------
    def set_pose(self, orbit: ArrayLike, probe: ArrayLike) -> None:
        """Teleport the probe to ``(orbit, probe)`` (reset); an unreachable pose is reported in ``status()``."""
        g = canonical_pose(orbit, probe)
        self._setpoint = g
        self._apply(g, teleport=True, large=True)

    def command_pose(self, orbit: ArrayLike, probe: ArrayLike) -> None:
        """Make ``(orbit, probe)`` the setpoint if reachable (else hold, see ``status()``); the world moves
        there (the arm by joint control, over the following ``step`` calls)."""
        self._advance(canonical_pose(orbit, probe), large=True)

    def command_body_twist(self, omega_v: ArrayLike, omega_p: ArrayLike, dt: float) -> None:
        """Move the setpoint by the body twist for ``dt`` s: ``gauge_fix(R_v exp(w_v dt), R_p exp(w_p dt))``.

        omega_v, omega_p: (3,) rad/s in the body frames (docs/method.md section 6).
        """
        w_v = as_finite_vector(omega_v, 'omega_v')
        w_p = as_finite_vector(omega_p, 'omega_p')
        self._advance(pose_step(self._setpoint, w_v, w_p, _check_dt(dt)))

    def command_cartesian_twist(self, v: ArrayLike, omega: ArrayLike, dt: float, frame: str = 'probe') -> None:
        """Move the setpoint by a Cartesian probe twist held for ``dt`` s.

        v: (3,) m/s, the apex velocity; omega: (3,) rad/s; both in probe axes (``frame='probe'``:
        x lateral, y elevation, z beam) or in the volume frame V's axes (``frame='world'``). The
        apex moves straight by ``v dt``, the orientation by ``exp(omega dt)``; the result is put
        back on the orbit sphere (the radial part of ``v`` is dropped: a pose has a fixed radius).
        """
        v_mm = as_finite_vector(v, 'v') * MM_PER_M
        w = as_finite_vector(omega, 'omega')
        dt = _check_dt(dt)
        if frame not in ('probe', 'world'):
            raise WorldError(f"frame: expected 'probe' or 'world', got {frame!r}")
        R, o = probe_frame(self._setpoint.orbit, self._setpoint.probe, self.centre, self.radius)
        R, o = integrate_cartesian(R, o, v_mm, w, dt, frame)
        self._advance(pose_from_probe_frame(R, o, self.centre))

    def _advance(self, g: Pose, large: bool = False) -> None:
        """Accept ``g`` as the new setpoint if reachable, else hold the current one (``large``: maybe far away)."""
        if self._apply(g, teleport=False, large=large):
            self._setpoint = g

    # -- readings -------------------------------------------------------------------------------
    def commanded_pose(self) -> Pose:
        """The setpoint ``(R_v, R_p)``, canonical gauge."""
        return Pose(self._setpoint.orbit.copy(), self._setpoint.probe.copy())

    def read_pose(self) -> Pose:
        """The probe's actual pose, canonical gauge, from its apex position and orientation."""
        R, o = self.read_probe_frame()
        return pose_from_probe_frame(R, o, self.centre)

    def tracking_error(self) -> tuple[float, float]:
        """(apex distance mm, orientation angle deg) between the setpoint and the actual probe frame."""
        R_c, o_c = probe_frame(self._setpoint.orbit, self._setpoint.probe, self.centre, self.radius)
        R, o = self.read_probe_frame()
        return float(np.linalg.norm(o - o_c)), float(np.degrees(angle(R_c.T @ R)))

    # -- per world ------------------------------------------------------------------------------
    @abc.abstractmethod
    def _apply(self, g: Pose, teleport: bool, large: bool) -> bool:
        """Drive the world towards setpoint ``g`` (at once if ``teleport``; ``large``: ``g`` may be far from
        the current pose); return whether it is reachable."""

    @abc.abstractmethod
    def read_probe_frame(self) -> tuple[Array, Array]:
        """Actual probe orientation (3, 3) and apex (3,) mm, in V."""

    @abc.abstractmethod
    def step(self, dt: float) -> None:
        """Advance the world by ``dt`` seconds (physics and joint control in the arm world)."""

    @abc.abstractmethod
    def status(self) -> WorldStatus:
        """Reachability, joint limits, IK residual, tracking error, joint positions."""

    @abc.abstractmethod
    def joint_names(self) -> tuple[str, ...]:
        """Names of the joints reported in ``status().joint_positions`` (empty without an arm)."""

    @abc.abstractmethod
    def robot_description(self) -> str:
        """The URDF of what holds the probe (the arm with its tool, or the probe alone), mesh paths absolute."""

    @abc.abstractmethod
    def link_poses(self) -> dict[str, tuple[Array, Array]]:
        """Every link of :meth:`robot_description` as it is now: ``{name: (R (3, 3), p (3,) m)}``, the
        link frame in the scene frame W (``heart`` places V in W)."""

    def close(self) -> None:  # noqa: B027 (optional hook: most worlds hold nothing to release)
        """Release resources (the PyBullet clients of the arm world)."""

    def __enter__(self) -> ProbeWorld:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
