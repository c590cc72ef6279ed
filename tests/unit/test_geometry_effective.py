"""Probe frame, effective pose, effective error (gauge invariant, zero iff same slice), body errors.

Each hypothesis example draws a seed and checks a batch of B poses built from it, weighted
towards the hard places (angles near 0 and within 1e-6 of pi, coordinate axes).
"""
from __future__ import annotations

import numpy as np
import pytest
from geometry_cases import PROPS, B, T, random_axis_angle, random_poses, rodrigues, seeds
from hypothesis import given, settings

from echoposed_ros import geometry as G
from echoposed_ros.geometry import so3


def regauge(g, a):
    """Same slice in another gauge: (R_v Rz(a), Rz(a)^T R_p)."""
    return (g[0] @ so3.rot_z(a), T(so3.rot_z(a)) @ g[1])


@PROPS
@given(seeds)
def test_probe_frame_is_the_method_formula_and_gauge_invariant(seed):
    rng = np.random.default_rng(seed)
    g = random_poses(rng)
    c, r, a = rng.uniform(-100, 100, 3), rng.uniform(0, 200), rng.uniform(-10, 10, B)
    R, o = G.probe_frame(g[0], g[1], c, r)
    assert np.allclose(R, g[0] @ g[1], rtol=0, atol=1e-12)
    assert np.allclose(o, c - r * g[0][..., :, 2], rtol=0, atol=1e-9)
    assert np.allclose(np.linalg.norm(o - c, axis=-1), r, rtol=0, atol=1e-9)  # apex on the sphere
    R2, o2 = G.probe_frame(*regauge(g, a), c, r)
    assert np.allclose(R2, R, rtol=0, atol=1e-12) and np.allclose(o2, o, rtol=0, atol=1e-9)


def test_identity_probe_sits_above_the_centre_looking_through_it():
    c = np.array([10.0, 20.0, 30.0])
    R, o = G.probe_frame(np.eye(3), np.eye(3), c, 5.0)
    assert np.allclose(R, np.eye(3)) and np.allclose(o, [10, 20, 25])
    assert np.allclose(o + 5.0 * R[:, 2], c)  # the beam (probe z) passes through the centre
    # Orbiting by +90 deg about x moves the apex to c + r e_y, beam still through c.
    R, o = G.probe_frame(so3.rot_x(np.pi / 2), np.eye(3), c, 5.0)
    assert np.allclose(o, c + [0, 5, 0]) and np.allclose(o + 5.0 * R[:, 2], c)


@PROPS
@given(seeds)
def test_angle_between_is_exact_near_0_and_pi(seed):
    rng = np.random.default_rng(seed)
    axis, a = random_axis_angle(rng, B)
    v = rng.standard_normal((B, 3))
    v -= np.sum(v * axis, axis=-1, keepdims=True) * axis      # v normal to the rotation axis
    w = (rodrigues(axis, a) @ v[..., None])[..., 0] * rng.uniform(0.1, 10)
    assert np.allclose(G.angle_between(v, w), a, rtol=0, atol=1e-12)


@PROPS
@given(seeds)
def test_effective_pose_is_the_method_formula_and_gauge_invariant(seed):
    rng = np.random.default_rng(seed)
    g = random_poses(rng)
    u, R = G.effective_pose(g)
    assert np.allclose(u, g[0][..., :, 2], rtol=0, atol=0) and np.allclose(R, g[0] @ g[1], rtol=0, atol=0)
    u2, R2 = G.effective_pose(regauge(g, rng.uniform(-10, 10, B)))
    assert np.allclose(u2, u, rtol=0, atol=1e-12) and np.allclose(R2, R, rtol=0, atol=1e-12)


@pytest.mark.slow
@PROPS
@given(seeds)
def test_effective_error_is_gauge_invariant_symmetric_and_the_method_formula(seed):
    rng = np.random.default_rng(seed)
    g, h = random_poses(rng), random_poses(rng)
    e = G.effective_error(g, h)
    a, b = rng.uniform(-10, 10, (2, B))
    assert np.allclose(G.effective_error(regauge(g, a), regauge(h, b)), e, rtol=0, atol=1e-9)
    assert np.allclose(G.effective_error(G.gauge_fix(g), h), e, rtol=0, atol=1e-9)
    assert np.allclose(G.effective_error(h, g), e, rtol=0, atol=1e-12)
    u_g, u_h = g[0][..., :, 2], h[0][..., :, 2]
    a_u = np.arccos(np.clip(np.sum(u_g * u_h, axis=-1), -1, 1))
    Rgh = T(g[0] @ g[1]) @ (h[0] @ h[1])
    a_R = np.arccos(np.clip((np.trace(Rgh, axis1=-2, axis2=-1) - 1) / 2, -1, 1))
    assert np.allclose(e, np.hypot(a_u, a_R), rtol=0, atol=1e-6)  # arccos is coarse near 0 and pi


@pytest.mark.slow
@PROPS
@given(seeds)
def test_effective_error_is_zero_iff_same_effective_pose(seed):
    rng = np.random.default_rng(seed)
    g, h = random_poses(rng), random_poses(rng)
    assert np.all(G.effective_error(g, regauge(g, rng.uniform(-10, 10, B))) < 1e-7)
    assert np.all(G.effective_error(g, g) < 1e-7)
    # Zero only if same: the error bounds both chord distances from above.
    e = G.effective_error(g, h)
    (u_g, R_g), (u_h, R_h) = G.effective_pose(g), G.effective_pose(h)
    assert np.all(np.linalg.norm(u_g - u_h, axis=-1) <= e + 1e-12)
    assert np.all(np.linalg.norm(R_g - R_h, axis=(-2, -1)) / np.sqrt(2) <= e + 1e-12)


@pytest.mark.slow
@PROPS
@given(seeds)
def test_effective_error_of_known_motions(seed):
    rng = np.random.default_rng(seed)
    g = random_poses(rng)
    axis, _ = random_axis_angle(rng, B)
    t = rng.uniform(1e-6, 1.0, B)
    # Turning only the probe factor by t turns R by t and leaves u alone: error = t.
    assert np.allclose(G.effective_error(g, (g[0], g[1] @ so3.exp(axis * t[:, None]))), t, rtol=0, atol=1e-9)
    # Orbiting by t about the probe's own lateral axis while counter-turning the probe keeps R
    # and moves u by t: error = t.
    h = (g[0] @ so3.rot_x(t), so3.rot_x(-t) @ g[1])
    assert np.allclose(G.effective_error(g, h), t, rtol=0, atol=1e-9)
    assert np.allclose(G.effective_pose(h).R, g[0] @ g[1], rtol=0, atol=1e-12)


@pytest.mark.slow
@PROPS
@given(seeds)
def test_effective_error_parts_add_up_and_are_gauge_invariant(seed):
    rng = np.random.default_rng(seed)
    g, h = random_poses(rng), random_poses(rng)
    apex, turn = G.effective_error_parts(g, h)
    assert apex.shape == (B,) and turn.shape == (B, 3)
    assert np.allclose(np.hypot(apex, np.linalg.norm(turn, axis=-1)), G.effective_error(g, h), rtol=0, atol=1e-9)
    a, b = rng.uniform(-10, 10, (2, B))
    apex2, turn2 = G.effective_error_parts(regauge(g, a), regauge(h, b))
    assert np.allclose(apex2, apex, rtol=0, atol=1e-9)
    # The turn is a rotation vector: equal up to the antipodal pair at pi.
    assert np.allclose(so3.exp(turn2), so3.exp(turn), rtol=0, atol=1e-9)


def test_effective_error_parts_name_the_axis_of_a_known_turn():
    g = (so3.rot_x(0.3), so3.rot_z(1.0))
    for axis, rot in enumerate((so3.rot_x, so3.rot_y, so3.rot_z)):
        apex, turn = G.effective_error_parts(g, (g[0], g[1] @ rot(0.2)))  # turned in the probe frame
        expected = np.zeros(3)
        expected[axis] = 0.2
        assert apex < 1e-12 and np.allclose(turn, expected, rtol=0, atol=1e-12)
    # An orbit that keeps the probe's orientation moves the apex only.
    apex, turn = G.effective_error_parts(g, (g[0] @ so3.rot_x(0.1), so3.rot_x(-0.1) @ g[1]))
    assert np.isclose(apex, 0.1, rtol=0, atol=1e-12) and np.allclose(turn, 0, atol=1e-12)


@pytest.mark.slow
@PROPS
@given(seeds)
def test_body_errors_cancel_a_common_left_factor(seed):
    rng = np.random.default_rng(seed)
    P, Tg, A = random_poses(rng), random_poses(rng), random_poses(rng)
    E = G.body_errors(P, Tg)
    assert np.allclose(P[0] @ E.orbit, Tg[0], rtol=0, atol=1e-12)
    assert np.allclose(P[1] @ E.probe, Tg[1], rtol=0, atol=1e-12)
    E2 = G.body_errors(G.compose(A, P), G.compose(A, Tg))
    assert np.allclose(E2.orbit, E.orbit, rtol=0, atol=1e-12) and np.allclose(E2.probe, E.probe, rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seeds)
def test_batched_matches_per_element_loop(seed):
    rng = np.random.default_rng(seed)
    g = tuple(r.reshape(4, 3, 3, 3) for r in random_poses(rng, 12))
    h = tuple(r.reshape(4, 3, 3, 3) for r in random_poses(rng, 12))
    c, r = rng.standard_normal(3), 7.0
    e, (R, o), (u, Re), E = G.effective_error(g, h), G.probe_frame(*g, c, r), G.effective_pose(g), G.body_errors(g, h)
    for i in range(4):
        for j in range(3):
            gi, hi = (g[0][i, j], g[1][i, j]), (h[0][i, j], h[1][i, j])
            assert np.isclose(e[i, j], G.effective_error(gi, hi), rtol=0, atol=1e-15)
            Ri, oi = G.probe_frame(*gi, c, r)
            assert np.allclose(R[i, j], Ri, rtol=0, atol=1e-15) and np.allclose(o[i, j], oi, rtol=0, atol=1e-15)
            ui, Rei = G.effective_pose(gi)
            assert np.allclose(u[i, j], ui, rtol=0, atol=0) and np.allclose(Re[i, j], Rei, rtol=0, atol=1e-15)
            Ei = G.body_errors(gi, hi)
            assert np.allclose(E.orbit[i, j], Ei.orbit, rtol=0, atol=1e-15)
            assert np.allclose(E.probe[i, j], Ei.probe, rtol=0, atol=1e-15)
