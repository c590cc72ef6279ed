"""The pose group SO(3) x SO(3): group laws, exp/log, distance, canonical gauge, control step.

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


def close(g, h, atol=1e-12):
    return np.allclose(g[0], h[0], rtol=0, atol=atol) and np.allclose(g[1], h[1], rtol=0, atol=atol)


def twist_free(R, atol=1e-12):
    return np.all(np.abs(so3.matrix_to_quat_xyzw(R)[..., 2]) < atol)


@pytest.mark.slow
@PROPS
@given(seeds)
def test_group_laws(seed):
    rng = np.random.default_rng(seed)
    g, h, k = random_poses(rng), random_poses(rng), random_poses(rng)
    e = G.identity((B,))
    assert close(G.compose(G.compose(g, h), k), G.compose(g, G.compose(h, k)))
    assert close(G.compose(g, e), g) and close(G.compose(e, g), g)
    assert close(G.compose(g, G.inverse(g)), e) and close(G.compose(G.inverse(g), g), e)
    assert close(G.inverse(G.compose(g, h)), G.compose(G.inverse(h), G.inverse(g)))
    assert close(G.compose(g, h), (g[0] @ h[0], g[1] @ h[1]))


@pytest.mark.slow
@PROPS
@given(seeds)
def test_exp_log_round_trip_including_near_pi(seed):
    rng = np.random.default_rng(seed)
    (n_v, a_v), (n_p, a_p) = random_axis_angle(rng, B), random_axis_angle(rng, B)
    xi = np.concatenate([n_v * a_v[:, None], n_p * a_p[:, None]], axis=1)
    g = G.pose_exp(xi)
    assert close(g, (rodrigues(n_v, a_v), rodrigues(n_p, a_p)), atol=1e-14)
    back = G.pose_log(g)
    assert close(G.pose_exp(back), g)
    for half, w, a in ((back[:, :3], xi[:, :3], a_v), (back[:, 3:], xi[:, 3:], a_p)):
        same = np.all(np.abs(half - w) < 1e-9, axis=-1)
        flipped = np.all(np.abs(half + w) < 1e-7, axis=-1)
        assert np.all(same | ((a > np.pi - 1e-9) & flipped))  # at a half turn the axis sign is free


@pytest.mark.slow
@PROPS
@given(seeds)
def test_distance_is_the_method_formula_and_a_left_invariant_metric(seed):
    rng = np.random.default_rng(seed)
    g, h, k = random_poses(rng), random_poses(rng), random_poses(rng)
    d = G.distance(g, h)
    a_v = np.arccos(np.clip((np.trace(T(g[0]) @ h[0], axis1=-2, axis2=-1) - 1) / 2, -1, 1))
    a_p = np.arccos(np.clip((np.trace(T(g[1]) @ h[1], axis1=-2, axis2=-1) - 1) / 2, -1, 1))
    assert np.allclose(d, np.hypot(a_v, a_p), rtol=0, atol=1e-6)  # arccos is coarse near 0 and pi
    assert np.all(G.distance(g, g) < 1e-12)
    assert np.allclose(G.distance(h, g), d, rtol=0, atol=1e-12)
    assert np.allclose(G.distance(G.compose(k, g), G.compose(k, h)), d, rtol=0, atol=1e-9)
    assert np.all(d <= G.distance(g, k) + G.distance(k, h) + 1e-9)


@pytest.mark.slow
@PROPS
@given(seeds)
def test_gauge_fix_keeps_effective_pose_is_twist_free_and_idempotent(seed):
    g = random_poses(np.random.default_rng(seed))
    f = G.gauge_fix(g)
    assert np.allclose(f.orbit[..., :, 2], g[0][..., :, 2], rtol=0, atol=1e-12)  # u = R_v e_z
    assert np.allclose(f.orbit @ f.probe, g[0] @ g[1], rtol=0, atol=1e-12)        # R = R_v R_p
    assert twist_free(f.orbit)
    assert close(G.gauge_fix(f), f)
    # What moved into the probe factor is a turn about z.
    D = g[1] @ T(f.probe)
    assert np.allclose(D[..., 2, :], [0, 0, 1], rtol=0, atol=1e-12)
    assert np.allclose(D[..., :, 2], [0, 0, 1], rtol=0, atol=1e-12)


@PROPS
@given(seeds)
def test_gauge_fix_picks_one_representative_per_gauge_class(seed):
    rng = np.random.default_rng(seed)
    g = random_poses(rng)
    a = rng.uniform(-10, 10, B)
    h = (g[0] @ so3.rot_z(a), T(so3.rot_z(a)) @ g[1])
    ok = g[0][:, 2, 2] > -1 + 1e-3  # at the antipode u = -e_z the twist is undefined
    fg, fh = G.gauge_fix(g), G.gauge_fix(h)
    assert np.allclose(fh.orbit[ok], fg.orbit[ok], rtol=0, atol=1e-9)
    assert np.allclose(fh.probe[ok], fg.probe[ok], rtol=0, atol=1e-9)


def test_gauge_fix_known_value():
    f = G.gauge_fix((so3.rot_x(0.2) @ so3.rot_z(0.5), so3.rot_y(0.1)))
    assert np.allclose(f.orbit, so3.rot_x(0.2)) and np.allclose(f.probe, so3.rot_z(0.5) @ so3.rot_y(0.1))


@pytest.mark.slow
@PROPS
@given(seeds)
def test_step_is_right_multiplication_then_gauge(seed):
    rng = np.random.default_rng(seed)
    g = random_poses(rng)
    w_v, w_p = rng.uniform(-3, 3, (2, B, 3))
    dt = rng.uniform(1e-3, 1.0)
    moved = G.right_apply(g, w_v * dt, w_p * dt)
    assert close(moved, (g[0] @ so3.exp(w_v * dt), g[1] @ so3.exp(w_p * dt)))
    s = G.step(g, w_v, w_p, dt)
    assert close(s, G.gauge_fix(moved))
    assert twist_free(s.orbit)
    assert close(G.step(g, np.zeros(3), np.zeros(3), dt), G.gauge_fix(g))


@settings(max_examples=30, deadline=None)
@given(seeds)
def test_batched_matches_per_element_loop(seed):
    rng = np.random.default_rng(seed)
    g = tuple(r.reshape(3, 5, 3, 3) for r in random_poses(rng, 15))
    h = tuple(r.reshape(3, 5, 3, 3) for r in random_poses(rng, 15))
    w = rng.standard_normal((3, 5, 6))
    comp, inv, gf, lg = G.compose(g, h), G.inverse(g), G.gauge_fix(g), G.pose_log(g)
    ex, dist, stp = G.pose_exp(w), G.distance(g, h), G.step(g, w[..., :3], w[..., 3:], 0.1)
    for i in range(3):
        for j in range(5):
            gi, hi = (g[0][i, j], g[1][i, j]), (h[0][i, j], h[1][i, j])
            assert close((comp[0][i, j], comp[1][i, j]), G.compose(gi, hi), atol=1e-15)
            assert close((inv[0][i, j], inv[1][i, j]), G.inverse(gi), atol=0)
            assert close((gf[0][i, j], gf[1][i, j]), G.gauge_fix(gi), atol=1e-15)
            assert close((ex[0][i, j], ex[1][i, j]), G.pose_exp(w[i, j]), atol=1e-15)
            assert close((stp[0][i, j], stp[1][i, j]), G.step(gi, w[i, j, :3], w[i, j, 3:], 0.1), atol=1e-15)
            assert np.allclose(lg[i, j], G.pose_log(gi), rtol=0, atol=1e-15)
            assert np.isclose(dist[i, j], G.distance(gi, hi), rtol=0, atol=1e-15)
    # Broadcasting: one pose against a batch.
    one = (g[0][0, 0], g[1][0, 0])
    assert np.isclose(G.distance(one, h)[1, 2], G.distance(one, (h[0][1, 2], h[1][1, 2])))
    assert G.identity((2, 3)).orbit.shape == (2, 3, 3, 3)
