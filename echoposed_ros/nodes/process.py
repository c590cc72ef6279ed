"""Running a node as a process: one clear line on bad configuration, a clean exit on Ctrl-C.

``run_node(factory, name)`` is the one start-up and teardown of every echoposed process that
holds a node (the long-running nodes, the bag recorder and player, the target setter, ``echoposed
bag record | play``): it initialises rclpy, builds the node (an EchoposedError / OSError from its
configuration prints ``name: message`` on stderr and exits 2, no traceback), runs its work (spin
until SIGINT / SIGTERM / shutdown or a condition, or a one-shot ``job``), runs its ``cleanup`` and
tears it down. An exception raised while the context is already shutting down (a timer firing
into a closed context, a message taken as the context goes: see ``shut_down_soon``) counts as a
clean stop; any other escapes. A teardown that hangs in the middleware ends the process after
``teardown_timeout_s`` (``teardown_alarm``).

``enable_stack_dumps()`` (run_node calls it): SIGUSR1 prints every thread's Python stack on
stderr and the process goes on; a crash (SIGSEGV, SIGABRT) prints them before the process dies.
``echoposed launch`` sends SIGUSR1 to a node that ignored SIGINT and SIGTERM before it sends
SIGKILL, so a hang says where it hung.
"""
from __future__ import annotations

import faulthandler
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from ..errors import EchoposedError

__all__ = [
    'BAD_INPUT',
    'EXIT_CONFIG',
    'EXIT_FAILED',
    'EXIT_INTERRUPTED',
    'EXIT_OK',
    'SpinThread',
    'arm_teardown_alarm',
    'disarm_teardown_alarm',
    'enable_stack_dumps',
    'run_node',
    'shut_down_soon',
    'sigint_deferred',
    'teardown_alarm',
]


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


@contextmanager
def sigint_deferred() -> Iterator[list[int]]:
    """The block (a node's cleanup: a last zero twist, a bag closed) runs to its end through any
    further SIGINT, which is counted in the yielded list instead of raising KeyboardInterrupt; the
    previous handler is back when the block ends. A stop is under way when a cleanup runs, and a
    second SIGINT is usual then: a Ctrl-C in a terminal reaches every process of a ``ros2 launch``,
    which sends each node one more; arriving mid-close, it would cut a bag short (no MCAP footer,
    no metadata.yaml) under exit status 0. SIGTERM and SIGKILL still end the process. Outside the
    main thread (where no handler can be set) the block runs as it is."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


#: What a node's configuration (or a one-shot job's input) raises when it is wrong: the process
#: prints ``name: message`` on stderr, no traceback.
BAD_INPUT = (EchoposedError, OSError)

#: Exit codes of :func:`run_node`: done or stopped; a one-shot job refused its input; a node whose
#: configuration was refused; a one-shot job interrupted (Ctrl-C, SIGTERM, shutdown), as a shell's 128 + SIGINT.
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


def _spin(node: Any, executor: Any, until: Callable[[Any], bool] | None) -> None:
    """Spin until the context shuts down, or ``until(node)`` holds (checked every 0.1 s at least)."""
    if until is None:
        executor.spin()
        return
    while node.context.ok() and not until(node):
        executor.spin_once(timeout_sec=0.1)


def run_node(factory: Callable[[], Any], name: str, args: list[str] | None = None, *,
             job: Callable[[Any], None] | None = None, until: Callable[[Any], bool] | None = None,
             cleanup: Callable[[Any], None] | None = None,
             executor_factory: Callable[[], Any] | None = None, teardown_timeout_s: int = 3) -> int:
    """Run a node as a process, from ``rclpy.init(args=args)`` to rclpy's shutdown; returns the exit code.

    - Build: ``factory()`` after rclpy.init; a :data:`BAD_INPUT` error prints ``name: message``
      on stderr and returns 2; Ctrl-C returns as a stop of the work would.
    - Work, by default: spin the node on ``executor_factory()`` (default single-threaded) until
      shutdown (SIGINT, SIGTERM: rclpy's handlers) or ``until(node)``; any stop returns 0.
      With ``job``: ``job(node)`` instead, a one-shot job that spins the node itself if it needs
      to; 0 when it returns, 1 with ``name: message`` on stderr for a :data:`BAD_INPUT` error,
      130 when interrupted. An exception raised while the context is shutting down
      (:func:`shut_down_soon`) is a stop; any other escapes, after the teardown.
    - Teardown, on every way out once the node is built: ``cleanup(node)`` (a last zero twist, a
      bag closed), then the executor and the node destroyed and rclpy shut down under
      :func:`teardown_alarm` (``teardown_timeout_s`` whole seconds), armed unless a job did not
      succeed (a one-shot node ended by its alarm counts as done).
    """
    stopped = EXIT_INTERRUPTED if job is not None else EXIT_OK   # what a stop before the end returns
    enable_stack_dumps()
    rclpy.init(args=args)
    try:
        node = factory()
    except BAD_INPUT as exc:
        print(f'{name}: {exc}', file=sys.stderr)
        rclpy.try_shutdown()
        return EXIT_CONFIG
    except KeyboardInterrupt:   # Ctrl-C while the node was being built (a model loading)
        rclpy.try_shutdown()
        return stopped
    executor = None
    code = EXIT_FAILED   # a job that raised something else
    try:
        if job is not None:
            job(node)
        else:
            executor = executor_factory() if executor_factory is not None else SingleThreadedExecutor()
            executor.add_node(node)
            _spin(node, executor, until)
        code = EXIT_OK
    except (KeyboardInterrupt, ExternalShutdownException):
        code = stopped
    except Exception as exc:
        if job is not None and isinstance(exc, BAD_INPUT):
            print(f'{name}: {exc}', file=sys.stderr)
        elif shut_down_soon(node.context):
            code = stopped
        else:
            raise
    finally:
        _teardown(node, executor, cleanup, teardown_timeout_s, armed=job is None or code == EXIT_OK)
    return code


def _teardown(node: Any, executor: Any, cleanup: Callable[[Any], None] | None, timeout_s: int, armed: bool) -> None:
    """``cleanup(node)`` (through a further SIGINT: :func:`sigint_deferred`), then the executor (if
    any) and the node destroyed and rclpy shut down under the teardown alarm (when ``armed``); a
    Ctrl-C during that just shuts rclpy down."""
    try:
        try:
            if cleanup is not None:
                with sigint_deferred():
                    cleanup(node)
        finally:
            with teardown_alarm(timeout_s, armed=armed):
                if executor is not None:
                    executor.shutdown(timeout_sec=1.0)
                node.destroy_node()
                rclpy.try_shutdown()
    except KeyboardInterrupt:
        rclpy.try_shutdown()


class SpinThread:
    """Spins ``executor`` in a daemon thread until :meth:`stop` (the launch monitor, the
    controller's estimate client). An exception inside a callback ends the spinning: :attr:`error`
    then holds its type and message (:attr:`traceback` the trace), so the caller can fail the run
    instead of watching a frozen node.

    ``spin_once`` with a short timeout and a stop flag, not ``spin()``: :meth:`stop` must be able to
    end the loop before the executor is shut down, since ``Executor.shutdown`` frees its guard
    condition at once (rclpy does not wait for a spin in another thread) and a thread still inside
    ``rcl_wait`` then crashes the process (exit -11)."""

    def __init__(self, executor: Any, name: str = 'echoposed_monitor_spin', period: float = 0.05) -> None:
        self.executor = executor
        self.period = period
        self.error: str | None = None
        self.traceback = ''
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=name, daemon=True)

    def start(self) -> SpinThread:
        self._thread.start()
        return self

    def _spin(self) -> None:
        try:
            while not self._stop.is_set():
                self.executor.spin_once(timeout_sec=self.period)
        except BaseException as exc:   # noqa: B036 -- whatever ends the spin is reported, nothing is lost silently
            if not self._stop.is_set():
                self.traceback = traceback.format_exc()
                self.error = f'{type(exc).__name__}: {exc}'

    @property
    def alive(self) -> bool:
        """Whether the thread is still running (it may outlive :meth:`stop`'s timeout)."""
        return self._thread.is_alive()

    @property
    def failed(self) -> bool:
        return self.error is not None

    def stop(self, timeout: float = 2.0) -> None:
        """Stop spinning and wait up to ``timeout`` s for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)
