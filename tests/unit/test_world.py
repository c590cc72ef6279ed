"""Simulated worlds (echoposed_sim.world): kinematic probe and PyBullet arm, same interface."""
from __future__ import annotations

import numpy as np
import pybullet as p
import pytest
from scipy.spatial.transform import Rotation

from echoposed_sim.world import ArmWorld, HeartFrame, KinematicWorld, WorldError
from echoposed_sim.world.scene import SCENE

CENTRE = np.array([64.0, 60.0, 70.0])   # mm, volume frame V
RADIUS = 90.0                           # mm


def rotvec(v) -> np.ndarray:
    return Rotation.from_rotvec(np.asarray(v, dtype=float)).as_matrix()


def rot_deg(R) -> float:
    return float(np.degrees(Rotation.from_matrix(R).magnitude()))


def training_pose(rng: np.random.Generator, orbit_deg: float = 20.0, tilt_deg: float = 20.0):
    """docs/method.md section 3: orbit about a random axis normal to z, probe = turn about z (full circle) x tilts."""
    a = rng.uniform(0.0, 2 * np.pi)
    orbit = rotvec(np.array([np.cos(a), np.sin(a), 0.0]) * np.radians(rng.uniform(0.0, orbit_deg)))
    probe = (rotvec([0.0, 0.0, rng.uniform(-np.pi, np.pi)])
             @ rotvec([np.radians(rng.uniform(-tilt_deg, tilt_deg)), 0.0, 0.0])
             @ rotvec([0.0, np.radians(rng.uniform(-tilt_deg, tilt_deg)), 0.0]))
    return orbit, probe


def canonical(orbit, probe):
    """Independent gauge fix (scipy): R_v = S Rz(tau) -> (S, Rz(tau) R_p)."""
    x, y, z, w = Rotation.from_matrix(orbit).as_quat()
    tau = 2.0 * np.arctan2(z, w)
    Rz = rotvec([0.0, 0.0, tau])
    return orbit @ Rz.T, Rz @ probe


def probe_frame(orbit, probe):
    return orbit @ probe, CENTRE - RADIUS * orbit[:, 2]


def assert_twist_free(R_v):
    assert abs(Rotation.from_matrix(R_v).as_quat()[2]) < 1e-9


@pytest.fixture(scope='module')
def arm():
    world = ArmWorld(CENTRE, RADIUS)
    yield world
    world.close()


def settle(world, tol_mm=0.05, tol_deg=0.02, max_s=3.0):
    """Step at 30 Hz until the probe sits on its setpoint (or max_s); return the tracking error."""
    for _ in range(int(max_s * 30)):
        world.step(1 / 30)
        err = world.tracking_error()
        if err[0] < tol_mm and err[1] < tol_deg:
            break
    world.step(0.2)  # and a little longer: steady state, not a passing moment
    return world.tracking_error()


# -- kinematic world ------------------------------------------------------------------------------
def test_kinematic_body_twist_integrates_exactly():
    rng = np.random.default_rng(1)
    world = KinematicWorld(CENTRE, RADIUS)
    orbit, probe = canonical(*training_pose(rng))
    world.set_pose(orbit, probe)
    for _ in range(5):
        w_v, w_p, dt = rng.normal(size=3), rng.normal(size=3), 1 / 30
        world.command_body_twist(w_v, w_p, dt)
        world.step(dt)
        orbit, probe = canonical(orbit @ rotvec(w_v * dt), probe @ rotvec(w_p * dt))
        got = world.read_pose()
        np.testing.assert_allclose(got.orbit, orbit, atol=1e-12)
        np.testing.assert_allclose(got.probe, probe, atol=1e-12)
        assert_twist_free(got.orbit)
    assert world.status().reachable and world.joint_names() == ()
    assert world.time_s == pytest.approx(5 / 30)


def test_kinematic_set_pose_canonicalises_and_round_trips():
    world = KinematicWorld(CENTRE, RADIUS)
    orbit = rotvec([0.2, -0.1, 0.7])  # has a twist about z
    probe = rotvec([0.1, 0.3, -2.0])
    world.set_pose(orbit, probe)
    got = world.read_pose()
    want = canonical(orbit, probe)
    np.testing.assert_allclose(got.orbit, want[0], atol=1e-12)
    np.testing.assert_allclose(got.probe, want[1], atol=1e-12)
    np.testing.assert_allclose(got.orbit @ got.probe, orbit @ probe, atol=1e-12)   # same probe frame
    np.testing.assert_allclose(world.read_probe_frame()[1], CENTRE - RADIUS * orbit[:, 2], atol=1e-9)


@pytest.mark.parametrize('frame', ['world', 'probe'])
def test_cartesian_twist_of_a_body_twist_moves_like_the_body_twist(frame):
    """docs/method.md section 6: v = -r R_v (w_v x e_z), w = R_v w_v + R_v R_p w_p; first order in dt."""
    rng = np.random.default_rng(2)
    orbit, probe = canonical(*training_pose(rng))
    w_v = np.array([0.3, -0.2, 0.0])
    w_p = np.array([0.1, 0.2, 0.5])
    R = orbit @ probe
    v = -RADIUS * orbit @ np.cross(w_v, [0.0, 0.0, 1.0]) / 1000.0   # m/s
    w = orbit @ w_v + R @ w_p
    if frame == 'probe':
        v, w = R.T @ v, R.T @ w
    errors = []
    for dt in (1e-2, 1e-3):
        a, b = KinematicWorld(CENTRE, RADIUS), KinematicWorld(CENTRE, RADIUS)
        a.set_pose(orbit, probe)
        b.set_pose(orbit, probe)
        a.command_body_twist(w_v, w_p, dt)
        b.command_cartesian_twist(v, w, dt, frame=frame)
        Ra, oa = a.read_probe_frame()
        Rb, ob = b.read_probe_frame()
        errors.append((np.linalg.norm(oa - ob), rot_deg(Ra.T @ Rb)))
    # the two agree to second order: 10x smaller step, ~100x smaller gap
    assert errors[1][0] < errors[0][0] / 50 + 1e-9 and errors[1][1] < errors[0][1] / 50 + 1e-9
    assert errors[0][0] < 0.05 and errors[0][1] < 0.05


# -- arm world --------------------------------------------------------------------------------------
def test_base_pose_sits_on_the_apical_window(arm):
    arm.set_pose(arm.base_pose.orbit, arm.base_pose.probe)
    R, o = arm.read_probe_frame()
    np.testing.assert_allclose(arm.heart.point_to_scene(o), SCENE['window'], atol=1e-5)   # metres
    beam = np.asarray(SCENE['beam']) / np.linalg.norm(SCENE['beam'])
    np.testing.assert_allclose(arm.heart.rotation_to_scene(R)[:, 2], beam, atol=1e-5)
    # the heart lies under the chest: the orbit centre is below the window, radius away
    c_W = arm.heart.point_to_scene(CENTRE)
    assert c_W[2] < SCENE['window'][2]
    assert np.linalg.norm(c_W - np.asarray(SCENE['window'])) == pytest.approx(RADIUS / 1000.0)


def test_a_turned_base_pose_still_sits_on_the_window_and_its_range_is_tracked():
    base_orbit, base_probe = canonical(rotvec([0.3, -0.2, 0.0]), rotvec([0.2, 0.1, 1.2]))
    rng = np.random.default_rng(7)
    with ArmWorld(CENTRE, 70.0, base_orbit, base_probe) as world:
        R, o = world.read_probe_frame()
        np.testing.assert_allclose(world.heart.point_to_scene(o), SCENE['window'], atol=1e-5)
        got = world.read_pose()
        assert rot_deg(got.orbit.T @ base_orbit) < 0.01 and rot_deg(got.probe.T @ base_probe) < 0.01
        for _ in range(4):
            orbit, probe = training_pose(rng)
            world.command_pose(base_orbit @ orbit, base_probe @ probe)
            assert world.status().reachable, world.status().message
            err_mm, err_deg = settle(world)
            assert err_mm < 1.0 and err_deg < 0.5


def test_heart_frame_converts_millimetres_and_metres():
    frame = HeartFrame(rotvec([0.3, 0.2, 0.1]), np.array([0.1, -0.2, 0.9]))
    x_mm = np.array([12.0, -30.0, 55.0])
    x_m = frame.point_to_scene(x_mm)
    assert np.linalg.norm(x_m - frame.t_WV) == pytest.approx(np.linalg.norm(x_mm) / 1000.0)
    np.testing.assert_allclose(frame.point_from_scene(x_m), x_mm, atol=1e-9)
    R = rotvec([1.0, -0.5, 0.2])
    np.testing.assert_allclose(frame.rotation_from_scene(frame.rotation_to_scene(R)), R, atol=1e-12)


def test_arm_set_pose_read_pose_round_trips_in_canonical_gauge(arm):
    rng = np.random.default_rng(3)
    for _ in range(4):
        orbit, probe = canonical(*training_pose(rng))
        arm.set_pose(orbit, probe)
        got = arm.read_pose()
        assert_twist_free(got.orbit)
        assert rot_deg(got.orbit.T @ orbit) < 0.01 and rot_deg(got.probe.T @ probe) < 0.01
        status = arm.status()
        assert status.reachable, status.message
        assert status.ik_residual_mm < 0.05 and status.ik_residual_deg < 0.01


def test_arm_tracks_commanded_poses_across_the_training_range(arm):
    """Commanded poses (orbit <= 20 deg, tilts <= 20 deg, any turn) reached within 1 mm and 0.5 deg."""
    rng = np.random.default_rng(4)
    arm.set_pose(arm.base_pose.orbit, arm.base_pose.probe)
    worst = np.zeros(2)
    for _ in range(12):
        orbit, probe = canonical(*training_pose(rng))
        arm.command_pose(orbit, probe)
        assert arm.status().reachable, arm.status().message
        err_mm, err_deg = settle(arm)
        R_want, o_want = probe_frame(orbit, probe)
        R, o = arm.read_probe_frame()
        assert np.linalg.norm(o - o_want) == pytest.approx(err_mm, abs=1e-9)
        assert err_mm < 1.0 and err_deg < 0.5, (err_mm, err_deg)
        got = arm.read_pose()
        assert rot_deg(got.orbit.T @ orbit) < 0.5 and rot_deg(got.probe.T @ probe) < 0.5
        worst = np.maximum(worst, (err_mm, err_deg))
        assert arm.status().joint_limits_hit == ()
    assert worst[0] < 1.0 and worst[1] < 0.5


def test_arm_turns_the_probe_on_past_a_full_circle(arm):
    arm.set_pose(arm.base_pose.orbit, arm.base_pose.probe)
    roll0 = arm.status().joint_positions[arm.joint_names().index('probe_roll')]
    turn_rate = np.pi  # rad/s about the beam, 1.5 turns in 3 s
    dt = 1 / 30
    angle = 0.0
    for _ in range(90):
        arm.command_body_twist([0.0, 0.0, 0.0], [0.0, 0.0, turn_rate], dt)
        arm.step(dt)
        angle += turn_rate * dt
        status = arm.status()
        assert status.reachable, status.message
        assert status.tracking_error_mm < 1.0 and status.tracking_error_deg < 3.0
    err_mm, err_deg = settle(arm)
    assert err_mm < 1.0 and err_deg < 0.5
    want = arm.base_pose.probe @ rotvec([0.0, 0.0, angle])
    assert rot_deg(arm.read_pose().probe.T @ want) < 0.5
    roll = arm.status().joint_positions[arm.joint_names().index('probe_roll')]
    assert roll - roll0 == pytest.approx(3 * np.pi, abs=np.radians(1))  # unwrapped: no flip, no wrap


def test_arm_cartesian_twist_moves_the_probe_as_commanded(arm):
    rng = np.random.default_rng(5)
    orbit, probe = canonical(*training_pose(rng, 10.0, 10.0))
    arm.set_pose(orbit, probe)
    settle(arm)
    R0, o0 = arm.read_probe_frame()
    u = (CENTRE - o0) / np.linalg.norm(CENTRE - o0)
    v_world = np.cross(u, rng.normal(size=3))
    v_world *= 0.01 / np.linalg.norm(v_world)           # 10 mm/s, tangent to the orbit sphere
    v_probe = R0.T @ v_world
    w_probe = np.array([0.05, -0.1, 0.3])               # rad/s in probe axes
    dt = 0.1
    arm.command_cartesian_twist(v_probe, w_probe, dt, frame='probe')
    settle(arm)
    R1, o1 = arm.read_probe_frame()
    moved = (o1 - o0) / dt / 1000.0                    # m/s
    np.testing.assert_allclose(moved, v_world, atol=2e-4)   # 0.2 mm/s of 10: the sphere's curvature and tracking
    turned = Rotation.from_matrix(R0.T @ R1).as_rotvec() / dt
    np.testing.assert_allclose(turned, w_probe, atol=0.02)


def test_unreachable_poses_are_reported_not_raised():
    far = ArmWorld(CENTRE, 2000.0, max_orbit_deg=None)            # heart 2 m under the window
    try:
        far.set_pose(rotvec([np.radians(30), 0.0, 0.0]), np.eye(3))
        status = far.status()
        assert not status.reachable and 'IK cannot reach' in status.message
        assert status.ik_residual_mm > 10.0
    finally:
        far.close()

    world = ArmWorld(CENTRE, RADIUS)
    try:
        world.set_pose(rotvec([np.radians(80), 0.0, 0.0]), np.eye(3))
        status = world.status()
        assert not status.reachable and 'workspace' in status.message

        # a twist driving out of reach stops at the edge and holds; never raises
        world.max_orbit_deg = None
        world.set_pose(world.base_pose.orbit, world.base_pose.probe)
        held = None
        for _ in range(150):
            world.command_body_twist([1.0, 0.0, 0.0], [0.0, 0.0, 0.0], 1 / 30)
            world.step(1 / 30)
            status = world.status()
            if not status.reachable:
                held = world.commanded_pose()
                break
        assert held is not None, 'the arm never reached the end of its workspace'
        assert 'holding' in status.message and status.joint_limits_hit
        assert set(status.joint_limits_hit) <= set(world.joint_names())
        world.command_body_twist([1.0, 0.0, 0.0], [0.0, 0.0, 0.0], 1 / 30)
        np.testing.assert_allclose(world.commanded_pose().orbit, held.orbit)        # held still
        world.command_body_twist([-1.0, 0.0, 0.0], [0.0, 0.0, 0.0], 1 / 30)        # back into reach
        assert world.status().reachable
    finally:
        world.close()


def test_two_worlds_in_one_process_do_not_interfere(arm):
    rng = np.random.default_rng(6)
    g1 = canonical(*training_pose(rng))
    g2 = canonical(*training_pose(rng))
    other = ArmWorld(CENTRE, RADIUS)
    try:
        assert other.client_id != arm.client_id
        arm.set_pose(*g1)
        other.set_pose(*g2)
        for _ in range(10):
            arm.command_body_twist([0.2, 0.0, 0.0], [0.0, 0.3, 0.5], 1 / 30)
            arm.step(1 / 30)
        other.step(0.5)
        got = other.read_pose()
        assert rot_deg(got.orbit.T @ g2[0]) < 0.05 and rot_deg(got.probe.T @ g2[1]) < 0.05
    finally:
        other.close()
    arm.step(1 / 30)   # the first world lives on
    assert np.all(np.isfinite(arm.read_pose().orbit))
    assert p.isConnected(arm.client_id)


def test_status_lists_joints_for_joint_states(arm):
    status = arm.status()
    assert len(status.joint_names) == len(status.joint_positions) == 8
    assert status.joint_names == arm.joint_names()
    assert status.joint_names[-1] == 'probe_roll' and status.joint_names[0] == 'lbr_iiwa_joint_1'


@pytest.mark.parametrize('make', [lambda: KinematicWorld(CENTRE, RADIUS)])
def test_bad_commands_raise_world_error_naming_the_argument(make):
    world = make()
    with pytest.raises(WorldError, match='omega_p'):
        world.command_body_twist([0, 0, 0], [np.nan, 0, 0], 0.1)
    with pytest.raises(WorldError, match='frame'):
        world.command_cartesian_twist([0, 0, 0], [0, 0, 0], 0.1, frame='base')
    with pytest.raises(WorldError, match='dt'):
        world.command_body_twist([0, 0, 0], [0, 0, 0], float('inf'))
    with pytest.raises(WorldError, match='pose'):
        world.set_pose(np.eye(3) * 2.0, np.eye(3))
    with pytest.raises(WorldError, match='radius'):
        KinematicWorld(CENTRE, -1.0)


def test_snapshot_is_a_headless_picture_of_the_scene(arm):
    image = arm.snapshot(160, 120)
    assert image.shape == (120, 160, 3) and image.dtype == np.uint8
    assert image.std() > 10.0   # a scene, not a blank frame
