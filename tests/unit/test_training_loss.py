"""Pairwise equivariance loss (echoposed_ros.training.loss)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from echoposed_ros.geometry import angle
from echoposed_ros.training.loss import geodesic_angle, pair_loss
from echoposed_ros.training.svd import project_to_so3


def _rots(n: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(Rotation.random(n, random_state=seed).as_matrix())


def test_geodesic_angle_matches_geometry_core_including_near_pi():
    R = _rots(50, 0)
    np.testing.assert_allclose(geodesic_angle(R).numpy(), angle(R.numpy()), atol=1e-6)
    Rpi = torch.from_numpy(Rotation.from_rotvec([[0, 0, np.pi - 1e-9], [np.pi, 0, 0]]).as_matrix())
    np.testing.assert_allclose(geodesic_angle(Rpi).numpy(), [np.pi, np.pi], atol=1e-4)


def test_zero_for_equivariant_outputs_positive_otherwise():
    n, k = 8, 3
    Rv, Rp = _rots(n, 1), _rots(n, 2)
    Cv, Cp = _rots(k, 3), _rots(k, 4)  # each member's own constant left factor
    Fv = Cv[None] @ Rv[:, None]
    Fp = Cp[None] @ Rp[:, None]
    for form in ('geodesic', 'chordal', 'cauchy'):
        loss, lv, lp = pair_loss(Fv, Fp, Rv, Rp, form=form)
        assert loss.shape == (k,)
        assert float(loss.abs().max()) < 1e-6
    Fp_bad = Fp.clone()
    Fp_bad[0, 1] = _rots(1, 9)[0]
    loss, lv, lp = pair_loss(Fv, Fp_bad, Rv, Rp)
    assert loss[1] > 1e-3 and loss[0] < 1e-6 and loss[2] < 1e-6
    assert lv[1] < 1e-6  # only the probe term sees a probe error


def test_weights_scale_the_factor_terms():
    Rv, Rp = _rots(6, 5), _rots(6, 6)
    Fv, Fp = _rots(6, 7)[:, None], _rots(6, 8)[:, None]
    l1, lv, lp = pair_loss(Fv, Fp, Rv, Rp, w_orbit=1.0, w_probe=1.0)
    l2, _, _ = pair_loss(Fv, Fp, Rv, Rp, w_orbit=50.0, w_probe=2.0)
    assert float(l2) == pytest.approx(float(50 * lv + 2 * lp), rel=1e-9)
    assert float(l1) == pytest.approx(float(lv + lp), rel=1e-9)


def test_gradient_finite_and_large_near_a_half_turn_pair():
    # an image and its mirror mapped to (nearly) the same output: a pair about 180 degrees apart.
    # arccos has an infinite gradient there, chordal a vanishing one; atan2 stays finite and O(1).
    Rp = torch.stack([torch.eye(3, dtype=torch.float64),
                      torch.from_numpy(Rotation.from_rotvec([0, 0, np.pi]).as_matrix())])
    Rv = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    C = _rots(1, 11)[0]
    F = torch.stack([C, C @ torch.from_numpy(Rotation.from_rotvec([0, 0, 1e-3]).as_matrix())])
    M = F[:, None].clone().requires_grad_()  # the head's raw matrices, projected as in training
    loss, _, lp = pair_loss(Rv[:, None].clone(), project_to_so3(M), Rv, Rp, form='geodesic')
    assert float(lp.detach()) == pytest.approx(np.pi ** 2, rel=1e-3)
    loss.sum().backward()
    assert torch.isfinite(M.grad).all() and float(M.grad.norm()) > 1.0
    Mc = F[:, None].clone().requires_grad_()
    pair_loss(Rv[:, None].clone(), project_to_so3(Mc), Rv, Rp, form='chordal')[0].sum().backward()
    assert float(Mc.grad.norm()) < 0.1 * float(M.grad.norm())


def test_cauchy_matches_geodesic_for_small_angles_and_caps_large_ones():
    Rv = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    Rp = Rv.clone()
    for deg, close in ((2.0, True), (170.0, False)):
        turn = torch.from_numpy(Rotation.from_rotvec([0, 0, np.deg2rad(deg)]).as_matrix())
        Fp = torch.stack([torch.eye(3, dtype=torch.float64), turn])[:, None]
        _, _, geo = pair_loss(Rv[:, None].clone(), Fp, Rv, Rp, form='geodesic')
        _, _, cau = pair_loss(Rv[:, None].clone(), Fp, Rv, Rp, form='cauchy', scale=np.deg2rad(30))
        c2 = np.deg2rad(30) ** 2
        assert float(cau) == pytest.approx(c2 * np.log1p(float(geo) / c2), rel=1e-9)
        if close:
            assert float(cau) == pytest.approx(float(geo), rel=0.01)
        else:
            assert float(cau) < 0.25 * float(geo)


def test_x_weight_scales_only_errors_about_the_pose_x_axis():
    # two images of one pose (a pair's error is about both poses' axes: here they coincide)
    Rp = torch.from_numpy(Rotation.random(1, random_state=4).as_matrix()).expand(2, 3, 3)
    Rv = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    for axis, factor in ((0, 4.0), (1, 1.0), (2, 1.0)):
        e = np.zeros(3)
        e[axis] = 0.3
        # member output of pose 1 off by a turn about pose 1's own axis: F_1 = R_1 exp(e); pose 0 exact
        Fp = torch.stack([Rp[0], Rp[1] @ torch.from_numpy(Rotation.from_rotvec(e).as_matrix())])[:, None]
        base = pair_loss(Rv[:, None].clone(), Fp, Rv, Rp)[2]
        weighted = pair_loss(Rv[:, None].clone(), Fp, Rv, Rp, w_x=4.0)[2]
        assert float(weighted) == pytest.approx(factor * float(base), rel=1e-6), axis
    # many poses, K members: shapes kept, weight between 1 and w_x
    Rv6, Rp6, F6 = _rots(6, 1), _rots(6, 2), _rots(6 * 3, 5).reshape(6, 3, 3, 3)
    plain = pair_loss(F6, F6, Rv6, Rp6)[0]
    heavy = pair_loss(F6, F6, Rv6, Rp6, w_x=4.0)[0]
    assert heavy.shape == (3,) and bool((heavy >= plain).all()) and bool((heavy <= 4 * plain).all())


def test_bad_form_named():
    R = _rots(2, 0)
    with pytest.raises(ValueError, match='huber'):
        pair_loss(R[:, None], R[:, None], R, R, form='huber')


def test_distill_loss_is_zero_on_the_teacher_and_matches_a_naive_sum():
    from echoposed_ros.training import TrainingError
    from echoposed_ros.training.loss import distill_loss
    rng = np.random.default_rng(4)
    n, k = 6, 3
    rot = lambda m: torch.tensor(Rotation.random(m, random_state=rng).as_matrix().reshape(-1, 3, 3))  # noqa: E731
    F_v, F_p, T_v, T_p = (rot(n * k).view(n, k, 3, 3) for _ in range(4))
    assert torch.allclose(distill_loss(F_v, F_p, F_v, F_p), torch.zeros(k, dtype=torch.float64), atol=1e-8)
    c = 0.4
    got = distill_loss(F_v, F_p, T_v, T_p, w_orbit=7.0, w_probe=2.0, scale=c)
    want = torch.zeros(k, dtype=torch.float64)
    for m in range(k):
        for i in range(n):
            for w, F, T in ((7.0, F_v, T_v), (2.0, F_p, T_p)):
                a = Rotation.from_matrix((F[i, m].T @ T[i, m]).numpy()).magnitude()
                want[m] += w * c * c * np.log1p(a * a / (c * c)) / n
    assert torch.allclose(got, want, atol=1e-6)
    # the teacher gets no gradient; the student does
    F_v.requires_grad_(True)
    T_v.requires_grad_(True)
    distill_loss(F_v, F_p, T_v, T_p).sum().backward()
    assert F_v.grad is not None and float(F_v.grad.abs().sum()) > 0 and T_v.grad is None
    with pytest.raises(TrainingError, match='distill scale'):
        distill_loss(F_v, F_p, T_v, T_p, scale=0.0)
