"""Single rotations: angle, exp/log (near 0 and pi), projection, quaternions (x, y, z, w), swing-twist."""
from __future__ import annotations

import numpy as np
import transforms3d
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from echoposed_ros.geometry import so3

PROPS = settings(max_examples=1000, deadline=None)

_f = st.floats(-1.0, 1.0, allow_nan=False)
unit_vectors = st.tuples(_f, _f, _f).map(np.array).filter(lambda v: np.linalg.norm(v) > 1e-3).map(
    lambda v: v / np.linalg.norm(v))
# Angles (rad) with weight on the hard places: near 0 and within 1e-6 of pi.
angles = st.one_of(st.floats(0.0, np.pi), st.floats(np.pi - 1e-6, np.pi), st.floats(0.0, 1e-6),
                   st.sampled_from([0.0, 1e-12, np.pi - 1e-12, np.pi]))


def rodrigues(axis: np.ndarray, a: float) -> np.ndarray:
    """Hand-written reference rotation (independent of scipy)."""
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


rotations = st.builds(rodrigues, unit_vectors, angles)


@PROPS
@given(unit_vectors, angles)
def test_angle_is_exact_near_0_and_pi(axis, a):
    R = rodrigues(axis, a)
    assert abs(so3.angle(R) - a) < 1e-12
    assert 0.0 <= so3.angle(R) <= np.pi


@PROPS
@given(unit_vectors, st.floats(1e-3, np.pi - 1e-3))
def test_angle_equals_arccos_formula_away_from_0_and_pi(axis, a):
    R = rodrigues(axis, a)
    assert abs(so3.angle(R) - np.arccos((np.trace(R) - 1) / 2)) < 1e-9


@PROPS
@given(unit_vectors, angles)
def test_exp_matches_rodrigues(axis, a):
    assert np.allclose(so3.exp(axis * a), rodrigues(axis, a), atol=1e-14)


@PROPS
@given(unit_vectors, angles)
def test_log_exp_round_trip_including_near_pi(axis, a):
    w = axis * a
    v = so3.log(so3.exp(w))
    assert np.linalg.norm(v) <= np.pi + 1e-15
    if a < np.pi - 1e-9:
        assert np.allclose(v, w, atol=1e-9)
    else:  # at pi the axis sign is arbitrary: both are logs of the same rotation
        assert np.allclose(v, w, atol=1e-7) or np.allclose(v, -w, atol=1e-7)


@PROPS
@given(rotations)
def test_exp_log_round_trip(R):
    assert np.allclose(so3.exp(so3.log(R)), R, atol=1e-12)


@PROPS
@given(rotations, st.floats(-0.2, 0.2), st.integers(0, 2**32 - 1))
def test_project_to_so3_recovers_nearest_rotation(R, noise, seed):
    rng = np.random.default_rng(seed)
    assert np.allclose(so3.project_to_so3(R), R, atol=1e-12)
    assert np.allclose(so3.project_to_so3(3.5 * R), R, atol=1e-12)
    M = R + noise * rng.standard_normal((3, 3))
    P = so3.project_to_so3(M)
    so3.check_rotation(P, atol=1e-12)
    # No rotation is nearer to M than P (R and random rotations are candidates).
    d = np.linalg.norm(M - P)
    assert d <= np.linalg.norm(M - R) + 1e-12
    for Q in Rotation.random(5, rng=rng).as_matrix():
        assert d <= np.linalg.norm(M - Q) + 1e-12


@PROPS
@given(st.floats(-10.0, 10.0))
def test_axis_rotations(t):
    for fn, axis in ((so3.rot_x, 0), (so3.rot_y, 1), (so3.rot_z, 2)):
        e = np.zeros(3)
        e[axis] = 1.0
        assert np.allclose(fn(t), rodrigues(e, t), atol=1e-14)
    assert np.allclose(so3.rot_z(np.pi / 2) @ [1.0, 0, 0], [0, 1.0, 0])


@PROPS
@given(unit_vectors, unit_vectors)
def test_hat_vee(w, v):
    assert np.allclose(so3.hat(w) @ v, np.cross(w, v))
    assert np.allclose(so3.vee(so3.hat(w)), w)


@PROPS
@given(st.tuples(_f, _f, _f, _f).map(np.array).filter(lambda q: np.linalg.norm(q) > 1e-3))
def test_quaternion_order_xyzw_against_transforms3d(q):
    q = q / np.linalg.norm(q)
    x, y, z, w = q
    R = so3.quat_xyzw_to_matrix(q)
    assert np.allclose(R, transforms3d.quaternions.quat2mat([w, x, y, z]), atol=1e-12)  # transforms3d: w, x, y, z
    assert np.allclose(R, Rotation.from_quat(q).as_matrix(), atol=1e-12)              # scipy: x, y, z, w
    assert np.allclose(so3.quat_xyzw_to_matrix(-q), R, atol=1e-12)
    back = so3.matrix_to_quat_xyzw(R)
    assert back[3] >= 0.0
    assert np.allclose(back, q if w >= 0 else -q, atol=1e-9) or abs(w) < 1e-9
    assert np.allclose(so3.quat_xyzw_to_matrix(back), R, atol=1e-12)


def test_quaternion_known_values():
    s = np.sqrt(0.5)
    assert np.allclose(so3.matrix_to_quat_xyzw(so3.rot_z(np.pi / 2)), [0, 0, s, s])
    assert np.allclose(so3.matrix_to_quat_xyzw(so3.rot_x(-np.pi / 2)), [-s, 0, 0, s])
    assert np.allclose(so3.matrix_to_quat_xyzw(np.eye(3)), [0, 0, 0, 1])
    assert np.allclose(so3.quat_xyzw_to_matrix([0, 0, 0, 1]), np.eye(3))
    assert np.allclose(so3.quat_xyzw_to_matrix([1, 0, 0, 0]), so3.rot_x(np.pi))


@PROPS
@given(rotations)
def test_swing_twist(R):
    S, tau = so3.swing_twist(R)
    assert np.allclose(S @ so3.rot_z(tau), R, atol=1e-12)
    assert np.allclose(S[:, 2], R[:, 2], atol=1e-12)
    assert -np.pi < tau <= np.pi
    # The swing has no twist: its rotation axis is normal to z (quaternion z = 0) ...
    assert abs(so3.matrix_to_quat_xyzw(S)[2]) < 1e-12
    # ... so splitting it again gives it back with zero twist.
    S2, tau2 = so3.swing_twist(S)
    assert abs(tau2) < 1e-12
    assert np.allclose(S2, S, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_batched_matches_per_element_loop(seed):
    rng = np.random.default_rng(seed)
    R = Rotation.random(24, rng=rng).as_matrix().reshape(4, 6, 3, 3)
    W = rng.standard_normal((4, 6, 3)) * 2.0
    Q = rng.standard_normal((4, 6, 4))
    Q /= np.linalg.norm(Q, axis=-1, keepdims=True)
    M = rng.standard_normal((4, 6, 3, 3))
    S, tau = so3.swing_twist(R)
    for i in range(4):
        for j in range(6):
            assert np.isclose(so3.angle(R)[i, j], so3.angle(R[i, j]))
            assert np.allclose(so3.log(R)[i, j], so3.log(R[i, j]))
            assert np.allclose(so3.exp(W)[i, j], so3.exp(W[i, j]))
            assert np.allclose(so3.project_to_so3(M)[i, j], so3.project_to_so3(M[i, j]))
            assert np.allclose(so3.matrix_to_quat_xyzw(R)[i, j], so3.matrix_to_quat_xyzw(R[i, j]))
            assert np.allclose(so3.quat_xyzw_to_matrix(Q)[i, j], so3.quat_xyzw_to_matrix(Q[i, j]))
            assert np.allclose(S[i, j], so3.swing_twist(R[i, j])[0])
            assert np.isclose(tau[i, j], so3.swing_twist(R[i, j])[1])
            assert np.allclose(so3.hat(W)[i, j], so3.hat(W[i, j]))
            assert np.allclose(so3.rot_z(tau)[i, j], so3.rot_z(tau[i, j]))
    assert so3.exp(np.zeros((0, 3))).shape == (0, 3, 3)
    assert so3.log(np.zeros((0, 3, 3))).shape == (0, 3)
