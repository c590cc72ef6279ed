"""The adapt node in its own rclpy context: sweep through the controller, recording, fine-tune child
process, the pose node swapping in the adapted model; failures named on /diagnostics."""
from __future__ import annotations

import functools
import json
import math
import threading

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from fake_arm import FakeArm
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from ros_harness import wait_for
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from echoposed_ros.adapt import AdaptError
from echoposed_ros.config.params import yaml_parameters
from echoposed_ros.estimator.synthetic import write_model
from echoposed_ros.nodes.adapt_node import PARAMS, AdaptNode
from echoposed_ros.nodes.controller_node import ControllerNode
from echoposed_ros.nodes.convert import array_to_image_msg
from echoposed_ros.nodes.pose_node import PoseNode
from echoposed_ros.paths import config_dir

SWEEP = dict(sweep_turn_max=0.3, sweep_turn_step=0.15, sweep_tilt=0.1, sweep_dwell=0.2, sweep_speed=0.8)


def _fan_frame(rng, size=48):
    rows, cols = np.mgrid[0:size, 0:size]
    inside = (np.abs(np.arctan2(cols + 0.5 - size / 2, rows + 0.5)) < math.radians(37)) & (rows < size - 1)
    return np.where(inside, rng.uniform(0.2, 1.0, (size, size)), 0.0).astype(np.float32)


class Scanner:
    """Frames on probe/image at 30 Hz (noise inside a fan), as a scanner streams them."""

    def __init__(self, graph):
        self.node = graph.node('fake_scanner')
        self.pub = self.node.create_publisher(Image, 'probe/image', qos_profile_sensor_data)
        self.rng = np.random.default_rng(0)
        self.node.create_timer(1 / 30, self._tick)

    def _tick(self):
        header = Header(stamp=self.node.get_clock().now().to_msg(), frame_id='probe')
        self.pub.publish(array_to_image_msg(_fan_frame(self.rng), header))


def _diagnostics(graph):
    node = graph.node('adapt_diag_listener')
    seen: list = []
    lock = threading.Lock()

    def on(msg):
        with lock:
            seen.extend(s for s in msg.status if s.name.startswith('echoposed_adapt'))
    node.create_subscription(DiagnosticArray, '/diagnostics', on, 10)
    return seen


def test_yaml_keys_equal_declared_parameters():
    assert set(yaml_parameters(config_dir() / 'adapt.yaml', 'echoposed_adapt')) == {p.name for p in PARAMS}


@pytest.mark.parametrize('name, value', [('blend', 1.5), ('sweep_weight', 0.0), ('budget', -1.0)])
def test_bad_fine_tune_parameters_are_refused_at_start_up_naming_them(graph, name, value):
    with pytest.raises(AdaptError, match=f'{name}.*{value!r}'):
        AdaptNode(context=graph.context, parameter_overrides=[Parameter(name, value=value)])


def test_without_a_controller_the_adaptation_fails_with_the_reason(graph, tmp_path):
    node = graph.add(AdaptNode(context=graph.context, parameter_overrides=[
        Parameter('out_dir', value=str(tmp_path)), Parameter('diagnostics_period', value=0.2)]))
    seen = _diagnostics(graph)
    peer = graph.node('adapt_peer')
    client = peer.create_client(Trigger, 'adapt/run')
    assert client.wait_for_service(timeout_sec=5)
    future = client.call_async(Trigger.Request())
    assert wait_for(future.done, timeout=15)
    assert not future.result().success and 'adapt/sweep' in future.result().message
    assert node.state == 'failed'
    assert wait_for(lambda: any(s.level == s.ERROR and 'adapt/sweep' in s.message for s in list(seen)), timeout=5)


@pytest.fixture
def tiny_model(tmp_path):
    """An exported echoposed model (train_config in its metadata) small enough to fine-tune in seconds."""
    from echoposed_ros.training.config import TrainConfig
    from echoposed_ros.training.export import export_onnx
    from echoposed_ros.training.toy import toy_volume
    from echoposed_ros.training.train import train
    toy = functools.partial(toy_volume, n=20, frames=2, spacing=8.0)
    cfg = TrainConfig(out_dir=str(tmp_path / 'base'), train_seeds='0-1', input_size=32, poses=4, members=3,
                      widths=(4, 4, 8, 8), steps=4, warmup_steps=2, z_ramp_steps=0, workers=0, phantom_cache_dir='',
                      phantom_frames=2)
    return export_onnx(train(cfg, factory=toy, progress=False), tmp_path / 'tiny.onnx', pin_batches=2, factory=toy)


@pytest.mark.slow
def test_live_adaptation_sweeps_fine_tunes_and_the_pose_node_swaps_in_the_model(graph, tmp_path, tiny_model,
                                                                                 monkeypatch):
    monkeypatch.setenv('ECHOPOSED_CACHE', str(tmp_path / 'cache'))
    start_model = write_model(tmp_path / 'start.onnx', np.repeat(np.eye(3)[None], 4, 0),
                              np.repeat(np.eye(3)[None], 4, 0), height=32, width=32)
    pose = graph.add(PoseNode(context=graph.context, parameter_overrides=[
        Parameter('model_path', value=str(start_model)), Parameter('mirror_tta', value=False)]))
    # stale_timeout 1 s: every node of this test shares one process (and its GIL) with the pose node's
    # inference; the sweep's stop on a stale arm pose is tested in test_controller_node.py
    graph.add(ControllerNode(context=graph.context, parameter_overrides=[
        Parameter(k, value=v) for k, v in {**SWEEP, 'stale_timeout': 1.0}.items()]))
    arm, _ = FakeArm(graph), Scanner(graph)
    node = graph.add(AdaptNode(context=graph.context, parameter_overrides=[
        Parameter('out_dir', value=str(tmp_path / 'runs')), Parameter('model_path', value=str(tiny_model)),
        Parameter('budget', value=1.0), Parameter('sweep_weight', value=1.0), Parameter('phantom_seeds', value='0-1'),
        Parameter('device', value='cpu'), Parameter('blend', value=0.25), Parameter('autostart', value=True)]))
    assert wait_for(lambda: node.state == 'training', timeout=30), (node.state, node.reason)
    assert wait_for(lambda: node.state in ('done', 'failed'), timeout=240), node.state
    assert node.state == 'done', node.reason
    run = node._run_dir
    record = json.loads((run / 'adapt.json').read_text())
    rec = np.load(run / 'recording.npz')
    assert record['sweep']['frames'] == len(rec['images']) >= 60, record['recording']   # ~30 Hz over the sweep
    assert record['sweep']['holds'] >= 5 and record['sweep']['turn_deg'][1] == pytest.approx(17.2, abs=2.0)
    assert record['settings']['blend'] == 0.25 and (run / 'blended.pt').is_file()
    assert pose.config.model_path == run / 'adapted.onnx' and pose.estimator.members == 3
    # the arm came back where the sweep began
    assert np.linalg.norm(arm.apex - arm.start[1]) < 1e-3
