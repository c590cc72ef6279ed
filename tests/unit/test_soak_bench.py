"""The soak benchmark's pieces (benchmarks/soak_launch.py): the process tree and its memory read from
/proc, node names from their command lines, and the judging of growth and loop rate."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def soak():
    spec = importlib.util.spec_from_file_location('soak_launch', ROOT / 'benchmarks' / 'soak_launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tree_of_a_process_its_memory_and_names(soak):
    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', '--ros-args', '-r',
                              '__node:=echoposed_fake'])
    try:
        tree = soak.process_tree(os.getpid())
        assert os.getpid() in tree and child.pid in tree
        assert soak.rss_mb(os.getpid()) > 1.0
        assert soak.label(child.pid, os.getpid()) == 'echoposed_fake'
        assert soak.label(os.getpid(), os.getpid()) == 'launcher'
    finally:
        child.kill()
        child.wait()
    assert soak.rss_mb(child.pid) is None   # gone


def test_growth_beyond_the_tolerance_is_not_flat_and_the_warmup_is_not_judged(soak):
    samples = [{'t': float(t), 'loop_hz': 30.0 - (t == 50) * 2.0,
                'rss_mb': {'flat': 100.0 + (50.0 if t < 60 else 0.0) + 0.001 * t, 'leaky': 100.0 + 0.1 * t}}
               for t in range(0, 600, 10)]
    processes, loop = soak.judge(samples, warmup=60.0, tolerance=0.05)
    assert processes['flat']['flat'] and abs(processes['flat']['growth']) < 0.01
    assert not processes['leaky']['flat'] and processes['leaky']['growth'] > 0.3
    assert processes['leaky']['slope_mb_per_min'] == pytest.approx(6.0)
    assert loop == {'min_hz': 30.0, 'median_hz': 30.0, 'max_hz': 30.0, 'intervals': 54}   # 2 Hz dip in warm-up
    text = soak.markdown({'arguments': ['a:=b'], 'duration_s': 600.0, 'machine': 'm', 'date': 'd',
                          'load_average': [1.0], 'interval_s': 10.0, 'warmup_s': 60.0, 'exit_code': 0,
                          'tolerance': 0.05, 'processes': processes, 'loop': loop, 'pose_topic': 'echoposed/pose',
                          'launch_summary': None})
    assert '| leaky |' in text and '| no |' in text and 'median 30.0' in text
