"""What the simulator gives RViz and compressed-image subscribers, built without a node: the PNG
encoder, TF transforms, markers and the robot description."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from echoposed_ros.geometry import probe_frame, quat_xyzw_to_matrix, rot_x, rot_z
from echoposed_ros.nodes.convert import array_to_compressed_msg, compressed_msg_to_array
from echoposed_ros.nodes.markers import TARGET_ARROW_M, scene_markers
from echoposed_ros.nodes.tf import sim_transforms, transform_msg
from echoposed_sim.volume import Volume
from echoposed_sim.world import make_world
from echoposed_sim.world.robot import IIWA, arm_urdf_text, probe_urdf_text, rviz_description

STAMP = Time(sec=12, nanosec=34)


def _rotation(msg) -> np.ndarray:
    q = msg.transform.rotation
    return quat_xyzw_to_matrix(np.array([q.x, q.y, q.z, q.w]))


def _translation(msg) -> np.ndarray:
    t = msg.transform.translation
    return np.array([t.x, t.y, t.z])


# -- compressed images ----------------------------------------------------------------------------

@pytest.mark.parametrize('dtype', [np.uint8, np.float32])
def test_png_round_trip_gives_back_the_mono8_frame(dtype):
    rng = np.random.default_rng(0)
    image = rng.random((48, 80)).astype(np.float32)
    mono8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    source = mono8 if dtype == np.uint8 else image
    msg = array_to_compressed_msg(source, Header(stamp=STAMP, frame_id='probe'))
    assert msg.format == 'mono8; png compressed '          # as image_transport's compressed plugin writes it
    assert bytes(msg.data[:8]) == b'\x89PNG\r\n\x1a\n'
    assert (msg.header.frame_id, msg.header.stamp.sec) == ('probe', 12)
    decoded, encoding = compressed_msg_to_array(msg)
    assert encoding == 'mono8' and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, mono8)


def test_png_encoder_refuses_a_colour_image():
    with pytest.raises(ValueError, match=r'\(H, W\)'):
        array_to_compressed_msg(np.zeros((4, 4, 3), np.uint8), Header())


# -- TF ---------------------------------------------------------------------------------------------

def test_transform_is_in_metres_with_a_unit_xyzw_quaternion_and_w_positive():
    R = rot_z(np.deg2rad(350.0)) @ rot_x(np.deg2rad(200.0))    # a naive conversion may give w < 0
    msg = transform_msg('world', 'heart', R, [0.1, -0.2, 1.5], STAMP)
    assert (msg.header.frame_id, msg.child_frame_id, msg.header.stamp.sec) == ('world', 'heart', 12)
    q = msg.transform.rotation
    assert q.w >= 0 and np.hypot(np.hypot(q.x, q.y), np.hypot(q.z, q.w)) == pytest.approx(1.0)
    np.testing.assert_allclose(_rotation(msg), R, atol=1e-12)
    np.testing.assert_allclose(_translation(msg), [0.1, -0.2, 1.5])


def test_sim_transforms_name_every_frame_and_convert_the_apex_to_metres():
    R_WV, t_WV = rot_z(0.4), np.array([0.2, 0.1, 0.9])
    links = {'probe_body': (np.eye(3), np.array([0.0, 0.0, 1.0])), 'probe_tip': (rot_x(0.3), np.array([0, 0, 1.12]))}
    R_probe, apex_mm = rot_z(1.0), np.array([59.0, 59.0, -1.0])
    msgs = sim_transforms(R_WV, t_WV, links, 'probe_tip', R_probe, apex_mm, STAMP)
    edges = {(m.header.frame_id, m.child_frame_id): m for m in msgs}
    assert set(edges) == {('world', 'heart'), ('world', 'probe_body'), ('world', 'probe_tip'),
                          ('probe_tip', 'probe'), ('heart', 'probe_true')}
    assert all(m.header.stamp == STAMP for m in msgs)
    np.testing.assert_allclose(_translation(edges['heart', 'probe_true']), apex_mm / 1000.0)
    np.testing.assert_allclose(_rotation(edges['heart', 'probe_true']), R_probe, atol=1e-12)
    np.testing.assert_allclose(_rotation(edges['world', 'heart']), R_WV, atol=1e-12)
    np.testing.assert_allclose(_translation(edges['world', 'heart']), t_WV)
    np.testing.assert_allclose(_rotation(edges['probe_tip', 'probe']), np.eye(3), atol=1e-12)
    np.testing.assert_allclose(_translation(edges['probe_tip', 'probe']), 0.0)
    with pytest.raises(ValueError, match="tip_link 'flange'"):
        sim_transforms(R_WV, t_WV, links, 'flange', R_probe, apex_mm, STAMP)


def _volume() -> Volume:
    data = np.zeros((1, 8, 8, 8), np.uint8)
    return Volume(data, spacing=[16.0] * 3, centre=[59.0] * 3, radius=60.0, name='empty')


def _compose(R_a, t_a, R_b, t_b):
    return R_a @ R_b, R_a @ t_b + t_a


@pytest.mark.parametrize('robot', [False, True])
def test_the_tf_chain_to_the_image_frame_meets_the_true_probe(robot):
    """world -> probe_tip -> probe (the robot's chain) and world -> heart -> probe_true (the
    simulator's truth) land on the same frame: the links, the heart placement and mm -> m agree."""
    volume = _volume()
    with make_world(volume, robot=robot) as world:
        world.set_pose(rot_x(0.2), rot_z(0.7))
        world.step(0.1)
        pose = world.read_pose()
        R, apex = probe_frame(pose.orbit, pose.probe, volume.centre, volume.radius)
        links = world.link_poses()
        msgs = {m.child_frame_id: m for m in sim_transforms(world.heart.R_WV, world.heart.t_WV, links,
                                                              IIWA.tip_link, R, apex, STAMP)}
        urdf_links = {e.get('name') for e in ET.fromstring(world.robot_description()).iter('link')}
    assert set(links) == urdf_links           # every link of the description gets a frame, no other
    R_tip, t_tip = _compose(_rotation(msgs['probe_tip']), _translation(msgs['probe_tip']),
                            _rotation(msgs['probe']), _translation(msgs['probe']))
    R_true, t_true = _compose(_rotation(msgs['heart']), _translation(msgs['heart']),
                              _rotation(msgs['probe_true']), _translation(msgs['probe_true']))
    np.testing.assert_allclose(R_tip, R_true, atol=1e-6)
    np.testing.assert_allclose(t_tip, t_true, atol=1e-6)          # metres
    # the apex sits on the orbit sphere: radius 60 mm about the heart centre, in world metres
    centre_w = world.heart.point_to_scene(volume.centre)
    assert np.linalg.norm(t_true - centre_w) == pytest.approx(0.060, abs=1e-6)


# -- markers ----------------------------------------------------------------------------------------

def test_markers_show_the_orbit_sphere_its_centre_and_the_target_arrow():
    R, apex = rot_x(0.5), np.array([0.1, 0.2, 0.9])
    markers = {m.ns: m for m in scene_markers('world', STAMP, [0.1, 0.2, 0.96], 0.06, ('A4C', R, apex)).markers}
    assert set(markers) == {'orbit', 'centre', 'target', 'target_label'}
    assert all(m.header.frame_id == 'world' and m.action == Marker.ADD for m in markers.values())
    orbit = markers['orbit']
    assert orbit.type == Marker.SPHERE and orbit.scale.x == orbit.scale.z == pytest.approx(0.12)
    assert 0 < orbit.color.a < 0.5                                 # translucent
    assert (orbit.pose.position.x, orbit.pose.position.z) == pytest.approx((0.1, 0.96))
    start, end = ([p.x, p.y, p.z] for p in markers['target'].points)
    np.testing.assert_allclose(start, apex)
    np.testing.assert_allclose(np.subtract(end, start), TARGET_ARROW_M * R[:, 2], atol=1e-12)   # along the beam
    assert 'A4C' in markers['target_label'].text


def test_without_a_target_its_markers_are_deleted_and_a_bad_orbit_is_refused():
    markers = {m.ns: m for m in scene_markers('world', STAMP, [0, 0, 1], 0.06).markers}
    assert markers['target'].action == markers['target_label'].action == Marker.DELETE
    assert markers['orbit'].action == Marker.ADD
    with pytest.raises(ValueError, match='positive radius'):
        scene_markers('world', STAMP, [0, 0, 1], 0.0)


# -- robot description ------------------------------------------------------------------------------

def test_arm_description_for_rviz_has_the_tool_and_mesh_uris_that_exist():
    urdf = arm_urdf_text(IIWA)
    root = ET.fromstring(rviz_description(urdf))
    links = {e.get('name') for e in root.iter('link')}
    assert {'lbr_iiwa_link_0', 'lbr_iiwa_link_7', 'probe_holder', 'probe_body', 'probe_tip'} <= links
    assert 'probe' not in links            # 'probe' is the image's frame, not a link
    meshes = [e.get('filename') for e in root.iter('mesh')]
    assert meshes and all(m.startswith('file:///') for m in meshes)
    assert all(os.path.isfile(m[len('file://'):]) for m in meshes)
    # PyBullet's copy keeps bare absolute paths
    assert all(e.get('filename').startswith('/') for e in ET.fromstring(urdf).iter('mesh'))


def test_probe_alone_description():
    root = ET.fromstring(probe_urdf_text())
    assert [e.get('name') for e in root.iter('link')] == ['probe_body', 'probe_tip']
    (joint,) = root.iter('joint')
    assert joint.find('origin').get('xyz') == f'0 0 {IIWA.probe_length}'


# -- the shipped RViz config ------------------------------------------------------------------------

def test_shipped_rviz_config_shows_what_the_simulator_publishes():
    import yaml

    root = Path(__file__).resolve().parents[2]
    path = root / 'config' / 'echoposed.rviz'
    manager = yaml.safe_load(path.read_text())['Visualization Manager']
    assert manager['Global Options']['Fixed Frame'] == 'world'
    displays = {d['Class'].split('/')[-1]: d for d in manager['Displays']}
    assert {'RobotModel', 'TF', 'MarkerArray', 'Image'} <= set(displays)
    model = displays['RobotModel']
    assert model['Description Source'] == 'Topic'
    # QoS as the sim node publishes: latched description and markers, sensor-data images
    assert model['Description Topic']['Value'] == '/robot_description'
    assert model['Description Topic']['Durability Policy'] == 'Transient Local'
    assert displays['MarkerArray']['Topic']['Value'] == '/sim/markers'
    assert displays['MarkerArray']['Topic']['Durability Policy'] == 'Transient Local'
    assert displays['Image']['Topic']['Value'] == '/probe/image'
    assert displays['Image']['Topic']['Reliability Policy'] == 'Best Effort'
    setup = (root / 'setup.py').read_text()
    assert "glob('config/*.rviz')" in setup            # installed to share/echoposed/config
