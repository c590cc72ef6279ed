"""``echoposed_ros.nodes.process``: an exception in a node's spin is a stop when the context goes
down at once (rclpy's signal thread shuts it down a moment after a failed take), a crash when it
stays up (``shut_down_soon``); a teardown hung in the middleware, GIL held, ends by its alarm with
the stacks (``arm_teardown_alarm``)."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from echoposed_ros.nodes.process import arm_teardown_alarm, shut_down_soon

# rclpy's Future.__del__ reports, at garbage collection, a Task that a signal's KeyboardInterrupt cut
# short inside its own __init__ (rclpy/task.py: "'Task' object has no attribute '_exception'"). Where
# the signal lands inside rclpy is timing, not this project's behaviour, so that one message is left
# out before looking for tracebacks of our own.
_RCLPY_TASK_GC = re.compile(r"Exception ignored in: <function Future\.__del__ at 0x[0-9a-f]+>\n"
                            r"Traceback \(most recent call last\):\n(?:  .*\n)*?"
                            r"AttributeError: 'Task' object has no attribute '_exception'\n?")


def _ours(stderr: str) -> str:
    """``stderr`` without rclpy's report of a Task interrupted while it was being built."""
    return _RCLPY_TASK_GC.sub('', stderr)


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


HUNG_TEARDOWN = """
import ctypes, sys
from echoposed_ros.nodes.process import arm_teardown_alarm, disarm_teardown_alarm
arm_teardown_alarm(1)
if sys.argv[1] == 'disarm':
    disarm_teardown_alarm()
    ctypes.CDLL(None).sleep(2)
    print('finished', flush=True)
    sys.exit(7)
def stuck_in_destroy_node():
    ctypes.PyDLL(None).sleep(30)   # a C call that keeps the GIL, as the hung destroy_when_not_in_use
stuck_in_destroy_node()
"""


def test_a_teardown_hung_in_c_with_the_gil_is_ended_by_the_alarm_with_its_stacks():
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, '-c', HUNG_TEARDOWN, 'hang'], capture_output=True, text=True, timeout=25)
    assert time.monotonic() - t0 < 10.0
    assert result.returncode == -signal.SIGALRM
    assert 'stuck_in_destroy_node' in result.stderr, result.stderr   # where it hung


@pytest.mark.slow
def test_a_disarmed_alarm_leaves_the_process_alone():
    result = subprocess.run([sys.executable, '-c', HUNG_TEARDOWN, 'disarm'], capture_output=True, text=True,
                            timeout=25)
    assert result.returncode == 7 and 'finished' in result.stdout


def test_the_alarm_takes_whole_seconds():
    with pytest.raises(ValueError, match='timeout_s'):
        arm_teardown_alarm(0.5)


@pytest.mark.slow
def test_the_teardown_block_disarms_its_alarm_however_it_ends():
    script = """
import ctypes, sys
from echoposed_ros.nodes.process import teardown_alarm
try:
    with teardown_alarm(1):
        raise RuntimeError('teardown failed')
except RuntimeError:
    pass
with teardown_alarm(1, armed=False):
    pass
ctypes.CDLL(None).sleep(2)   # past the alarm: still alive
print('alive', flush=True)
"""
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=25)
    assert result.returncode == 0 and 'alive' in result.stdout, result.stderr


# run_node: the one start-up and teardown of every node process, with a fake node and work. Each
# case runs in its own process (rclpy.init once per process, signals, the alarm). The node's
# cleanup and destroy_node print whether the teardown alarm is armed at that moment (ITIMER_REAL
# is the timer alarm() sets).
RUN_NODE = """
import os, signal, sys, time
from rclpy.node import Node
from echoposed_ros.nodes.errors import NodeError
from echoposed_ros.nodes.process import run_node

mode = sys.argv[1]

def armed():
    return signal.getitimer(signal.ITIMER_REAL)[0] > 0

class Fake(Node):
    def __init__(self):
        if mode == 'bad-config':
            raise NodeError('parameter rate = -1.0; expected > 0')
        if mode == 'missing-file':
            open('/nonexistent/fake.yaml')
        if mode.startswith('build-interrupted'):   # Ctrl-C while a model loads
            raise KeyboardInterrupt
        super().__init__(f'fake_{os.getpid()}')
        if mode.startswith('spin-'):
            self.create_timer(0.05, self.tick)
        print('ready', flush=True)

    def tick(self):
        if mode == 'spin-interrupted':
            raise KeyboardInterrupt
        if mode == 'spin-shutdown-take':   # a take failing as rclpy's SIGTERM handler shuts the context down
            os.kill(os.getpid(), signal.SIGTERM)
            raise RuntimeError('Failed to take message: context invalid')
        if mode == 'spin-crash':
            raise RuntimeError('a bug in a callback')

    def destroy_node(self):
        print(f'destroy armed={armed()}', flush=True)
        if mode == 'hung-teardown':
            import ctypes
            ctypes.PyDLL(None).sleep(30)   # as a destroy_node hung in the middleware, GIL held
        super().destroy_node()

def job(node):
    print('job', flush=True)
    if mode == 'job-refused':
        raise NodeError('sim/standard_view is not available after 1 s')
    if mode == 'job-interrupted':
        raise KeyboardInterrupt
    if mode == 'job-crash':
        raise RuntimeError('a bug in the job')

checks = []
def until(node):
    checks.append(time.monotonic())
    return len(checks) > 3 if mode == 'spin-until' else False

def cleanup(node):
    print(f'cleanup armed={armed()}', flush=True)
    if mode == 'spin-slow-cleanup':   # as a bag being closed: the test sends a second SIGINT meanwhile
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            sum(range(1000))
        print('cleanup done', flush=True)

one_shot = mode.startswith('job-') or mode in ('hung-teardown', 'build-interrupted-job')
code = run_node(Fake, 'fake', job=job if one_shot else None, until=until, cleanup=cleanup, teardown_timeout_s=1)
print(f'exit {code} armed={armed()}', flush=True)
sys.exit(code)
"""


def _run_node(mode: str, stop: signal.Signals | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, '-c', RUN_NODE, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if stop is not None:
        assert proc.stdout.readline() == 'ready\n'
        time.sleep(0.5)
        proc.send_signal(stop)
    try:
        out, err = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, ('ready\n' if stop else '') + out, err)


@pytest.mark.parametrize('mode, message', [
    ('bad-config', 'fake: parameter rate = -1.0; expected > 0'),
    ('missing-file', "fake: [Errno 2] No such file or directory: '/nonexistent/fake.yaml'"),
])
def test_a_node_refusing_its_configuration_exits_2_with_one_line(mode, message):
    result = _run_node(mode)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [message]   # no traceback
    assert result.stdout == 'exit 2 armed=False\n'   # nothing built, nothing to clean up


@pytest.mark.parametrize('mode, code', [('build-interrupted', 0), ('build-interrupted-job', 130)])
def test_ctrl_c_while_the_node_is_built_is_a_stop(mode, code):
    result = _run_node(mode)
    assert result.returncode == code and 'Traceback' not in _ours(result.stderr), result.stderr
    assert result.stdout == f'exit {code} armed=False\n'


# (mode, exit code, printed lines): the cleanup runs before the node is destroyed on every way out;
# the teardown is under the alarm unless a one-shot job did not succeed; the alarm is off after
@pytest.mark.parametrize('mode, code, lines', [
    ('job-done', 0, ['job', 'cleanup armed=False', 'destroy armed=True', 'exit 0 armed=False']),
    ('job-refused', 1, ['job', 'cleanup armed=False', 'destroy armed=False', 'exit 1 armed=False']),
    ('job-interrupted', 130, ['job', 'cleanup armed=False', 'destroy armed=False', 'exit 130 armed=False']),
    ('spin-interrupted', 0, ['cleanup armed=False', 'destroy armed=True', 'exit 0 armed=False']),
    ('spin-until', 0, ['cleanup armed=False', 'destroy armed=True', 'exit 0 armed=False']),
    ('spin-shutdown-take', 0, ['cleanup armed=False', 'destroy armed=True', 'exit 0 armed=False']),
])
def test_every_way_out_cleans_up_then_tears_down(mode, code, lines):
    result = _run_node(mode)
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stdout.splitlines() == ['ready', *lines], result.stdout
    assert 'Traceback' not in _ours(result.stderr), result.stderr
    if mode == 'job-refused':
        assert result.stderr.splitlines() == ['fake: sim/standard_view is not available after 1 s']


@pytest.mark.parametrize('mode, armed', [('job-crash', False), ('spin-crash', True)])
def test_a_crash_escapes_with_its_traceback_after_the_teardown(mode, armed):
    result = _run_node(mode)
    assert result.returncode == 1 and 'RuntimeError: a bug in' in result.stderr, result.stderr
    assert result.stdout.splitlines()[-2:] == ['cleanup armed=False', f'destroy armed={armed}'], result.stdout


@pytest.mark.parametrize('stop', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_spinning_node_cleanly(stop):
    result = _run_node('spin-forever', stop)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ['ready', 'cleanup armed=False', 'destroy armed=True', 'exit 0 armed=False']
    assert 'Traceback' not in _ours(result.stderr), result.stderr


def test_a_hung_teardown_after_a_done_job_is_ended_by_the_alarm():
    t0 = time.monotonic()
    result = _run_node('hung-teardown')
    assert time.monotonic() - t0 < 15.0
    assert result.returncode == -signal.SIGALRM, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == 'destroy armed=True' and 'destroy_node' in result.stderr


def test_a_second_sigint_does_not_cut_the_cleanup_short():
    # A Ctrl-C reaches every process of a ros2 launch, and launch sends each node another SIGINT: one
    # arriving during the cleanup (the recorder closing its bag) must not interrupt it.
    proc = subprocess.Popen([sys.executable, '-c', RUN_NODE, 'spin-slow-cleanup'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == 'ready\n'
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline() == 'cleanup armed=False\n'
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=40)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    assert out.splitlines() == ['cleanup done', 'destroy armed=True', 'exit 0 armed=False'], out + err
    assert 'Traceback' not in _ours(err), err
