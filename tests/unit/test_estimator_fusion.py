"""Cycle fusion (echoposed_ros.estimator.fusion): carrying estimates by the arm's motion, fusing a window."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from echoposed_ros.estimator import EstimatorError
from echoposed_ros.estimator.fusion import ArmPose, ArmPoseHistory, CycleFusion, heart_pose_to_arm, transport_members
from echoposed_ros.geometry import effective_error, gauge_fix, rot_z, so3_exp, step

RADIUS = 0.1   # m


def _pose(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return gauge_fix((Rotation.random(random_state=seed).as_matrix(), so3_exp(rng.normal(size=3) * 0.3)))


def _in_world(arm: ArmPose, W: np.ndarray, offset: np.ndarray) -> ArmPose:
    return ArmPose(W @ arm.R, W @ arm.apex + offset)


def _members(A_v: np.ndarray, g: tuple[np.ndarray, np.ndarray], twists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact members ``A g`` (A_p = I) in per-member gauges (a twist moved between the factors)."""
    return (np.stack([A_v @ g[0] @ rot_z(t) for t in twists]), np.stack([rot_z(-t) @ g[1] for t in twists]))


@pytest.mark.parametrize('seed', range(8))
def test_transport_of_exact_members_is_exact_for_any_motion_world_and_model_frame(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    g0 = _pose(seed)
    g1 = step(g0, rng.normal(size=3) * 0.4, rng.normal(size=3) * 0.4, 1.0)      # orbit slides and probe turns
    A_v = Rotation.random(random_state=200 + seed).as_matrix()                  # the model's unknown frame
    W, offset = Rotation.random(random_state=300 + seed).as_matrix(), rng.normal(size=3)   # the arm's world
    a0 = _in_world(heart_pose_to_arm(*g0, RADIUS), W, offset)
    a1 = _in_world(heart_pose_to_arm(*g1, RADIUS), W, offset)
    u, R = transport_members(*_members(A_v, g0, rng.uniform(-3, 3, 4)), a0, a1, RADIUS)
    np.testing.assert_allclose(u, np.broadcast_to((A_v @ g1[0])[:, 2], u.shape), atol=1e-9)
    np.testing.assert_allclose(R, np.broadcast_to(A_v @ g1[0] @ g1[1], R.shape), atol=1e-9)


def test_turns_about_the_apex_leave_the_heart_direction() -> None:
    g0 = _pose(1)
    turned = (g0[0], g0[1] @ so3_exp([0.1, -0.2, 0.7]))
    u, R = transport_members(*_members(np.eye(3), g0, np.zeros(1)), heart_pose_to_arm(*g0, RADIUS),
                             heart_pose_to_arm(*turned, RADIUS), RADIUS)
    np.testing.assert_allclose(u[0], g0[0][:, 2], atol=1e-12)
    np.testing.assert_allclose(R[0], turned[0] @ turned[1], atol=1e-12)


def test_static_fusion_averages_phase_noise_and_keeps_the_newest_sigma2() -> None:
    rng = np.random.default_rng(0)
    g = _pose(2)
    arm = heart_pose_to_arm(*g, RADIUS)
    fusion = CycleFusion(window_s=1.0, radius=RADIUS)
    single, fused = [], []
    for k in range(60):   # 30 Hz, 2 s: each frame's members off by a phase-like error of ~6 deg
        kick = so3_exp(rng.normal(size=3) * 0.06)
        V = np.stack([g[0] @ kick @ so3_exp(rng.normal(size=3) * 0.005) for _ in range(4)])
        P = np.stack([g[1] @ so3_exp(rng.normal(size=3) * 0.005) for _ in range(4)])
        out = fusion.add(k / 30, V, P, 0.01 + k * 1e-4, arm)
        assert out.sigma2 == pytest.approx(0.01 + k * 1e-4)
        single.append(float(effective_error((V[0], P[0]), g)))
        if k >= 30:
            fused.append(float(effective_error((out.orbit, out.probe), g)))
            assert out.frames == 31 and out.span_s == pytest.approx(1.0)   # frames within 1 s of the newest
    assert np.median(fused) < np.median(single) / 3


def test_moving_probe_fused_estimate_follows_the_motion() -> None:
    """Exact members along a path: the fused pose is the newest frame's true pose (no lag)."""
    rng = np.random.default_rng(3)
    A_v = Rotation.random(random_state=4).as_matrix()
    g = _pose(5)
    w_v, w_p = np.array([0.1, -0.15, 0.0]), np.array([0.05, 0.0, 0.4])    # rad/s
    fusion = CycleFusion(window_s=1.0, radius=RADIUS)
    for k in range(40):
        out = fusion.add(k / 20, *_members(A_v, g, rng.uniform(-1, 1, 3)), 0.01, heart_pose_to_arm(*g, RADIUS))
        truth = (A_v @ g[0], g[1])
        assert float(effective_error((out.orbit, out.probe), truth)) < 1e-7
        g = step(g, w_v, w_p, 1 / 20)
    assert out.frames == 21


def test_unsure_frames_are_not_fused_and_an_unsure_newest_is_published_alone() -> None:
    g = _pose(6)
    arm = heart_pose_to_arm(*g, RADIUS)
    fusion = CycleFusion(window_s=1.0, radius=RADIUS, max_sigma2=0.5)
    good = (np.stack([g[0]]), np.stack([g[1]]))
    wrong = (np.stack([g[0] @ so3_exp([0.0, 0.0, 2.0])]), np.stack([g[1]]))
    fusion.add(0.0, *good, 0.01, arm)
    out = fusion.add(0.1, *wrong, 0.9, arm)
    assert out.frames == 1 and out.sigma2 == 0.9
    assert float(effective_error((out.orbit, out.probe), (wrong[0][0], wrong[1][0]))) < 1e-9
    out = fusion.add(0.2, *good, 0.01, arm)
    assert out.frames == 2 and float(effective_error((out.orbit, out.probe), g)) < 1e-9   # the unsure frame left out
    out = fusion.add(0.3, *good, float('nan'), arm)
    assert out.frames == 1                                                                   # NaN is not sure


def test_no_arm_pose_a_stamp_going_back_or_window_zero_start_afresh() -> None:
    g = _pose(7)
    arm = heart_pose_to_arm(*g, RADIUS)
    m = (np.stack([g[0]] * 2), np.stack([g[1]] * 2))
    fusion = CycleFusion(window_s=1.0, radius=RADIUS)
    assert [fusion.add(t, *m, 0.01, arm).frames for t in (0.0, 0.1, 0.2)] == [1, 2, 3]
    assert fusion.add(0.3, *m, 0.01, None).frames == 1 and len(fusion) == 0
    assert [fusion.add(t, *m, 0.01, arm).frames for t in (0.4, 0.5)] == [1, 2]
    assert fusion.add(0.5, *m, 0.01, arm).frames == 2         # the same frame again replaces itself
    assert fusion.add(0.1, *m, 0.01, arm).frames == 1         # a bag looped, or the clock was reset
    off = CycleFusion(window_s=0.0, radius=RADIUS)
    assert [off.add(t, *m, 0.01, arm).frames for t in (0.0, 0.1)] == [1, 1]


def test_bad_settings_and_members_name_the_culprit() -> None:
    with pytest.raises(EstimatorError, match='window'):
        CycleFusion(window_s=-1.0, radius=RADIUS)
    with pytest.raises(EstimatorError, match='radius'):
        CycleFusion(window_s=1.0, radius=0.0)
    with pytest.raises(EstimatorError, match='members of shapes'):
        CycleFusion(window_s=1.0, radius=RADIUS).add(0.0, np.eye(3), np.eye(3), 0.0, None)


def test_a_still_cine_is_fused_to_its_confident_frames_mean():
    from echoposed_ros.estimator.fusion import fuse_still
    g = _pose(8)
    turns = np.array([-0.1, 0.0, 0.1, 2.5])          # the last frame unsure (and far off)
    V = np.stack([np.stack([g[0]] * 2) for _ in turns])
    P = np.stack([np.stack([g[1] @ rot_z(t)] * 2) for t in turns])
    out = fuse_still(V, P, np.array([0.01, 0.02, 0.03, 0.9]), max_sigma2=0.5)
    assert out.frames == 3 and out.sigma2 == pytest.approx(0.025)     # the median of all four
    assert float(effective_error((out.orbit, out.probe), g)) < 1e-9
    alone = fuse_still(V[3:], P[3:], np.array([0.9]))                 # none confident: the first frame alone
    assert alone.frames == 1 and float(effective_error((alone.orbit, alone.probe), (V[3, 0], P[3, 0]))) < 1e-9
    with pytest.raises(EstimatorError, match='fuse_still'):
        fuse_still(V, P, np.zeros(2))


def test_carrying_several_frames_at_once_equals_carrying_each_alone():
    rng = np.random.default_rng(9)
    frames = [_pose(20 + i) for i in range(4)]
    arms = [heart_pose_to_arm(*g, RADIUS) for g in frames]
    to = heart_pose_to_arm(*_pose(30), RADIUS)
    members = [_members(np.eye(3), g, rng.uniform(-1, 1, 3)) for g in frames]
    u, R = transport_members(np.stack([m[0] for m in members]), np.stack([m[1] for m in members]),
                             ArmPose(np.stack([a.R for a in arms]), np.stack([a.apex for a in arms])), to, RADIUS)
    for i, (m, a) in enumerate(zip(members, arms)):
        u_i, R_i = transport_members(*m, a, to, RADIUS)
        np.testing.assert_allclose(u[i], u_i, atol=1e-12)
        np.testing.assert_allclose(R[i], R_i, atol=1e-12)


def _arm(k: int) -> ArmPose:
    return ArmPose(np.eye(3), np.array([float(k), 0.0, 0.0]))


def test_arm_pose_history_gives_the_pose_stamped_nearest_within_the_tolerance():
    history = ArmPoseHistory(capacity=3)
    assert history.at(0, 1.0) is None                        # nothing yet
    for k, stamp in enumerate((30_000_000, 10_000_000, 20_000_000)):   # out of order
        history.add(stamp, _arm(k))
    assert history.at(12_000_000, 0.005).apex[0] == 1.0       # 10 ms is nearest 12 ms
    assert history.at(27_000_000, 0.005).apex[0] == 0.0       # 30 ms
    assert history.at(40_000_000, 0.005) is None              # nearest is 10 ms away
    assert history.at(40_000_000, 0.010).apex[0] == 0.0
    history.add(50_000_000, _arm(3))                          # the oldest (30 ms, added first) goes
    assert len(history) == 3 and history.at(30_000_000, 0.001) is None
    with pytest.raises(EstimatorError, match='capacity'):
        ArmPoseHistory(capacity=0)
