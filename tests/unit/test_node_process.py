"""``echoposed_ros.nodes.process``: an exception in a node's spin is a stop when the context goes
down at once (rclpy's signal thread shuts it down a moment after a failed take), a crash when it
stays up (``shut_down_soon``); a teardown hung in the middleware, GIL held, ends by its alarm with
the stacks (``arm_teardown_alarm``)."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from echoposed_ros.nodes.process import arm_teardown_alarm, shut_down_soon


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


HUNG_TEARDOWN = '''
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
'''


def test_a_teardown_hung_in_c_with_the_gil_is_ended_by_the_alarm_with_its_stacks():
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, '-c', HUNG_TEARDOWN, 'hang'], capture_output=True, text=True, timeout=25)
    assert time.monotonic() - t0 < 10.0
    assert result.returncode == -signal.SIGALRM
    assert 'stuck_in_destroy_node' in result.stderr, result.stderr   # where it hung


def test_a_disarmed_alarm_leaves_the_process_alone():
    result = subprocess.run([sys.executable, '-c', HUNG_TEARDOWN, 'disarm'], capture_output=True, text=True,
                            timeout=25)
    assert result.returncode == 7 and 'finished' in result.stdout


def test_the_alarm_takes_whole_seconds():
    with pytest.raises(ValueError, match='timeout_s'):
        arm_teardown_alarm(0.5)


def test_the_teardown_block_disarms_its_alarm_however_it_ends():
    script = '''
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
'''
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=25)
    assert result.returncode == 0 and 'alive' in result.stdout, result.stderr
