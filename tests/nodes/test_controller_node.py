"""The controller node in its own rclpy context: targets, twists, fail-safe holds, services, diagnostics."""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from echoposed_msgs.msg import EchoPose, GuidanceStatus, ProbeTwist
from echoposed_msgs.srv import EstimatePose, SetTarget
from fake_arm import FakeArm
from geometry_msgs.msg import TwistStamped
from rclpy.parameter import Parameter
from ros_harness import wait_for
from std_srvs.srv import Trigger

from echoposed_ros.config.params import yaml_parameters
from echoposed_ros.geometry import gauge_fix, mean_and_sigma2, rot_x, rot_y, rot_z, so3_log
from echoposed_ros.nodes.controller_node import PARAMS, ControllerNode
from echoposed_ros.nodes.convert import echopose_msg, matrix_to_quaternion_msg
from echoposed_ros.paths import config_dir
from echoposed_ros.policy import GuidanceState, describe_fields, write_view_table

# No retries. These tests failed in about half of the runs on some hosts until session 12 found
# why: the harness spun the controller and its test peer on one shared MultiThreadedExecutor,
# whose Python-side scheduling starved the controller's 30 Hz timer (stale zero 0.33-0.37 s
# late, 4.7 of 20 poses/s counted). Each node now spins on its own single-threaded executor, as
# in its own process (ros_harness.Graph).

CURRENT = (rot_x(0.1), rot_z(0.4))
TARGET = (rot_y(0.15), rot_z(1.2) @ rot_x(0.1))


class Harness:
    """A test node: publishes EchoPose at 20 Hz while ``pose`` is set, records every output with its time."""

    def __init__(self, graph):
        self.node = graph.node('controller_test_peer')
        self.lock = threading.Lock()
        self.cmds: list[tuple[float, ProbeTwist]] = []
        self.twists: list[tuple[float, TwistStamped]] = []
        self.statuses: list[tuple[float, GuidanceStatus]] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.pose: EchoPose | None = None
        self.last_publish = 0.0
        self.last_publish_stamp = 0.0   # s, ROS clock (the clock of the controller's command stamps)
        n = self.node
        n.create_subscription(ProbeTwist, 'probe/cmd', lambda m: self._rec(self.cmds, m), 50)
        n.create_subscription(TwistStamped, 'probe/cmd_twist', lambda m: self._rec(self.twists, m), 50)
        n.create_subscription(GuidanceStatus, 'guidance/status', lambda m: self._rec(self.statuses, m), 50)
        n.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append, 10)
        self.pub = n.create_publisher(EchoPose, 'echoposed/pose', 10)
        n.create_timer(0.05, self._publish)
        self.set_target = n.create_client(SetTarget, 'guidance/set_target')
        self.start = n.create_client(Trigger, 'guidance/start')
        self.stop = n.create_client(Trigger, 'guidance/stop')

    def _rec(self, store, msg):
        with self.lock:
            store.append((time.monotonic(), msg))

    def _publish(self):
        msg = self.pose
        if msg is not None:
            msg.header.stamp = self.node.get_clock().now().to_msg()
            self.pub.publish(msg)
            self.last_publish = time.monotonic()
            self.last_publish_stamp = stamp_s(msg)

    def call(self, client, request, timeout=10.0):
        assert client.wait_for_service(timeout_sec=timeout), client.srv_name
        future = client.call_async(request)
        assert wait_for(future.done, timeout=timeout), f'{client.srv_name}: no answer'
        return future.result()

    def since(self, store, t0):
        with self.lock:
            return [(t, m) for t, m in store if t >= t0]

    def latest_status(self, after=0.0):
        s = self.since(self.statuses, after)
        return s[-1][1] if s else None

    def wait_state(self, name, timeout=5.0):
        """Wait for a status in state ``name`` received from now on; returns its receive time."""
        t0 = time.monotonic()

        def matched():
            return [t for t, s in self.since(self.statuses, t0) if s.state_name == name]

        assert wait_for(lambda: bool(matched()), timeout=timeout), \
            f'state {name!r} not reached; last {self.latest_status()}'
        return matched()[0]


def pose_msg(pose, sigma2=0.0, frame='model', members=None):
    """EchoPose of ``pose``; ``members``: list of un-gauge-fixed (orbit, probe) member rotations."""
    header = EchoPose().header
    header.frame_id = frame
    g = gauge_fix(pose)
    m = (np.array([o for o, _ in members]), np.array([p for _, p in members])) if members else (None, None)
    return echopose_msg(header, g.orbit, g.probe, sigma2, *m)


def pose_request(pose):
    r = SetTarget.Request(kind=SetTarget.Request.KIND_POSE)
    r.orbit, r.probe = matrix_to_quaternion_msg(pose[0]), matrix_to_quaternion_msg(pose[1])
    return r


def vec(v):
    return np.array([v.x, v.y, v.z])


def stamp_s(msg) -> float:
    """A message's header stamp in seconds (ROS clock)."""
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


def is_zero(cmd: ProbeTwist):
    return not np.any(vec(cmd.orbit)) and not np.any(vec(cmd.probe))


def make_controller(graph, **params):
    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return graph.add(ControllerNode(context=graph.context, parameter_overrides=overrides))


@pytest.fixture
def setup(graph):
    node = make_controller(graph)
    h = Harness(graph)
    assert wait_for(lambda: h.pub.get_subscription_count() > 0)
    return node, h


def test_yaml_keys_equal_declared_parameters_and_all_are_described(graph):
    assert set(yaml_parameters(config_dir() / 'controller.yaml', 'echoposed_controller')) == {p.name for p in PARAMS}
    node = make_controller(graph)
    units = {name: unit for name, (_, unit, _) in describe_fields().items()}
    for p in PARAMS:
        description = node.describe_parameter(p.name).description
        assert len(description.strip()) > 15, p.name
        if p.name in units:
            assert description.startswith(units[p.name] + ':'), p.name
    # The YAML values are valid: the node starts with them as overrides.
    yaml_values = yaml_parameters(config_dir() / 'controller.yaml', 'echoposed_controller')
    make_controller(graph, **yaml_values)


def test_pose_target_gives_twists_towards_it(setup):
    node, h = setup
    h.pose = pose_msg(CURRENT)
    result = h.call(h.set_target, pose_request(TARGET))
    assert result.success, result.message
    assert result.target.header.frame_id == ''
    t0 = h.wait_state('guiding')
    assert wait_for(lambda: len(h.since(h.cmds, t0)) >= 3 and len(h.since(h.twists, t0)) >= 3)
    cmd = h.since(h.cmds, t0)[-1][1]
    e_v = so3_log(CURRENT[0].T @ TARGET[0])
    e_p = so3_log(CURRENT[1].T @ TARGET[1])
    cfg = node.config
    def clipped(e, limit):
        return cfg.gain * e * min(1.0, limit / (cfg.gain * np.linalg.norm(e)))

    np.testing.assert_allclose(vec(cmd.orbit), clipped(e_v, cfg.max_orbit_speed), atol=1e-6)
    np.testing.assert_allclose(vec(cmd.probe), clipped(e_p, cfg.max_probe_speed), atol=1e-6)
    assert cmd.header.frame_id == 'probe'
    tw = h.since(h.twists, t0)[-1][1]
    assert tw.header.frame_id == 'probe'
    assert np.linalg.norm(vec(tw.twist.linear)) <= cfg.orbit_radius * cfg.max_orbit_speed + 1e-9
    assert np.linalg.norm(vec(tw.twist.angular)) > 0
    status = h.latest_status(t0)
    assert status.target == 'pose' and status.state == GuidanceStatus.STATE_GUIDING
    assert status.effective_error > 0 and 'rotate clockwise' in status.cue


def test_pose_stream_stopping_gives_zero_twist_within_025_s(setup):
    node, h = setup
    h.pose = pose_msg(CURRENT)
    assert h.call(h.set_target, pose_request(TARGET)).success
    h.wait_state('guiding')
    h.pose = None
    time.sleep(0.06)  # let an in-flight timer tick finish
    last = h.last_publish
    assert wait_for(lambda: (s := h.latest_status(last)) is not None and s.state_name == 'stale_input', timeout=2)
    last_stamp = h.last_publish_stamp
    # The stale zero is the first command published with a stale_input status (a command and its
    # status carry the same stamp). Not simply the first zero after the last pose: when discovery
    # is slow the controller may get only the last pose or two, and its idle zeros from before
    # them arrive after `last` too.
    stale_stamps = {stamp_s(s) for _, s in h.since(h.statuses, last) if s.state_name == 'stale_input'}
    zero = next(m for _, m in h.since(h.cmds, last) if stamp_s(m) in stale_stamps)
    assert is_zero(zero)
    # When the controller computed the zero twist (its stamp), against when the last pose went
    # out (same ROS clock): the requirement itself, free of this test's own delivery delays.
    decided = stamp_s(zero)
    assert decided - last_stamp <= 0.25, f'zero twist computed {decided - last_stamp:.3f} s after the last pose'
    # Everything computed from then on is zero (by stamp: the two topics arrive in either order).
    # Wait for three of each rather than a fixed time: at 30 Hz three ticks take 0.1 s, and on a
    # busy machine delivery lags by a tick or two.
    def later(store):
        return [m for _, m in h.since(store, last) if stamp_s(m) >= decided]

    assert wait_for(lambda: len(later(h.cmds)) >= 3 and len(later(h.twists)) >= 3, timeout=2), \
        f'{len(later(h.cmds))} commands and {len(later(h.twists))} twists in 2 s after the stale zero'
    later_cmds, later_twists = later(h.cmds), later(h.twists)
    assert all(is_zero(m) for m in later_cmds)
    assert all(not np.any(vec(m.twist.linear)) and not np.any(vec(m.twist.angular)) for m in later_twists)
    # Poses coming back resume guiding.
    h.pose = pose_msg(CURRENT)
    h.wait_state('guiding')


def test_uncertain_pose_holds_with_zero_twist(setup):
    node, h = setup
    assert h.call(h.set_target, pose_request(TARGET)).success
    h.pose = pose_msg(CURRENT, sigma2=node.config.uncertainty_threshold * 2)
    t0 = h.wait_state('hold_uncertain')
    assert wait_for(lambda: len(h.since(h.cmds, t0)) >= 3, timeout=2)
    cmds = h.since(h.cmds, t0)
    assert all(is_zero(m) for _, m in cmds)
    status = h.latest_status(t0)
    assert status.state == GuidanceStatus.STATE_HOLD_UNCERTAIN and 'uncertain' in status.cue
    assert status.uncertainty == pytest.approx(node.config.uncertainty_threshold * 2)


def _set_remote(h, node, **values):
    """``ros2 param set`` through the controller's parameter service -> [SetParametersResult]."""
    from rclpy.parameter_client import AsyncParameterClient
    client = AsyncParameterClient(h.node, node.get_fully_qualified_name())
    assert client.wait_for_services(timeout_sec=10)
    future = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
    assert wait_for(future.done, timeout=10), 'no answer from the parameter service'
    return future.result().results


def test_runtime_change_of_the_threshold_and_speed_limit_takes_effect(setup):
    node, h = setup
    assert h.call(h.set_target, pose_request(TARGET)).success
    h.pose = pose_msg(CURRENT, sigma2=node.config.uncertainty_threshold * 2)
    h.wait_state('hold_uncertain')
    results = _set_remote(h, node, uncertainty_threshold=node.config.uncertainty_threshold * 4, max_probe_speed=0.1)
    assert all(r.successful for r in results), [r.reason for r in results]
    t0 = h.wait_state('guiding')
    assert wait_for(lambda: len(h.since(h.cmds, t0)) >= 3, timeout=2)
    speeds = [np.linalg.norm(vec(m.probe)) for _, m in h.since(h.cmds, t0)[1:]]
    assert speeds and max(speeds) == pytest.approx(0.1, rel=1e-6)
    assert node.get_parameter('max_probe_speed').value == 0.1


def test_runtime_change_that_breaks_the_config_is_refused_with_the_reason(setup):
    node, h = setup
    before = node.config
    results = _set_remote(h, node, release_tolerance=before.converge_tolerance / 2)
    assert not results[0].successful and 'release_tolerance' in results[0].reason
    assert node.config == before and node.get_parameter('release_tolerance').value == before.release_tolerance


def test_start_up_parameters_are_read_only_and_say_why(setup):
    node, h = setup
    results = _set_remote(h, node, control_rate=10.0)
    assert not results[0].successful and node.config.control_rate == 30.0
    for p in PARAMS:
        described = node.describe_parameter(p.name)
        assert described.read_only == p.read_only, p.name
        assert ('read-only:' in described.description) == p.read_only, p.name
    assert not node.describe_parameter('gain').read_only


def test_guidance_states_equal_the_message_constants():
    constants = {k[len('STATE_'):].lower(): v for k, v in vars(GuidanceStatus).items() if k.startswith('STATE_')}
    assert constants == {s.label: int(s) for s in GuidanceState}


def test_an_uncertain_pose_after_guiding_coasts_for_coast_time_then_holds(graph):
    node = make_controller(graph, coast_time=0.3)
    h = Harness(graph)
    assert wait_for(lambda: h.pub.get_subscription_count() > 0)
    h.pose = pose_msg(CURRENT)
    assert h.call(h.set_target, pose_request(TARGET)).success
    t_guiding = h.wait_state('guiding')
    # guide for a while: coasting needs coast_after_frames (3) confident poses (20 Hz here)
    assert wait_for(lambda: len(h.since(h.cmds, t_guiding)) >= 12, timeout=3)
    guiding = h.since(h.cmds, 0.0)[-1][1]
    h.pose = pose_msg(CURRENT, sigma2=node.config.uncertainty_threshold * 2)
    t_coast = h.wait_state('coasting')
    t_hold = h.wait_state('hold_uncertain', timeout=3.0)
    with h.lock:
        statuses = [s for t, s in h.statuses if t >= t_coast]
        cmds = [m for t, m in h.cmds if t >= t_coast]
    coasting = [s for s in statuses if s.state_name == 'coasting']
    # coasting lasts at most coast_time from the last confident frame (status stamps, the
    # controller's clock), and its commands go on from that frame's by odometry (the same way, nonzero)
    span = stamp_s(coasting[-1]) - stamp_s(coasting[0])
    assert span <= 0.3 + 1e-3, f'coasted for {span:.3f} s'
    assert all(s.state == GuidanceStatus.STATE_COASTING and 'uncertain' in s.cue for s in coasting)
    coast_stamps = {stamp_s(s) for s in coasting}
    coast_cmds = [m for m in cmds if stamp_s(m) in coast_stamps]
    def same_way(a, b):
        return float(np.dot(a, b)) > 0.9 * np.linalg.norm(a) * np.linalg.norm(b) > 0
    assert coast_cmds and all(same_way(vec(m.probe), vec(guiding.probe)) and
                              same_way(vec(m.orbit), vec(guiding.orbit)) for m in coast_cmds)
    # after the hold everything is zero while the pose stays uncertain
    assert wait_for(lambda: len(h.since(h.cmds, t_hold)) >= 3, timeout=2)
    assert all(is_zero(m) for _, m in h.since(h.cmds, t_hold))
    assert all(s.state_name == 'hold_uncertain' for _, s in h.since(h.statuses, t_hold))


def test_nan_pose_holds_with_zero_twist(setup):
    node, h = setup
    assert h.call(h.set_target, pose_request(TARGET)).success
    msg = pose_msg(CURRENT)
    msg.orbit.x = float('nan')
    h.pose = msg
    t0 = h.wait_state('hold_uncertain')
    assert wait_for(lambda: len(h.since(h.cmds, t0)) >= 3, timeout=2)
    assert all(is_zero(m) for _, m in h.since(h.cmds, t0))
    assert node.invalid_poses > 0


def test_start_and_stop_services(graph):
    make_controller(graph, autostart=False)
    h = Harness(graph)
    h.pose = pose_msg(CURRENT)
    assert h.call(h.set_target, pose_request(TARGET)).success
    t0 = h.wait_state('stopped')
    assert wait_for(lambda: len(h.since(h.cmds, t0)) >= 3, timeout=2)
    assert all(is_zero(m) for _, m in h.since(h.cmds, t0))
    res = h.call(h.start, Trigger.Request())
    assert res.success and 'started' in res.message
    t1 = h.wait_state('guiding')
    assert wait_for(lambda: any(not is_zero(m) for _, m in h.since(h.cmds, t1)))
    res = h.call(h.stop, Trigger.Request())
    assert res.success
    t2 = time.monotonic()
    h.wait_state('stopped')
    assert wait_for(lambda: len(h.since(h.cmds, t2 + 0.05)) >= 3, timeout=2)
    assert all(is_zero(m) for _, m in h.since(h.cmds, t2 + 0.05))


def test_no_target_is_idle(setup):
    node, h = setup
    h.pose = pose_msg(CURRENT)
    t0 = h.wait_state('idle')
    assert all(is_zero(m) for _, m in h.since(h.cmds, t0))


def test_without_poses_commands_go_at_the_control_rate(setup):
    # The stale-timeout watchdog runs one cycle per silence; left periodic it added 1 / stale_timeout
    # (5) cycles a second to the 30 Hz control timer whenever no pose came (35 Hz on /diagnostics).
    node, h = setup
    assert wait_for(lambda: len(h.cmds) > 0, timeout=5)
    start = stamp_s(h.cmds[0][1]) + 0.3   # s, controller clock: past the first cycles
    window = 1.5

    def stamps():
        return [stamp_s(m) for _, m in h.since(h.cmds, 0.0)]

    assert wait_for(lambda: max(stamps()) >= start + window, timeout=5)
    count = sum(start <= s < start + window for s in stamps())
    expected = window * node.config.control_rate
    assert count <= expected + 2, f'{count} commands in {window} s without poses; expected at most {expected:g} + 2'
    assert count >= expected / 2, f'{count} commands in {window} s without poses; expected about {expected:g}'


def test_image_target_without_pose_node_fails_clearly(graph):
    make_controller(graph, estimate_timeout=0.3)
    h = Harness(graph)
    res = h.call(h.set_target, SetTarget.Request(kind=SetTarget.Request.KIND_IMAGE))
    assert not res.success
    assert 'echoposed/estimate' in res.message and 'not available' in res.message


def test_image_target_is_estimated_by_the_pose_node_service(graph):
    node = make_controller(graph)
    h = Harness(graph)
    calls = []

    def estimate(request, response):
        calls.append(request.image.width)
        response.success, response.message = True, 'ok'
        response.pose = pose_msg(TARGET, sigma2=0.001, frame='model')
        return response

    h.node.create_service(EstimatePose, 'echoposed/estimate', estimate)
    assert wait_for(node.estimate_client.service_is_ready)  # discovery before the call
    req = SetTarget.Request(kind=SetTarget.Request.KIND_IMAGE)
    req.image.width = 7
    res = h.call(h.set_target, req)
    assert res.success, res.message
    assert calls == [7]
    assert res.target.header.frame_id == 'model' and "'model'" in res.message
    # Poses in another frame than the target's are not compared: hold.
    h.pose = pose_msg(CURRENT, frame='other_model')
    t0 = h.wait_state('hold_uncertain')
    assert 'target frame' in h.latest_status(t0).cue
    h.pose = pose_msg(CURRENT, frame='model')
    h.wait_state('guiding')


def test_members_on_pose_and_image_target_give_ungauged_body_twists(graph):
    """Members that are A g (not gauge-fixed) on both sides: ProbeTwist = gain log((A g)^-1 (A g_T)), clipped."""
    node = make_controller(graph, max_orbit_speed=5.0, max_probe_speed=5.0)
    h = Harness(graph)
    A = (rot_z(2.5) @ rot_x(0.7), rot_y(1.9))
    current = (A[0] @ CURRENT[0], A[1] @ CURRENT[1])
    target = (A[0] @ TARGET[0], A[1] @ TARGET[1])

    def estimate(request, response):
        response.success, response.message = True, 'ok'
        response.pose = pose_msg(target, sigma2=0.001, members=[target])
        return response

    h.node.create_service(EstimatePose, 'echoposed/estimate', estimate)
    res = h.call(h.set_target, SetTarget.Request(kind=SetTarget.Request.KIND_IMAGE))
    assert res.success, res.message
    h.pose = pose_msg(current, members=[current])
    t0 = h.wait_state('guiding')
    assert wait_for(lambda: len(h.since(h.cmds, t0)) >= 2)
    cmd = h.since(h.cmds, t0)[-1][1]
    gain = node.config.gain
    np.testing.assert_allclose(vec(cmd.orbit), gain * so3_log(CURRENT[0].T @ TARGET[0]), atol=1e-5)
    np.testing.assert_allclose(vec(cmd.probe), gain * so3_log(CURRENT[1].T @ TARGET[1]), atol=1e-5)
    assert node._last.ungauged


def test_a_cine_target_is_the_pose_of_its_frames_fused(graph):
    """Every cine frame goes to the pose node's service; the target is their fused (mean) pose, as the pose
    node's cycle fusion reads live frames, not the first frame's phase."""
    from echoposed_ros.nodes.convert import array_to_image_msg, quaternion_msg_to_matrix
    make_controller(graph)
    h = Harness(graph)
    turns = {10: -0.1, 20: 0.0, 30: 0.2}       # the frame's brightness -> its phase's turn about the beam
    asked = []

    def estimate(request, response):
        turn = turns[int(request.image.data[0])]
        asked.append(turn)
        pose = (TARGET[0], TARGET[1] @ rot_z(turn))
        response.success, response.message = True, 'ok'
        response.pose = pose_msg(pose, sigma2=0.001, members=[pose])
        return response

    h.node.create_service(EstimatePose, 'echoposed/estimate', estimate)
    request = SetTarget.Request(kind=SetTarget.Request.KIND_IMAGE)
    request.cine = [array_to_image_msg(np.full((16, 16), v, np.uint8), EchoPose().header) for v in turns]
    res = h.call(h.set_target, request)
    assert res.success, res.message
    assert sorted(asked) == sorted(turns.values())
    fused = (quaternion_msg_to_matrix(res.target.orbit), quaternion_msg_to_matrix(res.target.probe))
    expected = gauge_fix((TARGET[0], TARGET[1] @ rot_z(np.mean(list(turns.values())))))
    np.testing.assert_allclose(fused[0] @ fused[1], expected.orbit @ expected.probe, atol=2e-3)


def test_uncertain_image_target_is_refused(graph):
    node = make_controller(graph)
    h = Harness(graph)

    def estimate(request, response):
        response.success, response.message = True, 'ok'
        response.pose = pose_msg(TARGET, sigma2=node.config.uncertainty_threshold * 3)
        return response

    h.node.create_service(EstimatePose, 'echoposed/estimate', estimate)
    res = h.call(h.set_target, SetTarget.Request(kind=SetTarget.Request.KIND_IMAGE))
    assert not res.success and 'uncertain' in res.message


def test_an_image_read_two_ways_is_taken_with_both_readings(graph):
    """With target_split set, an unsure estimate whose members fall into two sure groups (a view and a look-alike
    half a turn about the beam) is not refused: the target keeps the reading its mean hides, the reply says so, and
    /diagnostics names the one guided to (first the mean of all members). By default (0) it is refused."""
    node = make_controller(graph, target_split=0.5)
    h = Harness(graph)
    lookalike = (TARGET[0], TARGET[1] @ rot_z(2.6))
    members = [TARGET] * 3 + [lookalike] * 7
    mean = mean_and_sigma2(np.array([o for o, _ in members]), np.array([p for _, p in members]))

    def estimate(request, response):      # the pose node publishes the members' mean
        response.success, response.message = True, 'ok'
        response.pose = pose_msg((mean.orbit, mean.probe), sigma2=float(mean.sigma2), members=members)
        return response

    h.node.create_service(EstimatePose, 'echoposed/estimate', estimate)
    res = h.call(h.set_target, SetTarget.Request(kind=SetTarget.Request.KIND_IMAGE))
    assert res.success and '1 more way(s)' in res.message, res.message
    assert float(mean.sigma2) > node.config.uncertainty_threshold
    assert [r.members for r in node._target.readings] == [3]      # the look-alike's group is the mean's own view
    h.pose = pose_msg(CURRENT)
    assert wait_for(lambda: any(
        kv.key == 'target_reading' and kv.value == 'the mean of all members'
        for d in h.diagnostics for s in d.status for kv in s.values), timeout=5.0)


def test_by_default_an_image_read_two_ways_is_refused_as_uncertain(graph):
    node = make_controller(graph)
    assert node.config.target_split == 0.0
    h = Harness(graph)
    members = [TARGET] * 3 + [(TARGET[0], TARGET[1] @ rot_z(2.6))] * 7
    mean = mean_and_sigma2(np.array([o for o, _ in members]), np.array([p for _, p in members]))

    def estimate(request, response):
        response.success, response.message = True, 'ok'
        response.pose = pose_msg((mean.orbit, mean.probe), sigma2=float(mean.sigma2), members=members)
        return response

    h.node.create_service(EstimatePose, 'echoposed/estimate', estimate)
    res = h.call(h.set_target, SetTarget.Request(kind=SetTarget.Request.KIND_IMAGE))
    assert not res.success and 'uncertain' in res.message


def test_view_targets_come_from_the_views_file(graph, tmp_path):
    views = write_view_table(tmp_path / 'views.yaml', 'model', {'A4C': TARGET})
    make_controller(graph, views_file=str(views), target_view='a4c')
    h = Harness(graph)
    h.pose = pose_msg(CURRENT)
    t0 = h.wait_state('guiding')
    assert h.latest_status(t0).target == 'A4C'
    res = h.call(h.set_target, SetTarget.Request(kind=SetTarget.Request.KIND_VIEW, view='A2C'))
    assert not res.success and 'A2C' in res.message and 'views.yaml' in res.message
    res = h.call(h.set_target, SetTarget.Request(kind=SetTarget.Request.KIND_VIEW, view='A4C'))
    assert res.success and res.target.header.frame_id == 'model'


def test_view_target_without_a_table_explains_why(setup):
    node, h = setup
    res = h.call(h.set_target, SetTarget.Request(kind=SetTarget.Request.KIND_VIEW, view='A4C'))
    assert not res.success and 'views_file' in res.message and 'KIND_IMAGE' in res.message


def test_diagnostics_report_state_and_rates(graph):
    make_controller(graph, diagnostics_period=0.3)
    h = Harness(graph)
    h.pose = pose_msg(CURRENT)
    assert h.call(h.set_target, pose_request(TARGET)).success
    h.wait_state('guiding')
    n = len(h.diagnostics)

    def guiding_report():
        """The newest report of a full window spent guiding (the first windows include start-up)."""
        for msg in reversed(h.diagnostics[n:]):
            values = {kv.key: kv.value for kv in msg.status[0].values}
            if values.get('state') == 'guiding' and float(values.get('control_rate_hz', 0)) > 10:
                return msg.status[0], values
        return None

    assert wait_for(lambda: guiding_report() is not None, timeout=5), [
        {kv.key: kv.value for kv in m.status[0].values} for m in h.diagnostics[n:]]
    status, values = guiding_report()
    assert status.name == 'echoposed_controller: guidance'
    assert values['state'] == 'guiding' and values['target'] == 'pose'
    assert float(values['control_rate_hz']) > 10 and float(values['pose_rate_hz']) > 5
    assert math.isfinite(float(values['effective_error_deg']))


def test_docs_list_every_parameter():
    text = (config_dir().parent / 'docs' / 'policy.md').read_text()
    missing = [p.name for p in PARAMS if f'`{p.name}`' not in text]
    assert not missing, f'docs/policy.md does not document {missing}'
    rows = {line.split('`')[1]: line.rstrip(' |').rsplit('| ', 1)[1] for line in text.splitlines()
            if line.startswith('| `')}
    wrong = [p.name for p in PARAMS if rows.get(p.name) != ('no' if p.read_only else 'yes')]
    assert not wrong, f'docs/policy.md: the "at run time" column is wrong for {wrong}'


def test_destroy_stops_the_estimate_client_thread_before_its_executor_goes(graph):
    """rclpy's Executor.shutdown frees the executor's guard condition without waiting for a spin in
    another thread, so the helper thread must have left its spin first (a launch in CI ended with
    the controller at exit -11 when it had not)."""
    node = ControllerNode(context=graph.context)          # not in the graph: destroyed here
    spin, executor = node._client_spin, node._client_executor
    assert wait_for(lambda: spin.alive)
    alive_at_shutdown = []
    shutdown = executor.shutdown

    def recording_shutdown(*args, **kwargs):
        alive_at_shutdown.append(spin.alive)
        return shutdown(*args, **kwargs)

    executor.shutdown = recording_shutdown
    node.destroy_node()
    assert alive_at_shutdown == [False] and not spin.alive


def _fan_image(seed: int, size: int = 48) -> np.ndarray:
    """A speckled 8-bit 'scan': smooth noise inside a 60-degree fan from the top centre, 0 outside."""
    from scipy import ndimage
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random((size, size)), 1.5)
    img = (img - img.min()) / (img.max() - img.min()) * 200 + 40
    r, c = np.mgrid[0:size, 0:size]
    inside = (np.abs(c - size / 2) <= r * math.tan(math.radians(30))) & (np.hypot(r, c - size / 2) < size - 2)
    return np.where(inside, img, 0).astype(np.uint8)


def _image_target_setup(graph, live: np.ndarray, stamp_ahead_s: float | None = None, **params):
    """Controller with an image target (the estimate service puts it at TARGET), poses on target, and live
    frames ``live`` on probe/image at 20 Hz (unstamped, or stamped ``stamp_ahead_s`` ahead of the clock);
    returns (node, harness, captured frames)."""
    from rclpy.duration import Duration
    from sensor_msgs.msg import Image

    from echoposed_ros.nodes.convert import array_to_image_msg
    node = make_controller(graph, fine_step=0.01, fine_min_step=0.007, converge_frames=3, **params)
    h = Harness(graph)
    captured = []
    h.node.create_subscription(Image, 'guidance/captured', captured.append, 50)
    image_pub = h.node.create_publisher(Image, 'probe/image', 10)

    def publish_frame():
        header = EchoPose().header
        if stamp_ahead_s is not None:
            header.stamp = (h.node.get_clock().now() + Duration(seconds=stamp_ahead_s)).to_msg()
        image_pub.publish(array_to_image_msg(live, header))

    h.node.create_timer(0.05, publish_frame)

    def estimate(request, response):
        response.success, response.message = True, 'ok'
        response.pose = pose_msg(TARGET, sigma2=0.001, frame='model')
        return response

    h.node.create_service(EstimatePose, 'echoposed/estimate', estimate)
    assert wait_for(node.estimate_client.service_is_ready)
    req = SetTarget.Request(kind=SetTarget.Request.KIND_IMAGE)
    req.image = array_to_image_msg(_fan_image(1), EchoPose().header)
    assert h.call(h.set_target, req).success
    h.pose = pose_msg(TARGET, sigma2=0.001, frame='model')
    return node, h, captured


@pytest.mark.slow
def test_image_target_goes_coarse_to_fine_and_converges_when_the_image_agrees(graph):
    node, h, captured = _image_target_setup(graph, _fan_image(1), capture_frames=5)
    h.wait_state('fine_aligning')
    t0 = h.wait_state('converged', timeout=10.0)
    status = h.latest_status(t0)
    assert status.view_match == pytest.approx(1.0, abs=1e-6) and not status.disagree
    # the frames that match are captured, at most capture_frames of them
    assert wait_for(lambda: len(captured) == 5, timeout=5.0)
    time.sleep(0.5)
    assert len(captured) == 5


@pytest.mark.slow
def test_image_target_the_estimate_calls_reached_but_the_image_disagrees_is_a_mismatch(graph):
    node, h, captured = _image_target_setup(graph, _fan_image(2))   # another heart in view
    h.wait_state('fine_aligning')
    t0 = h.wait_state('mismatch', timeout=10.0)
    status = h.latest_status(t0)
    assert status.disagree and status.view_match < 0.9 and 'does not match' in status.cue
    assert all(is_zero(m) for _, m in h.since(h.cmds, t0 + 0.2))
    assert not captured
    assert wait_for(lambda: any(
        kv.key == 'image_disagrees_with_estimate' and kv.value == 'True'
        for d in h.diagnostics for s in d.status for kv in s.values), timeout=5.0)


@pytest.mark.slow
def test_frames_stamped_ahead_of_the_clock_count_when_received_and_are_reported(graph):
    # a scanner whose clock runs an hour ahead: the fine search times its frames by their receipt (a frame
    # cannot have been taken after it arrived), still converges, and /diagnostics says the clocks disagree
    node, h, _ = _image_target_setup(graph, _fan_image(1), stamp_ahead_s=3600.0)
    h.wait_state('fine_aligning')
    h.wait_state('converged', timeout=10.0)
    assert node.stamps_ahead > 0
    assert wait_for(lambda: any(
        kv.key == 'image_stamps_ahead_of_clock' and int(kv.value) > 0
        for d in h.diagnostics for s in d.status for kv in s.values), timeout=5.0)


SWEEP = dict(sweep_turn_max=0.3, sweep_turn_step=0.15, sweep_tilt=0.1, sweep_dwell=0.2, sweep_speed=0.8)


def test_adaptation_sweep_turns_the_probe_about_its_apex_and_returns(graph):
    # stale_timeout 1 s: the fake arm shares this process's GIL; a stall must not end the sweep here
    # (the stale stop is the next test's)
    make_controller(graph, **SWEEP, stale_timeout=1.0)
    h = Harness(graph)
    sweep = h.node.create_client(Trigger, 'adapt/sweep')
    refused = h.call(sweep, Trigger.Request())
    assert not refused.success and 'probe/pose' in refused.message
    arm = FakeArm(graph)
    time.sleep(0.2)
    r = h.call(sweep, Trigger.Request())
    assert r.success, r.message
    t0 = h.wait_state('sweeping')
    assert wait_for(lambda: any(s.cue == 'adaptation sweep done' for _, s in h.since(h.statuses, t0)), timeout=20)
    turned = [np.linalg.norm(vec(m.twist.angular)) for _, m in h.since(h.twists, t0)]
    assert max(turned) > 0.3 and max(turned) <= 0.8 * 2.5 + 1e-6
    # the apex stayed put (turns and tilts about it) and the probe came back to where it began
    assert np.linalg.norm(arm.apex - arm.start[1]) < 1e-3
    assert np.degrees(np.linalg.norm(so3_log(arm.start[0].T @ arm.R))) < 1.0
    time.sleep(0.2)
    assert all(not np.any(vec(m.twist.angular)) for _, m in h.since(h.twists, time.monotonic() - 0.1))


def test_adaptation_sweep_stops_with_zero_twist_when_the_arm_pose_stops(graph):
    make_controller(graph, **SWEEP)
    h = Harness(graph)
    arm = FakeArm(graph)
    time.sleep(0.2)
    assert h.call(h.node.create_client(Trigger, 'adapt/sweep'), Trigger.Request()).success
    h.wait_state('sweeping')
    time.sleep(0.3)
    arm.running = False
    stopped = time.monotonic()
    assert wait_for(lambda: any('no arm pose' in s.cue for _, s in h.since(h.statuses, stopped)), timeout=3)
    time.sleep(0.1)
    later = h.since(h.twists, time.monotonic() - 0.05)
    assert later and all(not np.any(vec(m.twist.angular)) for _, m in later)
    assert all(is_zero(m) for _, m in h.since(h.cmds, time.monotonic() - 0.05))
