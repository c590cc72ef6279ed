"""The arm world: a headless PyBullet scene with a KUKA iiwa holding the probe over a patient.

Scene frame W (metres, z up): a table (top at 0.75 m, long axis x), a supine patient on it
(torso, head towards +x, the patient's left towards -y), the apical window on the left chest,
and the arm on a column (base link 1.10 m up) beside the table on the patient's left, towards
the feet, its shoulder above and behind the probe. The heart frame V (mm) is
placed so that the volume's base pose lands exactly on the window frame (see
:class:`~echoposed_sim.world.frames.HeartFrame`). Table and patient collide with nothing the arm
holds: the probe rides on the orbit sphere, skin contact is not simulated.

Commanded probe pose -> probe frame in W -> roll angle (continuous, nearest the current one) and
flange pose -> IK (:class:`~echoposed_sim.world.ik.ArmIK`, seeded with the current solution)
-> joint position control; physics steps at ``physics_hz``. The probe pose is read back from the
link state of the probe tip (the sector apex).
"""
from __future__ import annotations

import tempfile

import numpy as np
import pybullet as p
from numpy.typing import ArrayLike

from echoposed_ros.geometry import Pose, probe_frame, rot_z, swing_twist

from .base import Array, ProbeWorld, WorldStatus, _check_dt
from .errors import WorldError
from .frames import MM_PER_M, HeartFrame
from .ik import ArmIK, link_pose
from .robot import IIWA, ArmSpec, write_arm_urdf

__all__ = ['SCENE', 'ArmWorld']

# Scene layout, metres in W.
SCENE = {
    'table_top_z': 0.75,
    'window': (0.05, -0.08, 0.97),           # apical window on the chest surface (torso top at 0.97 m)
    'beam': (0.25, 0.35, -1.0),              # base beam direction: into the chest, towards head and midline
    'base': (-0.25, -0.60, 1.10),            # arm base (URDF base link frame) on a column beside the table
    'base_yaw_deg': 60.0,                    # arm x axis towards the table and the head
}

_SCENE_GROUP, _ARM_GROUP = 2, 1
_HOME_CACHE: dict = {}


def _frame_with_z(z: ArrayLike, x_hint: ArrayLike) -> Array:
    """Rotation (3, 3) whose z column is ``z`` (normalised) and x column the part of ``x_hint`` normal to it."""
    z = np.asarray(z, dtype=np.float64)
    z = z / np.linalg.norm(z)
    x = np.asarray(x_hint, dtype=np.float64)
    x = x - x.dot(z) * z
    x /= np.linalg.norm(x)
    return np.column_stack([x, np.cross(z, x), z])


def _matrix(quaternion_xyzw) -> Array:
    """PyBullet quaternion (x, y, z, w) -> (3, 3) rotation."""
    return np.asarray(p.getMatrixFromQuaternion(quaternion_xyzw), dtype=np.float64).reshape(3, 3)


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


class ArmWorld(ProbeWorld):
    """The :class:`ProbeWorld` interface on a simulated KUKA LBR iiwa 7 with a probe on a roll stage.

    centre_mm (3,), radius_mm: orbit centre and radius in V (mm); base_orbit, base_probe: the
    volume's base (apical window) pose, placed on the chest's window. physics_hz: physics rate;
    reach_tol_mm / reach_tol_deg: largest IK residual still called reachable; max_orbit_deg:
    workspace envelope (orbit angle from the base pose's orbit direction; None for no envelope);
    limit_margin_deg: a joint this close to a limit is reported.
    Each instance has its own PyBullet DIRECT client (and one more for IK).
    """

    def __init__(self, centre_mm: ArrayLike, radius_mm: float, base_orbit: ArrayLike | None = None,
                 base_probe: ArrayLike | None = None, *, physics_hz: float = 240.0, gravity: bool = True,
                 reach_tol_mm: float = 0.5, reach_tol_deg: float = 0.25, max_orbit_deg: float | None = 45.0,
                 limit_margin_deg: float = 1.0, position_gain: float = 0.3, spec: ArmSpec = IIWA) -> None:
        super().__init__(centre_mm, radius_mm, base_orbit, base_probe)
        if not (np.isfinite(physics_hz) and physics_hz > 0):
            raise WorldError(f'physics_hz: expected a positive rate in Hz, got {physics_hz!r}')
        self.spec = spec
        self.physics_dt = 1.0 / float(physics_hz)
        self.reach_tol_mm = float(reach_tol_mm)
        self.reach_tol_deg = float(reach_tol_deg)
        self.max_orbit_deg = max_orbit_deg
        self.limit_margin = np.radians(limit_margin_deg)
        self.position_gain = float(position_gain)
        self._pending = 0.0
        self._client = p.connect(p.DIRECT)
        self._ik: ArmIK | None = None
        try:
            self._build(gravity)
        except Exception:
            self.close()
            raise

    # -- construction ---------------------------------------------------------------------------
    def _build(self, gravity: bool) -> None:
        cid = self._client
        p.setTimeStep(self.physics_dt, physicsClientId=cid)
        p.setGravity(0.0, 0.0, -9.81 if gravity else 0.0, physicsClientId=cid)
        beam = np.asarray(SCENE['beam'], dtype=np.float64)
        beam /= np.linalg.norm(beam)
        R_window = _frame_with_z(beam, (1.0, 0.0, 0.0))
        self._tool_length = self.spec.flange_offset + self.spec.holder_length + self.spec.probe_length
        flange_home = np.asarray(SCENE['window'], dtype=np.float64) - self._tool_length * beam
        with tempfile.TemporaryDirectory(prefix='echoposed_arm_') as folder:
            urdf = write_arm_urdf(self.spec, folder)
            with open(urdf, encoding='utf-8') as f:
                self._urdf_text = f.read()
            probe_client = p.connect(p.DIRECT)
            try:
                names, links, lower, upper, forces = self._joint_table(urdf, probe_client)
            finally:
                p.disconnect(probe_client)
            arm = [names[n] for n in self.spec.arm_joints]
            flange = links[self.spec.flange_link]
            self._ik = ArmIK(urdf, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], arm, flange, lower, upper,
                             self.spec.home_pose)
            base_p = np.asarray(SCENE['base'], dtype=np.float64)
            base_q = list(p.getQuaternionFromEuler([0.0, 0.0, np.radians(SCENE['base_yaw_deg'])]))
            self._ik.set_base(base_p, base_q)
            self._R_flange_ref = _frame_with_z(beam, base_p - flange_home)
            home = self._home_joints(flange_home)
            self._ik.rest = home
            self.base_position = base_p
            self._scene_bodies = self._build_patient(base_p)
            self._robot = p.loadURDF(urdf, base_p.tolist(), base_q, useFixedBase=True, physicsClientId=cid)
        self._arm = arm
        self._roll = names[self.spec.roll_joint]
        self._joints = self._arm + [self._roll]
        self._flange = flange
        self._tip = links[self.spec.tip_link]
        self._link_names = {index: name for name, index in links.items()}
        self._base_link = p.getBodyInfo(self._robot, physicsClientId=cid)[0].decode()
        self._forces = forces + [50.0]
        for link in range(-1, p.getNumJoints(self._robot, physicsClientId=cid)):
            p.setCollisionFilterGroupMask(self._robot, link, _ARM_GROUP, _ARM_GROUP, physicsClientId=cid)

        R0, o0 = probe_frame(self.base_pose.orbit, self.base_pose.probe, self.centre, self.radius)
        self.heart = HeartFrame.placing(R_window, SCENE['window'], R0, o0)
        self._u_base = self.base_pose.orbit[:, 2]
        heart = p.createVisualShape(p.GEOM_SPHERE, radius=0.03, rgbaColor=[0.8, 0.1, 0.1, 1.0], physicsClientId=cid)
        self._scene_bodies.append(p.createMultiBody(0.0, -1, heart, self.heart.point_to_scene(self.centre).tolist(),
                                                    physicsClientId=cid))   # the orbit centre c, visual only
        self.home_joints = np.concatenate([home, [0.0]])
        self._roll_angle = 0.0
        self._q_cmd = self.home_joints.copy()
        self._last = None
        self.set_pose(self.base_pose.orbit, self.base_pose.probe)

    def _joint_table(self, urdf: str, client: int):
        body = p.loadURDF(urdf, useFixedBase=True, flags=p.URDF_IGNORE_VISUAL_SHAPES, physicsClientId=client)
        count = p.getNumJoints(body, physicsClientId=client)
        infos = [p.getJointInfo(body, j, physicsClientId=client) for j in range(count)]
        names = {i[1].decode(): i[0] for i in infos}
        links = {i[12].decode(): i[0] for i in infos}
        arm = [infos[names[n]] for n in self.spec.arm_joints]
        return (names, links, np.array([i[8] for i in arm]), np.array([i[9] for i in arm]),
                [float(i[10]) for i in arm])

    def _home_joints(self, flange_home: Array) -> Array:
        """Arm joints (7,) holding the flange at ``flange_home`` along the beam: of IK solutions from
        deterministic seeds about the spec's home pose, the one farthest from every joint limit."""
        key = (self.spec, tuple(SCENE['base']), SCENE['base_yaw_deg'], tuple(SCENE['window']), tuple(SCENE['beam']))
        if key in _HOME_CACHE:
            return _HOME_CACHE[key].copy()
        rng = np.random.default_rng(0)
        best, best_margin = None, -np.inf
        for k in range(24):
            seed = np.asarray(self.spec.home_pose) + (rng.normal(size=len(self.spec.home_pose)) * 0.6 if k else 0.0)
            r = self._ik.solve(flange_home, self._R_flange_ref, seed, max_iterations=100, tol_m=1e-7, tol_rad=1e-7)
            if r.residual_m > 1e-5 or r.residual_rad > 1e-5:
                continue
            margin = np.min(np.minimum(r.q - self._ik.lower, self._ik.upper - r.q))
            if margin > best_margin:
                best, best_margin = r.q, margin
        if best is None:
            raise WorldError(f'arm {self.spec.urdf} at base {SCENE["base"]} cannot reach the apical window '
                             f'{SCENE["window"]}; choose another mount')
        _HOME_CACHE[key] = best
        return best.copy()

    def _build_patient(self, base: Array) -> list[int]:
        cid = self._client
        top = SCENE['table_top_z']

        def box(half, pos, rgba):
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=cid)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=rgba, physicsClientId=cid)
            return p.createMultiBody(0.0, col, vis, pos, physicsClientId=cid)

        skin = [0.93, 0.76, 0.65, 1.0]
        bodies = [
            box([1.0, 0.35, 0.02], [0.0, 0.0, top - 0.02], [0.6, 0.6, 0.65, 1.0]),         # table top
            box([0.3, 0.18, 0.11], [0.0, 0.0, top + 0.11], skin),                             # torso
            box([0.45, 0.15, 0.08], [-0.75, 0.0, top + 0.08], skin),                          # legs
            box([0.12, 0.12, base[2] / 2], [base[0], base[1], base[2] / 2], [0.3, 0.3, 0.3, 1.0]),  # pedestal
        ]
        col = p.createCollisionShape(p.GEOM_SPHERE, radius=0.1, physicsClientId=cid)
        vis = p.createVisualShape(p.GEOM_SPHERE, radius=0.1, rgbaColor=skin, physicsClientId=cid)
        bodies.append(p.createMultiBody(0.0, col, vis, [0.42, 0.0, top + 0.1], physicsClientId=cid))   # head
        for body in bodies:
            p.setCollisionFilterGroupMask(body, -1, _SCENE_GROUP, _SCENE_GROUP, physicsClientId=cid)
        return bodies

    # -- the commanded pose through IK ----------------------------------------------------------
    def _targets(self, g: Pose) -> tuple[Array, Array, float]:
        """Flange position (3,) m and rotation (3, 3) in W, and the roll angle, for probe pose ``g``."""
        R_V, o_V = probe_frame(g.orbit, g.probe, self.centre, self.radius)
        R_tip = self.heart.rotation_to_scene(R_V)
        p_tip = self.heart.point_to_scene(o_V)
        _, twist = swing_twist(self._R_flange_ref.T @ R_tip)
        roll = self._roll_angle + _wrap(float(twist) - self._roll_angle)
        R_flange = R_tip @ rot_z(-roll)
        return p_tip - self._tool_length * R_tip[:, 2], R_flange, roll

    def _apply(self, g: Pose, teleport: bool, large: bool) -> bool:
        n = len(self._arm)
        flange_p, flange_R, roll = self._targets(g)
        seed = self.home_joints[:n] if teleport else self._q_cmd[:n]
        result = self._ik.solve(flange_p, flange_R, seed, max_iterations=80 if large else 12)
        res_mm = result.residual_m * MM_PER_M
        res_deg = float(np.degrees(result.residual_rad))
        at_limit = tuple(self.spec.arm_joints[i] for i in range(n)
                         if result.q[i] <= self._ik.lower[i] + self.limit_margin
                         or result.q[i] >= self._ik.upper[i] - self.limit_margin)
        orbit_deg = float(np.degrees(np.arccos(np.clip(self._u_base @ g.orbit[:, 2], -1.0, 1.0))))
        problems = []
        if self.max_orbit_deg is not None and orbit_deg > self.max_orbit_deg:
            problems.append(f'orbit {orbit_deg:.1f} deg from the base pose is outside the {self.max_orbit_deg:g} deg '
                            f'workspace')
        if res_mm > self.reach_tol_mm or res_deg > self.reach_tol_deg:
            problems.append(f'IK cannot reach the pose (residual {res_mm:.1f} mm, {res_deg:.2f} deg)')
        reachable = not problems
        if at_limit:
            problems.append('joint(s) at limit: ' + ', '.join(at_limit))
        if reachable or teleport:
            self._q_cmd = np.concatenate([result.q, [roll]])
            self._roll_angle = roll
            if teleport:
                for j, value in zip(self._joints, self._q_cmd):
                    p.resetJointState(self._robot, j, float(value), 0.0, physicsClientId=self._client)
            self._send_targets()
        elif problems:
            problems.append('holding the last reachable pose')
        self._last = dict(reachable=reachable, message='; '.join(problems), limits=at_limit,
                          res_mm=res_mm, res_deg=res_deg)
        return reachable

    def _send_targets(self) -> None:
        n = len(self._joints)
        p.setJointMotorControlArray(self._robot, self._joints, p.POSITION_CONTROL,
                                    targetPositions=[float(x) for x in self._q_cmd], targetVelocities=[0.0] * n,
                                    forces=self._forces, positionGains=[self.position_gain] * n,
                                    velocityGains=[1.0] * n, physicsClientId=self._client)

    # -- interface ------------------------------------------------------------------------------
    def step(self, dt: float) -> None:
        """Advance physics by ``dt`` s in steps of ``1 / physics_hz`` (the remainder carries over)."""
        self._pending += _check_dt(dt)
        self.time_s += dt
        steps = int(np.floor(self._pending / self.physics_dt + 1e-9))
        self._pending -= steps * self.physics_dt
        for _ in range(steps):
            p.stepSimulation(physicsClientId=self._client)

    def read_probe_frame(self) -> tuple[Array, Array]:
        pos, R_W = link_pose(self._client, self._robot, self._tip)
        return self.heart.rotation_from_scene(R_W), self.heart.point_from_scene(pos)

    @property
    def client_id(self) -> int | None:
        """This world's PyBullet physics client id (None once closed)."""
        return self._client

    def joint_positions(self) -> Array:
        """(8,) rad: the seven arm joints then the probe roll, as the simulation has them now."""
        states = p.getJointStates(self._robot, self._joints, physicsClientId=self._client)
        return np.array([s[0] for s in states])

    def status(self) -> WorldStatus:
        err_mm, err_deg = self.tracking_error()
        last = self._last
        return WorldStatus(reachable=last['reachable'], message=last['message'], joint_limits_hit=last['limits'],
                           ik_residual_mm=last['res_mm'], ik_residual_deg=last['res_deg'],
                           tracking_error_mm=err_mm, tracking_error_deg=err_deg, joint_names=self.joint_names(),
                           joint_positions=self.joint_positions(), time_s=self.time_s)

    def joint_names(self) -> tuple[str, ...]:
        return tuple(self.spec.arm_joints) + (self.spec.roll_joint,)

    def robot_description(self) -> str:
        return self._urdf_text

    def link_poses(self) -> dict[str, tuple[Array, Array]]:
        """The base link and every other link's URDF frame (not its centre of mass), from PyBullet, in W (m)."""
        cid = self._client
        position, quaternion = p.getBasePositionAndOrientation(self._robot, physicsClientId=cid)
        poses = {self._base_link: (_matrix(quaternion), np.asarray(position, dtype=np.float64))}
        indices = sorted(self._link_names)
        states = p.getLinkStates(self._robot, indices, computeForwardKinematics=True, physicsClientId=cid)
        for index, state in zip(indices, states):
            poses[self._link_names[index]] = (_matrix(state[5]), np.asarray(state[4], dtype=np.float64))
        return poses

    def snapshot(self, width: int = 640, height: int = 480, yaw_deg: float = -30.0, pitch_deg: float = -25.0,
                 distance_m: float = 2.2) -> np.ndarray:
        """A picture of the scene, (height, width, 3) uint8 RGB (software renderer, headless), looking at a point
        between the apical window and the arm's shoulder; yaw/pitch in degrees about W's z and the horizon."""
        target = 0.6 * np.asarray(SCENE['window']) + 0.4 * (self.base_position + [0.0, 0.0, 0.36])
        view = p.computeViewMatrixFromYawPitchRoll(target.tolist(), distance_m, yaw_deg, pitch_deg, 0.0, 2,
                                                   physicsClientId=self._client)
        proj = p.computeProjectionMatrixFOV(50.0, width / height, 0.05, 10.0, physicsClientId=self._client)
        img = p.getCameraImage(width, height, view, proj, renderer=p.ER_TINY_RENDERER, physicsClientId=self._client)
        return np.reshape(np.asarray(img[2], dtype=np.uint8), (height, width, 4))[:, :, :3]

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: pybullet may already be gone
            pass

    def close(self) -> None:
        if self._ik is not None:
            self._ik.close()
            self._ik = None
        if self._client is not None and p.isConnected(self._client):
            p.disconnect(self._client)
        self._client = None
