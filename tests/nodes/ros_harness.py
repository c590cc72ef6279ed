"""Helpers for node tests: an rclpy context with a background executor, and polling.

Import as ``from ros_harness import Graph, wait_for`` (this folder is on sys.path under pytest).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import rclpy
from rclpy.executors import MultiThreadedExecutor

__all__ = ['Graph', 'wait_for']


class Graph:
    """An rclpy context with an executor spinning in a thread; nodes are added with :meth:`add`."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self._nodes = []
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shutdown races end the loop
                if not self.context.ok():
                    return
                raise

    def add(self, node):
        self._nodes.append(node)
        self.executor.add_node(node)
        return node

    def node(self, name: str):
        return self.add(rclpy.create_node(name, context=self.context))

    def shutdown(self) -> None:
        for node in self._nodes:
            self.executor.remove_node(node)
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5)
        self.executor.shutdown(timeout_sec=1)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, period: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` s pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())
