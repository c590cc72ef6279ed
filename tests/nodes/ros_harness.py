"""Helpers for node tests: an rclpy context whose nodes each spin on their own thread, and polling.

Import as ``from ros_harness import Graph, wait_for`` (this folder is on sys.path under pytest).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import rclpy
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

__all__ = ['Graph', 'wait_for']


class _Spinner:
    """One node on its own executor (single-threaded, or ``threads`` threads), spun in a thread
    until :meth:`stop`."""

    def __init__(self, node, context, threads: int = 1) -> None:
        self.node = node
        self.executor = (SingleThreadedExecutor(context=context) if threads == 1
                         else MultiThreadedExecutor(num_threads=threads, context=context))
        self.executor.add_node(node)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, name=f'spin_{node.get_name()}', daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.executor.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if self._stop.is_set() or not self.executor.context.ok():
                    return
                raise

    def stop(self) -> None:
        # join the spinning thread before the node and executor go (a spin left running reads freed
        # memory once the executor is shut down), then take the node off and destroy it
        self._stop.set()
        self.thread.join(timeout=5)
        self.executor.remove_node(self.node)
        self.node.destroy_node()
        self.executor.shutdown(timeout_sec=1)


class Graph:
    """An rclpy context; each node added with :meth:`add` spins on its own single-threaded
    executor and thread, as each node does in its own process in a launch (a node shares no
    executor with the test's peers, so a busy peer cannot starve the node's timers)."""

    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self._spinners: list[_Spinner] = []

    def add(self, node, threads: int = 1):
        """Spin ``node`` from now on; ``threads`` > 1 for a fake whose callbacks block (a
        multi-threaded executor of its own then answers the next call meanwhile)."""
        self._spinners.append(_Spinner(node, self.context, threads))
        return node

    def node(self, name: str, threads: int = 1):
        return self.add(rclpy.create_node(name, context=self.context), threads)

    def shutdown(self) -> None:
        for spinner in self._spinners:
            spinner.stop()
        rclpy.try_shutdown(context=self.context)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, period: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` s pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())
