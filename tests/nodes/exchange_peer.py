"""One side of the two-process DDS exchange test (run as a script by test_two_process.py).

``pose-sender``: publishes EchoPose on ``echoposed/pose`` until a ProbeTwist on ``probe/cmd``
echoes the pose it sent, then prints what it got as JSON and exits 0 (exit 1 on timeout).
``twist-responder``: answers each EchoPose with a ProbeTwist whose orbit/probe vectors are the
x, y, z of the pose's orbit/probe quaternions and whose stamp is the pose's stamp; exits 0 after
``--count`` answers (exit 1 on timeout).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import rclpy
from echoposed_msgs.msg import EchoPose, ProbeTwist
from rclpy.executors import SingleThreadedExecutor


def pose_sender(node, timeout: float) -> int:
    got: list[ProbeTwist] = []
    node.create_subscription(ProbeTwist, 'probe/cmd', got.append, 10)
    pub = node.create_publisher(EchoPose, 'echoposed/pose', 10)
    sent = EchoPose()
    sent.header.frame_id = 'test'
    sent.header.stamp.sec = 1234
    sent.orbit.x, sent.orbit.y, sent.orbit.z, sent.orbit.w = 0.1, 0.2, 0.3, (1 - 0.14) ** 0.5
    sent.probe.x, sent.probe.y, sent.probe.z, sent.probe.w = 0.0, 0.6, 0.0, 0.8
    sent.uncertainty = 0.25
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.publish(sent)
        executor.spin_once(timeout_sec=0.1)
        for twist in got:
            if twist.header.stamp.sec == 1234:
                print(json.dumps({'orbit': [twist.orbit.x, twist.orbit.y, twist.orbit.z],
                                  'probe': [twist.probe.x, twist.probe.y, twist.probe.z],
                                  'frame_id': twist.header.frame_id}))
                return 0
    return 1


def twist_responder(node, timeout: float, count: int) -> int:
    pub = node.create_publisher(ProbeTwist, 'probe/cmd', 10)
    answered = 0

    def on_pose(pose: EchoPose) -> None:
        nonlocal answered
        twist = ProbeTwist()
        twist.header.stamp = pose.header.stamp
        twist.header.frame_id = 'probe'
        twist.orbit.x, twist.orbit.y, twist.orbit.z = pose.orbit.x, pose.orbit.y, pose.orbit.z
        twist.probe.x, twist.probe.y, twist.probe.z = pose.probe.x, pose.probe.y, pose.probe.z
        pub.publish(twist)
        answered += 1

    node.create_subscription(EchoPose, 'echoposed/pose', on_pose, 10)
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and answered < count:
        executor.spin_once(timeout_sec=0.1)
    # Keep answering briefly so the sender's matching is not racing our exit.
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    return 0 if answered >= count else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('role', choices=['pose-sender', 'twist-responder'])
    parser.add_argument('--timeout', type=float, default=30.0)
    parser.add_argument('--count', type=int, default=3)
    args = parser.parse_args()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(args.role.replace('-', '_'), context=context)
    try:
        if args.role == 'pose-sender':
            return pose_sender(node, args.timeout)
        return twist_responder(node, args.timeout, args.count)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


if __name__ == '__main__':
    sys.exit(main())
