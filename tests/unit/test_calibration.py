"""Angular calibration core (echoposed_ros.eval.calibration) with oracle and chance predictors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from echoposed_ros.eval.calibration import (
    AXES,
    CalibrationError,
    CalibrationProtocol,
    applied_turns,
    calibrate_volume,
    maae_by_turn,
    plot_calibration,
    summarize,
    turn_bands_deg,
    twist_angle,
    wrap_angle,
)
from echoposed_ros.geometry import gauge_fix, rot_x, rot_y, rot_z

PROTO = CalibrationProtocol()


def pose_render(orbits, probes):
    """'Images' that carry their true pose: lets an oracle predictor read it back."""
    return np.stack([orbits, probes], axis=1)


def oracle(A_v, A_p, noise_deg=0.0, base_probe=None, seed=0):
    """Reports gauge_fix(A g_true) (the unknown left factor A of the method). With noise: the probe
    factor is turned about a random axis by up to ``noise_deg`` times the slice's turn from
    ``base_probe`` / 180 degrees (so the unturned slice is exact), and sigma^2 = that angle^2."""
    rng = np.random.default_rng(seed)

    def predict(images):
        orbits, probes = images[:, 0], images[:, 1]
        n = len(orbits)
        noise = np.zeros(n)
        if noise_deg:
            turn = Rotation.from_matrix(np.swapaxes(base_probe, -1, -2) @ probes).magnitude() / np.pi
            noise = np.radians(noise_deg) * turn * rng.uniform(-1, 1, n)
        axes = rng.standard_normal((n, 3))
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        kick = Rotation.from_rotvec(axes * noise[:, None]).as_matrix()
        g = gauge_fix((A_v @ orbits, A_p @ probes @ kick))
        return g.orbit, g.probe, noise ** 2 + 1e-9
    return predict


def constant(images):
    n = len(images)
    eye = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    return eye, eye.copy(), np.full(n, 0.1)


def base_pose(seed):
    S = Rotation.from_rotvec([0.3, -0.2, 0.0]).as_matrix()
    return gauge_fix((S @ rot_z(0.4), Rotation.random(random_state=seed).as_matrix()))


def test_applied_turns_follow_the_protocol():
    t = applied_turns(PROTO)
    assert t['z'].size == 360 and t['x'].size == t['y'].size == 61
    assert np.degrees(t['x']).min() == pytest.approx(-30) and np.degrees(t['x']).max() == pytest.approx(30)
    assert np.all(np.diff(np.sort(np.degrees(t['z']))) == pytest.approx(1.0))
    assert np.all(t['z'] >= -np.pi) and np.all(t['z'] < np.pi)


@pytest.mark.parametrize('axis, rot', [('x', rot_x), ('y', rot_y), ('z', rot_z)])
def test_twist_angle_reads_pure_turns(axis, rot):
    theta = np.radians(np.linspace(-179, 179, 37))
    np.testing.assert_allclose(twist_angle(rot(theta), axis), theta, atol=1e-12)
    # a swing about another axis does not change the twist about this one
    other = 'y' if axis == 'x' else 'x'
    swing = {'x': rot_x, 'y': rot_y}[other](0.3)
    np.testing.assert_allclose(twist_angle(swing @ rot(theta[10:12]), axis), theta[10:12], atol=1e-12)


def test_wrap_angle():
    np.testing.assert_allclose(wrap_angle([np.pi, -np.pi, 3 * np.pi / 2, 0.1]), [-np.pi, -np.pi, -np.pi / 2, 0.1])


def test_oracle_with_unknown_left_factor_scores_zero():
    A_v, A_p = Rotation.random(2, random_state=5).as_matrix()
    results = []
    for seed in range(2):
        g0 = base_pose(seed)
        results.append(calibrate_volume(f'vol{seed}', g0.orbit, g0.probe, pose_render, oracle(A_v, A_p), PROTO))
    summary = summarize(results, PROTO)
    for axis in AXES:
        s = summary['axes'][axis]
        assert s['maae_deg'] < 1e-6
        assert s['normalized_maae'] < 1e-7
    # chance MAAE of a perfect predictor: ~90 deg over the circle, ~20 deg over +-30 deg
    assert summary['axes']['z']['chance_maae_deg'] == pytest.approx(90.0, abs=8.0)
    assert summary['axes']['x']['chance_maae_deg'] == pytest.approx(20.3, abs=3.0)
    assert summary['axes']['z']['slices'] == 720 and summary['axes']['x']['slices'] == 122
    json.dumps(summary)                                  # JSON-ready


def test_constant_predictor_scores_chance():
    g0 = base_pose(3)
    summary = summarize([calibrate_volume('c', g0.orbit, g0.probe, pose_render, constant, PROTO)], PROTO)
    for axis in AXES:
        assert summary['axes'][axis]['normalized_maae'] == pytest.approx(1.0, abs=1e-12)
    assert summary['axes']['z']['maae_deg'] == pytest.approx(90.0, abs=0.6)
    assert summary['axes']['x']['maae_deg'] == pytest.approx(15.25, abs=0.01)   # mean |theta| over -30..30
    assert summary['spearman_sigma2_error']['rho'] is None                     # sigma^2 is constant


def test_a_reference_slice_read_off_is_told_apart_from_the_turns():
    """An oracle whose unturned slice alone is read 8 deg off about z: the protocol's error is 8 deg on
    every turn; the reference-free figure is 0 and the offset says where the error is."""
    A_v, A_p = Rotation.random(2, random_state=9).as_matrix()
    g0 = base_pose(6)
    exact = oracle(A_v, A_p)

    def reference_off(images):
        orbit, probe, s2 = exact(images)
        probe = probe.copy()
        probe[0] = probe[0] @ rot_z(np.radians(8.0))       # the first slice of each axis is the unturned one
        return orbit, probe, s2
    summary = summarize([calibrate_volume('r', g0.orbit, g0.probe, pose_render, reference_off, PROTO)], PROTO)
    z = summary['axes']['z']
    assert z['maae_deg'] == pytest.approx(8.0, abs=1e-6)
    assert z['reference_offset_deg'] == pytest.approx(8.0, abs=1e-6)
    assert z['maae_without_reference_deg'] == pytest.approx(0.0, abs=1e-6)
    assert summary['volumes'][0]['axes']['z']['reference_offset_deg'] == pytest.approx(-8.0, abs=1e-6)
    perfect = summarize([calibrate_volume('p', g0.orbit, g0.probe, pose_render, exact, PROTO)], PROTO)
    assert perfect['axes']['z']['maae_without_reference_deg'] < 1e-6
    assert perfect['axes']['z']['reference_offset_deg'] < 1e-6


def test_noisy_oracle_error_and_sigma2_ranking():
    A_v, A_p = Rotation.random(2, random_state=8).as_matrix()
    g0 = base_pose(4)
    r = calibrate_volume('n', g0.orbit, g0.probe, pose_render,
                         oracle(A_v, A_p, noise_deg=40.0, base_probe=g0.probe), PROTO)
    summary = summarize([r], PROTO)
    # about z the noise is up to 40 deg at a half turn: MAAE a few degrees, far below chance
    z = summary['axes']['z']
    assert 1.0 < z['maae_deg'] < 15.0
    assert 0.01 < z['normalized_maae'] < 0.2
    assert summary['axes']['x']['maae_deg'] < summary['axes']['z']['maae_deg']   # tilts are small turns
    # sigma^2 is the squared noise: it ranks the errors
    assert summary['spearman_sigma2_error']['rho'] > 0.5


def test_constant_predictor_error_by_turn_band():
    # predicting 'no turn' errs by exactly the applied turn: each band's MAAE is its mean |theta|
    g0 = base_pose(3)
    summary = summarize([calibrate_volume('c', g0.orbit, g0.probe, pose_render, constant, PROTO)], PROTO)
    bands = summary['axes']['x']['maae_by_turn_deg']
    assert [(b['lo_deg'], b['hi_deg']) for b in bands] == [(0, 10), (10, 20), (20, 30)]
    assert [b['slices'] for b in bands] == [21, 20, 20]            # -10..10, then 11..20 and 21..30 twice
    assert [b['maae_deg'] for b in bands] == pytest.approx([110 / 21, 15.5, 25.5], abs=1e-9)
    z = summary['axes']['z']['maae_by_turn_deg']
    assert sum(b['slices'] for b in z) == 360
    assert z[-1]['maae_deg'] == pytest.approx(157.6, abs=1.0)   # turns of 136-180 deg: errors average about 158


def test_maae_by_turn_isolates_errors_beyond_a_range():
    applied = np.radians(np.arange(-30.0, 31.0))
    errors = np.where(np.abs(applied) > np.radians(20.5), np.radians(12.0), 0.0)
    rows = maae_by_turn(applied, errors, turn_bands_deg('y', PROTO))
    assert [r['maae_deg'] for r in rows] == pytest.approx([0.0, 0.0, 12.0])
    assert maae_by_turn(applied[:0], errors[:0], np.array([0.0, 10.0]))[0]['maae_deg'] is None
    with pytest.raises(CalibrationError, match='differ in shape'):
        maae_by_turn(applied, errors[:-1], np.array([0.0, 10.0]))


def test_maae_by_turn_tells_sign_flips_from_folding():
    # a model that reads tilts up to 18 deg exactly, folds beyond (caps the size at 18 deg) and
    # reads every tilt beyond 25 deg with the wrong sign
    applied = np.radians(np.arange(-30.0, 31.0))
    size = np.abs(applied)
    predicted = np.sign(applied) * np.minimum(size, np.radians(18.0))
    predicted = np.where(size > np.radians(25.5), -predicted, predicted)
    rows = maae_by_turn(applied, np.abs(wrap_angle(predicted - applied)), turn_bands_deg('x', PROTO), predicted)
    assert [r['sign_flip_share'] for r in rows] == pytest.approx([0.0, 0.0, 0.5])   # 26..30 of 21..30
    assert rows[0]['mean_abs_predicted_deg'] == pytest.approx(rows[0]['mean_abs_applied_deg'])
    # 11..18, then 18, 18
    assert rows[1]['mean_abs_predicted_deg'] == pytest.approx((sum(range(11, 19)) + 2 * 18.0) / 10)
    assert rows[2]['mean_abs_predicted_deg'] == pytest.approx(18.0)
    assert rows[2]['mean_abs_applied_deg'] == pytest.approx(23.0)                     # the unflipped 21..25
    # the unturned slice is neither flipped nor kept out of the band's error
    assert rows[0]['slices'] == 21
    empty = maae_by_turn(applied[:0], applied[:0], np.array([0.0, 10.0]), applied[:0])[0]
    assert empty['sign_flip_share'] is None and empty['mean_abs_predicted_deg'] is None
    with pytest.raises(CalibrationError, match='predicted turns'):
        maae_by_turn(applied, size, np.array([0.0, 10.0]), predicted[:-1])


def test_summary_reports_flips_for_tilts_only():
    g0 = base_pose(3)
    summary = summarize([calibrate_volume('c', g0.orbit, g0.probe, pose_render, oracle(np.eye(3), np.eye(3)),
                                          PROTO)], PROTO)
    for axis in ('x', 'y'):
        for band in summary['axes'][axis]['maae_by_turn_deg']:
            assert band['sign_flip_share'] == 0.0
            assert band['mean_abs_predicted_deg'] == pytest.approx(band['mean_abs_applied_deg'], abs=1e-6)
    assert 'sign_flip_share' not in summary['axes']['z']['maae_by_turn_deg'][0]


def test_predictor_output_shape_is_checked():
    g0 = base_pose(1)

    def bad(images):
        return np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), np.zeros(2)
    with pytest.raises(CalibrationError, match=r'expected \(62, 3, 3\)'):
        calibrate_volume('b', g0.orbit, g0.probe, pose_render, bad, PROTO)


def test_protocol_fields_are_checked():
    with pytest.raises(CalibrationError, match='z_step_deg'):
        CalibrationProtocol(z_step_deg=0)
    with pytest.raises(CalibrationError, match='tilt_range_deg'):
        CalibrationProtocol(tilt_range_deg=200)


def test_plot_is_written(tmp_path):
    A_v, A_p = Rotation.random(2, random_state=2).as_matrix()
    proto = CalibrationProtocol(z_step_deg=10, tilt_step_deg=5)
    g0 = base_pose(0)
    results = [calibrate_volume('p', g0.orbit, g0.probe, pose_render, oracle(A_v, A_p, 20.0, g0.probe), proto)]
    out = tmp_path / 'calibration.png'
    plot_calibration(results, summarize(results, proto), str(out))
    assert out.stat().st_size > 10_000
    assert out.read_bytes()[:4] == b'\x89PNG'
    assert math.isfinite(summarize(results, proto)['axes']['x']['maae_deg'])
