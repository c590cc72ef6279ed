"""``echoposed_ros.nodes.process``: an exception in a node's spin is a stop when the context goes
down at once (rclpy's signal thread shuts it down a moment after a failed take), a crash when it
stays up (``shut_down_soon``); a teardown hung in the middleware ends the process with the stop's
exit code and the stacks (``teardown_watchdog``)."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

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


WATCHDOG = '''
import sys, time
from echoposed_ros.nodes.process import teardown_watchdog
timer = teardown_watchdog('echoposed_fake', 0.3, exit_code=int(sys.argv[1]))
if sys.argv[2] == 'cancel':
    timer.cancel()
    time.sleep(0.6)
    print('finished', flush=True)
    sys.exit(7)
def stuck_in_destroy_node():
    time.sleep(30)
stuck_in_destroy_node()
'''


@pytest.mark.parametrize('code', [0, 1])
def test_a_hung_teardown_ends_the_process_with_its_code_and_stacks(code):
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, '-c', WATCHDOG, str(code), 'hang'], capture_output=True, text=True,
                            timeout=20)
    assert time.monotonic() - t0 < 10.0
    assert result.returncode == code
    assert f'echoposed_fake: teardown did not finish within 0.3 s (hung in the middleware); exiting with {code}' \
        in result.stderr
    assert 'stuck_in_destroy_node' in result.stderr   # where it hung


def test_a_teardown_that_finishes_in_time_is_left_alone():
    result = subprocess.run([sys.executable, '-c', WATCHDOG, '0', 'cancel'], capture_output=True, text=True,
                            timeout=20)
    assert result.returncode == 7 and 'finished' in result.stdout and 'teardown' not in result.stderr
