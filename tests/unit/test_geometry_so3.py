"""Single rotations: angle, exp/log (near 0 and pi), projection, quaternions (x, y, z, w), swing-twist.

Each hypothesis example draws a seed and checks a batch of B cases built from it, weighted
towards the hard places (angles near 0 and within 1e-6 of pi, coordinate axes).
"""
from __future__ import annotations

import numpy as np
import pytest
import transforms3d
from geometry_cases import PROPS, B, random_axis_angle, random_rotations, rodrigues, seeds
from hypothesis import given, settings
from scipy.spatial.transform import Rotation

from echoposed_ros.geometry import so3


@PROPS
@given(seeds)
def test_angle_is_exact_near_0_and_pi(seed):
    axis, a = random_axis_angle(np.random.default_rng(seed), B)
    got = so3.angle(rodrigues(axis, a))
    assert np.all(np.abs(got - a) < 1e-12)
    assert np.all((got >= 0) & (got <= np.pi))


@PROPS
@given(seeds)
def test_angle_equals_arccos_formula_away_from_0_and_pi(seed):
    rng = np.random.default_rng(seed)
    axis, _ = random_axis_angle(rng, B)
    R = rodrigues(axis, rng.uniform(1e-3, np.pi - 1e-3, B))
    ref = np.arccos((np.trace(R, axis1=-2, axis2=-1) - 1) / 2)
    assert np.allclose(so3.angle(R), ref, rtol=0, atol=1e-9)


@PROPS
@given(seeds)
def test_exp_matches_rodrigues(seed):
    axis, a = random_axis_angle(np.random.default_rng(seed), B)
    assert np.allclose(so3.exp(axis * a[:, None]), rodrigues(axis, a), atol=1e-14)


@PROPS
@given(seeds)
def test_log_exp_round_trip_including_near_pi(seed):
    axis, a = random_axis_angle(np.random.default_rng(seed), B)
    w = axis * a[:, None]
    v = so3.log(so3.exp(w))
    assert np.all(np.linalg.norm(v, axis=-1) <= np.pi + 1e-15)
    same = np.all(np.abs(v - w) < 1e-9, axis=-1)
    flipped = np.all(np.abs(v + w) < 1e-7, axis=-1)
    # Below pi the log is unique; at a half turn the axis sign is arbitrary (both are logs).
    assert np.all(same | ((a > np.pi - 1e-9) & flipped))


@PROPS
@given(seeds)
def test_exp_log_round_trip(seed):
    R = random_rotations(np.random.default_rng(seed))
    assert np.allclose(so3.exp(so3.log(R)), R, atol=1e-12)


@PROPS
@given(seeds)
def test_project_to_so3_gives_the_nearest_rotation(seed):
    rng = np.random.default_rng(seed)
    R = random_rotations(rng)
    assert np.allclose(so3.project_to_so3(R), R, atol=1e-12)
    assert np.allclose(so3.project_to_so3(3.5 * R), R, atol=1e-12)
    M = R + rng.uniform(0, 0.5) * rng.standard_normal((B, 3, 3))
    P = so3.project_to_so3(M)
    so3.check_rotation(P, atol=1e-12)
    # No rotation is nearer to M (Frobenius) than P: try R and random rotations.
    d = np.linalg.norm(M - P, axis=(-2, -1))
    assert np.all(d <= np.linalg.norm(M - R, axis=(-2, -1)) + 1e-12)
    for Q in Rotation.random(4, rng=rng).as_matrix():
        assert np.all(d <= np.linalg.norm(M - Q, axis=(-2, -1)) + 1e-12)


@PROPS
@given(seeds)
def test_axis_rotations(seed):
    t = np.random.default_rng(seed).uniform(-10, 10, B)
    for fn, e in ((so3.rot_x, [1.0, 0, 0]), (so3.rot_y, [0, 1.0, 0]), (so3.rot_z, [0, 0, 1.0])):
        assert np.allclose(fn(t), rodrigues(np.broadcast_to(e, (B, 3)), t), atol=1e-14)


def test_axis_rotations_known_values():
    assert np.allclose(so3.rot_z(np.pi / 2) @ [1.0, 0, 0], [0, 1.0, 0])
    assert np.allclose(so3.rot_x(np.pi / 2) @ [0, 1.0, 0], [0, 0, 1.0])
    assert np.allclose(so3.rot_y(np.pi / 2) @ [0, 0, 1.0], [1.0, 0, 0])


@PROPS
@given(seeds)
def test_hat_vee(seed):
    rng = np.random.default_rng(seed)
    w, v = rng.standard_normal((2, B, 3))
    assert np.allclose((so3.hat(w) @ v[..., None])[..., 0], np.cross(w, v))
    assert np.allclose(so3.vee(so3.hat(w)), w)


@pytest.mark.slow
@PROPS
@given(seeds)
def test_quaternion_order_xyzw_against_transforms3d_and_scipy(seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, 4))
    kind = rng.integers(0, 4, B)
    q[kind == 1, 3] = 0.0                       # half turns: w = 0
    q[kind == 2, :3] = 0.0                      # identity
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    R = so3.quat_xyzw_to_matrix(q)
    for qi, Ri in zip(q, R):
        x, y, z, w = qi
        assert np.allclose(Ri, transforms3d.quaternions.quat2mat([w, x, y, z]), atol=1e-12)  # w, x, y, z
    assert np.allclose(R, Rotation.from_quat(q).as_matrix(), atol=1e-12)                    # x, y, z, w
    assert np.allclose(so3.quat_xyzw_to_matrix(-q), R, atol=1e-12)
    back = so3.matrix_to_quat_xyzw(R)
    assert np.all(back[:, 3] >= 0.0)
    sign = np.where(q[:, 3] >= 0, 1.0, -1.0)[:, None]
    ok = np.all(np.abs(back - sign * q) < 1e-9, axis=1) | (np.abs(q[:, 3]) < 1e-12)
    assert np.all(ok)
    assert np.allclose(so3.quat_xyzw_to_matrix(back), R, atol=1e-12)


def test_quaternion_known_values():
    s = np.sqrt(0.5)
    assert np.allclose(so3.matrix_to_quat_xyzw(so3.rot_z(np.pi / 2)), [0, 0, s, s])
    assert np.allclose(so3.matrix_to_quat_xyzw(so3.rot_x(-np.pi / 2)), [-s, 0, 0, s])
    assert np.allclose(so3.matrix_to_quat_xyzw(np.eye(3)), [0, 0, 0, 1])
    assert np.allclose(so3.quat_xyzw_to_matrix([0, 0, 0, 1]), np.eye(3))
    assert np.allclose(so3.quat_xyzw_to_matrix([1, 0, 0, 0]), so3.rot_x(np.pi))
    assert np.allclose(so3.quat_xyzw_to_matrix([0, 0, s, s]), so3.rot_z(np.pi / 2))
    # float32 message values (norm off by ~1e-7) are accepted and renormalised
    q32 = np.array([0.1, 0.2, 0.3, 0.9], np.float32) / np.float32(np.linalg.norm([0.1, 0.2, 0.3, 0.9]))
    so3.check_rotation(so3.quat_xyzw_to_matrix(q32), atol=1e-12)


@PROPS
@given(seeds)
def test_swing_twist(seed):
    R = random_rotations(np.random.default_rng(seed))
    S, tau = so3.swing_twist(R)
    assert np.allclose(S @ so3.rot_z(tau), R, atol=1e-12)
    assert np.allclose(S[..., :, 2], R[..., :, 2], atol=1e-12)
    assert np.all((tau > -np.pi) & (tau <= np.pi))
    # The swing has no twist: its axis is normal to z (quaternion z = 0), so splitting it
    # again returns it with zero twist.
    assert np.all(np.abs(so3.matrix_to_quat_xyzw(S)[:, 2]) < 1e-12)
    S2, tau2 = so3.swing_twist(S)
    assert np.all(np.abs(tau2) < 1e-12) and np.allclose(S2, S, atol=1e-12)


def test_swing_twist_known_values():
    S, tau = so3.swing_twist(so3.rot_x(0.3) @ so3.rot_z(0.7))
    assert np.isclose(tau, 0.7) and np.allclose(S, so3.rot_x(0.3))
    S, tau = so3.swing_twist(so3.rot_z(-2.0))
    assert np.isclose(tau, -2.0) and np.allclose(S, np.eye(3))
    S, tau = so3.swing_twist(so3.rot_z(np.pi))
    assert np.isclose(tau, np.pi)
    S, tau = so3.swing_twist(so3.rot_y(np.pi))  # beam reversed: twist undefined, taken as 0
    assert tau == 0.0 and np.allclose(S, so3.rot_y(np.pi))


@settings(max_examples=30, deadline=None)
@given(seeds)
def test_batched_matches_per_element_loop(seed):
    rng = np.random.default_rng(seed)
    R = random_rotations(rng, 24).reshape(4, 6, 3, 3)
    W = rng.standard_normal((4, 6, 3)) * 2.0
    Q = rng.standard_normal((4, 6, 4))
    Q /= np.linalg.norm(Q, axis=-1, keepdims=True)
    M = rng.standard_normal((4, 6, 3, 3))
    ang, lg, ex, pr = so3.angle(R), so3.log(R), so3.exp(W), so3.project_to_so3(M)
    q, m, (S, tau), h = so3.matrix_to_quat_xyzw(R), so3.quat_xyzw_to_matrix(Q), so3.swing_twist(R), so3.hat(W)
    for i in range(4):
        for j in range(6):
            assert np.isclose(ang[i, j], so3.angle(R[i, j]), rtol=0, atol=1e-15)
            assert np.allclose(lg[i, j], so3.log(R[i, j]), rtol=0, atol=1e-15)
            assert np.allclose(ex[i, j], so3.exp(W[i, j]), rtol=0, atol=1e-15)
            assert np.allclose(pr[i, j], so3.project_to_so3(M[i, j]), rtol=0, atol=1e-12)
            assert np.allclose(q[i, j], so3.matrix_to_quat_xyzw(R[i, j]), rtol=0, atol=1e-15)
            assert np.allclose(m[i, j], so3.quat_xyzw_to_matrix(Q[i, j]), rtol=0, atol=1e-15)
            S1, tau1 = so3.swing_twist(R[i, j])
            assert np.allclose(S[i, j], S1, rtol=0, atol=1e-15) and np.isclose(tau[i, j], tau1, rtol=0, atol=1e-15)
            assert np.allclose(h[i, j], so3.hat(W[i, j]))
    assert so3.exp(np.zeros((0, 3))).shape == (0, 3, 3)
    assert so3.log(np.zeros((0, 3, 3))).shape == (0, 3)
    assert so3.angle(np.zeros((0, 3, 3))).shape == (0,)
