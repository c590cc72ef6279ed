"""Loading and checking echoposed ONNX model files (echoposed_ros.estimator.model)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from echoposed_ros.estimator import EstimatorError, load_model
from echoposed_ros.estimator.synthetic import default_metadata, write_model

K = 5


def members(seed: int) -> np.ndarray:
    return Rotation.random(K, random_state=seed).as_matrix()


def write(tmp_path, name='m.onnx', **kw):
    return write_model(tmp_path / name, members(1), members(2), **kw)


def assert_one_clear_error(path, match, build=None):
    with pytest.raises(EstimatorError) as info:
        load_model(path)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(path) in msg, msg
    assert '\n' not in msg, msg
    for part in ([match] if isinstance(match, str) else match):
        assert part in msg, msg
    return msg


def test_conforming_model_loads_and_reports_its_metadata(tmp_path):
    path = write(tmp_path, gain=0.5)
    model = load_model(path)
    info = model.info
    assert (info.input_height, info.input_width, info.members) == (64, 64, K)
    assert info.sector_angle_rad == pytest.approx(math.radians(75.0))
    assert info.sector_depth_mm == 140.0
    assert info.model_name == 'synthetic'
    assert info.train_config == {'synthetic': True}
    x = np.random.default_rng(0).random((3, 1, 64, 64), dtype=np.float32)
    orbit, probe = model.run(x)
    assert orbit.shape == probe.shape == (3, K, 3, 3)
    m = x.mean(axis=(1, 2, 3)).astype(np.float64)
    rz = Rotation.from_rotvec(np.outer(0.5 * m, [0, 0, 1])).as_matrix()
    np.testing.assert_allclose(probe, members(2)[None] @ rz[:, None], atol=1e-5)


def test_missing_file(tmp_path):
    assert_one_clear_error(tmp_path / 'nope.onnx', 'no such file')


def test_directory_is_not_a_model(tmp_path):
    assert_one_clear_error(tmp_path, 'not a file')


def test_corrupt_file(tmp_path):
    path = tmp_path / 'corrupt.onnx'
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_one_clear_error(path, 'not a loadable ONNX model')


def test_truncated_file(tmp_path):
    path = write(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    assert_one_clear_error(path, 'not a loadable ONNX model')


def test_wrong_input_name(tmp_path):
    assert_one_clear_error(write(tmp_path, input_name='pixels'), ["['pixels']", "'image'"])


def test_wrong_output_name(tmp_path):
    assert_one_clear_error(write(tmp_path, output_names=('orbit', 'probe_rot')), ['probe missing'])


def test_wrong_channel_count(tmp_path):
    assert_one_clear_error(write(tmp_path, channels=3), ['channels is 3, expected 1'])


def test_input_size_disagrees_with_metadata(tmp_path):
    assert_one_clear_error(write(tmp_path, declared_hw=(64, 32)), ['width is 32, expected 64'])


def test_symbolic_input_size_is_accepted(tmp_path):
    model = load_model(write(tmp_path, declared_hw=('H', 'W')))
    assert model.input_shape == (64, 64)


def test_flat_outputs_are_refused(tmp_path):
    assert_one_clear_error(write(tmp_path, flat_outputs=True), ["output 'orbit'", 'expected [N, K, 3, 3]'])


def test_member_count_disagrees_with_metadata(tmp_path):
    meta = default_metadata(K)
    meta['members'] = json.dumps(4)
    assert_one_clear_error(write(tmp_path, metadata=meta), ['K (members) is 5, expected 4'])


@pytest.mark.parametrize('key', ['echoposed_format', 'input_height', 'sector_depth_mm', 'members',
                                 'train_data', 'model_name'])
def test_missing_metadata_key(tmp_path, key):
    meta = default_metadata(K)
    del meta[key]
    assert_one_clear_error(write(tmp_path, metadata=meta), [key, 'missing'])


@pytest.mark.parametrize('key, value, expected', [
    ('echoposed_format', json.dumps('2'), "reads format '1'"),
    ('input_height', json.dumps(-64), 'positive integer'),
    ('input_width', json.dumps(64.5), 'positive integer'),
    ('sector_angle_rad', json.dumps(4.0), 'below 3.14159'),
    ('sector_depth_mm', json.dumps('deep'), 'positive finite number'),
    ('members', json.dumps('five'), 'expected K'),
    ('members', json.dumps(0), 'at least one member'),
    ('model_name', json.dumps(''), 'non-empty string'),
    ('intensity', '{not json', 'not valid JSON'),
])
def test_bad_metadata_value(tmp_path, key, value, expected):
    meta = default_metadata(K)
    meta[key] = value
    assert_one_clear_error(write(tmp_path, metadata=meta), [key, expected])


def test_input_metadata_size_disagrees_with_static_graph(tmp_path):
    meta = default_metadata(K, height=32, width=64)
    assert_one_clear_error(write(tmp_path, metadata=meta), ['height is 64, expected 32'])


def test_members_may_be_a_list_of_records(tmp_path):
    meta = default_metadata(K)
    meta['members'] = json.dumps([{'index': k} for k in range(K)])
    assert load_model(write(tmp_path, metadata=meta)).info.members == K


def test_run_checks_batch_shape(tmp_path):
    model = load_model(write(tmp_path))
    with pytest.raises(EstimatorError, match=r'expected \(N, 1, 64, 64\)'):
        model.run(np.zeros((2, 1, 32, 32), np.float32))
