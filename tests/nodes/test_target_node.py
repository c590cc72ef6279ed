"""The one-shot target setter (echoposed_ros/nodes/target_node.py) against fake simulator and
controller services in its own rclpy context: it hands the view's image on, re-sends a request
whose answer never comes, and fails with one line naming the service."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import rclpy
from echoposed_msgs.srv import SetTarget, StandardView
from rclpy.callback_groups import ReentrantCallbackGroup
from ros_harness import Graph

from echoposed_ros.config.params import yaml_parameters
from echoposed_ros.errors import EchoposedError
from echoposed_ros.nodes.target_node import PARAMS, set_clip_target, set_view_target
from echoposed_ros.paths import config_dir


class FakeServices:
    """``sim/standard_view`` and ``guidance/set_target``; the first ``lose`` set_target requests are
    never answered (their callbacks block until :meth:`release`), as when a reply is lost."""

    def __init__(self, graph: Graph, lose: int = 0, refuse_view: bool = False) -> None:
        self.node = graph.node('fake_sim_and_controller', threads=2)   # a blocked answer leaves a thread free
        self.lose, self.refuse_view = lose, refuse_view
        self.views: list[str] = []
        self.targets: list[SetTarget.Request] = []
        self._blocked = threading.Event()
        group = ReentrantCallbackGroup()
        self.node.create_service(StandardView, 'sim/standard_view', self._view, callback_group=group)
        self.node.create_service(SetTarget, 'guidance/set_target', self._target, callback_group=group)

    def _view(self, request, response):
        self.views.append(request.view)
        self.phases = getattr(self, 'phases', []) + [request.cardiac_phase]
        response.success = not self.refuse_view
        response.message = 'unknown view' if self.refuse_view else ''
        response.image.height, response.image.width, response.image.encoding = 2, 3, 'mono8'
        response.image.step, response.image.data = 3, bytes(range(6))
        return response

    def _target(self, request, response):
        self.targets.append(request)
        if len(self.targets) <= self.lose:
            self._blocked.wait(30.0)   # never answered within the test
        response.success, response.message = True, f'target {request.view}'
        return response

    def release(self) -> None:
        self._blocked.set()


@pytest.fixture
def client(graph):
    node = rclpy.create_node('echoposed_target', context=graph.context)   # spun by the call itself
    yield node
    node.destroy_node()


def test_yaml_keys_equal_declared_parameters_and_all_are_described():
    assert set(yaml_parameters(config_dir() / 'target.yaml', 'echoposed_target')) == {p.name for p in PARAMS}
    assert all(p.description for p in PARAMS)


def test_the_view_image_is_handed_to_the_controller(graph, client):
    fake = FakeServices(graph)
    message = set_view_target(client, 'A2C', 0.0, timeout=10.0)
    assert message.startswith('target A2C set') and fake.views == ['A2C']
    (request,) = fake.targets
    assert request.kind == SetTarget.Request.KIND_IMAGE and request.view == 'A2C'
    assert np.array_equal(np.frombuffer(bytes(request.image.data), np.uint8), np.arange(6))


def test_an_image_target_carries_the_view_over_one_cycle(graph, client):
    fake = FakeServices(graph)
    set_view_target(client, 'A4C', 0.0, timeout=10.0, cine_frames=4)
    (request,) = fake.targets
    assert len(request.cine) == 4 and fake.phases == [0.0, 0.0, 0.25, 0.5, 0.75]
    with pytest.raises(EchoposedError, match='cine_frames'):
        set_view_target(client, 'A4C', 0.0, timeout=10.0, cine_frames=-1)


def test_a_bag_clip_becomes_the_image_target_and_its_cine(graph, client, tmp_path):
    from bag_helpers import write_image_bag
    fake = FakeServices(graph)
    bag = write_image_bag(tmp_path / 'saved_view', 45)
    message = set_clip_target(client, str(bag), 0.0, 1.0, '', timeout=10.0)
    assert '30 frames from 0 s' in message and fake.views == []          # the simulator is not asked
    (request,) = fake.targets
    assert request.kind == SetTarget.Request.KIND_IMAGE and len(request.cine) == 30
    assert [bytes(m.data)[0] for m in request.cine] == list(range(30))
    assert bytes(request.image.data) == bytes(request.cine[0].data)


def test_an_unanswered_request_is_sent_again(graph, client):
    fake = FakeServices(graph, lose=1)
    try:
        t0 = time.monotonic()
        message = set_view_target(client, 'A4C', 0.0, timeout=10.0, retry_after=0.5)
        assert message.startswith('target A4C set') and len(fake.targets) == 2
        assert 0.5 <= time.monotonic() - t0 < 5.0
    finally:
        fake.release()


def test_no_answer_at_all_fails_with_the_service_named(graph, client):
    fake = FakeServices(graph, lose=100)
    try:
        with pytest.raises(EchoposedError, match=r'guidance/set_target did not answer within 1.5 s \([3-4] requests\)'):
            set_view_target(client, 'A4C', 0.0, timeout=1.5, retry_after=0.45)
    finally:
        fake.release()


def test_a_missing_service_and_a_refused_view_are_named(graph, client):
    with pytest.raises(EchoposedError, match='sim/standard_view is not available after 0.3 s'):
        set_view_target(client, 'A4C', 0.0, timeout=0.3)
    FakeServices(graph, refuse_view=True)
    with pytest.raises(EchoposedError, match="sim/standard_view refused 'A3C' at phase 0: unknown view"):
        set_view_target(client, 'A3C', 0.0, timeout=10.0)
    with pytest.raises(EchoposedError, match='retry_after = 0 s'):
        set_view_target(client, 'A3C', 0.0, timeout=10.0, retry_after=0.0)


def test_the_setter_process_without_a_simulator_exits_1_with_one_line():
    result = subprocess.run([sys.executable, '-m', 'echoposed_ros.nodes.target_node', '--ros-args',
                             '-p', 'timeout:=0.5', '-r', '__ns:=/target_alone'], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == ['echoposed_target: sim/standard_view is not available after 0.5 s']
