"""The pose node in its own rclpy context, on a tiny synthetic ONNX ensemble."""
from __future__ import annotations

import math

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from echoposed_msgs.msg import EchoPose
from echoposed_msgs.srv import EstimatePose
from rclpy.parameter import Parameter
from ros_harness import wait_for
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import Image

from echoposed_ros.config.params import yaml_parameters
from echoposed_ros.estimator.synthetic import write_model
from echoposed_ros.nodes.convert import array_to_image_msg, quaternion_msg_to_matrix
from echoposed_ros.nodes.pose_node import PARAMS, PoseNode
from echoposed_ros.paths import config_dir

SPREAD = 0.1  # rad: members at +-SPREAD about x around the mean


@pytest.fixture
def model_path(tmp_path):
    k = 4
    angles = np.array([SPREAD, -SPREAD, SPREAD, -SPREAD])
    orbit = Rotation.from_rotvec(np.outer(angles, [1, 0, 0])).as_matrix()
    probe = np.repeat(Rotation.from_rotvec([0, 0, 0.5]).as_matrix()[None], k, axis=0)
    return write_model(tmp_path / 'tiny.onnx', orbit, probe, height=64, width=64)


def make_pose_node(graph, model_path, **params):
    # the synthetic model ignores left-right flips, so test-time mirroring would double its members
    # into half-turn pairs: off here (tests/unit/test_estimator.py covers mirroring)
    overrides = [Parameter('model_path', value=str(model_path)), Parameter('mirror_tta', value=False)]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return graph.add(PoseNode(context=graph.context, parameter_overrides=overrides))


def fan_image(height=64, width=64, value=0.5):
    image = np.zeros((height, width), np.float32)
    rows, cols = np.mgrid[0:height, 0:width]
    inside = np.abs(np.arctan2(cols + 0.5 - width / 2, rows + 0.5)) < math.radians(37)
    image[inside & (rows < height - 1)] = value
    return image


def test_yaml_keys_match_declared_parameters():
    assert set(yaml_parameters(config_dir() / 'pose.yaml', 'echoposed_pose')) == {p.name for p in PARAMS}


def test_every_parameter_has_a_description(graph, model_path):
    node = make_pose_node(graph, model_path)
    for p in PARAMS:
        assert node.describe_parameter(p.name).description.strip(), p.name


def test_image_in_pose_out_with_copied_stamp_and_sigma2(graph, model_path):
    node = make_pose_node(graph, model_path)
    client = graph.node('client')
    poses: list[EchoPose] = []
    client.create_subscription(EchoPose, 'echoposed/pose', poses.append, 10)
    pub = client.create_publisher(Image, 'probe/image', 10)
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    header = Image().header
    header.stamp.sec, header.stamp.nanosec = 42, 7
    header.frame_id = 'probe'
    msg = array_to_image_msg(fan_image(), header)
    assert wait_for(lambda: (pub.publish(msg), bool(poses))[1], timeout=10)
    pose = poses[0]
    assert (pose.header.stamp.sec, pose.header.stamp.nanosec) == (42, 7)
    assert pose.header.frame_id == 'synthetic'
    assert pose.uncertainty == pytest.approx(SPREAD ** 2, rel=1e-3)
    assert len(pose.member_orbit) == len(pose.member_probe) == 4
    expected_probe = Rotation.from_rotvec([0, 0, 0.5]).as_matrix()
    assert np.allclose(quaternion_msg_to_matrix(pose.probe), expected_probe, atol=1e-5)
    assert pose.inference_time > 0
    assert node.rejected == 0


@pytest.mark.parametrize('mutate, expected', [
    (lambda m: setattr(m, 'encoding', 'yuv422'), 'not supported'),
    (lambda m: (setattr(m, 'height', 0), setattr(m, 'width', 0)), 'size'),
    (lambda m: setattr(m, 'step', 10), 'step'),
    (lambda m: setattr(m, 'data', bytes(m.data)[:100]), 'bytes'),
])
def test_malformed_image_is_rejected_and_the_next_is_not_lost(graph, model_path, mutate, expected):
    node = make_pose_node(graph, model_path, diagnostics_period=0.2)
    client = graph.node('client')
    poses: list[EchoPose] = []
    diags: list[DiagnosticArray] = []
    client.create_subscription(EchoPose, 'echoposed/pose', poses.append, 10)
    client.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
    pub = client.create_publisher(Image, 'probe/image', 10)
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    bad = array_to_image_msg(fan_image(), Image().header)
    mutate(bad)
    assert wait_for(lambda: (pub.publish(bad), node.rejected > 0)[1], timeout=10)
    assert expected in node._last_rejection
    assert not poses
    good = array_to_image_msg(fan_image(), Image().header)
    assert wait_for(lambda: (pub.publish(good), bool(poses))[1], timeout=10)
    def warned() -> bool:
        return any(s.level == b'\x01' and 'rejected' in s.message and expected in s.message
                   for d in diags for s in d.status)
    assert wait_for(warned, timeout=5), [s.message for d in diags for s in d.status]


def test_nan_in_float_image_is_rejected(graph, model_path):
    node = make_pose_node(graph, model_path)
    client = graph.node('client')
    pub = client.create_publisher(Image, 'probe/image', 10)
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    image = fan_image()
    image[10, 30] = np.nan
    msg = Image(height=64, width=64, encoding='32FC1', step=64 * 4, data=image.tobytes())
    assert wait_for(lambda: (pub.publish(msg), node.rejected > 0)[1], timeout=10)
    assert 'NaN' in node._last_rejection


def test_estimate_service(graph, model_path):
    make_pose_node(graph, model_path)
    client = graph.node('client')
    cli = client.create_client(EstimatePose, 'echoposed/estimate')
    assert cli.wait_for_service(timeout_sec=10)
    good = cli.call(EstimatePose.Request(image=array_to_image_msg(fan_image(), Image().header)), timeout_sec=10)
    assert good.success and good.pose.uncertainty == pytest.approx(SPREAD ** 2, rel=1e-3)
    bad_image = array_to_image_msg(fan_image(), Image().header)
    bad_image.encoding = 'weird'
    bad = cli.call(EstimatePose.Request(image=bad_image), timeout_sec=10)
    assert not bad.success and 'weird' in bad.message


@pytest.mark.slow
def test_missing_model_stops_with_one_clear_line(tmp_path):
    import subprocess
    import sys
    missing = tmp_path / 'nope.onnx'
    result = subprocess.run([sys.executable, '-m', 'echoposed_ros.nodes.pose_node', '--ros-args',
                             '-p', f'model_path:={missing}'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(missing) in lines[0], result.stderr
