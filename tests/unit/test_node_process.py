"""``echoposed_ros.nodes.process.shut_down_soon``: an exception in a node's spin is a stop when the
context goes down at once (rclpy's signal thread shuts it down a moment after a failed take), a
crash when it stays up."""
from __future__ import annotations

import threading
import time

from echoposed_ros.nodes.process import shut_down_soon


class FakeContext:
    def __init__(self, ok_for_s: float | None) -> None:
        self._until = None if ok_for_s is None else time.monotonic() + ok_for_s

    def ok(self) -> bool:
        return self._until is None or time.monotonic() < self._until


def test_a_context_going_down_within_the_wait_is_a_stop():
    assert shut_down_soon(FakeContext(0.0))
    assert shut_down_soon(FakeContext(0.2), wait_s=2.0)


def test_a_context_that_stays_up_is_a_crash_after_the_wait():
    t0 = time.monotonic()
    assert not shut_down_soon(FakeContext(None), wait_s=0.3)
    assert 0.3 <= time.monotonic() - t0 < 2.0
    assert not shut_down_soon(FakeContext(1.0), wait_s=0.2)


def test_a_real_context_shut_down_from_another_thread():
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    threading.Timer(0.1, context.try_shutdown).start()
    assert shut_down_soon(context, wait_s=5.0) and not context.ok()
