"""The launcher's run monitor (echoposed_ros/bringup/monitor.py) against a fake simulator in its own
rclpy context: ground truth that comes before the target's pose is still scored, and a
``sim/standard_view`` request whose answer is lost is sent again (a converged run once had no
ground-truth error in its summary because the monitor waited for a lost answer for good)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from echoposed_msgs.msg import EchoPose
from echoposed_msgs.srv import StandardView
from rclpy.callback_groups import ReentrantCallbackGroup
from ros_harness import Graph, wait_for
from scipy.spatial.transform import Rotation
from std_msgs.msg import Header

from echoposed_ros.bringup.monitor import RunMonitor, RunTrace, SpinThread
from echoposed_ros.bringup.series import DecimatedSeries
from echoposed_ros.geometry import effective_error
from echoposed_ros.nodes.convert import echopose_msg

TARGET = (Rotation.from_rotvec([0.0, 0.3, 0.0]).as_matrix(), np.eye(3))
TRUTH = [(Rotation.from_rotvec([0.0, a, 0.0]).as_matrix(), np.eye(3)) for a in (1.2, 0.9, 0.6)]


class FakeSim:
    """``sim/standard_view`` (the first ``lose`` requests are never answered: their callbacks block
    until :meth:`release`) and a ``probe/true_pose`` publisher."""

    def __init__(self, graph: Graph, lose: int = 0, refuse: bool = False) -> None:
        self.node = graph.node('fake_sim', threads=2)   # a blocked answer leaves a thread free
        self.lose, self.refuse, self.requests = lose, refuse, 0
        self._released = threading.Event()
        self.node.create_service(StandardView, 'sim/standard_view', self._view,
                                 callback_group=ReentrantCallbackGroup())
        self.truth = self.node.create_publisher(EchoPose, 'probe/true_pose', 10)

    def _view(self, request, response):
        self.requests += 1
        if self.requests <= self.lose:
            self._released.wait(30.0)   # never answered within the test
        response.success, response.message = not self.refuse, 'unknown view' if self.refuse else ''
        response.pose = echopose_msg(Header(frame_id='heart'), *TARGET)
        response.image.height, response.image.width, response.image.encoding = 2, 3, 'mono8'
        response.image.step, response.image.data = 3, bytes(range(6))
        return response

    def publish_truth(self, pose) -> None:
        self.truth.publish(echopose_msg(Header(frame_id='heart'), *pose))

    def release(self) -> None:
        self._released.set()


@pytest.fixture
def sim(graph):
    fake = FakeSim(graph, lose=1)
    yield fake
    fake.release()


def expected_deg(pose) -> float:
    return float(np.degrees(effective_error(pose, TARGET)))


def test_a_lost_target_answer_is_asked_again_and_early_truth_is_scored(graph, sim):
    monitor = graph.add(RunMonitor('A4C', retry_after=0.5, context=graph.context))
    assert wait_for(lambda: monitor.target_requests >= 1)
    # truth that arrives while the first answer is lost is kept
    for pose in TRUTH[:2]:
        sim.publish_truth(pose)
    assert wait_for(lambda: monitor.trace.truth.count == 2)
    assert monitor.target_pose is None and monitor.summary()['final_error_deg'] is None
    assert wait_for(lambda: monitor.target_pose is not None, timeout=10.0)
    sim.publish_truth(TRUTH[2])
    assert wait_for(lambda: len(monitor.true_errors()) == 3)
    summary = monitor.summary()
    assert summary['target_known'] and summary['target_requests'] == 2 and sim.requests == 2
    assert summary['initial_error_deg'] == pytest.approx(expected_deg(TRUTH[0]), abs=1e-6)
    assert summary['final_error_deg'] == pytest.approx(expected_deg(TRUTH[2]), abs=1e-6)
    assert np.degrees(monitor.true_errors()) == pytest.approx([expected_deg(p) for p in TRUTH], abs=1e-6)


def test_a_run_without_the_targets_pose_says_so_and_still_plots(graph, sim, tmp_path):
    monitor = graph.add(RunMonitor('A4C', retry_after=30.0, context=graph.context))
    sim.publish_truth(TRUTH[0])
    assert wait_for(lambda: monitor.trace.truth.count == 1 and monitor.target_requests == 1)
    summary = monitor.summary()
    assert not summary['target_known'] and summary['final_error_deg'] is None
    assert monitor.plot(tmp_path / 'run.png').stat().st_size > 0


def test_retry_after_must_be_positive(graph):
    with pytest.raises(ValueError, match='retry_after'):
        RunMonitor('A4C', retry_after=0.0, context=graph.context)


def test_a_refused_view_is_not_asked_again(graph):
    sim = FakeSim(graph, refuse=True)
    monitor = graph.add(RunMonitor('A5C', retry_after=0.3, context=graph.context))
    assert wait_for(lambda: monitor.target_refused == 'unknown view')
    time.sleep(1.0)   # five of the monitor's 0.2 s ticks, three retry periods
    assert sim.requests == 1 and monitor.target_requests == 1 and monitor.target_pose is None
    assert monitor.summary()['target_refused'] == 'unknown view'


# -- bounded memory: the summary's figures are those of the full record ------------------------------

def reference_summary(truth, status, poses, cmds, target):
    """The summary as computed from complete per-message lists (the figures a bounded monitor keeps)."""
    err = [expected_deg_to(pose, target) for _, pose in truth]
    states = [s for _, _, s in status]
    t_pose, t_cmd = [t for t, _ in poses], [t for t, _, _ in cmds]
    i = len(states) - 1
    while i > 0 and states[i - 1] == 'converged':
        i -= 1
    return {
        'final_error_deg': err[-1], 'initial_error_deg': err[0],
        'final_estimated_error_deg': float(np.degrees(status[-1][1])),
        'converged': states[-1] == 'converged', 'final_state': states[-1],
        'first_converged_s': next(t for t, _, s in status if s == 'converged'),
        'loop_hz': (len(t_pose) - 1) / (t_pose[-1] - t_pose[0]),
        'command_hz': (len(t_cmd) - 1) / (t_cmd[-1] - t_cmd[0]),
        'poses': len(poses), 'final_sigma2': poses[-1][1],
        'max_orbit_speed': max(o for _, o, _ in cmds), 'max_probe_speed': max(p for _, _, p in cmds),
    }, (status[-1][0] - status[i][0] if states[-1] == 'converged' else 0.0)


def expected_deg_to(pose, target) -> float:
    return float(np.degrees(effective_error(pose, target)))


def test_summary_figures_equal_the_full_records_on_a_run_longer_than_the_buffers(graph):
    from echoposed_msgs.msg import GuidanceStatus, ProbeTwist
    from geometry_msgs.msg import Vector3

    monitor = RunMonitor('A4C', context=graph.context)   # not spun: messages are handed in directly
    try:
        clock = [0.0]
        monitor._now = lambda: clock[0]
        monitor.target_pose = TARGET
        # small series (64 rows) so that a short run is many times their length
        monitor.trace = RunTrace(truth=DecimatedSeries(18, 64), status=DecimatedSeries(3, 64))
        rng = np.random.default_rng(5)
        truth, status, poses, cmds = [], [], [], []
        states = ['searching'] * 300 + ['converged'] * 200 + ['approaching'] * 100 + ['converged'] * 300
        rotations = Rotation.from_rotvec(rng.normal(0, 0.5, (len(states), 2, 3)).reshape(-1, 3)).as_matrix()
        for k, state in enumerate(states):   # 900 messages per stream
            clock[0] = k / 30.0 + rng.uniform(0.0, 0.01)
            pose = (rotations[2 * k], rotations[2 * k + 1])
            monitor._on_truth(echopose_msg(Header(), *pose))
            truth.append((clock[0], pose))
            error = float(rng.uniform(0, 1))
            monitor._on_status(GuidanceStatus(effective_error=error, state_name=state))
            status.append((clock[0], error, state))
            sigma2 = float(rng.uniform(0, 0.1))
            monitor._on_pose(echopose_msg(Header(), *pose, sigma2))
            poses.append((clock[0], sigma2))
            o, p = rng.normal(0, 0.1, 3), rng.normal(0, 0.1, 3)
            monitor._on_cmd(ProbeTwist(orbit=Vector3(x=o[0], y=o[1], z=o[2]), probe=Vector3(x=p[0], y=p[1], z=p[2])))
            cmds.append((clock[0], float(np.linalg.norm(o)), float(np.linalg.norm(p))))
        expected, converged_for = reference_summary(truth, status, poses, cmds, TARGET)
        summary = monitor.summary()
        for key, value in expected.items():
            assert summary[key] == (value if isinstance(value, str | bool) else pytest.approx(value, rel=1e-9)), key
        assert monitor.converged_for() == pytest.approx(converged_for, abs=1e-12) and converged_for > 9
        # bounded: the plotted series hold at most their capacity, from the first sample to near the last
        assert len(monitor.trace.truth) <= 64 and monitor.trace.truth.count == len(truth)
        assert monitor.trace.truth.t[0] == truth[0][0] and monitor.trace.truth.t[-1] > truth[-1][0] - 1.0
        errors = np.degrees(monitor.true_errors())
        assert errors[0] == pytest.approx(expected['initial_error_deg'])
        assert summary['rejected_messages'] == 0 and summary['rejected_by_topic'] == {}
    finally:
        monitor.destroy_node()


# -- malformed messages and failures in the spin thread ------------------------------------------------

class SpunMonitor:
    """A RunMonitor spun as ``echoposed launch`` spins it (:class:`SpinThread`), and a publishing client."""

    def __init__(self, graph: Graph, **kwargs) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image

        self.monitor = RunMonitor('A4C', context=graph.context, **kwargs)
        self.executor = SingleThreadedExecutor(context=graph.context)
        self.executor.add_node(self.monitor)
        self.spinner = SpinThread(self.executor).start()
        self.client = graph.node('client')
        self.images = self.client.create_publisher(Image, 'probe/image', 10)
        self.truth = self.client.create_publisher(EchoPose, 'probe/true_pose', 10)
        assert wait_for(lambda: self.images.get_subscription_count() > 0 and self.truth.get_subscription_count() > 0)

    def close(self) -> None:
        self.spinner.stop()
        self.executor.remove_node(self.monitor)
        self.monitor.destroy_node()
        self.executor.shutdown(timeout_sec=1)


@pytest.fixture
def spun(graph):
    s = SpunMonitor(graph)
    yield s
    s.close()


def image_msg(value: int = 120, extra: bytes = b''):
    from sensor_msgs.msg import Image
    data = bytes(np.full((128, 128), value, np.uint8).ravel()) + extra
    return Image(height=128, width=128, step=128, encoding='mono8', data=data)


def zero_quaternion_pose() -> EchoPose:
    msg = echopose_msg(Header(), np.eye(3), np.eye(3))
    msg.orbit.w = 0.0
    return msg


def test_an_image_17_bytes_too_long_is_rejected_and_counted_and_the_monitor_goes_on(spun):
    m = spun.monitor
    assert wait_for(lambda: (spun.images.publish(image_msg(50)), m.trace.image_count > 0)[1])
    assert wait_for(lambda: (spun.images.publish(image_msg(extra=bytes(17))), m.rejected_messages > 0)[1])
    assert 'data holds 16401 bytes, expected height * step = 128 * 128 = 16384' in m.trace.last_rejection
    assert wait_for(lambda: (spun.truth.publish(zero_quaternion_pose()), m.trace.rejected.get('probe/true_pose'))[1])
    count = m.trace.image_count
    assert wait_for(lambda: (spun.images.publish(image_msg(200)), m.trace.image_count > count)[1])
    assert m.last_image.shape == (128, 128) and m.last_image[0, 0] == 200
    summary = m.summary()
    assert summary['rejected_messages'] == sum(summary['rejected_by_topic'].values()) >= 2
    assert set(summary['rejected_by_topic']) == {'probe/image', 'probe/true_pose'}
    assert not spun.spinner.failed


def test_any_other_error_in_a_callback_fails_the_spin_thread(graph, monkeypatch):
    def broken(self, msg):
        raise RuntimeError('monitor bug')
    monkeypatch.setattr(RunMonitor, '_on_truth', broken)
    spun = SpunMonitor(graph)
    try:
        assert wait_for(lambda: (spun.truth.publish(echopose_msg(Header(), *TRUTH[0])), spun.spinner.failed)[1])
        assert spun.spinner.error == 'RuntimeError: monitor bug'
        assert 'broken' in spun.spinner.traceback
        assert wait_for(lambda: not spun.spinner._thread.is_alive(), timeout=2)
    finally:
        spun.close()


@pytest.mark.slow
def test_flood_of_malformed_images_and_poses_at_the_monitor(spun):
    from malformed import raw_kinds

    m = spun.monitor
    kinds = {k: v for k, v in raw_kinds(128, 128).items() if k not in ('all zero', 'constant grey')}  # drawable
    assert wait_for(lambda: (spun.images.publish(image_msg(70)), m.trace.image_count > 0)[1])
    time.sleep(0.3)
    before = m.trace.image_count
    received_before = m.trace.received.get('probe/image', 0)
    messages = list(kinds.values())
    for start in range(0, 10_000, 5):   # bursts no deeper than the image queue, each taken before the next
        taken = m.trace.received.get('probe/image', 0)
        for i in range(start, start + 5):
            spun.images.publish(messages[i % len(messages)])
        spun.truth.publish(zero_quaternion_pose())
        wait_for(lambda n=taken + 5: m.trace.received.get('probe/image', 0) >= n, timeout=0.05, period=0.0005)
    assert wait_for(lambda: (spun.images.publish(image_msg(210)), m.trace.image_count > before)[1], timeout=20)
    assert m.last_image[0, 0] == 210 and not spun.spinner.failed
    time.sleep(0.3)
    tr = m.trace
    malformed_taken = tr.received['probe/image'] - received_before - (tr.image_count - before)
    # best effort may drop a few; every one taken is counted as rejected, none is drawn
    assert malformed_taken > 5000 and tr.rejected['probe/image'] == malformed_taken
    assert tr.rejected['probe/true_pose'] == tr.received['probe/true_pose'] > 1000
    assert m.summary()['rejected_messages'] == tr.rejected['probe/image'] + tr.rejected['probe/true_pose']


def test_a_monitor_failure_fails_the_launch_and_the_summary_says_why(tmp_path, monkeypatch, capsys):
    import argparse
    import json

    from echoposed_ros.bringup.description import NodeSpec
    from echoposed_ros.cli.launch import _run

    (tmp_path / 'idle_node.py').write_text("import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))

    def broken(self):
        raise RuntimeError('monitor bug')
    monkeypatch.setattr(RunMonitor, '_ask_for_target', broken)   # its 0.2 s timer
    args = argparse.Namespace(launch='sim_guidance', isolated=False, quiet=True, duration=60.0,
                              stop_after_converged=None, summary=tmp_path / 'summary.json', plot=None)
    launch_args = {'estimator': 'model', 'target': 'A4C', 'namespace': '', 'image_topic': 'probe/image'}
    start = time.monotonic()
    rc = _run(args, launch_args, [NodeSpec('idle', 'idle_node', 'idle')])
    assert rc == 1 and time.monotonic() - start < 20   # ended at once, not at --duration
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['ended'] == 'monitor_failed' and summary['monitor_error'] == 'RuntimeError: monitor bug'
    captured = capsys.readouterr()
    assert 'the run monitor failed' in captured.err and 'monitor bug' in captured.err
    assert 'run monitor failed: RuntimeError: monitor bug' in captured.out
