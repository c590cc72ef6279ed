"""A stand-in robot arm for node tests: publishes the probe pose on ``probe/pose`` at 50 Hz and moves it
by the newest probe-frame Cartesian twist on ``probe/cmd_twist`` (held 0.1 s, then still).

Import as ``from fake_arm import FakeArm`` (this folder is on sys.path under pytest).
"""
from __future__ import annotations

import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped

from echoposed_ros.geometry import rot_x, rot_z, so3_exp
from echoposed_ros.nodes.convert import matrix_to_quaternion_msg

__all__ = ['FakeArm']


def _vec(v) -> np.ndarray:
    return np.array([v.x, v.y, v.z])


class FakeArm:
    def __init__(self, graph, name: str = 'fake_arm') -> None:
        self.node = graph.node(name)
        self.lock = threading.Lock()
        self.R, self.apex = rot_z(0.3) @ rot_x(0.2), np.array([0.01, 0.02, -0.07])
        self.start = (self.R.copy(), self.apex.copy())
        self.running = True
        self._twist: tuple[float, np.ndarray, np.ndarray] | None = None
        self.pub = self.node.create_publisher(PoseStamped, 'probe/pose', 10)
        self.node.create_subscription(TwistStamped, 'probe/cmd_twist', self._on_twist, 10)
        self.node.create_timer(0.02, self._tick)

    def _on_twist(self, msg: TwistStamped) -> None:
        with self.lock:
            self._twist = (time.monotonic(), _vec(msg.twist.linear), _vec(msg.twist.angular))

    def _tick(self) -> None:
        if not self.running:
            return
        with self.lock:
            if self._twist is not None and time.monotonic() - self._twist[0] < 0.1:
                _, v, w = self._twist
                self.apex = self.apex + self.R @ (v * 0.02)
                self.R = self.R @ so3_exp(w * 0.02)
            R, apex = self.R.copy(), self.apex.copy()
        msg = PoseStamped()
        msg.header.stamp, msg.header.frame_id = self.node.get_clock().now().to_msg(), 'base_link'
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(c) for c in apex)
        msg.pose.orientation = matrix_to_quaternion_msg(R)
        self.pub.publish(msg)
