"""Body twist -> Cartesian probe twist (docs/method.md section 6), checked against finite differences.

Each hypothesis example draws a seed and checks a batch of B poses built from it.
"""
from __future__ import annotations

import numpy as np
import pytest
from geometry_cases import PROPS, B, T, random_poses, seeds
from hypothesis import given, settings

from echoposed_ros import geometry as G
from echoposed_ros.geometry import so3


def _mv(R, v):
    return (R @ v[..., None])[..., 0]


@pytest.mark.slow
@PROPS
@given(seeds)
def test_cartesian_twist_matches_finite_difference_of_the_probe_frame(seed):
    """Move the pose with pose.step (right multiplication, then gauge fix) by +-dt and
    difference the physical probe frame: apex velocity and world angular velocity."""
    rng = np.random.default_rng(seed)
    g = random_poses(rng)
    w_v, w_p = rng.uniform(-3, 3, (2, B, 3))
    c, r = rng.uniform(-100, 100, 3), rng.uniform(0, 150)
    dt = 1e-5
    tw = G.body_twist_to_cartesian(g[0], g[1], w_v, w_p, r)
    fwd, bwd = G.step(g, w_v, w_p, dt), G.step(g, w_v, w_p, -dt)
    (R1, o1), (R0, o0) = G.probe_frame(*fwd, c, r), G.probe_frame(*bwd, c, r)
    v_fd = (o1 - o0) / (2 * dt)
    w_fd = so3.log(R1 @ T(R0)) / (2 * dt)       # R(t) ~ exp(t [omega]) R(0)
    assert np.allclose(tw.v, v_fd, rtol=0, atol=1e-6 * (1 + r))
    assert np.allclose(tw.omega, w_fd, rtol=0, atol=1e-6)


@PROPS
@given(seeds)
def test_cartesian_twist_formula_and_structure(seed):
    rng = np.random.default_rng(seed)
    g = random_poses(rng)
    w_v, w_p = rng.uniform(-3, 3, (2, B, 3))
    c, r = rng.uniform(-100, 100, 3), rng.uniform(0, 150)
    tw = G.body_twist_to_cartesian(g[0], g[1], w_v, w_p, r)
    assert np.allclose(tw.v, -r * _mv(g[0], np.cross(w_v, [0, 0, 1.0])), rtol=0, atol=1e-12)
    assert np.allclose(tw.omega, _mv(g[0], w_v) + _mv(g[0] @ g[1], w_p), rtol=0, atol=1e-12)
    # The apex stays on the sphere: its velocity is tangent to it.
    R, o = G.probe_frame(*g, c, r)
    assert np.allclose(np.sum(tw.v * (o - c), axis=-1), 0, atol=1e-9 * (1 + r * r))
    # Turning only the probe about its apex does not move the apex; a spin of the orbit
    # factor about z does not either.
    still = G.body_twist_to_cartesian(g[0], g[1], w_v * [0, 0, 1.0], w_p, r)  # orbit spin about z only
    assert np.allclose(still.v, 0, atol=1e-12)
    # Linear in the body twist.
    tw2 = G.body_twist_to_cartesian(g[0], g[1], 2 * w_v, -w_p, r)
    a = G.body_twist_to_cartesian(g[0], g[1], w_v, np.zeros_like(w_p), r)
    b = G.body_twist_to_cartesian(g[0], g[1], np.zeros_like(w_v), w_p, r)
    assert np.allclose(tw2.v, 2 * a.v - b.v, atol=1e-9) and np.allclose(tw2.omega, 2 * a.omega - b.omega, atol=1e-12)


@PROPS
@given(seeds)
def test_probe_frame_twist_is_the_world_twist_rotated_into_the_probe(seed):
    rng = np.random.default_rng(seed)
    g = random_poses(rng)
    w_v, w_p = rng.uniform(-3, 3, (2, B, 3))
    r = rng.uniform(0, 150)
    world = G.body_twist_to_cartesian(g[0], g[1], w_v, w_p, r)
    local = G.body_twist_to_probe_cartesian(g[0], g[1], w_v, w_p, r)
    R = g[0] @ g[1]
    assert np.allclose(_mv(R, local.v), world.v, rtol=0, atol=1e-9)
    assert np.allclose(_mv(R, local.omega), world.omega, rtol=0, atol=1e-12)
    # A pure probe-factor twist is the probe's own body angular velocity: omega_local = omega_p.
    pure = G.body_twist_to_probe_cartesian(g[0], g[1], np.zeros_like(w_p), w_p, r)
    assert np.allclose(pure.omega, w_p, rtol=0, atol=1e-12) and np.allclose(pure.v, 0, atol=1e-12)


def test_known_orbit_motion():
    # At (I, I) with r = 2, orbiting about x at 1 rad/s moves the apex (at c - 2 e_z) along +y
    # (Rx(t) e_z ~ e_z - t e_y, so o = c - 2 Rx e_z moves by +2 t e_y) and turns the probe about x.
    tw = G.body_twist_to_cartesian(np.eye(3), np.eye(3), [1.0, 0, 0], [0, 0, 0], 2.0)
    assert np.allclose(tw.v, [0, 2.0, 0]) and np.allclose(tw.omega, [1.0, 0, 0])


@settings(max_examples=30, deadline=None)
@given(seeds)
def test_batched_matches_per_element_loop(seed):
    rng = np.random.default_rng(seed)
    g = tuple(x.reshape(3, 4, 3, 3) for x in random_poses(rng, 12))
    w_v, w_p = rng.uniform(-3, 3, (2, 3, 4, 3))
    tw = G.body_twist_to_cartesian(g[0], g[1], w_v, w_p, 3.0)
    lo = G.body_twist_to_probe_cartesian(g[0], g[1], w_v, w_p, 3.0)
    for i in range(3):
        for j in range(4):
            ti = G.body_twist_to_cartesian(g[0][i, j], g[1][i, j], w_v[i, j], w_p[i, j], 3.0)
            li = G.body_twist_to_probe_cartesian(g[0][i, j], g[1][i, j], w_v[i, j], w_p[i, j], 3.0)
            assert np.allclose(tw.v[i, j], ti.v, rtol=0, atol=1e-15)
            assert np.allclose(tw.omega[i, j], ti.omega, rtol=0, atol=1e-15)
            assert np.allclose(lo.v[i, j], li.v, rtol=0, atol=1e-14)
            assert np.allclose(lo.omega[i, j], li.omega, rtol=0, atol=1e-14)


def _hat4(v, omega):
    M = np.zeros((4, 4))
    M[:3, :3] = so3.hat(omega)
    M[:3, 3] = v
    return M


@pytest.mark.parametrize('scale', [0.0, 1e-6, 1e-3, 0.3, 2.0])
@pytest.mark.parametrize('seed', range(4))
def test_twist_to_transform_matches_the_matrix_exponential_and_inverts(scale, seed):
    from scipy.linalg import expm  # the naive path: the 4x4 matrix exponential
    rng = np.random.default_rng(seed)
    v, omega = rng.normal(size=3), rng.normal(size=3)
    omega *= scale / max(np.linalg.norm(omega), 1e-12)
    T = G.twist_to_transform(G.CartesianTwist(v, omega))
    assert np.allclose(T, expm(_hat4(v, omega)), atol=1e-12)
    back = G.transform_to_twist(T)
    assert np.allclose(back.v, v, atol=1e-10) and np.allclose(back.omega, omega, atol=1e-12)


def test_a_rotation_about_a_point_on_the_beam_keeps_that_point():
    # orbit about x through the point 1 deep on the beam: v = -omega x p
    p, omega = np.array([0.0, 0.0, 1.0]), np.array([0.2, 0.0, 0.0])
    T = G.twist_to_transform(G.CartesianTwist(-np.cross(omega, p), omega))
    assert np.allclose(T[:3, :3] @ p + T[:3, 3], p, atol=1e-12)
    assert np.isclose(np.linalg.norm(T[:3, 3] - p), 1.0)          # the apex stays 1 from it


def test_rigid_transforms_name_the_bad_input():
    with pytest.raises(G.GeometryError, match=r'twist\.omega'):
        G.twist_to_transform(G.CartesianTwist(np.zeros(3), np.array([np.nan, 0.0, 0.0])))
    with pytest.raises(G.GeometryError, match=r'\(4, 4\)'):
        G.transform_to_twist(np.eye(3))
