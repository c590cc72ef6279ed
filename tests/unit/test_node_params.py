"""Parameter tables read offline (no rclpy): defaults overlaid by a node's YAML, as a launch loads it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from echoposed_ros.config.params import Param, configured_values
from echoposed_ros.config.pose import PARAMS, PoseNodeConfig, pose_config_from_yaml

TABLE = (Param('rate', 30.0, 'Hz'), Param('name', 'x', 'a name'), Param('enabled', True, 'a switch'),
         Param('count', 2, 'how many'))


def _write(tmp_path, body: str):
    path = tmp_path / 'node.yaml'
    path.write_text('node:\n  ros__parameters:\n' + body)
    return path


def test_values_are_the_defaults_overlaid_by_the_file(tmp_path):
    path = _write(tmp_path, '    rate: 10.0\n    enabled: false\n')
    assert configured_values(TABLE, path, 'node') == {'rate': 10.0, 'name': 'x', 'enabled': False, 'count': 2}


def test_a_missing_file_leaves_the_defaults(tmp_path):
    assert configured_values(TABLE, tmp_path / 'none.yaml', 'node') == {p.name: p.default for p in TABLE}


@pytest.mark.parametrize('body, match', [
    ('    speed: 1.0\n', "no parameter 'speed'"),
    ('    rate: 10\n', r'node.rate = 10; expected a float'),   # rclpy refuses an int for a double too
    ('    count: true\n', r'node.count = True; expected a int'),
    ('    enabled: 1\n', r'node.enabled = 1; expected a bool'),
])
def test_a_bad_key_or_type_is_named(tmp_path, body, match):
    path = _write(tmp_path, body)
    with pytest.raises(ValueError, match=match) as info:
        configured_values(TABLE, path, 'node')
    assert str(path) in str(info.value)


def test_a_file_without_the_node_is_named(tmp_path):
    path = tmp_path / 'other.yaml'
    path.write_text('other_node:\n  ros__parameters:\n    rate: 1.0\n')
    with pytest.raises(ValueError, match="no ros__parameters for node 'node'"):
        configured_values(TABLE, path, 'node')


def test_pose_config_of_the_shipped_yaml_is_the_nodes_and_needs_no_rclpy():
    config = pose_config_from_yaml()
    assert isinstance(config, PoseNodeConfig)
    assert config.estimator_kwargs() == {'intra_op_threads': 2, 'fan': 'auto', 'input_depth_mm': None,
                                         'detect_threshold': 0.02, 'mirror': True}
    assert config.model_path.name == 'echoposed_k5.onnx'
    probe = ('import sys; from echoposed_ros.config.pose import pose_config_from_yaml; '
             'pose_config_from_yaml(); print(sorted(m for m in sys.modules if m.split(".")[0] == "rclpy"))')
    out = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'  # offline tools read the node's settings without ROS


def test_pose_config_follows_a_given_file(tmp_path):
    path = tmp_path / 'pose.yaml'
    path.write_text('echoposed_pose:\n  ros__parameters:\n    mirror_tta: false\n    fan: detect\n')
    config = pose_config_from_yaml(path)
    assert (config.mirror_tta, config.fan) == (False, 'detect')
    path.write_text('echoposed_pose:\n  ros__parameters:\n    fan: sideways\n')
    with pytest.raises(ValueError, match="fan = 'sideways'"):
        pose_config_from_yaml(path)


def test_every_pose_parameter_has_a_description():
    assert all(p.description for p in PARAMS)
