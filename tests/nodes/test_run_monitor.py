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

from echoposed_ros.bringup.monitor import RunMonitor
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
    assert wait_for(lambda: len(monitor.trace.true_pose) == 2)
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
    assert wait_for(lambda: len(monitor.trace.true_pose) == 1 and monitor.target_requests == 1)
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
