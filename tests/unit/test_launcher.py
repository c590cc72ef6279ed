"""The process launcher (``echoposed_ros.bringup.launcher.run_nodes``) with tiny fake node
processes: the end-of-run hook comes before any stop, and ``stop_first`` nodes are stopped (and
waited for) before the others."""
from __future__ import annotations

import signal
import textwrap
import time

import pytest

from echoposed_ros.bringup.description import NodeSpec
from echoposed_ros.bringup.launcher import run_nodes

FAKE = textwrap.dedent("""
    import signal, sys, time
    name = next(a.split(':=')[1] for a in sys.argv if a.startswith('__node:='))
    log = open(LOG, 'a')
    def on_int(signum, frame):
        log.write(f'{name} sigint {time.monotonic()}\\n'); log.flush()
        time.sleep(0.4)   # a node that takes a moment to close (a recorder flushing its bag)
        log.write(f'{name} exit {time.monotonic()}\\n'); log.flush()
        sys.exit(0)
    signal.signal(signal.SIGINT, on_int)
    print(f'{name} up', flush=True)
    while True:
        time.sleep(0.01)
""")


@pytest.mark.slow
def test_end_hook_then_stop_first_nodes_then_the_rest(tmp_path, monkeypatch):
    log = tmp_path / 'log.txt'
    (tmp_path / 'fake_node.py').write_text(FAKE.replace('LOG', repr(str(log))))
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))
    ended = []
    specs = [NodeSpec('fake', 'fake_node', 'worker'), NodeSpec('fake', 'fake_node', 'recorder', stop_first=True)]
    result = run_nodes(specs, duration=1.0, out=open(tmp_path / 'out.txt', 'w'),
                       on_end=lambda: ended.append(time.monotonic()))
    assert result.ok and result.reason == 'duration', result
    events = {tuple(line.split()[:2]): float(line.split()[2]) for line in log.read_text().splitlines()}
    assert len(ended) == 1 and ended[0] <= events[('recorder', 'sigint')]
    assert events[('recorder', 'exit')] <= events[('worker', 'sigint')]   # the recorder closed first
    assert set(result.exit_codes) == {'worker', 'recorder'}


HANGING = textwrap.dedent("""
    import faulthandler, signal, sys, time
    faulthandler.register(signal.SIGUSR1, all_threads=True)   # as echoposed_ros.nodes.process.run_node
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    def stuck_in_shutdown():
        while True:
            time.sleep(0.01)
    print('up', flush=True)
    stuck_in_shutdown()
""")


@pytest.mark.slow
def test_a_node_that_ignores_sigint_and_sigterm_is_killed_after_printing_its_stacks(tmp_path, monkeypatch):
    (tmp_path / 'hanging_node.py').write_text(HANGING)
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))
    started = time.monotonic()
    result = run_nodes([NodeSpec('fake', 'hanging_node', 'stuck')], duration=0.5, grace_s=0.5,
                       out=open(tmp_path / 'out.txt', 'w'))
    assert time.monotonic() - started < 10.0
    assert result.exit_codes == {'stuck': -signal.SIGKILL} and not result.ok
    tail = '\n'.join(result.failures['stuck'])
    assert 'Current thread' in tail and 'in stuck_in_shutdown' in tail, tail   # where it hung


ALARMED = textwrap.dedent("""
    import os, signal, time
    def on_int(signum, frame):   # its work done, the teardown hangs and its alarm ends it
        os.kill(os.getpid(), signal.SIGALRM)
    signal.signal(signal.SIGINT, on_int)
    print('up', flush=True)
    while True:
        time.sleep(0.01)
""")


def test_a_stopped_node_ended_by_its_teardown_alarm_is_a_clean_stop_and_named(tmp_path, monkeypatch):
    (tmp_path / 'alarmed_node.py').write_text(ALARMED)
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))
    out = tmp_path / 'out.txt'
    result = run_nodes([NodeSpec('fake', 'alarmed_node', 'sim')], duration=0.5, out=open(out, 'w'))
    assert result.ok and result.exit_codes == {'sim': -signal.SIGALRM} and result.teardown_alarms == ('sim',)
    assert 'its teardown hung in the middleware and was ended by its alarm' in out.read_text()
    # a node that ends by SIGALRM on its own, before any stop, is a failure
    early = textwrap.dedent("""
        import os, signal, time
        print('up', flush=True)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGALRM)
    """)
    (tmp_path / 'early_node.py').write_text(early)
    result = run_nodes([NodeSpec('fake', 'early_node', 'sim')], duration=5.0, out=open(out, 'w'))
    assert result.reason == 'node_exited' and not result.ok and 'sim' in result.failures


@pytest.mark.slow
def test_a_one_shot_node_ended_by_its_teardown_alarm_succeeded(tmp_path, monkeypatch):
    (tmp_path / 'setter_node.py').write_text(textwrap.dedent("""
        import os, signal, time
        print('target set', flush=True)
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGALRM)   # its teardown hung after its work: the alarm ends it
    """))
    (tmp_path / 'worker_node.py').write_text(FAKE.replace('LOG', repr(str(tmp_path / 'log.txt'))))
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))
    specs = [NodeSpec('fake', 'worker_node', 'worker'), NodeSpec('fake', 'setter_node', 'setter', one_shot=True)]
    result = run_nodes(specs, duration=1.5, out=open(tmp_path / 'out.txt', 'w'))
    assert result.ok and result.reason == 'duration', result   # the run went on to its end
    assert result.teardown_alarms == ('setter',) and result.exit_codes['setter'] == -signal.SIGALRM
