"""Running a node as a process: one clear line on bad configuration, a clean exit on Ctrl-C.

``run_node(factory, name)`` initialises rclpy, builds the node (an EchoposedError / OSError from
its configuration prints ``name: message`` on stderr and exits 2, no traceback), spins it until
SIGINT / shutdown, and tears it down. An exception raised while the context is already shutting
down (a timer firing into a closed context, a message taken as the context goes: see
``shut_down_soon``) counts as a clean stop; any other escapes. A teardown that hangs in the
middleware ends the process after ``teardown_timeout_s`` (``teardown_alarm``).

``enable_stack_dumps()`` (run_node calls it; so do the target setter and the bag recorder): SIGUSR1
prints every thread's Python stack on stderr and the process goes on; a crash (SIGSEGV, SIGABRT)
prints them before the process dies. ``echoposed launch`` sends SIGUSR1 to a node that ignored
SIGINT and SIGTERM before it sends SIGKILL, so a hang says where it hung.
"""
from __future__ import annotations

import faulthandler
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from ..errors import EchoposedError

__all__ = ['arm_teardown_alarm', 'disarm_teardown_alarm', 'enable_stack_dumps', 'run_node', 'shut_down_soon',
           'teardown_alarm']


def enable_stack_dumps() -> None:
    """From now on SIGUSR1 prints every thread's Python stack on stderr (the process goes on), and
    so does a fatal signal (SIGSEGV, SIGABRT, ...: faulthandler) before the process dies."""
    faulthandler.enable(all_threads=True)
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def shut_down_soon(context: Any, wait_s: float = 1.0) -> bool:
    """Whether ``context`` is shut down now or within ``wait_s`` s. rclpy shuts a context down on
    SIGINT from its own signal-handler thread, so the executor can fail mid-take (a subscription's
    message taken as the DDS entities go: RuntimeError in take_message) just before ``ok()`` turns
    false; such an exception is a stop, not a crash."""
    deadline = time.monotonic() + wait_s
    while context.ok():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def arm_teardown_alarm(timeout_s: int) -> None:
    """End the process if it is still alive ``timeout_s`` whole seconds from now (:func:`disarm_teardown_alarm`
    cancels): SIGALRM, on which faulthandler prints every thread's stack and the default action
    ends the process (exit status -SIGALRM, which ``echoposed launch`` reads as a hung teardown).

    For a node's teardown after its work is done: the middleware's node destruction can hang
    (rclpy ``destroy_node`` -> ``destroy_when_not_in_use`` under Fast DDS: about 1 in 40 launch
    stops here) while holding the GIL, so no Python-level timer could end it; the kernel's alarm
    and faulthandler's C handler need no GIL. What it would free the operating system frees.
    """
    if not (isinstance(timeout_s, int) and timeout_s > 0):
        raise ValueError(f'timeout_s = {timeout_s!r}; expected a whole number of seconds > 0')
    faulthandler.register(signal.SIGALRM, all_threads=True, chain=True)
    signal.alarm(timeout_s)


def disarm_teardown_alarm() -> None:
    """Cancel :func:`arm_teardown_alarm`."""
    signal.alarm(0)


@contextmanager
def teardown_alarm(timeout_s: int = 3, armed: bool = True) -> Iterator[None]:
    """The block (a node's teardown) under :func:`arm_teardown_alarm` (when ``armed``), disarmed
    when it ends, however it ends."""
    if armed:
        arm_teardown_alarm(timeout_s)
    try:
        yield
    finally:
        disarm_teardown_alarm()


def run_node(factory: Callable[[], Any], name: str, args: list[str] | None = None,
             executor_factory: Callable[[], Any] | None = None,
             cleanup: Callable[[Any], None] | None = None, teardown_timeout_s: int = 3) -> int:
    """Run ``factory()``'s node until shutdown; ``executor_factory`` (default single-threaded)
    builds the executor after rclpy.init; ``cleanup(node)`` runs before the node is destroyed
    (e.g. publish a last zero twist). Destroying the node and the executor may take at most
    ``teardown_timeout_s`` s (:func:`arm_teardown_alarm`). Returns the process exit code."""
    enable_stack_dumps()
    rclpy.init(args=args)
    try:
        node = factory()
    except (EchoposedError, OSError) as exc:
        print(f'{name}: {exc}', file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = executor_factory() if executor_factory is not None else SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if not shut_down_soon(node.context):
            raise
    finally:
        try:
            if cleanup is not None:
                cleanup(node)
            with teardown_alarm(teardown_timeout_s):
                executor.shutdown(timeout_sec=1.0)
                node.destroy_node()
                rclpy.try_shutdown()
        except KeyboardInterrupt:
            rclpy.try_shutdown()
    return 0
