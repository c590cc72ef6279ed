"""Recorder node ``echoposed_recorder``: topics -> a rosbag2 bag (MCAP + metadata.yaml).

For machines without ``ros2 bag record``. echoposed's own topics (:data:`KNOWN_TYPES`) are
subscribed at start-up; other topics are looked up in the ROS graph every ``discovery_period``
seconds until a publisher appears and then subscribed with its type. Messages are taken as raw
CDR bytes (no deserialization) and written with the receive time as the bag timestamp. QoS:
best effort for image streams and for topics with a best-effort publisher, else reliable;
depth 100.

With ``target_view`` set, the node asks the simulator (``sim/standard_view``) once for that
view's ground-truth pose and stores it in the bag's ``custom_data``
(``echoposed.target_view``, ``echoposed.target_orbit_xyzw``, ``echoposed.target_probe_xyzw``:
quaternions x, y, z, w as JSON lists), so ``echoposed bag eval`` can score the effective error
to the target from the bag alone.

Stopping: SIGINT / SIGTERM / shutdown / ``duration`` elapsed -> the bag is closed (MCAP summary,
footer, metadata.yaml) before the process exits. The pending chunk is flushed to disk every
``flush_period`` seconds, so a recorder killed with SIGKILL leaves a bag that the reader
reports as truncated rather than silently short.
"""
from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..config.params import Param
from ..nodes.params import declare_all
from ..nodes.process import run_node
from .errors import BagError
from .writer import BagWriter

__all__ = [
    'DEFAULT_TOPICS',
    'KNOWN_TYPES',
    'PARAMS',
    'SENSOR_TOPICS',
    'RecorderNode',
    'main',
    'message_class',
    'run_recorder',
]

#: What the sim launch records: images, truth, estimates, commands, status, diagnostics.
DEFAULT_TOPICS = ('probe/image', 'probe/image/compressed', 'probe/true_pose', 'probe/pose', 'echoposed/pose',
                  'probe/cmd', 'probe/cmd_twist', 'guidance/status', 'guidance/captured', '/diagnostics')

#: Topics whose type is known in advance: subscribed at start-up, without waiting for a publisher
#: to appear in the graph, so nothing a late-starting node publishes first is missed.
KNOWN_TYPES = {
    '/probe/image': 'sensor_msgs/msg/Image',
    '/probe/image/compressed': 'sensor_msgs/msg/CompressedImage',
    '/probe/true_pose': 'echoposed_msgs/msg/EchoPose',
    '/probe/pose': 'geometry_msgs/msg/PoseStamped',
    '/echoposed/pose': 'echoposed_msgs/msg/EchoPose',
    '/probe/cmd': 'echoposed_msgs/msg/ProbeTwist',
    '/probe/cmd_twist': 'geometry_msgs/msg/TwistStamped',
    '/guidance/status': 'echoposed_msgs/msg/GuidanceStatus',
    '/guidance/captured': 'sensor_msgs/msg/Image',
    '/diagnostics': 'diagnostic_msgs/msg/DiagnosticArray',
}
#: Sensor streams (best-effort publishers): subscribed best effort when known in advance.
SENSOR_TOPICS = ('/probe/image', '/probe/image/compressed')

PARAMS = (
    Param('output', '', 'bag directory to create (must not exist)', read_only=True),
    Param('topics', list(DEFAULT_TOPICS), 'topics to record (relative names resolve in the node namespace)',
          read_only=True),
    Param('duration', 0.0, 's, stop recording after this long (0 = until SIGINT / shutdown)', read_only=True),
    Param('target_view', '', 'standard view whose ground-truth pose is stored in the bag (asked from '
          'sim/standard_view); empty = none', read_only=True),
    Param('discovery_period', 0.5, 's, how often the graph is searched for topics not yet recorded',
          read_only=True),
    Param('flush_period', 1.0, 's, how often the pending chunk is written to disk', read_only=True),
)


def message_class(msgtype: str) -> Any:
    """The rclpy message class of ``pkg/msg/Name``; BagError when it is not importable."""
    package, kind, name = (msgtype.split('/') + ['', ''])[:3]
    try:
        return getattr(importlib.import_module(f'{package}.{kind}'), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise BagError(f'message type {msgtype!r} is not importable in Python: {exc}') from exc


class RecorderNode(Node):
    """Thin shell: graph discovery and raw subscriptions -> :class:`BagWriter`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('echoposed_recorder', **kwargs)
        p = declare_all(self, PARAMS)
        if not p['output']:
            raise BagError('parameter output is empty; expected the bag directory to create')
        if p['discovery_period'] <= 0 or p['flush_period'] <= 0 or p['duration'] < 0:
            raise BagError('discovery_period and flush_period must be > 0 s and duration >= 0 s')
        self.topics = [self.resolve_topic_name(t) for t in p['topics'] if t]
        if not self.topics:
            raise BagError('parameter topics is empty; expected at least one topic')
        self.duration = float(p['duration'])
        self.target_view = str(p['target_view']).strip()
        self.writer = BagWriter(p['output'])
        self._recorded: dict[str, Any] = {}
        self._started = time.monotonic()
        self._target_pending: Any = None
        self._target_done = not self.target_view
        self.create_timer(float(p['discovery_period']), self._discover)
        self.create_timer(float(p['flush_period']), self.writer.flush)
        if self.target_view:
            from echoposed_msgs.srv import StandardView
            self._views = self.create_client(StandardView, 'sim/standard_view')
            self.create_timer(0.5, self._ask_target)
        self._discover()
        self.get_logger().info(f'recording {", ".join(self.topics)} into {self.writer.path}')

    @property
    def expired(self) -> bool:
        return self.duration > 0 and time.monotonic() - self._started >= self.duration

    def _qos(self, topic: str) -> QoSProfile:
        best_effort = topic in SENSOR_TOPICS or any(info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                                                    for info in self.get_publishers_info_by_topic(topic))
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                          reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)

    def _discover(self) -> None:
        missing = [t for t in self.topics if t not in self._recorded]
        if not missing:
            return
        graph = dict(self.get_topic_names_and_types())
        for topic in missing:
            types = graph.get(topic)
            if topic in KNOWN_TYPES and (not types or KNOWN_TYPES[topic] in types):
                msgtype = KNOWN_TYPES[topic]
            elif types and self.get_publishers_info_by_topic(topic):
                msgtype = types[0]
            else:
                continue
            try:
                self.writer.add_topic(topic, msgtype)
                cls = message_class(msgtype)
            except BagError as exc:
                self.get_logger().error(f'{topic}: not recorded: {exc}')
                self._recorded[topic] = None
                continue
            self._recorded[topic] = self.create_subscription(
                cls, topic, lambda data, topic=topic: self._on_message(topic, data), self._qos(topic), raw=True)
            self.get_logger().info(f'recording {topic} ({msgtype})')

    def _on_message(self, topic: str, data: bytes) -> None:
        self.writer.write(topic, self.get_clock().now().nanoseconds, data)

    def _ask_target(self) -> None:
        if self._target_done or self._target_pending is not None or not self._views.service_is_ready():
            return
        from echoposed_msgs.srv import StandardView
        self._target_pending = self._views.call_async(StandardView.Request(view=self.target_view,
                                                                           cardiac_phase=0.0))
        self._target_pending.add_done_callback(self._on_target)

    def _on_target(self, future: Any) -> None:
        result = future.result()
        self._target_pending = None
        if result is None:
            return
        self._target_done = True
        if not result.success:
            self.get_logger().warning(f'target view {self.target_view!r} not stored: {result.message}')
            return
        q = result.pose
        self.writer.set_custom_data('echoposed.target_view', self.target_view.upper())
        self.writer.set_custom_data('echoposed.target_orbit_xyzw',
                                    json.dumps([q.orbit.x, q.orbit.y, q.orbit.z, q.orbit.w]))
        self.writer.set_custom_data('echoposed.target_probe_xyzw',
                                    json.dumps([q.probe.x, q.probe.y, q.probe.z, q.probe.w]))
        self.get_logger().info(f'target view {self.target_view} stored in the bag')

    def close(self) -> dict[str, int]:
        """Close the bag; returns {topic: messages written}."""
        self.writer.close()
        return dict(self.writer.counts)


def run_recorder(factory: Callable[[], RecorderNode], name: str,
                 report: Callable[[RecorderNode, dict[str, int]], str], args: list[str] | None = None) -> int:
    """Record with ``factory()``'s node as a process (:func:`run_node`) until SIGINT / SIGTERM /
    shutdown / its duration; on every way out the bag is closed (MCAP summary, metadata.yaml) and
    ``report(node, {topic: messages written})`` printed on stdout. Returns the exit code."""
    return run_node(factory, name, args, until=lambda node: node.expired,
                    cleanup=lambda node: print(report(node, node.close()), flush=True))


def main(args: list[str] | None = None) -> int:
    return run_recorder(RecorderNode, 'echoposed_recorder', lambda node, counts: (
        f'echoposed_recorder: closed {node.writer.path} '
        f'({", ".join(f"{t}: {n}" for t, n in counts.items()) or "no messages"})'), args)


if __name__ == '__main__':
    sys.exit(main())
