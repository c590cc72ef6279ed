"""The pose node in its own rclpy context, on a tiny synthetic ONNX ensemble."""
from __future__ import annotations

import math
import time

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


def _listener(graph):
    """A client node collecting the pose node's poses and every /diagnostics array."""
    client = graph.node('client')
    poses: list[EchoPose] = []
    diags: list[DiagnosticArray] = []
    client.create_subscription(EchoPose, 'echoposed/pose', poses.append, 10)
    client.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
    return client, poses, diags


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
    client, poses, diags = _listener(graph)
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


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` 8-bit grey pixels (a decompression bomb
    when large) and whose image data is empty."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))


def png_of(image: np.ndarray) -> bytes:
    import io

    from PIL import Image as PILImage
    buf = io.BytesIO()
    PILImage.fromarray(np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)).save(buf, 'PNG')
    return buf.getvalue()


def statuses(diags: list[DiagnosticArray]) -> list:
    return [s for d in list(diags) for s in d.status if s.name.startswith('echoposed_pose')]


def test_compressed_bomb_is_rejected_and_the_node_goes_on(graph, model_path):
    from sensor_msgs.msg import CompressedImage

    node = make_pose_node(graph, model_path, input_transport='compressed', diagnostics_period=0.2)
    client = graph.node('client')
    poses: list[EchoPose] = []
    diags: list[DiagnosticArray] = []
    client.create_subscription(EchoPose, 'echoposed/pose', poses.append, 10)
    client.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
    pub = client.create_publisher(CompressedImage, 'probe/image/compressed', 10)
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    bomb = CompressedImage(format='png', data=png_declaring(20000, 10000))
    assert len(bomb.data) == 65
    assert wait_for(lambda: (pub.publish(bomb), node.rejected > 0)[1], timeout=10)
    assert 'compressed image' in node._last_rejection and not poses
    assert wait_for(lambda: (pub.publish(CompressedImage(format='png', data=png_declaring(5000, 5000))),
                             'MAX_PIXELS' in node._last_rejection)[1], timeout=10)
    good = CompressedImage(format='png', data=png_of(fan_image()))
    assert wait_for(lambda: (pub.publish(good), bool(poses))[1], timeout=10)
    assert poses[0].uncertainty == pytest.approx(SPREAD ** 2, rel=1e-3)
    assert wait_for(lambda: any('rejected' in s.message for s in statuses(diags)), timeout=5)


@pytest.mark.parametrize('size', [(64, 64), (96, 80)], ids=['model-size', 'other-size'])
def test_blank_frames_after_a_real_frame_are_rejected(graph, model_path, size):
    node = make_pose_node(graph, model_path)
    client = graph.node('client')
    poses: list[EchoPose] = []
    client.create_subscription(EchoPose, 'echoposed/pose', poses.append, 10)
    pub = client.create_publisher(Image, 'probe/image', 10)
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    real = array_to_image_msg(fan_image(*size), Image().header)
    assert wait_for(lambda: (pub.publish(real), bool(poses))[1], timeout=10)
    time.sleep(0.5)   # real frames still in flight arrive first
    estimated = node.estimated
    blank = array_to_image_msg(np.zeros(size, np.float32), Image().header)
    assert wait_for(lambda: (pub.publish(blank), node.rejected >= 3)[1], timeout=10)
    assert 'blank frame' in node._last_rejection
    assert node.estimated == estimated


def test_silence_on_the_input_is_a_warning_naming_topic_and_transport(graph, model_path):
    node = make_pose_node(graph, model_path, diagnostics_period=0.1, input_timeout=0.3,
                          input_transport='compressed')
    client = graph.node('client')
    diags: list[DiagnosticArray] = []
    client.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
    assert node.input_topic == '/probe/image/compressed'

    def silent_warning() -> bool:
        return any(s.level == b'\x01' and 'no image for' in s.message and '/probe/image/compressed' in s.message
                   and '(compressed transport)' in s.message for s in statuses(diags))
    assert wait_for(silent_warning, timeout=5), [s.message for s in statuses(diags)]
    values = {kv.key: kv.value for kv in statuses(diags)[-1].values}
    assert values['input_topic'] == '/probe/image/compressed' and values['input_transport'] == 'compressed'
    assert float(values['seconds_since_input']) >= 0.3


def test_input_timeout_must_be_positive():
    from echoposed_ros.config.errors import ConfigError
    from echoposed_ros.config.pose import PoseNodeConfig
    values = {p.name: p.default for p in PARAMS}
    assert PoseNodeConfig.from_parameters(values).input_timeout == 3.0
    with pytest.raises(ConfigError, match='input_timeout = 0.0 s; expected > 0'):
        PoseNodeConfig.from_parameters({**values, 'input_timeout': 0.0})


@pytest.mark.slow
@pytest.mark.parametrize('transport', ['raw', 'compressed'])
def test_flood_of_malformed_images_no_death_every_reject_counted(graph, model_path, transport):
    from malformed import compressed_kinds, raw_kinds
    from sensor_msgs.msg import CompressedImage

    node = make_pose_node(graph, model_path, input_transport=transport, diagnostics_period=0.2)
    client = graph.node('client')
    poses: list[EchoPose] = []
    diags: list[DiagnosticArray] = []
    client.create_subscription(EchoPose, 'echoposed/pose', poses.append, 10)
    client.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
    if transport == 'raw':
        pub = client.create_publisher(Image, 'probe/image', 10)
        good, bad = array_to_image_msg(fan_image(), Image().header), list(raw_kinds().values())
    else:
        pub = client.create_publisher(CompressedImage, 'probe/image/compressed', 10)
        good, bad = CompressedImage(format='png', data=png_of(fan_image())), list(compressed_kinds().values())
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    assert wait_for(lambda: (pub.publish(good), bool(poses))[1], timeout=10)   # a valid frame before
    time.sleep(0.5)
    estimated, received = node.estimated, node.received
    for i in range(5_000):   # 5,000 per transport: 10,000 in all; each taken before the next (input depth 1)
        pub.publish(bad[i % len(bad)])
        wait_for(lambda n=received + i + 1: node.received >= n, timeout=0.05, period=0.0002)
    taken = node.received - received
    assert wait_for(lambda: node.rejected == taken, timeout=5), (node.rejected, taken)   # every one taken: rejected
    assert taken > 2500 and node.estimated == estimated   # (most are taken; none gave a pose)
    count = len(poses)
    assert wait_for(lambda: (pub.publish(good), len(poses) > count)[1], timeout=10)   # and a valid frame after

    def reported() -> bool:   # /diagnostics has caught up with every reject
        last = [s for s in statuses(diags) if any(kv.key == 'rejected_inputs' for kv in s.values)][-1:]
        return bool(last) and {kv.key: kv.value for kv in last[0].values}['rejected_inputs'] == str(node.rejected)
    assert wait_for(reported, timeout=5)


def test_an_unexpected_error_on_an_input_is_a_rejection_not_the_nodes_end(graph, model_path, monkeypatch):
    node = make_pose_node(graph, model_path)

    def broken(*args, **kwargs):
        raise ZeroDivisionError('deep inside')
    monkeypatch.setattr(node.estimator, 'estimate', broken)
    client = graph.node('client')
    poses: list[EchoPose] = []
    client.create_subscription(EchoPose, 'echoposed/pose', poses.append, 10)
    pub = client.create_publisher(Image, 'probe/image', 10)
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    msg = array_to_image_msg(fan_image(), Image().header)
    assert wait_for(lambda: (pub.publish(msg), node.rejected > 0)[1], timeout=10)
    assert node._last_rejection == 'unexpected ZeroDivisionError: deep inside'
    monkeypatch.undo()
    assert wait_for(lambda: (pub.publish(msg), bool(poses))[1], timeout=10)   # still spinning


def test_parameters_change_while_running_and_the_start_up_ones_are_read_only(graph, model_path):
    node = make_pose_node(graph, model_path)
    before = node.estimator
    assert node.estimator.members == 4
    result = node.set_parameters([Parameter('mirror_tta', value=True), Parameter('frame_id', value='model_x')])
    assert all(r.successful for r in result)
    assert node.estimator is not before and node.estimator.members == 8 and node.frame_id == 'model_x'
    refused = node.set_parameters([Parameter('detect_threshold', value=1.5)])[0]
    assert not refused.successful and 'detect_threshold = 1.5' in refused.reason
    assert node.config.detect_threshold == 0.02
    missing = node.set_parameters([Parameter('model_path', value='other.onnx')])[0]
    assert not missing.successful and 'other.onnx' in missing.reason
    assert node.config.model_path == model_path and node.estimator.members == 8   # the old model goes on
    for p in PARAMS:
        described = node.describe_parameter(p.name)
        assert described.read_only == p.read_only, p.name
        assert ('read-only:' in described.description) == p.read_only, p.name


def test_a_new_model_is_swapped_in_while_running(graph, model_path, tmp_path):
    """An adapted model (docs/adaptation.md) replaces the running one; the next image is estimated with it."""
    node = make_pose_node(graph, model_path)
    orbit = np.repeat(np.eye(3)[None], 3, axis=0)
    probe = np.repeat(Rotation.from_rotvec([0, 0, -0.8]).as_matrix()[None], 3, axis=0)
    other = write_model(tmp_path / 'adapted.onnx', orbit, probe, height=64, width=64)
    assert node.set_parameters([Parameter('model_path', value=str(other))])[0].successful
    assert node.config.model_path == other and node.estimator.members == 3
    e = node.estimator.estimate(fan_image())
    assert np.allclose(Rotation.from_matrix(e.probe).as_rotvec(), [0, 0, -0.8], atol=1e-4)


def _arm_pose_msg(stamp, turn_z: float):
    from geometry_msgs.msg import PoseStamped
    msg = PoseStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = 'world'
    x, y, z, w = Rotation.from_rotvec([0.0, 0.0, turn_z]).as_quat()
    msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = x, y, z, w
    msg.pose.position.z = -0.1
    return msg


def test_cycle_fusion_carries_the_last_frames_by_the_arms_motion_and_warns_without_an_arm(graph, model_path):
    """The synthetic model reads every image alike; the arm turns the probe 0.3 rad about the beam between
    two frames, so the fused pose of the second is the mean of its own reading and the first's carried
    by that turn: the probe factor turned about z by half of it. Without an arm pose: published alone, WARN."""
    node = make_pose_node(graph, model_path, fusion_window=1.0, diagnostics_period=0.2)
    client, poses, diags = _listener(graph)
    images = client.create_publisher(Image, 'probe/image', 10)
    from geometry_msgs.msg import PoseStamped
    arm = client.create_publisher(PoseStamped, 'probe/pose', 10)
    assert wait_for(lambda: images.get_subscription_count() > 0 and arm.get_subscription_count() > 0)
    own = Rotation.from_rotvec([0, 0, 0.5]).as_matrix()

    def estimated(header):
        """Send the image until the node has published its pose (depth-1 input: a copy may be dropped; copies
        of one stamp count once); that pose. Poses are picked by stamp: a late copy of an earlier frame may
        still come in after a newer one was sent."""
        msg = array_to_image_msg(fan_image(), header)
        stamp = (header.stamp.sec, header.stamp.nanosec)

        def mine():
            return [p for p in poses if (p.header.stamp.sec, p.header.stamp.nanosec) == stamp]
        assert wait_for(lambda: (images.publish(msg), bool(mine()))[1], timeout=10)
        return mine()[0]

    for i, turn in enumerate((0.0, 0.3)):
        header = Image().header
        header.stamp.sec, header.stamp.nanosec = 100, i * 100_000_000
        arm.publish(_arm_pose_msg(header.stamp, turn))
        assert wait_for(lambda count=i + 1: len(node._arm) == count, timeout=5)
        pose = estimated(header)
    turned = Rotation.from_matrix(own.T @ quaternion_msg_to_matrix(pose.probe)).as_rotvec()
    # the canonical gauge moves the orbit's twist into the probe factor; the fused turn about the beam is 0.15 rad
    assert turned[2] == pytest.approx(0.15, abs=0.01)
    assert pose.uncertainty == pytest.approx(SPREAD ** 2, rel=1e-3)   # the newest frame's own sigma^2
    header = Image().header
    header.stamp.sec = 200                                             # no arm pose near this stamp
    alone = estimated(header)
    assert node._fused_frames == 1
    assert np.allclose(quaternion_msg_to_matrix(alone.probe), own, atol=1e-5)

    def warned() -> bool:
        return any(s.level == b'\x01' and 'probe/pose' in s.message for d in diags for s in d.status)
    assert wait_for(warned, timeout=5), [s.message for d in diags for s in d.status]


def test_fusion_parameters_are_checked():
    from echoposed_ros.config.errors import ConfigError
    from echoposed_ros.config.pose import PoseNodeConfig
    values = {p.name: p.default for p in PARAMS}
    for key, bad in (('fusion_window', -1.0), ('orbit_radius', 0.0), ('fusion_max_sigma2', 0.0),
                     ('arm_pose_tolerance', float('nan'))):
        with pytest.raises(ConfigError, match=key):
            PoseNodeConfig.from_parameters({**values, key: bad})


def test_an_unpinned_model_is_named_on_diagnostics_for_cycle_fusion(graph, tmp_path):
    import json as _json

    from echoposed_ros.estimator.synthetic import default_metadata
    meta = {**default_metadata(2), 'frame': _json.dumps({'pinned': False})}
    members = np.stack([np.eye(3)] * 2)
    unpinned = write_model(tmp_path / 'unpinned.onnx', members, members, metadata=meta)
    node = make_pose_node(graph, unpinned, fusion_window=1.0, diagnostics_period=0.2)
    assert node.model_frame == 'unpinned'
    _, _, diags = _listener(graph)
    assert wait_for(lambda: any(kv.key == 'model_frame' and kv.value == 'unpinned'
                                for d in diags for s in d.status for kv in s.values), timeout=5)
    pinned = write_model(tmp_path / 'pinned.onnx', members, members,
                         metadata={**default_metadata(2), 'frame': _json.dumps({'pinned': True})})
    node.set_parameters([Parameter('model_path', value=str(pinned))])
    assert node.model_frame == 'pinned'
