"""What the sim node gives RViz: robot_description (latched), TF of every link and the probe, markers."""
from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from echoposed_msgs.srv import StandardView
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import wait_for
from std_msgs.msg import String
from visualization_msgs.msg import Marker, MarkerArray

from echoposed_ros.geometry import probe_frame, rot_z
from echoposed_ros.nodes.sim_node import SimNode
from echoposed_ros.nodes.tf import tf_message_type
from echoposed_sim.volume import StandardView as View
from echoposed_sim.volume import Volume

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope='module')
def volume():
    rng = np.random.default_rng(3)
    data = (rng.random((2, 40, 40, 40)) * 255).astype(np.uint8)
    return Volume(data, spacing=[3.0, 3.0, 3.0], centre=[59.0, 59.0, 59.0], radius=60.0,
                  views={'A4C': View(np.eye(3), rot_z(0.3))}, name='random-test-volume')


def make_sim(graph, volume, **params):
    overrides = [Parameter(k, value=v) for k, v in {'robot': False, 'frame_rate': 30.0, **params}.items()]
    return graph.add(SimNode(volume=volume, context=graph.context, parameter_overrides=overrides))


@pytest.mark.parametrize('robot', [False, True])
def test_a_late_subscriber_gets_the_robot_description(graph, volume, robot):
    make_sim(graph, volume, robot=robot)
    client = graph.node('client')
    time.sleep(0.5)                      # published at start-up, long before anyone listens
    got: list[String] = []
    client.create_subscription(String, 'robot_description', got.append, LATCHED)
    assert wait_for(lambda: bool(got), timeout=10)
    links = {e.get('name') for e in ET.fromstring(got[0].data).iter('link')}
    assert {'probe_body', 'probe_tip'} <= links
    assert ('lbr_iiwa_link_0' in links) == robot          # the arm, or the probe alone
    assert all(m.get('filename').startswith('file:///') for m in ET.fromstring(got[0].data).iter('mesh'))


def test_each_tick_has_the_transforms_of_every_link_the_heart_and_the_true_probe(graph, volume):
    node = make_sim(graph, volume, robot=True)
    assert wait_for(lambda: getattr(node, '_last_status', None) is not None)
    pose = node.session.world.read_pose()
    R, apex = probe_frame(pose.orbit, pose.probe, volume.centre, volume.radius)
    msgs = node.transforms(node.get_clock().now().to_msg(), R, apex)
    children = {m.child_frame_id: m.header.frame_id for m in msgs}
    assert children['heart'] == 'world' and children['probe_true'] == 'heart' and children['probe'] == 'probe_tip'
    links = {e.get('name') for e in ET.fromstring(node.session.world.robot_description()).iter('link')}
    assert {c for c, parent in children.items() if parent == 'world'} == links | {'heart'}
    assert len(links) == 11                                  # 8 arm links, holder, probe body, tip


def test_tf_publication_is_stated_on_diagnostics(graph, volume):
    make_sim(graph, volume)
    client = graph.node('client')
    diags: list[DiagnosticArray] = []
    client.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)

    def tf_value():
        values = [kv.value for d in diags for s in d.status for kv in s.values if kv.key == 'tf']
        return values[-1] if values else None

    tf_type = tf_message_type()
    frames: list = []
    if tf_type is not None:         # a ROS 2 install: /tf carries the probe's frames at each tick
        client.create_subscription(tf_type, '/tf', frames.append, 100)
    assert wait_for(lambda: tf_value() is not None, timeout=5)
    # the pip wheels have no tf2_msgs: the node says so instead of failing
    assert tf_value() == ('published' if tf_type is not None else 'not published: tf2_msgs is not installed')
    if tf_type is not None:
        assert wait_for(lambda: bool(frames), timeout=5)
        assert {t.child_frame_id for t in frames[-1].transforms} >= {'heart', 'probe', 'probe_true', 'probe_tip'}


def test_markers_show_the_orbit_then_the_view_asked_for_as_the_target(graph, volume):
    node = make_sim(graph, volume)
    client = graph.node('client')
    got: list[MarkerArray] = []
    client.create_subscription(MarkerArray, 'sim/markers', got.append, LATCHED)
    assert wait_for(lambda: bool(got), timeout=10)
    first = {m.ns: m for m in got[-1].markers}
    assert first['orbit'].header.frame_id == 'world'
    assert first['orbit'].scale.x == pytest.approx(2 * 0.060)
    centre_w = node.session.world.heart.point_to_scene(volume.centre)
    p = first['centre'].pose.position
    np.testing.assert_allclose([p.x, p.y, p.z], centre_w)
    assert first['target'].action == Marker.DELETE             # no target yet
    views = client.create_client(StandardView, 'sim/standard_view')
    assert views.wait_for_service(timeout_sec=10)
    assert views.call(StandardView.Request(view='a4c', cardiac_phase=0.0), timeout_sec=10).success

    def target():
        markers = {m.ns: m for m in got[-1].markers}
        return markers['target'] if markers['target'].action == Marker.ADD else None

    assert wait_for(lambda: target() is not None, timeout=5)
    R, apex = probe_frame(np.eye(3), rot_z(0.3), volume.centre, volume.radius)
    start = target().points[0]
    np.testing.assert_allclose([start.x, start.y, start.z], node.session.world.heart.point_to_scene(apex), atol=1e-9)
    assert 'A4C' in {m.ns: m for m in got[-1].markers}['target_label'].text
