"""The ROS domain reservation (echoposed_ros/bringup/domain.py) that tests/conftest.py and
`echoposed launch --isolated` hold for their run."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from echoposed_ros.bringup.domain import DOMAIN_IDS, DomainError, lock_path, reserve_domain

# A child that reserves one id of argv[2:] in lock dir argv[1], prints it, and holds it until stdin closes.
HOLDER = (
    'import sys\n'
    'from echoposed_ros.bringup.domain import reserve_domain\n'
    'r = reserve_domain([int(a) for a in sys.argv[2:]], sys.argv[1])\n'
    'print(r.domain_id, flush=True)\n'
    'sys.stdin.read()\n'
)


def hold_in_child(lock_dir: Path, ids) -> tuple[subprocess.Popen, int]:
    child = subprocess.Popen([sys.executable, '-c', HOLDER, str(lock_dir), *map(str, ids)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    assert line.strip().isdigit(), child.stderr.read() if child.poll() is not None else line
    return child, int(line)


def test_two_reservations_in_one_process_never_share_an_id(tmp_path):
    first = reserve_domain([3, 4], tmp_path)
    second = reserve_domain([3, 4], tmp_path)
    assert {first.domain_id, second.domain_id} == {3, 4}
    assert first.path == lock_path(first.domain_id, tmp_path) and first.path.exists()
    with pytest.raises(DomainError, match=r'all 2 ids in 3\.\.4 are reserved .*echoposed-ros-domain-<id>\.lock'):
        reserve_domain([3, 4], tmp_path)
    first.release()
    second.release()


def test_a_released_id_can_be_taken_again(tmp_path):
    with reserve_domain([7], tmp_path) as r:
        assert r.held and r.domain_id == 7
        with pytest.raises(DomainError):
            reserve_domain([7], tmp_path)
    assert not r.held
    r.release()  # a second release does nothing
    again = reserve_domain([7], tmp_path)
    assert again.domain_id == 7
    again.release()


def test_two_processes_never_share_an_id_and_a_dead_holder_frees_its_id(tmp_path):
    a, id_a = hold_in_child(tmp_path, [1, 2])
    b, id_b = hold_in_child(tmp_path, [1, 2])
    try:
        assert {id_a, id_b} == {1, 2}
        with pytest.raises(DomainError):
            reserve_domain([1, 2], tmp_path)
    finally:
        b.kill()  # a crash: the kernel drops the lock with the process
        b.communicate()
    try:
        freed = reserve_domain([1, 2], tmp_path)
        assert freed.domain_id == id_b
        freed.release()
    finally:
        a.communicate('')
    assert a.returncode == 0


def test_ids_are_tried_in_a_random_order(tmp_path):
    taken = set()
    for seed in range(20):
        with reserve_domain(DOMAIN_IDS, tmp_path, rng=random.Random(seed)) as r:
            assert r.domain_id in DOMAIN_IDS
            taken.add(r.domain_id)
    assert len(taken) > 10  # not always the first free id


def test_no_ids_is_refused(tmp_path):
    with pytest.raises(ValueError, match='ids is empty'):
        reserve_domain([], tmp_path)


def test_this_run_holds_the_domain_it_runs_on():
    """tests/conftest.py reserved ROS_DOMAIN_ID for this pytest process: nobody else can take it."""
    domain_id = int(os.environ['ROS_DOMAIN_ID'])
    assert domain_id in DOMAIN_IDS
    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    with pytest.raises(DomainError):
        reserve_domain([domain_id])


def test_an_isolated_launch_holds_its_domain_for_its_life():
    code = ('import sys\nfrom echoposed_ros.cli.launch import _isolate\n'
            'print(_isolate(), flush=True)\nsys.stdin.read()\n')
    child = subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        domain = int(child.stdout.readline())
        assert domain != int(os.environ['ROS_DOMAIN_ID'])   # not this test run's
        with pytest.raises(DomainError):
            reserve_domain([domain])
    finally:
        child.communicate('')
    reserve_domain([domain]).release()   # free again once the launch has ended
