"""Bad input to the geometry API raises GeometryError (a ValueError) saying what was wrong."""
from __future__ import annotations

import numpy as np
import pytest

from echoposed_ros import geometry as G
from echoposed_ros.geometry import GeometryError, so3

I3 = np.eye(3)
GOOD = (I3, so3.rot_x(0.3))

# (bad matrix, words the message must contain)
BAD_MATRICES = {
    'nan': (np.where(np.eye(3) > 0, np.nan, 0.0), ['NaN']),
    'inf': (np.diag([1.0, np.inf, 1.0]), ['NaN or inf']),
    'scaled': (2.0 * I3, ['not a rotation', 'not orthogonal', 'R^T R - I']),
    'sheared': (np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]]), ['not orthogonal']),
    'reflection': (np.diag([1.0, 1.0, -1.0]), ['det', 'reflection']),
    'shape': (np.eye(3, 4), ['shape', '(3, 4)']),
    'zeros': (np.zeros((3, 3)), ['not orthogonal']),
}


@pytest.mark.parametrize('case', sorted(BAD_MATRICES))
def test_check_rotation_says_what_is_wrong(case):
    M, words = BAD_MATRICES[case]
    with pytest.raises(GeometryError) as info:
        so3.check_rotation(M, name='my_matrix')
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert msg.startswith('my_matrix:')
    for w in words:
        assert w in msg, msg


def test_batch_error_names_the_bad_element():
    R = np.stack([I3, I3, 2 * I3, I3]).reshape(2, 2, 3, 3)
    with pytest.raises(GeometryError, match=r'batch index \(1, 0\)'):
        so3.check_rotation(R)
    R[0, 1, 0, 0] = np.nan
    with pytest.raises(GeometryError, match=r'NaN or inf at batch index \(0, 1\)'):
        so3.check_rotation(R)


def test_not_numeric():
    with pytest.raises(GeometryError, match='not a numeric array'):
        so3.check_rotation([['a', 'b', 'c']] * 3)


# Every public function that takes rotations, with the argument name its message must carry.
CALLS = {
    'angle': (lambda M: so3.angle(M), 'R'),
    'log': (lambda M: so3.log(M), 'R'),
    'matrix_to_quat_xyzw': (lambda M: so3.matrix_to_quat_xyzw(M), 'R'),
    'swing_twist': (lambda M: so3.swing_twist(M), 'R'),
    'compose g': (lambda M: G.compose((M, I3), GOOD), 'g orbit R_v'),
    'compose h': (lambda M: G.compose(GOOD, (I3, M)), 'h probe R_p'),
    'inverse': (lambda M: G.inverse((I3, M)), 'g probe R_p'),
    'pose_log': (lambda M: G.pose_log((M, I3)), 'g orbit R_v'),
    'distance': (lambda M: G.distance(GOOD, (M, I3)), 'h orbit R_v'),
    'gauge_fix': (lambda M: G.gauge_fix((M, I3)), 'g orbit R_v'),
    'right_apply': (lambda M: G.right_apply((I3, M), np.zeros(3), np.zeros(3)), 'g probe R_p'),
    'step': (lambda M: G.step((M, I3), np.zeros(3), np.zeros(3), 0.1), 'g orbit R_v'),
    'probe_frame': (lambda M: G.probe_frame(M, I3, np.zeros(3), 1.0), 'orbit R_v'),
    'effective_pose': (lambda M: G.effective_pose((I3, M)), 'g probe R_p'),
    'effective_error': (lambda M: G.effective_error(GOOD, (M, I3)), 'h orbit R_v'),
    'body_errors': (lambda M: G.body_errors((M, I3), GOOD), 'P orbit R_v'),
    'mean_and_sigma2 orbits': (lambda M: G.mean_and_sigma2(np.stack([I3, M]), np.stack([I3, I3])), 'orbits'),
    'mean_and_sigma2 probes': (lambda M: G.mean_and_sigma2(np.stack([I3, I3]), np.stack([M, I3])), 'probes'),
    'body_twist_to_cartesian': (lambda M: G.body_twist_to_cartesian(I3, M, np.zeros(3), np.zeros(3), 1.0),
                                'probe R_p'),
    'body_twist_to_probe_cartesian': (
        lambda M: G.body_twist_to_probe_cartesian(M, I3, np.zeros(3), np.zeros(3), 1.0), 'orbit R_v'),
}


@pytest.mark.parametrize('case', ['nan', 'scaled', 'reflection'])
@pytest.mark.parametrize('call', sorted(CALLS))
def test_every_function_rejects_a_non_rotation_naming_the_argument(call, case):
    fn, name = CALLS[call]
    M, words = BAD_MATRICES[case]
    with pytest.raises(ValueError) as info:
        fn(M)
    assert isinstance(info.value, GeometryError)
    msg = str(info.value)
    assert msg.startswith(name + ':'), msg
    assert words[0] in msg, msg


@pytest.mark.parametrize('q, words', [
    ([0.0, 0.0, 0.0, 0.0], ['zero quaternion', '(x, y, z, w)']),
    ([0.0, np.nan, 0.0, 1.0], ['NaN']),
    ([0.0, 0.0, 0.0, 2.0], ['norm 2', 'unit quaternion']),
    ([0.0, 0.0, 1.0], ['shape', '(..., 4)']),
])
def test_bad_quaternion_says_what_is_wrong(q, words):
    with pytest.raises(GeometryError) as info:
        so3.quat_xyzw_to_matrix(q, name='msg.orientation')
    msg = str(info.value)
    assert msg.startswith('msg.orientation:')
    for w in words:
        assert w in msg, msg


def test_zero_quaternion_in_a_batch_names_its_index():
    q = np.array([[0.0, 0, 0, 1], [0.0, 0, 0, 0]])
    with pytest.raises(GeometryError, match=r'zero quaternion .* at batch index \(1,\)'):
        so3.quat_xyzw_to_matrix(q)


def test_other_bad_inputs():
    with pytest.raises(GeometryError, match=r'omega: contains NaN'):
        so3.exp([0.0, np.nan, 0.0])
    with pytest.raises(GeometryError, match=r'omega: expected shape \(\.\.\., 3\)'):
        so3.exp([0.0, 1.0])
    with pytest.raises(GeometryError, match=r'M: contains NaN'):
        so3.project_to_so3(np.full((3, 3), np.nan))
    with pytest.raises(GeometryError, match=r'theta: contains NaN'):
        so3.rot_z(np.nan)
    with pytest.raises(GeometryError, match=r'xi \(omega_v, omega_p\): expected shape \(\.\.\., 6\), got \(3,\)'):
        G.pose_exp(np.zeros(3))
    with pytest.raises(GeometryError, match=r'xi \(omega_v, omega_p\): contains NaN or inf .* index \(4,\)'):
        G.pose_exp([0, 0, 0, 0, np.nan, 0])
    with pytest.raises(GeometryError, match=r'omega: not a numeric array'):
        so3.exp(['a', 'b', 'c'])
    with pytest.raises(GeometryError, match=r'g: expected a pose \(R_v, R_p\)'):
        G.gauge_fix(np.stack([I3, I3]))
    with pytest.raises(GeometryError, match=r'g: expected a pose \(R_v, R_p\).*length 3'):
        G.gauge_fix((I3, I3, I3))
    with pytest.raises(GeometryError, match=r'dt \(s\): expected a finite number, got nan'):
        G.step(GOOD, np.zeros(3), np.zeros(3), np.nan)
    with pytest.raises(GeometryError, match=r'omega_v: contains NaN'):
        G.step(GOOD, [np.nan, 0, 0], np.zeros(3), 0.1)
    with pytest.raises(GeometryError, match=r'centre: contains NaN or inf'):
        G.probe_frame(I3, I3, [0.0, np.nan, 0.0], 1.0)
    with pytest.raises(GeometryError, match=r'radius \(length\): expected a finite number >= 0, got -1'):
        G.probe_frame(I3, I3, np.zeros(3), -1.0)
    with pytest.raises(GeometryError, match=r"radius \(length\): expected a finite number, got 'far'"):
        G.body_twist_to_cartesian(I3, I3, np.zeros(3), np.zeros(3), 'far')
    with pytest.raises(GeometryError, match=r'g: expected a pose \(R_v, R_p\).*float'):
        G.gauge_fix(1.0)
    with pytest.raises(GeometryError, match=r'omega_p: expected shape \(\.\.\., 3\)'):
        G.body_twist_to_cartesian(I3, I3, np.zeros(3), np.zeros(2), 1.0)
    with pytest.raises(GeometryError, match=r'expected equal shapes \(\.\.\., K, 3, 3\) with K >= 1'):
        G.mean_and_sigma2(np.stack([I3, I3]), np.stack([I3, I3, I3]))
    with pytest.raises(GeometryError, match=r'K >= 1'):
        G.mean_and_sigma2(np.zeros((0, 3, 3)), np.zeros((0, 3, 3)))


def test_public_api_is_sorted_and_complete():
    assert G.__all__ == sorted(G.__all__)
    for name in G.__all__:
        assert hasattr(G, name), name
    assert issubclass(GeometryError, ValueError)
